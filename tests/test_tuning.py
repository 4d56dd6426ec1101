"""`ccl demo --tune`: every run's setting chosen on validation with the same budget, only
the chosen runs tested, the presets checked against the choice."""

import json
import re

import pytest

from ccl.demo.tune import (
    CANDIDATES,
    REFERENCE,
    Candidate,
    choose,
    expand_runs,
    paper_weight,
    preset_line,
    run_name,
    run_tuning,
)


def test_choice_is_the_best_mean_over_seeds_and_a_tie_keeps_the_earlier():
    assert choose({"reference": [0.5, 0.3], "w0.25": [0.2, 0.7]}) == "w0.25"  # 0.40 < 0.45
    assert choose({"reference": [0.5, 0.4], "w0.25": [0.2, 0.7]}) == "reference"  # 0.45 both
    assert choose({"reference": [0.4], "t0.5": [0.4], "w0.25": [0.3]}) == "reference"  # a tie
    assert choose({"w0.25": [0.4], "reference": [0.4]}) == "w0.25"  # the earlier one
    nan = float("nan")
    assert choose({"reference": [0.5, 0.4], "w0.25": [0.9, nan]}) == "reference"  # diverged
    with pytest.raises(ValueError, match="every candidate diverged"):
        choose({"reference": [nan], "w0.25": [nan]})
    # a setting's run folder: plain for the reference's, else suffixed by the setting
    assert run_name("demo", "ccl-a", REFERENCE) == "demo-ccl-a"
    weaker = Candidate(("objective.loss_weight=0.25",), "")
    assert run_name("demo", "ccl-a", weaker) == "demo-ccl-a-w0.25"
    faster = Candidate(("optim.lr=0.002", "optim.head_lr=0.002"), "")
    assert run_name("demo-gpu", "baseline", faster) == "demo-gpu-baseline-lr0.002"


def test_every_run_has_the_same_budget():
    """The baseline, CCL and every other distillation method with every teacher setting:
    the same number of candidates (>= 3), the reference's setting first, each other one a
    change of the method's own knobs; KD weights go from the paper's by a decade or more,
    down, or for CC (whose gradient is far below the cross-entropy's) up."""
    from ccl.objectives.registry import COMPARISON_RUNS, KD_METHODS

    assert set(CANDIDATES) == set(COMPARISON_RUNS)
    sizes = {run: len(options) for run, options in CANDIDATES.items()}
    assert len(set(sizes.values())) == 1 and min(sizes.values()) >= 3, sizes
    knobs = {
        "baseline": ("optim.lr=", "optim.head_lr=", "optim.weight_decay="),
        "ccl": ("objective.loss_weight=", "objective.image_temperature="),
    }
    for run, options in CANDIDATES.items():
        first, *others = options
        assert first.tag == "reference" and first.overrides == ()
        assert len({c.tag for c in options}) == len(options)  # one run folder each
        method = run.rsplit("-", 1)[0] if run != "baseline" else run
        allowed = knobs.get(method, ("objective.kd_weight=",))
        assert all(o.startswith(allowed) for c in others for o in c.overrides), run
        if method in KD_METHODS:
            weights = [paper_weight(method)] + [float(c.overrides[0].split("=")[1]) for c in others]
            if method == "cc":
                assert weights == sorted(weights) and weights[-1] >= 10 * weights[0]
            else:
                assert weights == sorted(weights, reverse=True) and weights[-1] <= weights[0] / 10
    assert paper_weight("pkt") == 30000.0 and paper_weight("crd") == 0.8


def test_a_candidate_and_the_preset_holding_its_setting_share_one_run(monkeypatch):
    """Over one --out, ``ccl demo``, ``--compare`` and ``--tune`` reuse each other's runs:
    the ``demo-*`` preset holding a candidate's setting (DEMO_CHOSEN; ``--settings
    reference``: the reference's) trains the candidate's config in the candidate's folder."""
    import ccl.config
    from ccl.config import apply_overrides
    from ccl.demo import compare
    from ccl.demo.paths import demo_paths
    from ccl.demo.pipeline import RunSpec, demo_config, demo_scale
    from ccl.demo.tune import CandidateSpec, candidate_config

    paths = demo_paths("demo_out")

    def tuned(run, candidate, scale):
        spec = CandidateSpec(RunSpec(run, 1, paths, scale), candidate, test=False)
        return apply_overrides(candidate_config(spec), list(candidate.overrides)).to_dict()

    for scale_name in ("demo", "gpu"):
        chosen = demo_scale(scale_name)
        reference = demo_scale(scale_name, settings="reference")
        for run in ("baseline", "ccl-i", "pkt-ai"):
            for candidate in CANDIDATES[run]:
                monkeypatch.setitem(ccl.config.DEMO_CHOSEN, run, candidate.overrides)
                assert demo_config(RunSpec(run, 1, paths, chosen)).to_dict() == tuned(
                    run, candidate, chosen
                )
                # the tuning trains the same runs whichever --settings it is given
                assert tuned(run, candidate, reference) == tuned(run, candidate, chosen)
            held = demo_config(RunSpec(run, 1, paths, reference)).to_dict()
            assert held == tuned(run, REFERENCE, chosen)
    monkeypatch.setitem(ccl.config.DEMO_CHOSEN, "pkt-ai", CANDIDATES["pkt-ai"][2].overrides)
    cell = compare.compare_config(compare.CompareSpec("pkt", "AI", 1, paths, demo_scale("demo")))
    assert cell.to_dict() == tuned("pkt-ai", CANDIDATES["pkt-ai"][2], demo_scale("demo"))


def test_runs_to_tune_by_run_or_method_name():
    assert expand_runs(["ccl-a"]) == ("baseline", "ccl-a")
    assert expand_runs(["ccl", "pkt-ai"]) == ("baseline", "ccl-a", "ccl-i", "ccl-ai", "pkt-ai")
    assert expand_runs(["fitnet"]) == ("baseline", "fitnet-a", "fitnet-i", "fitnet-ai")
    with pytest.raises(ValueError, match="unknown run or method 'kd'"):
        expand_runs(["kd"])


def test_ccl_is_paired_with_each_other_method_of_its_teachers():
    from ccl.demo.tune import ccl_pairs

    runs = ["baseline", "ccl-a", "ccl-ai", "fitnet-ai", "pkt-a", "pkt-i", "cmc-ai"]
    assert ccl_pairs(runs) == [("ccl-ai", "fitnet-ai"), ("ccl-a", "pkt-a"), ("ccl-ai", "cmc-ai")]
    assert ccl_pairs(["baseline", "ccl-a"]) == []


def test_the_tuning_says_whether_the_presets_hold_its_choice(monkeypatch):
    import ccl.config
    from ccl.demo.pipeline import demo_scale
    from ccl.demo.tune import chosen_entry, presets_section, tune_command

    weaker = Candidate(("objective.loss_weight=0.25",), "loss weight 0.25")
    monkeypatch.setitem(ccl.config.DEMO_CHOSEN, "ccl-i", ("objective.loss_weight=0.25",))
    assert preset_line("ccl-i", weaker) == "- ccl-i: the preset holds the choice, w0.25"
    assert preset_line("ccl-i", REFERENCE) == (
        "- ccl-i: the preset holds w0.25, the tuning chose reference: update "
        "DEMO_CHOSEN['ccl-i'] to ()"
    )
    monkeypatch.setitem(ccl.config.DEMO_CHOSEN, "ccl-i", ())
    assert preset_line("ccl-i", weaker) == (
        "- ccl-i: the preset holds reference, the tuning chose w0.25: update "
        "DEMO_CHOSEN['ccl-i'] to ('objective.loss_weight=0.25',)"
    )
    # the entry to write: the command and the validation means above it, within 100 columns
    command = tune_command((1, 2, 3), demo_scale("demo"), ["baseline", "ccl-i"])
    assert command == "ccl demo --tune --seeds 1 2 3 --methods baseline ccl-i"
    assert tune_command((1,), demo_scale("quick"), CANDIDATES, ["train.epochs=3"]) == (
        "ccl demo --tune --quick --seeds 1 train.epochs=3"
    )
    means = {"reference": 0.612, "w0.25": 0.65, "t0.5": float("nan")}
    entry = chosen_entry("ccl-i", weaker, means, command)
    assert entry.splitlines()[-1] == '    "ccl-i": ("objective.loss_weight=0.25",),'
    comment = " ".join(line.removeprefix("    # ") for line in entry.splitlines()[:-1])
    assert comment == (
        "ccl demo --tune --seeds 1 2 3 --methods baseline ccl-i: last validation top-1, mean "
        "over seeds: reference 61.2, w0.25 65.0, t0.5 diverged"
    )
    assert max(map(len, entry.splitlines())) <= 100
    # wrapped between settings, never between a setting and its mean
    many = {f"w0.00{i}": 0.1 * i for i in range(1, 10)}
    lines = chosen_entry("ccl-i", weaker, many, command).splitlines()[:-1]
    assert len(lines) > 1 and max(map(len, lines)) <= 100
    for i in range(1, 10):
        assert any(f"w0.00{i} {10 * i:.1f}" in line for line in lines)
    exec("chosen = {\n" + entry + "\n}", namespace := {})  # Python, as pasted
    assert namespace["chosen"] == {"ccl-i": ("objective.loss_weight=0.25",)}
    section = presets_section({"ccl-i": weaker}, {"ccl-i": means}, command)
    assert "- ccl-i: the preset holds reference, the tuning chose w0.25" in section
    assert "each to replace its run's line" in section and entry in section


def test_every_comparison_run_has_a_preset_entry():
    """DEMO_CHOSEN lists every run (a filled choice is a one-line change) and each entry
    builds its presets."""
    from ccl.config import DEMO_CHOSEN, preset
    from ccl.objectives.registry import COMPARISON_RUNS

    assert list(DEMO_CHOSEN) == list(COMPARISON_RUNS)
    for run in DEMO_CHOSEN:
        assert preset(f"demo-{run}").train.name.startswith(f"demo-{run}")
        # what the presets hold is one of the run's candidates: only a tuning chooses it
        assert DEMO_CHOSEN[run] in {c.overrides for c in CANDIDATES[run]}, run


def test_quick_tuning_tests_only_the_chosen_run(tmp_path, capsys):
    from ccl.runs import read_metrics

    weaker = Candidate(("objective.loss_weight=0.25",), "loss weight 0.25")
    slower = Candidate(("optim.lr=0.0001", "optim.head_lr=0.0001"), "lr 1e-4")
    table = run_tuning(
        tmp_path,
        seeds=(1,),
        scale="quick",
        candidates={"baseline": (REFERENCE, slower), "ccl-a": (REFERENCE, weaker)},
    )
    runs = tmp_path / "seed_1" / "runs"

    def last_validation(name):
        return float(read_metrics(runs / name / "metrics.jsonl")[0][-1]["val/top1"])

    # the selection number: the last epoch's validation top-1, as each run's log holds it
    best = {
        tag: last_validation(name)
        for tag, name in (("reference", "demo-ccl-a"), ("w0.25", "demo-ccl-a-w0.25"))
    }
    base_runs = {"reference": "demo-baseline", "lr0.0001": "demo-baseline-lr0.0001"}
    baseline = {tag: last_validation(name) for tag, name in base_runs.items()}
    record = json.loads((tmp_path / "tuning.json").read_text())
    assert record["validation_last_top1"]["ccl-a"] == {tag: [v] for tag, v in best.items()}
    expected = choose({tag: [v] for tag, v in best.items()})
    assert record["chosen"]["ccl-a"]["tag"] == expected
    cfg = json.loads((runs / "demo-ccl-a-w0.25" / "config.json").read_text())
    assert cfg["objective"]["loss_weight"] == 0.25 and cfg["train"]["seed"] == 1
    # the test groups saw the chosen runs only, the baseline's included
    chosen_run = "demo-ccl-a" if expected == "reference" else "demo-ccl-a-w0.25"
    other_run = "demo-ccl-a-w0.25" if expected == "reference" else "demo-ccl-a"
    assert (runs / chosen_run / "eval_test_last.json").is_file()
    assert not list((runs / other_run).glob("eval_test*"))
    base_choice = choose({tag: [v] for tag, v in baseline.items()})
    assert record["chosen"]["baseline"]["tag"] == base_choice
    for tag, name in base_runs.items():
        assert bool(list((runs / name).glob("eval_test*"))) == (tag == base_choice)
    cfg = json.loads((runs / "demo-baseline-lr0.0001" / "config.json").read_text())
    assert cfg["optim"]["lr"] == 1e-4 and cfg["optim"]["weight_decay"] == 1e-4
    # the validation table: every candidate's number as the checkpoints hold it, one chosen
    validation = (tmp_path / "tune_validation.md").read_text()
    for tag, value in best.items():
        what = {"reference": REFERENCE.what, "w0.25": weaker.what}[tag]
        row = next(line for line in validation.splitlines() if f"| CCL-A | {what} (" in line)
        assert f"| {100 * value:.1f} | {100 * value:.1f} |" in row
        assert row.endswith("| yes |") == (tag == expected)
    # the test table: the baseline and the chosen CCL-A with their paired difference
    setting = REFERENCE.what if expected == "reference" else weaker.what
    assert f"CCL-A: {setting}" in table.splitlines()[0]  # the title names the settings
    assert "| CCL-A |" in table and "| baseline |" in table
    row = next(line for line in table.splitlines() if line.startswith("| CCL-A |"))
    delta = re.compile(r"^[+-]\d+\.\d \(1 run\)$")
    assert all(delta.match(cell.strip()) for cell in row.strip("|").split(" | ")[-2:]), row
    assert (tmp_path / "tuned_table.md").read_text() == table + "\n"
    # the output ends with whether the presets hold the choice, as tune_validation.md does
    presets = validation[validation.index("The `demo-*` presets") :]
    assert capsys.readouterr().out.endswith(presets)
    assert "- baseline: the preset holds" in presets and "- ccl-a: the preset holds" in presets
    assert record["command"] == "ccl demo --tune --quick --seeds 1 --methods baseline ccl-a"


def test_cli_tune_runs_the_tuning_over_the_seeds(tmp_path, monkeypatch):
    import ccl.demo.tune
    from ccl.cli import main

    calls = []
    monkeypatch.setattr(ccl.demo.tune, "run_tuning", lambda out, **kw: calls.append(kw))
    assert main(["demo", "--tune", "--seeds", "1", "2", "--out", str(tmp_path)]) == 0
    (kw,) = calls
    assert kw["seeds"] == (1, 2) and kw["jobs"] == 2 and kw["scale"].presets == "demo"
    assert kw["runs"] is None  # every run
    assert main(["demo", "--tune", "--methods", "ccl", "pkt-a", "--out", str(tmp_path)]) == 0
    assert calls[-1]["runs"] == ["ccl", "pkt-a"]
    assert main(["demo", "--tune", "--settings", "reference", "--out", str(tmp_path)]) == 0
    assert calls[-1]["scale"].presets == "demo-reference"
    assert calls[-1]["scale"].reference_presets == "demo-reference"
    with pytest.raises(SystemExit):  # one task at a time
        main(["demo", "--tune", "--compare", "--out", str(tmp_path)])
    assert main(["demo", "--methods", "ccl", "--out", str(tmp_path)]) == 1  # --tune only


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
    weaker = Candidate(("objective.loss_weight=0.25",), "loss weight 0.25")
    run = RunSpec("ccl-a", 1, demo_paths(tmp_path), demo_scale("quick"))
    spec = ccl.demo.tune.CandidateSpec(run, weaker, test=False)
    result = ccl.demo.tune.train_candidate(spec)
    assert (result.method, result.tag, result.seed) == ("ccl-a", "w0.25", 1)
    assert math.isnan(result.val_top1) and result.evaluations == {}
    assert result.run_dir == tmp_path / "runs" / "demo-ccl-a-w0.25"
    assert ccl.demo.tune.candidate_config(spec).objective.loss_weight is None  # overrides: later
    # recorded as the comparison records it: a rerun does not train it again
    assert "loss=nan" in (result.run_dir / "DIVERGED").read_text()
    assert math.isnan(ccl.demo.tune.train_candidate(spec).val_top1)
    assert calls == ["demo-ccl-a-w0.25"]
