"""`ccl demo --quick`: the whole pipeline end to end, on real files, in about a minute."""

import json
import re

import numpy as np
import pytest

from ccl.cli import main


def test_demo_quick_end_to_end(tmp_path, capsys):
    assert main(["demo", "--quick", "--out", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    for method in ("baseline", "CCL-A", "CCL-I", "CCL-AI"):
        assert f"| {method} |" in printed
    for step in ("generate synthetic videos", "prepare frame stores", "extract audio embeddings"):
        assert f"[demo] {step}" in printed
    assert "`ccl demo --tune --seeds 1 2 3 --out demo_seeds` chooses them" in printed
    # the methods trained two at a time, each in its own process with its own log
    assert "[demo] train and evaluate baseline, ccl-a, ccl-i, ccl-ai: 2 at once" in printed
    for name in ("demo-baseline", "demo-ccl-a", "demo-ccl-i", "demo-ccl-ai"):
        assert "epoch 2/2" in (tmp_path / "logs" / f"{name}.log").read_text()
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    assert [r["method"] for r in report["runs"]] == ["baseline", "CCL-A", "CCL-I", "CCL-AI"]
    for run in report["runs"]:
        assert run["best"]["videos_evaluated"] == run["best"]["videos_expected"] > 0
        assert run["retrieval"]["recall"]["1"] is not None
    # the paired differences to the baseline and the teachers' probe rows
    table = (tmp_path / "demo_table.md").read_text()
    lines = table.splitlines()
    assert "| Δ top-1 vs baseline [95 % CI] | Δ R@1 vs baseline [95 % CI] |" in lines[0]
    rows = {line.split(" | ")[0][2:]: line.strip("|").split(" | ") for line in lines[2:8]}
    assert set(rows) == {
        "baseline",
        "CCL-A",
        "CCL-I",
        "CCL-AI",
        "audio teacher, linear probe",
        "image teacher, linear probe",
    }
    delta = re.compile(r"^[+-]\d+\.\d \[[+-]\d+\.\d, [+-]\d+\.\d\]$")
    for method in ("CCL-A", "CCL-I", "CCL-AI"):
        assert all(delta.match(cell.strip()) for cell in rows[method][-2:]), rows[method]
    assert [c.strip() for c in rows["baseline"][-2:]] == ["-", "-"]
    for name in ("audio teacher, linear probe", "image teacher, linear probe"):
        cells = [c.strip() for c in rows[name][1:]]
        assert all(re.match(r"^\d+\.\d$", c) for c in cells[:2]) and set(cells[2:]) == {"-"}
    assert "test videos without a soundtrack embedding, counted wrong" in table
    # the demo audio teacher's embeddings lie where the real PANNs Cnn14_emb512 ones of UCF51
    # do (non-negative, L2 norm 13-25): its batch norm before the ReLU fixes their scale
    norms = [
        float(np.linalg.norm(np.load(f)))
        for f in sorted((tmp_path / "audio_features").rglob("*.npy"))
    ]
    assert len(norms) >= 30
    assert all(np.load(f).min() >= 0 for f in (tmp_path / "audio_features").rglob("*.npy"))
    assert 13.0 <= min(norms) and max(norms) <= 25.0, (min(norms), max(norms))
    assert f"L2 norm {min(norms):.1f}-{max(norms):.1f}" in printed
    probes = json.loads((tmp_path / "teacher_probes.json").read_text())
    assert probes["audio"]["test_videos"] == probes["image"]["test_videos"] > 0
    pngs = sorted(p.name for p in (tmp_path / "report").glob("*.png"))
    assert "compare_curves.png" in pngs and any(p.startswith("tsne_") for p in pngs)
    assert (tmp_path / "report" / "report.md").read_text().count("| demo-") >= 4
    # the last checkpoint's evaluation (copied from the best one when the weights are the
    # same) equals a fresh evaluation of the last checkpoint
    from ccl.evaluation import EvalSettings, evaluate

    for run_dir in sorted((tmp_path / "runs").iterdir()):
        saved = json.loads((run_dir / "eval_test_last.json").read_text())
        again = EvalSettings(  # the demo's gallery: the training subset (docs/DEMO.md)
            checkpoint="last",
            gallery="training",
            workers=0,
            progress=False,
            out_dir=str(tmp_path / "re"),
        )
        fresh = evaluate(run_dir, again)
        for key in ("recognition", "retrieval", "videos", "epoch", "checkpoint_sha256"):
            assert saved[key] == fresh[key], (run_dir.name, key)
    # a second run skips every finished step
    assert main(["demo", "--quick", "--out", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    assert "train ccl-ai: done already" in printed
    assert "teachers' linear probes: done already" in printed
    assert (tmp_path / "demo_table.md").read_text() == table  # fixed bootstrap seed
    # other settings over the same folder: refused, not reported as this folder's runs
    capsys.readouterr()
    assert main(["demo", "--quick", "--out", str(tmp_path), "objective.loss_weight=0.25"]) == 2
    err = capsys.readouterr().err
    assert "holds a run with other settings (objective.loss_weight: none -> 0.25)" in err
    assert "another --out" in err
    assert (tmp_path / "demo_table.md").read_text() == table
    # every run trained on the demo folder's own data (ccl.demo.paths.demo_paths)
    from ccl.demo.paths import demo_paths

    paths = demo_paths(tmp_path)
    for run_dir in sorted((tmp_path / "runs").iterdir()):
        cfg = json.loads((run_dir / "config.json").read_text())
        assert cfg["data"]["annotations"] == str(paths.annotations)
        assert cfg["data"]["frames_dir"] == str(paths.frames)
        assert cfg["data"]["audio_dir"] == str(paths.audio_dir)
        assert cfg["image_teacher"]["weights"] == str(paths.image_teacher)


def test_worker_set_up_threads_and_log(tmp_path, capsys):
    """A demo worker process uses its share of the threads and writes to its own log; outside
    a worker (threads None) nothing changes."""
    import torch

    from ccl.demo.jobs import threads_per_job, worker_setup

    assert threads_per_job(1) is None and threads_per_job(10**6) == 1
    before = torch.get_num_threads()
    log = tmp_path / "logs" / "run.log"
    try:
        with worker_setup(1, log):
            print("in the worker")
            assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
    with worker_setup(None, tmp_path / "unused.log"):
        print("not a worker")
    assert log.read_text() == "in the worker\n"
    assert not (tmp_path / "unused.log").exists()
    assert capsys.readouterr().out == "not a worker\n"


def test_seed_table_mean_and_std():
    from ccl.demo.tables import TABLE_COLUMNS, format_table

    one = {key: 0.1 for key, _ in TABLE_COLUMNS}
    two = {key: 0.3 for key, _ in TABLE_COLUMNS}
    table = format_table([{"baseline": one, "CCL-AI": one}, {"baseline": two, "CCL-AI": two}])
    lines = table.splitlines()
    assert lines[0].startswith("| method | top-1 | top-5 | top-1 related audio |")
    mean_std = ["20.0 +- 10.0"] * len(TABLE_COLUMNS)
    assert lines[2] == "| baseline | " + " | ".join(mean_std + ["-", "-"]) + " |"
    cells = format_table([{"CCL-A": {**one, "r1": None}}]).splitlines()[2].split(" | ")
    assert cells[1:] == ["10.0"] * 4 + ["-", "10.0", "10.0", "-", "- |"]


def test_paired_columns_and_probe_rows():
    from ccl.demo.tables import TABLE_COLUMNS, format_table
    from ccl.stats import paired_bootstrap

    metrics = {key: 0.5 for key, _ in TABLE_COLUMNS}
    per_seed = [{"baseline": metrics, "CCL-A": metrics}] * 2
    base = {"v1": 1.0, "v2": 0.0, "v3": 0.0, "v4": 1.0}
    mine = {"v1": 1.0, "v2": 1.0, "v3": 0.0, "v4": 0.0}
    hits = [
        {"baseline": {"top1": base, "r1": base}, "CCL-A": {"top1": mine, "r1": base}},
        {"baseline": {"top1": base, "r1": None}, "CCL-A": {"top1": base, "r1": None}},
    ]
    probe = {
        "audio": {"top1": 0.25, "top5": 0.75, "test_missing": 1, "test_videos": 4},
        "image": {"top1": 0.5, "top5": 1.0, "test_missing": 0, "test_videos": 4},
    }
    probe2 = {**probe, "audio": {**probe["audio"], "top1": 0.75}}
    table = format_table(per_seed, hits, [probe, probe2], [3, 5])
    rows = {line.split(" | ")[0][2:]: line for line in table.splitlines()[2:6]}
    # top-1: pooled over both seeds (keys (seed, video)); R@1: only seed 3 has ranks
    pooled = paired_bootstrap(
        {(s, v): h for s, m in ((3, mine), (5, base)) for v, h in m.items()},
        {(s, v): h for s in (3, 5) for v, h in base.items()},
        seed=0,
    )
    mean, lo, hi = (100 * x for x in pooled)
    assert rows["CCL-A"].endswith(f" | {mean:+.1f} [{lo:+.1f}, {hi:+.1f}] | +0.0 [+0.0, +0.0] |")
    assert mean == 0.0 and lo < 0 < hi
    assert rows["baseline"].endswith(" | - | - |")
    assert rows["audio teacher, linear probe"] == (
        "| audio teacher, linear probe | 50.0 +- 25.0 | 75.0 +- 0.0 | "
        + " | ".join(["-"] * (len(TABLE_COLUMNS) - 2 + 2))
        + " |"
    )
    assert rows["image teacher, linear probe"].startswith(
        "| image teacher, linear probe | 50.0 +- 0.0 |"
    )
    assert "over the 8 (seed, test video) pairs" in table
    assert "audio: 2 of 8 test videos without a soundtrack embedding, counted wrong" in table
    # a method evaluated on other videos than the baseline is refused, naming the video
    other = {**mine}
    other["v9"] = other.pop("v4")
    bad = [{"baseline": {"top1": base, "r1": None}, "CCL-A": {"top1": other, "r1": None}}]
    with pytest.raises(ValueError, match=r"CCL-A vs baseline \(top1\).*'v4' \(seed 1\)"):
        format_table(per_seed[:1], bad)


def test_video_hits_count_missing_videos_and_old_evaluations():
    from ccl.demo.tables import video_hits

    ev = {
        "videos": [
            {"video_id": "a", "label": 1, "top5": [1, 0], "retrieval_rank": 0},
            {"video_id": "b", "label": 0, "top5": [1, 0], "retrieval_rank": 3},
            {"video_id": "c", "label": 0, "top5": [0, 1], "retrieval_rank": None},
        ],
        "missing": [{"video_id": "d", "reason": "no frame store"}],
        "retrieval": {"recall": {"1": 0.25}},
    }
    hits = video_hits(ev)
    assert hits["top1"] == {"a": 1.0, "b": 0.0, "c": 1.0, "d": 0.0}
    assert hits["r1"] == {"a": 1.0, "b": 0.0, "c": 0.0, "d": 0.0}
    for video in ev["videos"]:
        del video["retrieval_rank"]  # written before evaluation stored ranks
    assert video_hits(ev)["r1"] is None


def test_demo_over_seeds_writes_mean_table(tmp_path, capsys):
    # two seeds side by side, each in its own process writing its own log
    argv = ["demo", "--quick", "--seeds", "1", "2", "--jobs", "2", "--out", str(tmp_path)]
    assert main(argv) == 0
    for seed in (1, 2):
        log = (tmp_path / f"seed_{seed}" / "demo.log").read_text()
        assert "[demo] train ccl-ai: " in log and "[demo] full report:" in log
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
    from ccl.demo.compare import run_compare

    run_compare(tmp_path, seeds=(1, 2), scale="quick", methods=("ccl",))
    printed = capsys.readouterr().out
    for name in ("demo-baseline", "demo-ccl-a", "demo-ccl-i", "demo-ccl-ai"):
        assert f"train {name} (seed 2): done already" in printed


def test_a_demo_folder_of_another_seed_or_other_settings_is_refused(tmp_path):
    """ccl demo skips finished steps: a folder holding another seed's benchmark or a run of
    other settings is refused before anything is written, naming what differs."""
    import pytest

    from ccl.config import preset
    from ccl.demo.paths import check_same_run, demo_paths, use_demo_data
    from ccl.demo.pipeline import prepare_demo_data

    info = tmp_path / "synth" / "synth_info.json"
    info.parent.mkdir(parents=True)
    info.write_text(json.dumps({"seed": 1, "scale": "quick"}))
    with pytest.raises(ValueError, match="seed 1 at scale 'quick'.*not seed 2 at scale 'quick'"):
        prepare_demo_data(tmp_path, seed=2, scale="quick")
    with pytest.raises(ValueError, match="not seed 1 at scale 'demo'"):
        prepare_demo_data(tmp_path, seed=1, scale="demo")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["synth"]  # nothing else written
    info.write_text('{"seed": 1, "sca')  # truncated
    with pytest.raises(ValueError, match="synth_info.json is not readable JSON"):
        prepare_demo_data(tmp_path, seed=1, scale="quick")
    info.write_text(json.dumps({"seed": 1, "scale": "quick"}))

    run_dir = tmp_path / "runs" / "demo-ccl-a"
    run_dir.mkdir(parents=True)
    saved = use_demo_data(preset("demo-ccl-a"), demo_paths(tmp_path))
    saved.train.seed = 1
    saved.save(run_dir / "config.json")
    moved = use_demo_data(preset("demo-ccl-a"), demo_paths(tmp_path / "moved"))
    moved.train.seed, moved.train.resume, moved.train.name = 1, "auto", "renamed"
    check_same_run(run_dir, moved)  # the same run in a moved, renamed folder: continued
    other = preset("demo-ccl-a")
    other.train.seed, other.objective.audio_temperature = 2, 0.1
    with pytest.raises(ValueError) as err:
        check_same_run(run_dir, other)
    assert "objective.audio_temperature: 0.5 -> 0.1; train.seed: 1 -> 2" in str(err.value)
    (run_dir / "config.json").write_text('{"train": {"seed"')  # truncated
    with pytest.raises(ValueError, match="config.json is not a readable run config"):
        check_same_run(run_dir, moved)
