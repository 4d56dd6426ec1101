"""`ccl demo --compare`: the paper's table layout over methods and teacher settings."""

import json

from ccl.demo.compare import compare_table, run_compare


def test_compare_table_layout_and_statistics():
    results = {("baseline", c): [0.10, 0.20] for c in ("A", "I", "AI")}
    results[("ccl", "A")] = [0.30, 0.50]
    table = compare_table(results, ("baseline", "ccl"), (1, 2))
    lines = table.splitlines()
    assert lines[2] == "| method | A | I | AI |"
    # sample sd: 10 and 20 -> 7.1; 30 and 50 -> 14.1
    assert lines[4] == "| baseline (no distillation) | 15.0 +- 7.1 | 15.0 +- 7.1 | 15.0 +- 7.1 |"
    assert lines[5] == "| CCL | 40.0 +- 14.1 | - | - |"


def test_compare_table_differences_have_a_t_interval_over_seeds():
    """The Δ table: per method and teacher setting, each seed's mean paired difference to
    the baseline of the same seed, then the mean and the 95 % t interval over the seeds."""
    base = {1: {"v1": 1.0, "v2": 0.0, "v3": 0.0}, 2: {"v1": 1.0, "v2": 1.0, "v3": 0.0}}
    ccl_a = {1: {"v1": 1.0, "v2": 1.0, "v3": 1.0}, 2: {"v1": 0.0, "v2": 1.0, "v3": 0.0}}
    hits = [
        {"baseline": {"top1": base[s], "r1": None}, "ccl/A": {"top1": ccl_a[s], "r1": None}}
        for s in (1, 2)
    ]
    results = {("baseline", c): [1 / 3, 2 / 3] for c in ("A", "I", "AI")}
    results[("ccl", "A")] = [1.0, 1 / 3]
    table = compare_table(results, ("baseline", "ccl"), (1, 2), hits)
    lines = table.splitlines()
    assert "[95 % Student t interval over the seeds]" in table
    assert lines[-3] == "| method | A | I | AI |"
    ccl_row = lines[-1].split(" | ")
    assert ccl_row[0] == "| CCL" and ccl_row[2:] == ["-", "- |"]  # no I or AI runs
    # by hand: seed 1 differences +0, +1, +1 -> +2/3; seed 2: -1, +0, +0 -> -1/3. Mean 1/6,
    # sd 0.7071, t(0.975, 1 df) = 12.706: half width 12.706 * 0.7071 / sqrt(2) = 6.353
    assert ccl_row[1] == "+16.7 [-618.6, +652.0]"
    # one seed: the difference alone, and the words that it cannot separate methods
    one = compare_table(results, ("baseline", "ccl"), (1,), hits[:1])
    assert one.splitlines()[-1].startswith("| CCL | +66.7 (1 run) |")
    assert "one seed: no interval, it cannot separate methods" in one
    # without per-video hits, only the first table
    assert "Δ" not in compare_table(results, ("baseline", "ccl"), (1, 2))


def test_compare_table_pairs_ccl_with_each_other_method():
    """The third table: CCL minus each other method with the same teachers, paired on the
    same seed's test videos, the t interval over the seeds."""
    videos = ("v1", "v2")

    def hits(values):
        return {"top1": dict(zip(videos, map(float, values))), "r1": None}

    # seed 1: CCL-AI (1, 1) minus PKT-AI (0, 1) -> +0.5; seed 2: (1, 0) minus (0, 0) -> +0.5:
    # sd 0, so the interval is the mean alone
    per_seed = [
        {"baseline": hits([0, 0]), "ccl/AI": hits([1, 1]), "pkt/AI": hits([0, 1])},
        {"baseline": hits([0, 0]), "ccl/AI": hits([1, 0]), "pkt/AI": hits([0, 0])},
    ]
    results = {("baseline", c): [0.0, 0.0] for c in ("A", "I", "AI")}
    results[("ccl", "AI")] = [1.0, 0.5]
    results[("pkt", "AI")] = [0.5, 0.0]
    table = compare_table(results, ("baseline", "ccl", "pkt"), (1, 2), per_seed)
    lines = table.splitlines()
    assert "CCL minus each other distillation method with the same teachers" in table
    assert lines[-1] == "| CCL minus PKT | - | - | +50.0 [+50.0, +50.0] |"
    # without CCL among the methods, no such table
    assert "CCL minus" not in compare_table(results, ("baseline", "pkt"), (1, 2), per_seed)


def _reference_everywhere(monkeypatch) -> None:
    """DEMO_CHOSEN as if nothing were chosen (in this process), whatever the choice is."""
    import ccl.config

    for run in ccl.config.DEMO_CHOSEN:
        monkeypatch.setitem(ccl.config.DEMO_CHOSEN, run, ())


def test_quick_compare_runs_each_method_with_each_teacher_setting(tmp_path, monkeypatch):
    import ccl.config

    # a chosen setting for one cell: the comparison trains it, and its table says so
    _reference_everywhere(monkeypatch)
    monkeypatch.setitem(ccl.config.DEMO_CHOSEN, "crd-i", ("objective.kd_weight=0.24",))
    table = run_compare(tmp_path, seeds=(1,), scale="quick", methods=("ccl", "crd"))
    for row in ("| baseline (no distillation) |", "| CCL |", "| CRD |"):
        assert row in table
    # the paired differences: one row per distillation method, a cell per teacher setting
    delta = table.split("Δ test top-1")[1].splitlines()
    rows = [line for line in delta if line.startswith(("| CCL |", "| CRD |"))]
    assert len(rows) == 2 and all(line.count("(1 run)") == 3 for line in rows)
    results = json.loads((tmp_path / "compare.json").read_text())
    assert set(results) == {
        f"{m}/{c}" for m in ("baseline", "ccl", "crd") for c in ("A", "I", "AI")
    }
    assert all(len(v) == 1 and 0.0 <= v[0] <= 1.0 for v in results.values())
    assert table.splitlines()[0] == (
        "Settings: the demo-* presets' (ccl.config.DEMO_CHOSEN): crd-i w0.24; the others the "
        "reference's"
    )
    runs = tmp_path / "seed_1" / "runs"
    for name in ("demo-baseline", "demo-ccl-a", "demo-ccl-i", "demo-ccl-ai", "demo-crd-a"):
        assert (runs / name / "eval_test_last.json").is_file()
    crd_i = json.loads((runs / "demo-crd-i-w0.24" / "config.json").read_text())
    assert crd_i["objective"]["kd_weight"] == 0.24
    assert (tmp_path / "seed_1" / "report" / "report.md").is_file()


def test_parallel_compare_gives_the_same_table(tmp_path):
    """``--jobs``: trainings in separate processes give the results of one at a time."""
    serial = run_compare(tmp_path / "serial", seeds=(1,), scale="quick", methods=("ccl",))
    parallel = run_compare(
        tmp_path / "parallel", seeds=(1,), scale="quick", methods=("ccl",), jobs=2
    )
    assert parallel == serial
    assert json.loads((tmp_path / "parallel" / "compare.json").read_text()) == json.loads(
        (tmp_path / "serial" / "compare.json").read_text()
    )


def test_diverged_method_is_recorded_not_fatal(tmp_path, monkeypatch):
    import math

    import ccl.demo.compare as compare
    from ccl.demo.paths import demo_paths
    from ccl.demo.pipeline import demo_scale
    from ccl.demo.tables import cell
    from ccl.errors import NonFiniteLossError

    calls = []

    def diverge(cfg, *args, **kwargs):
        calls.append(cfg.train.name)
        (tmp_path / "runs" / cfg.train.name).mkdir(parents=True)
        raise NonFiniteLossError("non-finite loss at epoch 1, step 3: loss=nan")

    monkeypatch.setattr(compare, "train_and_evaluate", diverge)
    spec = compare.CompareSpec("fitnet", "A", 1, demo_paths(tmp_path), demo_scale("quick"))
    name = compare.compare_config(spec).train.name  # demo-fitnet-a[-<chosen setting>]
    assert name.startswith("demo-fitnet-a")
    result = compare.compare_run(spec)
    assert (result.method, result.column) == ("fitnet", "A") and math.isnan(result.top1)
    assert result.hits is None and result.run_dir == tmp_path / "runs" / name
    assert "loss=nan" in (tmp_path / "runs" / name / "DIVERGED").read_text()
    assert math.isnan(compare.compare_run(spec).top1)  # a rerun does not train it again
    assert calls == [name]
    assert cell([math.nan]) == "diverged"
    assert cell([10.0, math.nan, 20.0]) == "15.0 +- 7.1 (1 of 3 diverged)"


def test_the_demo_runs_every_method_of_the_table():
    """The demo's run lists come from ccl.objectives.registry: a method added there is in
    ``ccl demo --compare`` (with its paper label) and every teacher setting is a column."""
    from ccl.config import PRESETS
    from ccl.demo import compare
    from ccl.demo.pipeline import METHODS
    from ccl.objectives import registry

    assert compare.COMPARED == ("ccl", *registry.KD_METHODS)
    assert compare.METHOD_NAMES["cc"] == "COR (CC)"
    assert set(compare.METHOD_NAMES) == set(compare.COMPARED)
    assert compare.TEACHER_SETTINGS == {"A": ("audio",), "I": ("image",), "AI": ("audio", "image")}
    assert METHODS == ("baseline", "ccl-a", "ccl-i", "ccl-ai")
    assert all(f"demo-{m}" in PRESETS for m in METHODS)
    for run in registry.COMPARISON_RUNS:  # every cell, chosen and reference, CPU and GPU
        for prefix in ("demo-", "demo-reference-", "demo-gpu-", "demo-gpu-reference-"):
            assert f"{prefix}{run}" in PRESETS


def test_presets_carry_the_chosen_settings_and_the_reference_is_one_switch_away(monkeypatch):
    """``demo-<run>`` holds DEMO_CHOSEN's overrides, ``demo-reference-<run>`` the papers'
    weights; the comparison trains whichever the scale's settings name, each setting in its
    own folder."""
    import ccl.config
    from ccl.config import describe_settings, preset
    from ccl.demo import compare
    from ccl.demo.paths import demo_paths
    from ccl.demo.pipeline import demo_scale

    _reference_everywhere(monkeypatch)
    monkeypatch.setitem(ccl.config.DEMO_CHOSEN, "fitnet-a", ("objective.kd_weight=0.01",))
    monkeypatch.setitem(ccl.config.DEMO_CHOSEN, "baseline", ("optim.weight_decay=0.05",))
    chosen, reference = preset("demo-fitnet-a"), preset("demo-reference-fitnet-a")
    assert (chosen.objective.kd_weight, reference.objective.kd_weight) == (0.01, None)
    assert (chosen.train.name, reference.train.name) == ("demo-fitnet-a-w0.01", "demo-fitnet-a")
    assert preset("demo-gpu-fitnet-a").objective.kd_weight == 0.01  # the GPU scale inherits it
    assert preset("demo-baseline").optim.weight_decay == 0.05
    assert preset("demo-reference-baseline").optim.weight_decay == 1e-4
    # no choice written for ccl-a: the reference's setting, in the reference's run
    assert preset("demo-ccl-a").to_dict() == preset("demo-reference-ccl-a").to_dict()
    assert preset("demo-ccl-a").train.name == "demo-ccl-a"
    # the tables' line naming the settings
    assert describe_settings("chosen", ["baseline", "ccl-a", "fitnet-a"]) == (
        "Settings: the demo-* presets' (ccl.config.DEMO_CHOSEN): baseline wd0.05, fitnet-a "
        "w0.01; the others the reference's"
    )
    assert describe_settings("reference", ["fitnet-a"]).startswith(
        "Settings: the reference's (--settings reference): the demo's optimiser, the papers' "
    )
    paths = demo_paths(".")
    for settings, name, weight in (
        (None, "demo-fitnet-a-w0.01", 0.01),
        ("reference", "demo-fitnet-a", None),
    ):
        spec = compare.CompareSpec("fitnet", "A", 1, paths, demo_scale("quick", settings=settings))
        cfg = compare.compare_config(spec)
        assert (cfg.train.name, cfg.objective.kd_weight) == (name, weight)


def test_gpu_presets_are_the_demo_presets_with_a_gpu_budget():
    """``demo-gpu-*`` train the demo's student with the demo's objective and optimiser; only
    the device, the budget and the loader differ (docs/DEMO.md, "GPU scale")."""
    import dataclasses

    from ccl.config import preset
    from ccl.demo.pipeline import METHODS

    budget = {
        ("train", "name"),
        ("train", "device"),
        ("train", "epochs"),
        ("optim", "milestones"),
        ("data", "batch_size"),
        ("data", "workers"),
    }
    for method in METHODS:
        cpu, gpu = preset(f"demo-{method}"), preset(f"demo-gpu-{method}")
        differ = {
            (section, f.name)
            for section in ("student", "image_teacher", "objective", "optim", "data", "train")
            for f in dataclasses.fields(getattr(cpu, section))
            if getattr(getattr(cpu, section), f.name) != getattr(getattr(gpu, section), f.name)
        }
        assert differ == budget, method
        assert gpu.train.name == cpu.train.name.replace("demo-", "demo-gpu-", 1)
        assert gpu.train.device == "cuda"
        assert gpu.train.epochs > cpu.train.epochs and gpu.data.batch_size > cpu.data.batch_size


def test_device_cuda_runs_the_gpu_scale_with_five_seeds_side_by_side(tmp_path, monkeypatch):
    import ccl.demo.pipeline as pipeline
    import ccl.runtime
    from ccl.cli import main

    calls = []
    monkeypatch.setattr(ccl.runtime, "resolve_device", lambda name: name)
    monkeypatch.setattr(pipeline, "run_demo_seeds", lambda out, **kw: calls.append(kw))
    assert main(["demo", "--device", "cuda", "--out", str(tmp_path)]) == 0
    (kw,) = calls
    assert kw["seeds"] == (1, 2, 3, 4, 5) and kw["jobs"] == 5
    scale = kw["scale"]
    assert (scale.synth, scale.presets, scale.device) == ("gpu", "demo-gpu", "cuda")
    assert "train.device=cuda" in scale.overrides
    # the CPU demo keeps its scale, presets and single seed
    monkeypatch.setattr(pipeline, "run_demo", lambda out, **kw: calls.append(kw))
    assert main(["demo", "--out", str(tmp_path)]) == 0
    assert calls[-1]["scale"] == pipeline.DEMO_SCALES["demo"] and calls[-1]["seed"] == 1


def test_device_cuda_without_a_gpu_is_one_clear_error(tmp_path, monkeypatch, capsys):
    import torch

    from ccl.cli import main

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert main(["demo", "--device", "cuda", "--out", str(tmp_path / "demo")]) == 1
    assert "CUDA is not available" in capsys.readouterr().err
    assert not (tmp_path / "demo").exists()  # nothing generated


def test_a_diverged_seed_is_said_once_in_the_difference_table():
    import math

    base = {"v1": 1.0, "v2": 0.0}
    hits = [
        {
            "baseline": {"top1": base, "r1": None},
            "ccl/A": {"top1": {"v1": 1.0, "v2": 1.0}, "r1": None},
        },
        {"baseline": {"top1": base, "r1": None}},  # ccl/A diverged on seed 2
    ]
    results = {("baseline", c): [0.5, 0.5] for c in ("A", "I", "AI")}
    results[("ccl", "A")] = [1.0, math.nan]
    row = compare_table(results, ("baseline", "ccl"), (1, 2), hits).splitlines()[-1]
    assert row.startswith("| CCL | +50.0 (1 seed) (1 diverged) |"), row
    assert "left out" not in row
