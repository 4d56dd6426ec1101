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
    assert "`ccl demo --tune --seeds 1 2 3 4 5 --out demo_seeds` chooses them" in printed
    from ccl.config import describe_settings, preset

    assert (tmp_path / "demo_table.md").read_text().splitlines()[1] == describe_settings(
        "chosen", ("baseline", "ccl-a", "ccl-i", "ccl-ai")
    )
    # the runs train in their presets' folders: the setting chosen on validation's
    names = [preset(f"demo-{m}").train.name for m in ("baseline", "ccl-a", "ccl-i", "ccl-ai")]
    # each method trained twice (the quick scale's runs), two trainings at a time, each in
    # its own process with its own log; run 2 with the training seed 1 + 1000
    assert (
        "[demo] train and evaluate 8 runs (baseline, ccl-a, ccl-i, ccl-ai; 2 run(s) each): "
        "2 at once" in printed
    )
    for name in names:
        for run in (name, f"{name}-run2"):
            assert "epoch 2/2" in (tmp_path / "logs" / f"{run}.log").read_text()
    seeds = {
        json.loads((d / "config.json").read_text())["train"]["seed"]
        for d in (tmp_path / "runs").iterdir()
    }
    assert seeds == {1, 1001}
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    assert [r["method"] for r in report["runs"]] == ["baseline", "CCL-A", "CCL-I", "CCL-AI"] * 2
    for run in report["runs"]:
        assert run["best"]["videos_evaluated"] == run["best"]["videos_expected"] > 0
    # retrieval for the last checkpoint (the table's numbers); the best one's top-1 beside
    for run_dir in (tmp_path / "runs").iterdir():
        last = json.loads((run_dir / "eval_test_last.json").read_text())
        assert last["retrieval"]["recall"]["1"] is not None
        best = json.loads((run_dir / "eval_test.json").read_text())
        assert best["checkpoint_kind"] == "best" and best["recognition"]["top1"] is not None
    # the paired differences to the baseline and the teachers' probe rows
    table = (tmp_path / "demo_table.md").read_text()
    lines = table.splitlines()
    assert lines[0] == "Demo, benchmark seed 1, 2 training runs per method"
    assert "| Δ top-1 vs baseline [95 % CI] | Δ R@1 vs baseline [95 % CI] |" in lines[3]
    rows = {line.split(" | ")[0][2:]: line.strip("|").split(" | ") for line in lines[5:11]}
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
    assert main(["demo", "--quick", "--out", str(tmp_path), "objective.loss_weight=0.25"]) == 1
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


def _replicate(seed, run, base, mine, r1=None, value=0.5):
    """One replicate of baseline and CCL-A with these per-video top-1 hits (lists)."""
    from ccl.demo.tables import TABLE_COLUMNS, Replicate

    as_hits = [{f"v{i}": float(h) for i, h in enumerate(hits)} for hits in (base, mine)]
    numbers = {key: value for key, _ in TABLE_COLUMNS}
    return Replicate(
        seed,
        run,
        {"baseline": numbers, "CCL-A": numbers},
        {
            "baseline": {"top1": as_hits[0], "r1": r1},
            "CCL-A": {"top1": as_hits[1], "r1": r1},
        },
    )


def test_table_numbers_are_mean_and_sample_sd_over_replicates():
    from ccl.demo.tables import TABLE_COLUMNS, Replicate, format_table

    one = {key: 0.1 for key, _ in TABLE_COLUMNS}
    two = {key: 0.3 for key, _ in TABLE_COLUMNS}
    reps = [Replicate(1, 1, {"baseline": one}, {}), Replicate(1, 2, {"baseline": two}, {})]
    lines = format_table(reps).splitlines()
    assert lines[0].startswith("| method | top-1 | top-5 | top-1 related audio |")
    assert "top-1 best-on-val" in lines[0]
    # 10 and 30: mean 20, sample sd sqrt(((10-20)^2 + (30-20)^2) / 1) = 14.1
    mean_sd = ["20.0 +- 14.1"] * len(TABLE_COLUMNS)
    assert lines[2] == "| baseline | " + " | ".join(mean_sd + ["-", "-"]) + " |"
    single = format_table([Replicate(1, 1, {"CCL-A": {**one, "r1": None}}, {})])
    cells = single.splitlines()[2].split(" | ")
    assert cells[1:] == ["10.0"] * 4 + ["-"] + ["10.0"] * 3 + ["-", "- |"]


def test_difference_to_the_baseline_has_a_t_interval_over_runs():
    from ccl.demo.tables import difference, format_table

    # per-run mean paired differences (hand): 0, +0.5, -0.25 -> mean +0.0833, sd 0.3819,
    # t(0.975, 2 df) = 4.3027: half width 4.3027 * 0.3819 / sqrt(3) = 0.9487
    reps = [
        _replicate(1, 1, [1, 0, 0, 1], [1, 1, 0, 0]),
        _replicate(1, 2, [0, 0, 0, 0], [1, 1, 0, 0]),
        _replicate(1, 3, [1, 1, 1, 1], [1, 1, 1, 0]),
    ]
    found = difference(reps, "CCL-A", "top1")
    assert found.unit == "run" and found.interval.deltas == (0.0, 0.5, -0.25)
    assert found.cell() == "+8.3 [-86.5, +103.2]"
    assert difference(reps, "CCL-A", "r1").interval is None  # no ranks: no cell
    table = format_table(reps)
    assert "| +8.3 [-86.5, +103.2] | - |" in table
    assert "mean over the test videos, then over the 3 runs" in table
    assert "differ in the training seed only" in table
    assert "cannot separate methods" not in table


def test_over_seeds_the_runs_of_a_seed_are_averaged_first():
    from ccl.demo.tables import difference, format_table

    # seed 1: runs 0 and +0.5 -> +0.25; seed 2: runs -0.25 and +0.25 -> 0. Over the two
    # seeds: mean +0.125, sd 0.1768, t(0.975, 1 df) = 12.706: half width 1.588
    reps = [
        _replicate(1, 1, [1, 0, 0, 1], [1, 1, 0, 0]),
        _replicate(1, 2, [0, 0, 0, 0], [1, 1, 0, 0]),
        _replicate(2, 1, [1, 1, 1, 1], [1, 1, 1, 0]),
        _replicate(2, 2, [0, 0, 0, 0], [1, 0, 0, 0]),
    ]
    found = difference(reps, "CCL-A", "top1")
    assert found.unit == "seed" and found.interval.deltas == (0.25, 0.0)
    assert found.cell() == "+12.5 [-146.3, +171.3]"
    assert "over the 2 seeds" in format_table(reps)


def test_versus_table_pairs_two_methods_on_the_same_seed():
    from ccl.demo.tables import Replicate, versus_table

    def hits(values):
        return {"top1": {f"v{i}": float(h) for i, h in enumerate(values)}, "r1": None}

    # seed 1: CCL-AI minus FitNet-AI per video +1, 0, 0, 0 -> +0.25; seed 2: 0, -1, 0, 0 ->
    # -0.25. Mean 0, sd 0.3536, t(0.975, 1 df) = 12.706: half width 3.177
    reps = [
        Replicate(1, 1, {}, {"CCL-AI": hits([1, 1, 0, 0]), "FitNet-AI": hits([0, 1, 0, 0])}),
        Replicate(2, 1, {}, {"CCL-AI": hits([1, 0, 0, 1]), "FitNet-AI": hits([1, 1, 0, 1])}),
    ]
    lines = versus_table(reps, [("CCL-AI", "FitNet-AI")])
    assert "over the seeds [95 % Student t interval over the seeds]" in lines[0]
    assert lines[2] == "| methods | Δ top-1 [95 % CI] | Δ R@1 [95 % CI] |"
    assert lines[4] == "| CCL-AI minus FitNet-AI | +0.0 [-317.7, +317.7] | - |"
    # the other way round: the signs flip
    assert versus_table(reps, [("FitNet-AI", "CCL-AI")])[4].startswith(
        "| FitNet-AI minus CCL-AI | +0.0 [-317.7, +317.7] |"
    )
    assert versus_table(reps, []) == []


def test_one_run_says_it_cannot_separate_methods():
    from ccl.demo.tables import RUN_TO_RUN_SD, format_table

    table = format_table([_replicate(1, 1, [0, 0, 1, 1], [1, 1, 1, 1])])
    assert "| +50.0 (1 run) | - |" in table
    assert "One run per method: these differences cannot separate methods" in table
    assert f"moves by {RUN_TO_RUN_SD} points between runs" in table


def test_a_diverged_run_is_counted_and_left_out_of_the_difference():
    import math

    from ccl.demo.tables import TABLE_COLUMNS, Replicate, difference

    reps = [
        _replicate(1, 1, [1, 0, 0, 1], [1, 1, 0, 0]),
        _replicate(1, 2, [0, 0, 0, 0], [1, 1, 0, 0]),
        Replicate(
            1,
            3,
            {
                "baseline": {k: 0.5 for k, _ in TABLE_COLUMNS},
                "CCL-A": {k: math.nan for k, _ in TABLE_COLUMNS},
            },
            {"baseline": {"top1": {"v0": 1.0}, "r1": None}},
        ),
    ]
    found = difference(reps, "CCL-A", "top1")
    assert found.left_out == 1 and found.interval.deltas == (0.0, 0.5)
    assert found.cell().endswith("(1 diverged left out)")


def test_paired_differences_need_the_same_videos_and_probe_rows_use_sample_sd():
    from ccl.demo.tables import TABLE_COLUMNS, format_table

    bad = _replicate(1, 1, [1, 0, 0, 1], [1, 1, 0, 0])
    bad.hits["CCL-A"]["top1"]["v9"] = bad.hits["CCL-A"]["top1"].pop("v3")
    with pytest.raises(ValueError, match=r"CCL-A vs baseline \(top1\), seed 1 run 1:.*'v3'"):
        format_table([bad])
    probe = {
        "audio": {"top1": 0.25, "top5": 0.75, "test_missing": 1, "test_videos": 4},
        "image": {"top1": 0.5, "top5": 1.0, "test_missing": 0, "test_videos": 4},
    }
    probe2 = {**probe, "audio": {**probe["audio"], "top1": 0.75}}
    reps = [_replicate(1, 1, [1, 0], [1, 1]), _replicate(2, 1, [1, 0], [0, 0])]
    table = format_table(reps, [probe, probe2])
    rows = {line.split(" | ")[0][2:]: line for line in table.splitlines()[2:6]}
    assert rows["audio teacher, linear probe"] == (
        "| audio teacher, linear probe | 50.0 +- 35.4 | 75.0 +- 0.0 | "
        + " | ".join(["-"] * (len(TABLE_COLUMNS) - 2 + 2))
        + " |"
    )
    assert "audio: 2 of 8 test videos without a soundtrack embedding, counted wrong" in table


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
    assert table.startswith("Demo, benchmark seeds 1, 2, 1 training run per method and seed")
    assert "over the 2 seeds" in table and "data and training noise" in table
    for method in ("baseline", "CCL-A", "CCL-I", "CCL-AI"):
        assert f"| {method} | " in table and "+-" in table
    records = json.loads((tmp_path / "demo_seeds.json").read_text())
    assert [(r["seed"], r["run"]) for r in records] == [(1, 1), (2, 1)]
    assert set(records[0]["numbers"]) == {"baseline", "CCL-A", "CCL-I", "CCL-AI"}
    assert (tmp_path / "seed_2" / "report" / "report.md").is_file()
    # the comparison over the same folder reuses the demo's baseline and CCL runs
    capsys.readouterr()
    from ccl.demo.compare import run_compare

    run_compare(tmp_path, seeds=(1, 2), scale="quick", methods=("ccl",))
    printed = capsys.readouterr().out
    from ccl.config import preset

    for method in ("baseline", "ccl-a", "ccl-i", "ccl-ai"):
        name = preset(f"demo-{method}").train.name
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
    # a benchmark whose info names no soundtracks holds the `events` ones
    with pytest.raises(ValueError, match="with events soundtracks.*with families soundtracks"):
        prepare_demo_data(tmp_path, seed=1, scale="quick")
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


def test_the_quick_demo_twice_gives_identical_tables(tmp_path, capsys):
    """Same code, same seed, same process setting (two trainings at once, one thread each):
    every step is deterministic, so two fresh demos give the same table to the digit and
    the same logged losses (docs/DEMO.md, "What is deterministic")."""
    tables, losses = [], []
    for name in ("a", "b"):
        out = tmp_path / name
        assert main(["demo", "--quick", "--runs", "1", "--out", str(out)]) == 0
        tables.append((out / "demo_table.md").read_text())
        records = [
            json.loads(line)
            for run in sorted((out / "runs").iterdir())
            for line in (run / "metrics.jsonl").read_text().splitlines()
        ]
        # every logged loss and accuracy (not the timings)
        timing = ("time", "epoch_s", "clips_per_s")
        losses.append([{k: v for k, v in r.items() if k not in timing} for r in records])
    capsys.readouterr()
    assert tables[0] == tables[1]
    assert losses[0] == losses[1]
    assert sum("train/ce" in r for r in losses[0]) == 8  # 4 runs x 2 epochs, all compared
