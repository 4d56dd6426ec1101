"""Shapes, parameter counts and the reference layout of the networks."""

import pytest
import torch
import torchvision

from ccl.data.audio import AudioEmbeddings
from ccl.models import ImageTeacher, build_student, legacy_availability
from ccl.models.r2plus1d import intermediate_channels


@pytest.mark.parametrize(
    ("arch", "params"),
    # 51 classes; r2plus1d-10 is the reference's "depth 18" (docs/METHOD.md §2.1: about 14.4 M)
    [("r2plus1d-10", 14_391_466), ("r2plus1d-18", 33_204_586), ("r2plus1d-34", 63_530_922)],
)
def test_parameter_counts(arch, params):
    model = build_student(arch, 51)
    assert sum(p.numel() for p in model.parameters()) == params


def test_blocks_per_stage_and_reference_names():
    model = build_student("r2plus1d-34", 10)
    assert [1 + len(getattr(model, f"conv{i}").blocks) for i in range(2, 6)] == [3, 4, 6, 3]
    keys = model.state_dict().keys()
    # the reference's module names, so its checkpoints load unchanged
    for key in [
        "conv1.spatial_conv.weight",
        "conv1.temporal_conv.weight",
        "conv3.block1.downsampleconv.spatial_conv.weight",
        "conv3.block1.downsamplebn.running_mean",
        "conv5.blocks.0.conv2.temporal_conv.weight",
        "linear.weight",
    ]:
        assert key in keys
    # stem: (1,7,7) spatial conv to 83 channels (the (2+1)D parameter-matching rule)
    assert model.conv1.spatial_conv.weight.shape == (83, 3, 1, 7, 7)
    assert model.conv1.temporal_conv.weight.shape == (64, 83, 3, 1, 1)
    assert intermediate_channels(64, 64, (3, 3, 3)) == 144


def test_forward_shapes_and_strides():
    model = build_student("r2plus1d-10", 7, width=0.25).eval()
    out = model(torch.randn(2, 3, 16, 112, 112))
    assert out.logits.shape == (2, 7) and out.feature.shape == (2, 128)
    x = model.relu1(model.bn1(model.conv1(torch.randn(1, 3, 16, 112, 112))))
    assert x.shape == (1, 16, 16, 56, 56)
    x = model.conv5(model.conv4(model.conv3(model.conv2(x))))
    assert x.shape == (1, 128, 2, 7, 7)
    wide = build_student("r2plus1d-10", 7, width=0.25, feature_dim=512)
    assert wide(torch.randn(1, 3, 8, 32, 32)).feature.shape == (1, 512)


def test_expanded_feature_layer():
    """``feature_layer="expand"``: the last stage keeps its width, a 1x1x1 conv + BN + ReLU
    reaches ``feature_dim``; the feature is a pooled ReLU output like the wide stage's."""
    torch.manual_seed(0)
    model = build_student("r2plus1d-10", 7, width=0.25, feature_dim=512, feature_layer="expand")
    assert model.conv5.block1.conv2.temporal_conv.weight.shape[0] == 128
    assert model.expand[0].weight.shape == (512, 128, 1, 1, 1)
    assert model.linear.weight.shape == (7, 512)
    out = model(torch.randn(3, 3, 8, 32, 32))
    assert out.feature.shape == (3, 512) and out.logits.shape == (3, 7)
    assert (out.feature >= 0).all()
    # the same as the layers applied by hand
    model.eval()
    clip = torch.randn(2, 3, 8, 32, 32)
    x = model.relu1(model.bn1(model.conv1(clip)))
    x = model.conv5(model.conv4(model.conv3(model.conv2(x))))
    by_hand = torch.relu(model.expand[1](model.expand[0](x))).mean(dim=(2, 3, 4))
    torch.testing.assert_close(model(clip).feature, by_hand)
    wide = build_student("r2plus1d-10", 7, width=0.25, feature_dim=512)
    n_params = sum(p.numel() for p in model.parameters())
    assert n_params < sum(p.numel() for p in wide.parameters()) / 8
    # the default layer and a feature_dim equal to the stage's width add nothing
    assert "expand.0.weight" not in wide.state_dict()
    same = build_student("r2plus1d-10", 7, width=0.25, feature_dim=128, feature_layer="expand")
    assert isinstance(same.expand, torch.nn.Identity)
    with pytest.raises(ValueError, match="feature_layer"):
        build_student("r2plus1d-10", 7, feature_layer="projection")


def test_bad_arch_is_an_error():
    with pytest.raises(ValueError, match="r2plus1d-10"):
        build_student("r3d-18", 10)


def test_image_teacher_loads_torchvision_state_dict_and_stays_frozen(tmp_path):
    net = torchvision.models.resnet18(weights=None)
    path = tmp_path / "resnet18.pth"
    torch.save(net.state_dict(), path)  # the published files are plain state dicts like this
    teacher = ImageTeacher("resnet18", path, frame_choice="center")
    torch.testing.assert_close(teacher.net.conv1.weight, net.conv1.weight)
    assert not any(p.requires_grad for p in teacher.parameters())
    teacher.train()
    assert not teacher.training and not teacher.net.training
    clip = torch.randn(3, 3, 5, 32, 32, requires_grad=True)
    feats = teacher(clip)
    assert feats.shape == (3, 512) and feats.grad_fn is None
    net.fc = torch.nn.Identity()
    torch.testing.assert_close(feats, net.eval()(clip[:, :, 2].detach()))


def test_image_teacher_missing_or_bad_weights(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nowhere\.pth.*resnet34-b627a593\.pth"):
        ImageTeacher("resnet34", tmp_path / "nowhere.pth")
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="bad.pth"):
        ImageTeacher("resnet18", bad)


def test_frame_choice():
    teacher = ImageTeacher("resnet18", frame_choice="sample-random")
    clip = torch.arange(4 * 6, dtype=torch.float32).view(4, 1, 6, 1, 1).expand(4, 3, 6, 2, 2)
    frames = teacher.select_frames(clip)
    assert frames.shape == (4, 3, 2, 2)
    assert all(frames[i, 0, 0, 0] in clip[i, 0, :, 0, 0] for i in range(4))
    teacher.frame_choice = "batch-random"
    frames = teacher.select_frames(clip)
    index = {int(frames[i, 0, 0, 0]) - 6 * i for i in range(4)}
    assert len(index) == 1  # one index shared by the whole batch, as in the reference
    teacher.frame_choice = "center"
    assert torch.equal(teacher.select_frames(clip)[:, 0, 0, 0], clip[:, 0, 3, 0, 0])


def test_image_teacher_imagenet_renormalisation():
    mean, std = (0.4, 0.5, 0.6), (0.2, 0.25, 0.3)
    teacher = ImageTeacher(
        "resnet18", frame_choice="center", normalization="imagenet", clip_mean=mean, clip_std=std
    )
    pixels = torch.rand(1, 3, 1, 4, 4)
    clip = (pixels - torch.tensor(mean).view(1, 3, 1, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1, 1)
    captured = {}
    teacher.net.conv1.register_forward_pre_hook(lambda m, i: captured.update(x=i[0]))
    teacher(clip)
    imagenet = (
        pixels[:, :, 0] - torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    ) / torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    torch.testing.assert_close(captured["x"], imagenet)


def test_audio_embeddings_lookup_and_mask():
    table = AudioEmbeddings({"a": torch.ones(4).numpy(), "b": torch.arange(8.0).view(2, 4).numpy()})
    vec, ok = table.lookup("a")
    assert ok and vec.tolist() == [1, 1, 1, 1]
    vec, ok = table.lookup("missing")
    assert not ok and vec.tolist() == [0, 0, 0, 0]
    import numpy as np

    rows = {tuple(table.lookup("b", np.random.default_rng(s))[0]) for s in range(20)}
    assert rows == {(0, 1, 2, 3), (4, 5, 6, 7)}
    assert table.lookup("b")[0].tolist() == [2, 3, 4, 5]
    with pytest.raises(ValueError, match="mixed widths"):
        AudioEmbeddings({"a": np.ones(4), "b": np.ones(5)})
    with pytest.raises(ValueError, match="non-finite"):
        AudioEmbeddings({"a": np.array([1.0, np.nan])})
    legacy = torch.tensor([[0.0, 0.0], [0.0, 0.3]])
    assert legacy_availability(legacy).tolist() == [False, True]
