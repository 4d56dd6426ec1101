"""benchmarks/demo_diagnostics.py and ccl.stats.seeds_needed: what the demo's runs did in
training, and how many seeds a difference needs."""

import json
from pathlib import Path

import pytest
from benchmark_scripts import load_script

from ccl.stats import seeds_needed


def test_seeds_needed_is_the_smallest_count_that_reaches_the_effect():
    # sd 8.7, effect 5, power 0.5: t(0.975, 13) * 8.7 / sqrt(14) = 2.160 * 2.325 = 5.02 > 5,
    # t(0.975, 14) * 8.7 / sqrt(15) = 2.145 * 2.246 = 4.82 <= 5
    assert seeds_needed(8.7, 5) == 15
    assert seeds_needed(8.7, -5) == 15  # the sign of the effect does not matter
    # power 0.8: n = 25: (2.064 + 0.857) * 8.7 / 5 = 5.08 > 5; n = 26: (2.060 + 0.856) *
    # 8.7 / 5.099 = 4.98 <= 5
    assert seeds_needed(8.7, 5, power=0.8) == 26
    assert seeds_needed(0.0, 1.0) == 2  # no spread: two seeds give an interval
    assert seeds_needed(100.0, 0.01, most=50) == 50
    with pytest.raises(ValueError, match="effect"):
        seeds_needed(1.0, 0.0)
    with pytest.raises(ValueError, match="power"):
        seeds_needed(1.0, 1.0, power=1.0)


def _run(folder: Path, epochs: list[dict]) -> None:
    folder.mkdir(parents=True)
    lines = [json.dumps({"type": "epoch", "epoch": i + 1, **e}) for i, e in enumerate(epochs)]
    (folder / "metrics.jsonl").write_text("\n".join(lines) + "\n")


def test_diagnostics_script_reads_the_last_epochs_and_the_tuning(tmp_path, capsys):
    for seed, (acc, grad) in {1: (0.4, 2.0), 2: (0.6, 4.0)}.items():
        runs = tmp_path / f"seed_{seed}" / "runs"
        first = {"train/acc": 0.0, "val/top1": 0.0, "train/grad/ce": 9.0}
        _run(
            runs / "demo-baseline",
            [first, {"train/acc": acc, "val/top1": 0.5, "train/grad/ce": grad}],
        )
        _run(
            runs / "demo-ccl-ai",
            [
                {
                    "train/acc": acc,
                    "val/top1": 0.3,
                    "train/grad/ce": grad,
                    "train/grad/contrast": 1.0,
                    "train/grad/divergence": 0.5,
                }
            ],
        )
        _run(
            runs / "demo-fitnet-ai",
            [{"train/acc": 0.1, "val/top1": 0.1, "train/grad/ce": 1.0, "train/grad/fitnet": 8.0}],
        )
    # test top-1 per seed: CCL-AI +10 and +20 over the baseline, FitNet-AI -10 and +0
    test = {
        "1": {"baseline": {"top1": 0.5}, "CCL-AI": {"top1": 0.6}, "FitNet-AI": {"top1": 0.4}},
        "2": {"baseline": {"top1": 0.5}, "CCL-AI": {"top1": 0.7}, "FitNet-AI": {"top1": 0.5}},
    }
    record = {
        "command": "ccl demo --tune --seeds 1 2",
        "chosen": {"baseline": {}, "ccl-ai": {}, "fitnet-ai": {}},
        "test": test,
    }
    (tmp_path / "tuning.json").write_text(json.dumps(record))
    load_script("demo_diagnostics").main([str(tmp_path)])
    out = capsys.readouterr().out.splitlines()
    head = next(line for line in out if line.startswith("| run |"))
    assert head == (
        "| run | seeds | train top-1 | val top-1 | grad ce | grad contrast | grad divergence "
        "| grad fitnet | distillation / ce |"
    )
    rows = {line.split(" | ")[0]: line for line in out if line.startswith("| demo-")}
    # the last epoch, mean over the two seeds: acc 50 %, grad ce 3; distillation 1.5 / 3
    assert rows["| demo-baseline"] == "| demo-baseline | 2 | 50.0 | 50.0 | 3.00 | - | - | - | - |"
    assert rows["| demo-ccl-ai"] == (
        "| demo-ccl-ai | 2 | 50.0 | 30.0 | 3.00 | 1.00 | 0.50 | - | 0.50 |"
    )
    assert rows["| demo-fitnet-ai"].endswith("| 1.00 | - | - | 8.00 | 8.00 |")
    diffs = {line.split(" | ")[0]: line.split(" | ") for line in out if " minus " in line}
    # CCL-AI minus baseline: +10, +20: mean 15, sd 7.07, t(0.975, 1) = 12.706: half 63.5
    assert diffs["| CCL-AI minus baseline"][1:5] == [
        "+10.0",
        "+20.0",
        "+15.0 [-48.5, +78.5]",
        "7.1",
    ]
    # CCL-AI minus FitNet-AI: +20, +20: no spread
    assert diffs["| CCL-AI minus FitNet-AI"][1:5] == [
        "+20.0",
        "+20.0",
        "+20.0 [+20.0, +20.0]",
        "0.0",
    ]
    assert diffs["| CCL-AI minus FitNet-AI"][5:] == ["2", "2 |"]
    # only some runs
    load_script("demo_diagnostics").main([str(tmp_path), "--runs", "demo-ccl*"])
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| demo-")]
    assert [r.split(" | ")[0] for r in rows] == ["| demo-ccl-ai"]
    with pytest.raises(SystemExit, match="no run matches"):
        load_script("demo_diagnostics").main([str(tmp_path), "--runs", "nothing*"])
    with pytest.raises(SystemExit, match="not a demo folder"):
        load_script("demo_diagnostics").main([str(tmp_path / "seed_1" / "runs")])


def _evaluation(classes: list[str], hits: list[tuple[int, int]], missing: int = 0) -> dict:
    """An eval_test_last.json: per video (label, top class)."""
    return {
        "classes": classes,
        "videos": [
            {"video_id": f"v{i}", "label": label, "top5": [top]}
            for i, (label, top) in enumerate(hits)
        ],
        "missing": [{"video_id": f"m{i}"} for i in range(missing)],
    }


def test_diagnostics_split_the_chosen_runs_errors_into_kind_and_motion(tmp_path, capsys):
    classes = ["BarBounce", "BarSlide", "DiscBounce", "DiscSlide"]
    # seed 1: right; kind right, motion wrong; motion right, kind wrong; one missing video:
    # top-1 25 %, kind 50 %, motion 50 %. Seed 2: both right: 100 % each
    per_seed = {
        1: _evaluation(classes, [(0, 0), (0, 1), (0, 2)], missing=1),
        2: _evaluation(classes, [(3, 3), (3, 3)]),
    }
    for seed, evaluation in per_seed.items():
        runs = tmp_path / f"seed_{seed}" / "runs"
        _run(runs / "demo-baseline", [{"train/acc": 0.5, "train/grad/ce": 1.0}])
        (runs / "demo-baseline" / "eval_test_last.json").write_text(json.dumps(evaluation))
        # the chosen setting's folder, not the reference's, is read for CCL-I
        _run(runs / "demo-ccl-i-w0.25", [{"train/acc": 0.5, "train/grad/ce": 1.0}])
        wrong = _evaluation(classes, [(0, 3)])  # kind and motion wrong
        (runs / "demo-ccl-i-w0.25" / "eval_test_last.json").write_text(json.dumps(wrong))
    record = {
        "command": "ccl demo --tune --seeds 1 2",
        "chosen": {
            "baseline": {"tag": "reference", "overrides": []},
            "ccl-i": {"tag": "w0.25", "overrides": ["objective.loss_weight=0.25"]},
        },
        "test": {s: {"baseline": {"top1": 0.5}, "CCL-I": {"top1": 0.5}} for s in ("1", "2")},
    }
    (tmp_path / "tuning.json").write_text(json.dumps(record))
    load_script("demo_diagnostics").main([str(tmp_path)])
    out = capsys.readouterr().out.splitlines()
    assert any("kind (chance 50 %)" in line and "motion (chance 50 %)" in line for line in out)
    rows = {line.split(" | ")[0]: line for line in out if line.startswith("| ") and "+-" in line}
    # stdev(25, 100) = 53.0; stdev(50, 100) = 35.4
    assert rows["| baseline"] == "| baseline | 2 | 62.5 +- 53.0 | 75.0 +- 35.4 | 75.0 +- 35.4 |"
    assert rows["| CCL-I"] == "| CCL-I | 2 | 0.0 +- 0.0 | 0.0 +- 0.0 | 0.0 +- 0.0 |"


def test_diagnostics_refuse_an_evaluation_of_other_classes(tmp_path):
    runs = tmp_path / "seed_1" / "runs"
    _run(runs / "demo-baseline", [{"train/acc": 0.5, "train/grad/ce": 1.0}])
    evaluation = _evaluation(["ApplyEyeMakeup", "Archery"], [(0, 0)])
    path = runs / "demo-baseline" / "eval_test_last.json"
    path.write_text(json.dumps(evaluation))
    record = {"command": "c", "chosen": {"baseline": {"overrides": []}}, "test": {}}
    (tmp_path / "tuning.json").write_text(json.dumps(record))
    with pytest.raises(SystemExit, match="eval_test_last.json.*not a demo evaluation"):
        load_script("demo_diagnostics").main([str(tmp_path)])


def test_feature_probe_reads_the_kind_held_in_the_features_across_groups(tmp_path, capsys):
    import numpy as np

    classes = ["BarBounce", "BarSlide", "DiscBounce", "DiscSlide"]
    rng = np.random.default_rng(0)
    hits, ids, kind_only, both = [], [], [], []
    for group in range(1, 6):
        for label, name in enumerate(classes):
            for clip in range(1, 4):
                hits.append((label, label))
                ids.append(f"v_{name}_g{group:02d}_c{clip:02d}")
                kind = np.eye(2)[label // 2] * 3.0
                motion = np.eye(2)[label % 2] * 3.0
                noise = rng.normal(0, 0.1, 4)
                kind_only.append(np.concatenate([kind, rng.normal(0, 1, 2)]) + noise)
                both.append(np.concatenate([kind, motion]) + noise)
    evaluation = _evaluation(classes, hits)
    for video, video_id in zip(evaluation["videos"], ids):
        video["video_id"] = video_id
    diagnostics = load_script("demo_diagnostics")
    source = tmp_path / "eval_test_last_features.npz"
    # both parts in the features: read perfectly; the kind only: the motion at about chance
    assert diagnostics.kind_motion_probe(np.asarray(both), evaluation, source) == (1.0, 1.0)
    kind, motion = diagnostics.kind_motion_probe(np.asarray(kind_only), evaluation, source)
    assert kind == 1.0 and motion < 0.75
    # through the script: the chosen run's folder, mean over the seeds
    runs = tmp_path / "seed_1" / "runs" / "demo-baseline"
    _run(runs, [{"train/acc": 0.5, "train/grad/ce": 1.0}])
    (runs / "eval_test_last.json").write_text(json.dumps(evaluation))
    np.savez(runs / "eval_test_last_features.npz", features=np.asarray(both, np.float16))
    record = {"command": "c", "chosen": {"baseline": {"overrides": []}}, "test": {}}
    (tmp_path / "tuning.json").write_text(json.dumps(record))
    diagnostics.main([str(tmp_path), "--feature-probe"])
    out = capsys.readouterr().out.splitlines()
    assert "| baseline | 1 | 100.0 +- - | 100.0 +- - |" in out
    # bad input names the file
    with pytest.raises(SystemExit, match="3 feature rows for 60 videos"):
        diagnostics.kind_motion_probe(np.zeros((3, 4)), evaluation, source)
    evaluation["videos"][0]["video_id"] = "clip7"
    with pytest.raises(SystemExit, match="'clip7' names no group"):
        diagnostics.kind_motion_probe(np.asarray(both), evaluation, source)
    saved = runs / "eval_test_last_features.npz"
    saved.write_bytes(saved.read_bytes()[:100])  # truncated
    with pytest.raises(SystemExit, match="eval_test_last_features.npz: not a readable"):
        diagnostics.main([str(tmp_path), "--feature-probe"])
    np.savez(saved, other=np.zeros(3))  # no features array
    with pytest.raises(SystemExit, match="eval_test_last_features.npz: not a readable"):
        diagnostics.main([str(tmp_path), "--feature-probe"])
    (tmp_path / "tuning.json").unlink()
    with pytest.raises(SystemExit, match="tuning.json: not found"):
        diagnostics.main([str(tmp_path), "--feature-probe"])
