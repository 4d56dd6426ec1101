"""Configs, presets, overrides and the command line."""

import json
import subprocess
import sys

import pytest

from ccl.cli import build_parser, main
from ccl.config import PRESETS, Config, apply_overrides, preset


def test_reference_presets():
    """The reference's first release (5c18684, the paper's numbers): CCL-AI's script drops
    the lr once, at epoch 250; the other runs use opts.py's default milestones 150, 225."""
    for name, teachers, milestones in [
        ("baseline", (), (150, 225)),
        ("ccl-a", ("audio",), (150, 225)),
        ("ccl-i", ("image",), (150, 225)),
        ("ccl-ai", ("audio", "image"), (250,)),
    ]:
        cfg = preset(f"ucf51-{name}")
        assert cfg.objective.teachers == teachers
        assert (cfg.optim.lr, cfg.optim.momentum, cfg.optim.weight_decay) == (1e-3, 0.9, 5e-4)
        assert cfg.optim.milestones == milestones and not cfg.optim.schedule_heads
        assert (cfg.train.epochs, cfg.data.batch_size, cfg.train.seed) == (300, 16, 1)
        assert (cfg.data.clip_frames, cfg.data.size, cfg.student.arch) == (16, 112, "r2plus1d-10")
        assert (
            cfg.image_teacher.arch == "resnet34"
            and cfg.image_teacher.frame_choice == "batch-random"
        )
        assert (cfg.objective.audio_temperature, cfg.objective.image_temperature) == (0.5, 0.1)
        assert cfg.objective.head_update == "reference"


def test_overrides_are_typed_and_validated():
    cfg = apply_overrides(
        preset("ucf51-ccl-ai"),
        [
            "optim.lr=0.01",
            "optim.milestones=10,20",
            "objective.loss_weight=none",
            "train.progress=false",
            "objective.teachers=audio",
            "image_teacher.input_size=224",
        ],
    )
    assert cfg.optim.lr == 0.01 and cfg.optim.milestones == (10, 20)
    assert cfg.objective.loss_weight is None and cfg.train.progress is False
    assert cfg.objective.teachers == ("audio",) and cfg.image_teacher.input_size == 224
    with pytest.raises(ValueError, match="unknown config key 'optim.lrr'"):
        apply_overrides(cfg, ["optim.lrr=1"])
    with pytest.raises(ValueError, match="unknown section"):
        apply_overrides(cfg, ["optimizer.lr=1"])
    with pytest.raises(ValueError, match="train.epochs"):
        apply_overrides(cfg, ["train.epochs=many"])
    with pytest.raises(ValueError, match="objective.head_update"):
        apply_overrides(cfg, ["objective.head_update=sometimes"])
    for rule in ("reference", "paper", "joint"):
        assert apply_overrides(cfg, [f"objective.head_update={rule}"]).objective.head_update == rule
    with pytest.raises(ValueError, match="section.key=value"):
        apply_overrides(cfg, ["lr"])


def test_config_json_round_trip(tmp_path):
    for name in PRESETS:
        cfg = preset(name)
        cfg.save(tmp_path / "c.json")
        assert Config.load(tmp_path / "c.json") == cfg


def test_help_of_every_subcommand(capsys):
    parser = build_parser()
    subcommands = parser._subparsers._group_actions[0].choices  # noqa: SLF001
    assert {
        "train",
        "presets",
        "demo",
        "evaluate",
        "report",
        "prepare",
        "synth",
        "pretrain-teacher",
        "extract-audio",
        "import-audio-features",
        "predict",
        "embed",
        "export",
    } <= set(subcommands)
    for name in subcommands:
        with pytest.raises(SystemExit) as exc:
            main([name, "--help"])
        assert exc.value.code == 0
        assert "usage: ccl " + name in capsys.readouterr().out


def test_console_script_help_and_errors(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "ccl.cli", "--help"], capture_output=True, text=True
    )
    assert out.returncode == 0 and "train" in out.stdout
    bad = subprocess.run(
        [sys.executable, "-m", "ccl.cli", "train", "--preset", "nope"],
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 1 and "unknown preset 'nope'" in bad.stderr


def test_print_config_and_presets(capsys):
    assert main(["train", "--preset", "ucf51-ccl-a", "--print-config", "optim.lr=0.5"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["optim"]["lr"] == 0.5 and printed["objective"]["teachers"] == ["audio"]
    assert main(["presets"]) == 0
    assert "ucf51-ccl-ai" in capsys.readouterr().out


@pytest.mark.parametrize(
    "override, key",
    [
        ("data.crop_scale=2,1", "data.crop_scale"),
        ("data.crop_scale=0,0.5", "data.crop_scale"),
        ("train.epochs=0", "train.epochs"),
        ("data.batch_size=0", "data.batch_size"),
        ("optim.lr=0", "optim.lr"),
        ("objective.image_temperature=-0.1", "objective.image_temperature"),
        ("data.clip_frames=0", "data.clip_frames"),
        ("data.size=0", "data.size"),
        ("train.name=a/b", "train.name"),
    ],
)
def test_out_of_range_values_are_refused_naming_the_key(override, key):
    with pytest.raises(ValueError, match=rf"invalid config: {key} must be"):
        apply_overrides(preset("smoke-baseline"), [override])


def test_a_stored_config_is_validated_on_load(tmp_path):
    preset("smoke-baseline").save(tmp_path / "c.json")
    data = json.loads((tmp_path / "c.json").read_text())
    data["train"]["epochs"], data["data"]["crop_scale"] = 0, [2, 1]
    (tmp_path / "c.json").write_text(json.dumps(data))
    with pytest.raises(ValueError, match=r"data.crop_scale must be .*; train.epochs must be"):
        Config.load(tmp_path / "c.json")


def test_overrides_on_both_sides_of_a_flag(capsys):
    args = ["train", "--preset", "smoke-baseline", "optim.lr=0.5", "--print-config"]
    assert main([*args, "train.epochs=3", "--resume", "auto", "data.size=24"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert (printed["optim"]["lr"], printed["train"]["epochs"]) == (0.5, 3)
    assert (printed["data"]["size"], printed["train"]["resume"]) == (24, "auto")
    with pytest.raises(SystemExit) as exc:
        main([*args, "--no-such-flag"])
    assert exc.value.code == 2 and "unrecognized arguments: --no-such-flag" in (
        capsys.readouterr().err
    )


def test_user_errors_are_one_line_without_traceback(tmp_path, train_tiny_run, tiny_run_overrides):
    """Bad values, files where folders belong and unwritable outputs: one line naming the
    path and the cause, exit code 2, for train, evaluate and report."""
    tiny = tiny_run_overrides
    run = train_tiny_run(tmp_path)
    blocker = tmp_path / "a_file"
    blocker.write_text("a file where a folder is expected")
    train_args = ["train", "--preset", "smoke-baseline", *tiny]
    not_a_dir = "Not a directory"
    cases = [
        ([*train_args, f"train.out_dir={blocker}"], [str(blocker / "smoke-baseline"), not_a_dir]),
        ([*train_args, "data.batch_size=0"], ["data.batch_size must be >= 1"]),
        (["evaluate", str(run), "--out", str(blocker / "ev")], [str(blocker), not_a_dir]),
        (["report", str(run), "--out", str(blocker / "rep")], [str(blocker), not_a_dir]),
    ]
    env = {**__import__("os").environ, "OMP_NUM_THREADS": "1"}
    for args, expected in cases:
        out = subprocess.run(
            [sys.executable, "-m", "ccl.cli", *args], capture_output=True, text=True, env=env
        )
        lines = out.stderr.strip().splitlines()
        assert out.returncode == 1 and "Traceback" not in out.stdout + out.stderr, out.stderr
        assert len(lines) == 1 and lines[0].startswith(f"ccl {args[0]}: error: "), out.stderr
        for text in expected:
            assert text in lines[0]


def test_the_method_table_drives_config_cli_and_presets(capsys):
    """ccl.objectives.registry is the one list of methods and teachers: the config type, the
    CLI's choices and the presets follow it."""
    import typing

    from ccl.config import ObjectiveConfig
    from ccl.objectives import registry
    from ccl.objectives.ccl import DEFAULT_TEMPERATURES

    methods = list(registry.METHOD_NAMES)
    assert methods[:2] == ["baseline", "ccl"] and list(registry.KD_METHODS) == methods[2:]
    hint = typing.get_type_hints(ObjectiveConfig)["method"]
    assert typing.get_args(hint) == registry.METHOD_NAMES
    with pytest.raises(ValueError, match=r"objective.method: 'foo' \(choose from \('baseline'"):
        apply_overrides(preset("smoke-baseline"), ["objective.method=foo"])

    train = build_parser()._subparsers._group_actions[0].choices["train"]
    options = {a.dest: a for a in train._actions}
    assert options["method"].choices == methods
    assert options["teachers"].choices == [*registry.TEACHERS, "both", "none"]
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    assert "{" + ",".join(methods) + "}" in capsys.readouterr().out

    for name, method in registry.METHODS.items():
        for teachers in method.teacher_sets:
            key = f"ucf51-{name}" + ("-" + "".join(t[0] for t in teachers) if teachers else "")
            cfg = preset(key)  # every method with every teacher setting it accepts
            assert (cfg.objective.method, cfg.objective.teachers) == (name, teachers), key

    cfg = ObjectiveConfig()
    temps = {"audio": cfg.audio_temperature, "image": cfg.image_temperature}
    assert temps == registry.CCL_TEMPERATURES == DEFAULT_TEMPERATURES
    assert temps == {"audio": 0.5, "image": 0.1}
