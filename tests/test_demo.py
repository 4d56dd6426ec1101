"""`ccl demo --quick`: the whole pipeline end to end, on real files, in about a minute."""

import json

from ccl.cli import main


def test_demo_quick_end_to_end(tmp_path, capsys):
    assert main(["demo", "--quick", "--out", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    for method in ("baseline", "CCL-A", "CCL-I", "CCL-AI"):
        assert f"| {method} |" in printed
    for step in ("generate synthetic videos", "prepare frame stores", "extract audio embeddings"):
        assert f"[demo] {step}" in printed
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    assert [r["method"] for r in report["runs"]] == ["baseline", "CCL-A", "CCL-I", "CCL-AI"]
    for run in report["runs"]:
        assert run["best"]["videos_evaluated"] == run["best"]["videos_expected"] > 0
        assert run["retrieval"]["recall"]["1"] is not None
    pngs = sorted(p.name for p in (tmp_path / "report").glob("*.png"))
    assert "compare_curves.png" in pngs and any(p.startswith("tsne_") for p in pngs)
    assert (tmp_path / "report" / "report.md").read_text().count("| demo-") >= 4
    # a second run skips every finished step
    assert main(["demo", "--quick", "--out", str(tmp_path)]) == 0
    assert "train ccl-ai: done already" in capsys.readouterr().out


def test_seed_table_mean_and_std():
    from ccl.demo import TABLE_COLUMNS, _format_table

    one = {key: 0.1 for key, _ in TABLE_COLUMNS}
    two = {key: 0.3 for key, _ in TABLE_COLUMNS}
    table = _format_table([{"baseline": one, "CCL-AI": one}, {"baseline": two, "CCL-AI": two}])
    lines = table.splitlines()
    assert lines[0].startswith("| method | top-1 | top-5 | top-1 related audio |")
    assert lines[2] == "| baseline | " + " | ".join(["20.0 +- 10.0"] * len(TABLE_COLUMNS)) + " |"
    assert _format_table([{"CCL-A": {**one, "r1": None}}]).splitlines()[2].count("| - |") == 1


def test_demo_over_seeds_writes_mean_table(tmp_path, capsys):
    assert main(["demo", "--quick", "--seeds", "1", "2", "--out", str(tmp_path)]) == 0
    table = (tmp_path / "demo_table_seeds.md").read_text()
    assert "mean +- std over seeds 1, 2" in table
    for method in ("baseline", "CCL-A", "CCL-I", "CCL-AI"):
        assert f"| {method} | " in table and "+-" in table
    per_seed = json.loads((tmp_path / "demo_seeds.json").read_text())
    assert set(per_seed) == {"1", "2"} and set(per_seed["1"]) == {
        "baseline",
        "CCL-A",
        "CCL-I",
        "CCL-AI",
    }
    assert (tmp_path / "seed_2" / "report" / "report.md").is_file()
    # the comparison over the same folder reuses the demo's baseline and CCL runs
    capsys.readouterr()
    from ccl.demo import run_compare

    run_compare(tmp_path, seeds=(1, 2), quick=True, methods=("ccl",))
    printed = capsys.readouterr().out
    for name in ("demo-baseline", "demo-ccl-a", "demo-ccl-i", "demo-ccl-ai"):
        assert f"train {name} (seed 2): done already" in printed
