"""Configs, presets, overrides and the command line."""

import json
import subprocess
import sys

import pytest

from ccl.cli import build_parser, main
from ccl.config import PRESETS, Config, apply_overrides, preset


def test_reference_presets():
    for name, teachers in [
        ("baseline", ()),
        ("ccl-a", ("audio",)),
        ("ccl-i", ("image",)),
        ("ccl-ai", ("audio", "image")),
    ]:
        cfg = preset(f"ucf51-{name}")
        assert cfg.objective.teachers == teachers
        assert (cfg.optim.lr, cfg.optim.momentum, cfg.optim.weight_decay) == (1e-3, 0.9, 5e-4)
        assert cfg.optim.milestones == (150, 225) and not cfg.optim.schedule_heads
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
    assert bad.returncode == 2 and "unknown preset 'nope'" in bad.stderr


def test_print_config_and_presets(capsys):
    assert main(["train", "--preset", "ucf51-ccl-a", "--print-config", "optim.lr=0.5"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["optim"]["lr"] == 0.5 and printed["objective"]["teachers"] == ["audio"]
    assert main(["presets"]) == 0
    assert "ucf51-ccl-ai" in capsys.readouterr().out
