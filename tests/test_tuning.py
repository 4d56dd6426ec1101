"""`ccl demo --tune`: CCL's setting chosen on validation, only the chosen runs tested."""

import json
import re

import pytest

from ccl.demo.tune import REFERENCE, Candidate, choose, run_name, run_tuning


def test_choice_is_the_best_mean_over_seeds_and_a_tie_keeps_the_earlier():
    assert choose({"reference": [0.5, 0.3], "w0.25": [0.2, 0.7]}) == "w0.25"  # 0.40 < 0.45
    assert choose({"reference": [0.5, 0.4], "w0.25": [0.2, 0.7]}) == "reference"  # 0.45 both
    assert choose({"reference": [0.4], "t0.5": [0.4], "w0.25": [0.3]}) == "reference"  # a tie
    assert choose({"w0.25": [0.4], "reference": [0.4]}) == "w0.25"  # the earlier one
    nan = float("nan")
    assert choose({"reference": [0.5, 0.4], "w0.25": [0.9, nan]}) == "reference"  # diverged
    with pytest.raises(ValueError, match="every candidate diverged"):
        choose({"reference": [nan], "w0.25": [nan]})
    assert run_name("demo", "ccl-a", REFERENCE) == "demo-ccl-a"  # the demo's own run
    assert run_name("demo", "ccl-a", Candidate("w0.25", (), "")) == "demo-ccl-a-w0.25"


def test_quick_tuning_tests_only_the_chosen_run(tmp_path, capsys):
    from ccl.runs import read_metrics

    weaker = Candidate("w0.25", ("objective.loss_weight=0.25",), "loss weight 0.25")
    table = run_tuning(
        tmp_path, seeds=(1,), scale="quick", candidates={"ccl-a": (REFERENCE, weaker)}
    )
    runs = tmp_path / "seed_1" / "runs"
    # the selection number: the last epoch's validation top-1, as each run's log holds it
    best = {
        tag: float(read_metrics(runs / name / "metrics.jsonl")[0][-1]["val/top1"])
        for tag, name in (("reference", "demo-ccl-a"), ("w0.25", "demo-ccl-a-w0.25"))
    }
    record = json.loads((tmp_path / "tuning.json").read_text())
    assert record["validation_last_top1"]["ccl-a"] == {tag: [v] for tag, v in best.items()}
    expected = choose({tag: [v] for tag, v in best.items()})
    assert record["chosen"]["ccl-a"]["tag"] == expected
    cfg = json.loads((runs / "demo-ccl-a-w0.25" / "config.json").read_text())
    assert cfg["objective"]["loss_weight"] == 0.25 and cfg["train"]["seed"] == 1
    # the test groups saw the baseline and the chosen run only
    chosen_run = "demo-ccl-a" if expected == "reference" else "demo-ccl-a-w0.25"
    other_run = "demo-ccl-a-w0.25" if expected == "reference" else "demo-ccl-a"
    assert (runs / "demo-baseline" / "eval_test_last.json").is_file()
    assert (runs / chosen_run / "eval_test_last.json").is_file()
    assert not list((runs / other_run).glob("eval_test*"))
    # the validation table: every candidate's number as the checkpoints hold it, one chosen
    validation = (tmp_path / "tune_validation.md").read_text()
    for tag, value in best.items():
        what = {"reference": REFERENCE.what, "w0.25": weaker.what}[tag]
        row = next(line for line in validation.splitlines() if f"| CCL-A | {what} (" in line)
        assert f"| {100 * value:.1f} | {100 * value:.1f} |" in row
        assert row.endswith("| yes |") == (tag == expected)
    # the test table: the baseline and the chosen CCL-A with their paired difference
    label = "CCL-A, " + (REFERENCE.what if expected == "reference" else weaker.what)
    assert f"| {label} |" in table and "| baseline |" in table
    row = next(line for line in table.splitlines() if line.startswith(f"| {label} |"))
    delta = re.compile(r"^[+-]\d+\.\d \(1 run\)$")
    assert all(delta.match(cell.strip()) for cell in row.strip("|").split(" | ")[-2:]), row
    assert (tmp_path / "tuned_table.md").read_text() == table + "\n"


def test_cli_tune_runs_the_tuning_over_the_seeds(tmp_path, monkeypatch):
    import ccl.demo.tune
    from ccl.cli import main

    calls = []
    monkeypatch.setattr(ccl.demo.tune, "run_tuning", lambda out, **kw: calls.append(kw))
    assert main(["demo", "--tune", "--seeds", "1", "2", "--out", str(tmp_path)]) == 0
    (kw,) = calls
    assert kw["seeds"] == (1, 2) and kw["jobs"] == 2 and kw["scale"].presets == "demo"
    with pytest.raises(SystemExit):  # one task at a time
        main(["demo", "--tune", "--compare", "--out", str(tmp_path)])


def test_a_diverged_candidate_is_recorded_not_fatal(tmp_path, monkeypatch):
    import math

    import ccl.demo.tune
    from ccl.demo.paths import demo_paths
    from ccl.demo.pipeline import RunSpec, demo_scale
    from ccl.errors import NonFiniteLossError

    calls = []

    def diverge(cfg, *args, **kwargs):
        calls.append(cfg.train.name)
        raise NonFiniteLossError("non-finite loss at epoch 1, step 3: loss=nan")

    monkeypatch.setattr(ccl.demo.tune, "train_and_evaluate", diverge)
    weaker = Candidate("w0.25", ("objective.loss_weight=0.25",), "loss weight 0.25")
    run = RunSpec("ccl-a", 1, demo_paths(tmp_path), demo_scale("quick"))
    spec = ccl.demo.tune.CandidateSpec(run, weaker, test=False)
    result = ccl.demo.tune.train_candidate(spec)
    assert (result.method, result.tag, result.seed) == ("ccl-a", "w0.25", 1)
    assert math.isnan(result.val_top1) and result.evaluations == {}
    assert result.run_dir == tmp_path / "runs" / "demo-ccl-a-w0.25"
    # recorded as the comparison records it: a rerun does not train it again
    assert "loss=nan" in (result.run_dir / "DIVERGED").read_text()
    assert math.isnan(ccl.demo.tune.train_candidate(spec).val_top1)
    assert calls == ["demo-ccl-a-w0.25"]
