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
