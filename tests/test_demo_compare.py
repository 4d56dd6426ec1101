"""`ccl demo --compare`: the paper's table layout over methods and teacher settings."""

import json

from ccl.demo import _compare_table, run_compare


def test_compare_table_layout_and_statistics():
    results = {("baseline", c): [0.10, 0.20] for c in ("A", "I", "AI")}
    results[("ccl", "A")] = [0.30, 0.50]
    table = _compare_table(results, ("baseline", "ccl"), (1, 2))
    lines = table.splitlines()
    assert lines[2] == "| method | A | I | AI |"
    assert lines[4] == "| baseline (no distillation) | 15.0 +- 5.0 | 15.0 +- 5.0 | 15.0 +- 5.0 |"
    assert lines[5] == "| CCL | 40.0 +- 10.0 | - | - |"


def test_quick_compare_runs_each_method_with_each_teacher_setting(tmp_path, capsys):
    table = run_compare(tmp_path, seeds=(1,), quick=True, methods=("ccl", "crd"))
    for row in ("| baseline (no distillation) |", "| CCL |", "| CRD |"):
        assert row in table
    results = json.loads((tmp_path / "compare.json").read_text())
    assert set(results) == {
        f"{m}/{c}" for m in ("baseline", "ccl", "crd") for c in ("A", "I", "AI")
    }
    assert all(len(v) == 1 and 0.0 <= v[0] <= 1.0 for v in results.values())
    for name in ("demo-baseline", "demo-ccl-a", "demo-ccl-i", "demo-ccl-ai", "crd-a", "crd-i"):
        assert (tmp_path / "seed_1" / "runs" / name / "eval_test.json").is_file()
    assert (tmp_path / "seed_1" / "report" / "report.md").is_file()


def test_parallel_compare_gives_the_same_table(tmp_path):
    """``--jobs``: trainings in separate processes give the results of one at a time."""
    serial = run_compare(tmp_path / "serial", seeds=(1,), quick=True, methods=("ccl",))
    parallel = run_compare(tmp_path / "parallel", seeds=(1,), quick=True, methods=("ccl",), jobs=2)
    assert parallel == serial
    assert json.loads((tmp_path / "parallel" / "compare.json").read_text()) == json.loads(
        (tmp_path / "serial" / "compare.json").read_text()
    )


def test_diverged_method_is_recorded_not_fatal(tmp_path, monkeypatch):
    import math

    import ccl.demo as demo
    from ccl.engine import NonFiniteLossError

    def diverge(cfg, *args, **kwargs):
        (tmp_path / "runs" / cfg.train.name).mkdir(parents=True)
        raise NonFiniteLossError("non-finite loss at epoch 1, step 3: loss=nan")

    monkeypatch.setattr(demo, "train_and_evaluate", diverge)
    spec = {"method": "fitnet", "column": "A", "seed": 1, "root": str(tmp_path), "paths": {}}
    spec.update(quick=True, overrides=[], threads=None)
    method, column, top1, run_dir = demo._compare_run(spec)
    assert (method, column) == ("fitnet", "A") and math.isnan(top1)
    assert "loss=nan" in (tmp_path / "runs" / "fitnet-a" / "DIVERGED").read_text()
    assert math.isnan(demo._compare_run(spec)[2])  # a rerun does not train it again
    assert demo._cell([math.nan]) == "diverged"
    assert demo._cell([10.0, math.nan, 20.0]) == "15.0 +- 5.0 (1 of 3 diverged)"


def test_the_demo_runs_every_method_of_the_table():
    """The demo's run lists come from ccl.objectives.registry: a method added there is in
    ``ccl demo --compare`` (with its paper label) and every teacher setting is a column."""
    import ccl.demo as demo
    from ccl.config import PRESETS
    from ccl.objectives import registry

    assert demo.COMPARED == ("ccl", *registry.KD_METHODS)
    assert demo.METHOD_NAMES["cc"] == "COR (CC)" and set(demo.METHOD_NAMES) == set(demo.COMPARED)
    assert demo.TEACHER_SETTINGS == {"A": ("audio",), "I": ("image",), "AI": ("audio", "image")}
    assert demo.METHODS == ("baseline", "ccl-a", "ccl-i", "ccl-ai")
    assert all(f"demo-{m}" in PRESETS for m in demo.METHODS)
