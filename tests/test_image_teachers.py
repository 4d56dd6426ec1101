"""Any torchvision image classifier as the image teacher (``image_teacher.arch``): its feature
is the penultimate layer's (the input of its final Linear), its width read from the model and
the CCL composition heads sized to it (docs/METHOD.md §2.2, §2.4). Weight files are saved
here from randomly initialised models: nothing downloads."""

from __future__ import annotations

import pytest
import torch
import torchvision

from ccl.config import ImageTeacherConfig, apply_overrides, preset
from ccl.models import ImageTeacher
from ccl.models.teachers import final_linear, image_teacher_archs
from ccl.objectives.ccl import CCLObjective
from ccl.preflight import check_networks, on_meta


@pytest.mark.parametrize(
    ("arch", "width", "classifier"),
    [
        ("resnet18", 512, "fc"),
        ("efficientnet_b0", 1280, "classifier.1"),
        ("mobilenet_v3_small", 1024, "classifier.3"),
        ("convnext_tiny", 768, "classifier.2"),
    ],
)
def test_teachers_of_several_families_load_local_weights_and_give_penultimate_features(
    tmp_path, arch, width, classifier
):
    source = torchvision.models.get_model(arch).eval()
    path = tmp_path / f"{arch}.pth"
    torch.save(source.state_dict(), path)
    teacher = ImageTeacher(arch, path, frame_choice="center")
    assert teacher.feature_dim == width and final_linear(source, arch) == classifier
    trunk = {k: v for k, v in source.state_dict().items() if not k.startswith(classifier + ".")}
    assert all(torch.equal(v, teacher.net.state_dict()[k]) for k, v in trunk.items())
    clip = torch.randn(2, 3, 4, 32, 32)
    feature = teacher(clip)
    assert feature.shape == (2, width) and not feature.requires_grad
    # the feature is what the classifier reads: the teacher's logits follow from it
    logits = source.get_submodule(classifier)(feature)
    torch.testing.assert_close(logits, source(clip[:, :, 2]), rtol=1e-4, atol=1e-4)
    objective = CCLObjective(3, width, ("image",), image_teacher=teacher)
    assert objective.heads["image"].mlp.in_features == 2 * width  # [x_t/|x_t|; v/|v|]
    assert objective.heads["image"].mlp.out_features == width


def test_a_vision_transformer_teacher_needs_its_224_px_frames():
    """ViT-B/16 (on the meta device: 224 px frames are costly on a CPU) has a 768-d feature
    and takes no other frame size: the run is refused naming image_teacher.input_size."""
    teacher = on_meta(lambda: ImageTeacher("vit_b_16"))
    assert teacher.feature_dim == 768
    assert teacher.net(torch.empty(2, 3, 224, 224, device="meta")).shape == (2, 768)
    cfg = apply_overrides(
        preset("smoke-ccl-i"), ["image_teacher.arch=vit_b_16", "student.feature_dim=768"]
    )
    with pytest.raises(ValueError, match="cannot take 32x32 frames.*input_size to that"):
        check_networks(cfg)
    check_networks(apply_overrides(cfg, ["image_teacher.input_size=224"]))


def test_a_teacher_width_other_than_the_students_is_refused_for_ccl():
    cfg = apply_overrides(preset("smoke-ccl-i"), ["image_teacher.arch=convnext_tiny"])
    with pytest.raises(ValueError) as err:
        check_networks(cfg)
    message = str(err.value)
    assert "768-d" in message and "512-d" in message and "student.feature_dim=768" in message
    check_networks(apply_overrides(cfg, ["student.feature_dim=768"]))
    # the compared methods map widths themselves (FitNet's regressor, CRD's embeddings)
    check_networks(apply_overrides(cfg, ["objective.method=fitnet"]))


def test_every_torchvision_image_classifier_is_accepted_by_the_config():
    names = image_teacher_archs()
    assert {"resnet34", "convnext_tiny", "efficientnet_b0", "vit_b_16", "swin_t"} <= set(names)
    assert ImageTeacherConfig().arch == "resnet34"  # the reference's, unchanged
    apply_overrides(preset("smoke-ccl-i"), ["image_teacher.arch=regnet_y_400mf"])
    with pytest.raises(ValueError, match="image_teacher.arch must be a torchvision image"):
        apply_overrides(preset("smoke-ccl-i"), ["image_teacher.arch=vgg"])
    with pytest.raises(ValueError, match="no linear classifier"):
        on_meta(lambda: ImageTeacher("squeezenet1_0"))


def test_weights_of_another_model_are_one_clear_error(tmp_path):
    path = tmp_path / "resnet18.pth"
    torch.save(torchvision.models.resnet18().state_dict(), path)
    with pytest.raises(ValueError, match="does not fit torchvision's efficientnet_b0"):
        ImageTeacher("efficientnet_b0", path)
