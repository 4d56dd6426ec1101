"""Starting a student from pretrained weights (``student.weights``), training it from one
module on (``student.finetune_from``, the reference's ``--ft_begin_module``) and torchvision's
video models as students (``student.arch=torchvision.NAME``). Every weight file is saved here
from a randomly initialised network: nothing downloads."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torchvision

from ccl.checkpoint import save_checkpoint
from ccl.config import StudentConfig, apply_overrides, preset
from ccl.errors import WeightsError
from ccl.models import (
    StudentOutput,
    TorchvisionStudent,
    build_model,
    freeze_before,
    load_student_weights,
    prepare_student,
)
from ccl.models.torchvision_video import VIDEO_INPUT_LIMITS, torchvision_video_models
from ccl.preflight import check_networks, forward_failure, on_meta

TINY = dict(arch="r2plus1d-10", width=1 / 16)
CLIP = (2, 3, 4, 16, 16)


def tiny_student(classes: int = 3, **changes: object) -> torch.nn.Module:
    return build_model(StudentConfig(**{**TINY, **changes}), classes)


def same_state(a: dict, b: dict, skip: str = "\0") -> bool:
    return all(torch.equal(a[k], b[k]) for k in a if not k.startswith(skip))


def test_a_ccl_checkpoint_round_trips_into_student_weights(tmp_path):
    source = tiny_student()
    path = tmp_path / "best.pt"
    save_checkpoint({"format": "ccl-checkpoint-v1", "student": source.state_dict()}, path)
    student = tiny_student()
    notes = prepare_student(student, StudentConfig(**TINY, weights=str(path)))
    assert notes == [] and same_state(source.state_dict(), student.state_dict())


def test_a_reference_checkpoint_with_dataparallel_prefixes_loads(tmp_path):
    """The reference's save_checkpoint: {'epoch', 'arch', 'state_dict', ...} with keys
    'module.*' (DataParallel), plus the unused 'fc' its load_pretrained_model adds."""
    source = tiny_student()
    state = {f"module.{k}": v for k, v in source.state_dict().items()}
    state["module.fc.weight"] = torch.zeros(3, 32)
    path = tmp_path / "save_300.pth"
    torch.save({"epoch": 300, "arch": "r21d-18", "state_dict": state, "optimizer": {}}, path)
    student = tiny_student()
    assert load_student_weights(student, path) == []
    assert same_state(source.state_dict(), student.state_dict())
    bare = tmp_path / "bare.pt"
    torch.save(source.state_dict(), bare)
    load_student_weights(student2 := tiny_student(), bare)
    assert same_state(source.state_dict(), student2.state_dict())


def test_a_classifier_for_other_classes_is_replaced_and_said_so(tmp_path):
    source = tiny_student(classes=10)
    path = tmp_path / "kinetics.pt"
    torch.save(source.state_dict(), path)
    student = tiny_student(classes=3)
    fresh = student.linear.weight.clone()
    notes = load_student_weights(student, path)
    assert len(notes) == 1 and "10 classes" in notes[0] and "3 classes" in notes[0]
    assert str(path) in notes[0] and "\n" not in notes[0]
    assert torch.equal(student.linear.weight, fresh)  # freshly initialised, not loaded
    assert same_state(source.state_dict(), student.state_dict(), skip="linear.")


def test_weights_that_do_not_fit_are_one_error_naming_file_and_keys(tmp_path):
    path = tmp_path / "wider.pt"
    torch.save(tiny_student(width=1 / 8).state_dict(), path)
    student = tiny_student()
    before = {k: v.clone() for k, v in student.state_dict().items()}
    with pytest.raises(WeightsError) as err:
        load_student_weights(student, path)
    message = str(err.value)
    assert "\n" not in message and str(path) in message
    assert "shaped otherwise" in message and "conv1.spatial_conv.weight" in message
    assert " more" in message and "student.width" in message
    assert same_state(before, student.state_dict())  # nothing half-loaded
    extra = tmp_path / "extra.pt"
    torch.save({**before, "head.weight": torch.zeros(1)}, extra)
    with pytest.raises(WeightsError, match=r"unexpected head\.weight"):
        load_student_weights(tiny_student(), extra)
    partial = tmp_path / "partial.pt"
    torch.save({k: v for k, v in before.items() if not k.startswith("conv5.")}, partial)
    with pytest.raises(WeightsError, match=r"missing conv5\."):
        load_student_weights(tiny_student(), partial)
    (garbage := tmp_path / "garbage.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsError, match="cannot read student weights"):
        load_student_weights(tiny_student(), garbage)
    with pytest.raises(FileNotFoundError, match="student weights"):
        load_student_weights(tiny_student(), tmp_path / "absent.pt")


def test_finetune_from_freezes_exactly_the_earlier_modules():
    """The reference trains --ft_begin_module, everything after it and the classifier: one
    step moves those and leaves the earlier parameters as they were."""
    from ccl.engine import build_optimizer
    from ccl.objectives.baseline import BaselineObjective

    student = tiny_student()
    frozen = freeze_before(student, "conv4")
    assert {n.split(".")[0] for n in frozen} == {"conv1", "bn1", "conv2", "conv3"}
    before = {n: p.detach().clone() for n, p in student.named_parameters()}
    cfg = preset("smoke-baseline")
    optimizer, _ = build_optimizer(cfg, student, BaselineObjective())
    in_optimizer = {id(p) for g in optimizer.param_groups for p in g["params"]}
    assert all((id(p) in in_optimizer) == p.requires_grad for p in student.parameters())
    out = student(torch.randn(CLIP))
    torch.nn.functional.cross_entropy(out.logits, torch.tensor([0, 1])).backward()
    optimizer.step()
    for name, param in student.named_parameters():
        moved = not torch.equal(param, before[name])
        assert moved == (name.split(".")[0] in ("conv4", "conv5", "linear")), name
    classifier_only = tiny_student()
    freeze_before(classifier_only, "fc")  # 3D-ResNets' name for the classifier
    assert [n for n, p in classifier_only.named_parameters() if p.requires_grad] == [
        "linear.weight",
        "linear.bias",
    ]
    with pytest.raises(ValueError, match="conv9.*choose from conv1, bn1, conv2"):
        freeze_before(tiny_student(), "conv9")


@pytest.mark.parametrize("name", ["r3d_18", "mc3_18", "r2plus1d_18"])
def test_torchvision_resnet_students_wrap_and_load_torchvision_files(tmp_path, name):
    reference = torchvision.models.get_model(name, num_classes=5).eval()
    path = tmp_path / f"{name}.pth"
    torch.save(reference.state_dict(), path)
    cfg = StudentConfig(arch=f"torchvision.{name}", weights=str(path))
    student = build_model(cfg, 5)
    assert isinstance(student, TorchvisionStudent) and student.feature_dim == 512
    assert prepare_student(student, cfg) == []
    clip = torch.randn(CLIP)
    with torch.no_grad():
        out = student.eval()(clip)
        expected = reference(clip)
    assert isinstance(out, StudentOutput)
    assert out.logits.shape == (2, 5) and out.feature.shape == (2, 512)
    torch.testing.assert_close(out.logits, expected, rtol=1e-5, atol=1e-5)
    # another class count: the classifier is replaced, the backbone loaded
    other = build_model(StudentConfig(arch=f"torchvision.{name}"), 3)
    notes = load_student_weights(other, path)
    assert len(notes) == 1 and "5 classes" in notes[0]
    assert same_state(student.backbone.state_dict(), other.backbone.state_dict())
    # this package's checkpoint of such a student loads back too
    save_checkpoint({"student": other.state_dict()}, own := tmp_path / "own.pt")
    load_student_weights(again := build_model(StudentConfig(arch=f"torchvision.{name}"), 3), own)
    assert same_state(other.state_dict(), again.state_dict())


def test_s3d_classifier_convolution_becomes_an_equal_linear_layer(tmp_path):
    """S3D classifies with a 1x1x1 convolution before averaging: as a student it is an equal
    nn.Linear after the average (shapes checked on the meta device; the values at S3D's
    smallest input, 13x224x224, would cost seconds: the ResNets check them above)."""
    reference = on_meta(lambda: torchvision.models.get_model("s3d", num_classes=5))
    student = on_meta(lambda: build_model(StudentConfig(arch="torchvision.s3d"), 5))
    assert student.feature_dim == 1024 and student.linear.weight.shape == (5, 1024)
    out = student.eval()(torch.empty(1, 3, 13, 224, 224, device="meta"))
    assert out.logits.shape == (1, 5) and out.feature.shape == (1, 1024)
    load_student_weights(student, save_meta_state(reference, tmp_path / "s3d.pth"))


def save_meta_state(model: torch.nn.Module, path: Path) -> Path:
    """Save zeros of ``model``'s (meta) state dict's shapes: a file to load for the keys."""
    zeros = {k: torch.zeros(v.shape, dtype=v.dtype) for k, v in model.state_dict().items()}
    torch.save(zeros, path)
    return path


@pytest.mark.parametrize("name", ["mvit_v1_b", "mvit_v2_s", "swin3d_t"])
def test_transformer_students_give_the_same_output_on_the_meta_device(tmp_path, name):
    student = on_meta(lambda: build_model(StudentConfig(arch=f"torchvision.{name}"), 7))
    out = student.eval()(torch.empty(2, 3, 16, 224, 224, device="meta"))
    assert out.logits.shape == (2, 7) and out.feature.shape == (2, 768)
    reference = on_meta(lambda: torchvision.models.get_model(name))
    assert load_student_weights(student, save_meta_state(reference, tmp_path / "w.pth"))


@pytest.mark.parametrize(
    ("name", "fits", "does_not_fit"),
    [
        ("r3d_18", (1, 16), None),
        ("r2plus1d_18", (1, 16), None),
        ("mc3_18", (1, 16), None),
        ("s3d", (13, 224), (12, 224)),
        ("mvit_v1_b", (16, 224), (8, 224)),
        ("mvit_v2_s", (16, 224), (16, 112)),
        ("swin3d_t", (1, 16), None),
    ],
)
def test_the_documented_input_limits_hold(name, fits, does_not_fit):
    assert name in VIDEO_INPUT_LIMITS and name in torchvision_video_models()
    student = on_meta(lambda: build_model(StudentConfig(arch=f"torchvision.{name}"), 3))
    t, s = fits
    assert forward_failure(student, (2, 3, t, s, s)) is None
    if does_not_fit:
        t, s = does_not_fit
        assert forward_failure(student, (2, 3, t, s, s)) is not None


def test_a_clip_size_a_student_cannot_take_is_refused_naming_the_settings():
    cfg = apply_overrides(preset("smoke-baseline"), ["student.arch=torchvision.mvit_v2_s"])
    with pytest.raises(ValueError, match="student.width=1"):
        check_networks(cfg)  # the smoke preset's width 1/16 and 512-d feature
    cfg = apply_overrides(cfg, ["student.width=1", "student.feature_dim=none"])
    with pytest.raises(ValueError) as err:
        check_networks(cfg)
    assert "8x32x32 clips (data.clip_frames x data.size)" in str(err.value)
    assert "exactly 16x224x224" in str(err.value)
    cfg = apply_overrides(cfg, ["data.clip_frames=16", "data.size=224"])
    check_networks(cfg)


def test_train_starts_from_weights_and_refuses_bad_ones_before_writing(tmp_path, capsys):
    """Through the training loop: the note, the frozen modules untouched by an epoch; a file
    that does not fit is refused before the run folder exists (exit 2, one line)."""
    from ccl.engine import build_run, train_one_epoch

    tiny = [
        "data.synthetic_train=8", "data.synthetic_val=4", "data.batch_size=4",
        "data.clip_frames=4", "data.size=16", "train.epochs=1", "train.progress=false",
        f"train.out_dir={tmp_path}", "student.feature_dim=none",
    ]  # fmt: skip
    weights = tmp_path / "pretrained.pt"
    torch.save(build_model(StudentConfig(width=1 / 16), 10).state_dict(), weights)
    pretrained = [f"student.weights={weights}", "student.finetune_from=conv5"]
    cfg = apply_overrides(preset("smoke-baseline"), [*tiny, *pretrained])
    run = build_run(cfg)
    assert "replaced by a new one for 4 classes" in capsys.readouterr().out
    before = {n: p.detach().clone() for n, p in run.student.named_parameters()}
    train_one_epoch(run, 0)
    run.log.close()
    for name, param in run.student.named_parameters():
        assert torch.equal(param, before[name]) == (name.split(".")[0] not in ("conv5", "linear"))
    wrong = tmp_path / "wrong.pt"
    torch.save(build_model(StudentConfig(width=1 / 8), 4).state_dict(), wrong)
    args = [*tiny, "train.name=refused", f"student.weights={wrong}"]
    out = subprocess.run(
        [sys.executable, "-m", "ccl.cli", "train", "--preset", "smoke-baseline", *args],
        capture_output=True,
        text=True,
        env={**__import__("os").environ, "OMP_NUM_THREADS": "1"},
    )
    lines = out.stderr.strip().splitlines()
    assert out.returncode == 1 and len(lines) == 1, out.stderr
    assert lines[0].startswith("ccl train: error: student.weights ") and str(wrong) in lines[0]
    assert not (tmp_path / "refused").exists()


def test_a_torchvision_student_trains_and_exports(tmp_path, train_tiny_run):
    """Evaluation, prediction and export rebuild the student from the run's config: a
    torchvision student goes through them as the package's own does."""
    from ccl.export import export_package
    from ccl.package import load_package

    run = train_tiny_run(
        tmp_path,
        "student.arch=torchvision.mc3_18",
        "student.width=1",
        "student.feature_dim=none",
        "train.name=mc3",
    )
    package = export_package(run, tmp_path / "package", fmt="torchscript")
    assert load_package(package, torch.device("cpu")).feature_dim == 512
