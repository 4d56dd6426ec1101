"""Teachers' linear probes: separable features are solved, wrong labels are not, videos
without a feature stay in the denominator, and frames reach the image teacher as in evaluation."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from ccl.data.store import write_frame_store
from ccl.demo.probe import ImageProbeSettings, audio_probe, fit_probe, image_probe

CLASSES = ["Red", "Green", "Blue"]
COLOURS = [(220, 30, 30), (30, 220, 30), (30, 30, 220)]


def _annotations(path: Path, videos: dict[str, tuple[str, str]]) -> Path:
    """videos: video_id -> (subset, class name); the stores lie in the folder of the
    class in the video id (v_<Class>_...), whatever the label."""
    db = {
        vid: {
            "subset": subset,
            "annotations": {"label": label, "segment": [1, 6]},
            "video_path": f"{vid.split('_')[1]}/{vid}.hdf5",
        }
        for vid, (subset, label) in videos.items()
    }
    path.write_text(json.dumps({"labels": CLASSES, "database": db}))
    return path


def _videos(train_per_class: int = 3, test_per_class: int = 2) -> dict[str, tuple[str, str]]:
    out = {}
    for name in CLASSES:
        for i in range(train_per_class):
            out[f"v_{name}_g0{i + 2}_c01"] = ("training", name)
        for i in range(test_per_class):
            out[f"v_{name}_g01_c0{i + 1}"] = ("testing", name)
    return out


def test_fit_probe_counts_missing_test_videos_as_wrong():
    x = np.array([[0.0, 0.0], [0.1, 0.0], [5.0, 5.0], [5.1, 5.0], [0.0, 9.0], [0.1, 9.0]])
    y = [0, 0, 1, 1, 2, 2]
    assert fit_probe(x, y, x, y, num_classes=3)[:2] == (1.0, 1.0)
    # 6 scored videos right, 2 more without a feature: 6 / 8
    top1, top5, _ = fit_probe(x, y, x, y, num_classes=3, test_total=8)
    assert (top1, top5) == (0.75, 0.75)
    # wrong labels learnt consistently (0 -> 1, 1 -> 2, 2 -> 0): every test video is missed
    assert fit_probe(x, [1, 1, 2, 2, 0, 0], x, y, num_classes=3)[0] == 0.0
    # a class never seen in training is never predicted, but top-5 (clamped to 4) holds it
    top1, top5, _ = fit_probe(x, y, x[:1], [3], num_classes=4)
    assert (top1, top5) == (0.0, 1.0)
    with pytest.raises(ValueError, match="test_total"):
        fit_probe(x, y, x, y, num_classes=3, test_total=5)


def _write_audio(root: Path, videos: dict[str, tuple[str, str]], skip: set[str]) -> Path:
    rng = np.random.default_rng(0)
    for vid, (_, label) in videos.items():
        if vid in skip:
            continue
        centre = np.zeros(4, dtype=np.float32)  # few dims: 9 videos cannot fit noise
        centre[CLASSES.index(label)] = 4.0
        emb = centre + rng.normal(0, 0.3, (3, 4)).astype(np.float32)  # 3 segments
        (root / label).mkdir(parents=True, exist_ok=True)
        np.save(root / label / f"{vid}.npy", emb)
    return root


def test_audio_probe_separable_and_missing_soundtracks(tmp_path):
    videos = _videos()
    ann = _annotations(tmp_path / "ann.json", videos)
    no_audio = {"v_Blue_g01_c02", "v_Green_g02_c01"}  # one test, one training video
    audio = _write_audio(tmp_path / "audio", videos, no_audio)
    np.save(audio / "Red" / "v_Red_g01_c02.npy", np.zeros(4, np.float32))  # "no soundtrack"
    result = audio_probe(ann, audio)
    assert (result.test_videos, result.test_missing) == (6, 2)
    assert (result.train_videos, result.train_missing) == (9, 1)
    assert sorted(result.missing_examples) == ["v_Blue_g01_c02", "v_Red_g01_c02"]
    assert result.top1 == pytest.approx(4 / 6)  # every scored video right, 2 counted wrong
    assert result.converged and "2 without a feature counted wrong" in result.summary()

    full = audio_probe(ann, _write_audio(tmp_path / "audio_full", videos, set()))
    assert (full.top1, full.top5, full.test_missing) == (1.0, 1.0, 0)


def test_audio_probe_with_shuffled_labels_fails(tmp_path):
    videos = _videos()
    audio = _write_audio(tmp_path / "audio", videos, set())
    # the training labels shifted by one class: the embeddings no longer tell the test label
    shifted = {
        vid: (subset, CLASSES[(CLASSES.index(lab) + 1) % 3] if subset == "training" else lab)
        for vid, (subset, lab) in videos.items()
    }
    assert audio_probe(_annotations(tmp_path / "ann.json", shifted), audio).top1 == 0.0


def _frame(colour: tuple[int, int, int], k: int, rng: np.random.Generator) -> np.ndarray:
    img = np.empty((40, 56, 3), dtype=np.float32)
    img[:] = colour
    img += rng.normal(0, 12, img.shape)
    img[5 + k : 15 + k, 10:20] = 128  # a moving grey square: frames differ
    return np.clip(img, 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    root = tmp_path_factory.mktemp("probe")
    rng = np.random.default_rng(1)
    videos = _videos()
    for vid, (_, label) in videos.items():
        if vid == "v_Green_g01_c02":
            continue  # listed, never prepared
        colour = COLOURS[CLASSES.index(label)]
        frames = [_frame(colour, k, rng) for k in range(5)]
        write_frame_store(root / "frames" / label / f"{vid}.hdf5", frames, fps=10)
    return root, videos


SETTINGS = ImageProbeSettings(arch="resnet18", input_size=24, size=32, batch_size=4)


def test_image_probe_separable_missing_store_and_shuffled_labels(stores):
    root, videos = stores
    torch.manual_seed(0)
    weights = root / "teacher.pth"
    import torchvision

    torch.save(torchvision.models.resnet18(weights=None).state_dict(), weights)
    ann = _annotations(root / "ann.json", videos)
    result = image_probe(ann, root / "frames", weights, SETTINGS)
    assert (result.test_videos, result.test_missing) == (6, 1)
    assert result.missing_examples == ["v_Green_g01_c02"]
    assert result.top1 == pytest.approx(5 / 6)  # the colours separate; the missing one is wrong
    shifted = {
        vid: (subset, CLASSES[(CLASSES.index(lab) + 1) % 3] if subset == "training" else lab)
        for vid, (subset, lab) in videos.items()
    }
    wrong = image_probe(_annotations(root / "shifted.json", shifted), root / "frames", weights)
    assert wrong.top1 == 0.0


def test_image_probe_frames_are_prepared_as_evaluation_prepares_them(stores, monkeypatch):
    """The teacher sees each video's centre frame exactly as in a whole-video evaluation
    window (short side resize, centre crop, clip normalisation), then its own resize."""
    import ccl.demo.probe
    from ccl.data.datasets import ClipDataset
    from ccl.models.teachers import ImageTeacher
    from ccl.runtime import stats_tensor, to_batch

    root, videos = stores
    ann = _annotations(root / "ann.json", videos)
    torch.manual_seed(0)
    teacher = ImageTeacher("resnet18", None, frame_choice="center", input_size=24)
    feats = ccl.demo.probe.image_features(ann, root / "frames", "testing", teacher, SETTINGS)
    # evaluation's pipeline: one window holding the whole 5-frame video; the teacher takes
    # its centre frame (index 2 = n_frames // 2)
    ds = ClipDataset(ann, root / "frames", "testing", "test", frames=5, size=32, missing="skip")
    cpu = torch.device("cpu")
    mean, std = stats_tensor(SETTINGS.mean, cpu), stats_tensor(SETTINGS.std, cpu)
    assert len(ds.windows) == len(ds.videos) == len(feats) == 5
    for i, (video, _) in enumerate(ds.windows):
        clip = to_batch({"clip": ds[i]["clip"][None], "label": [0]}, cpu, mean, std).clip
        expected = teacher(clip)[0].numpy()
        np.testing.assert_allclose(feats[ds.videos[video].video_id], expected, atol=1e-5)
