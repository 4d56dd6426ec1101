"""Demo teachers: trained on their corpora, loaded exactly like real teacher weights."""

import json

import numpy as np
import pytest
import torch

from ccl.demo.pretrain import pretrain_audio_teacher, pretrain_image_teacher
from ccl.models import ImageTeacher
from ccl.models.small_audio import load_small_audio_teacher


def test_image_teacher_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    labels = np.arange(40) % 3
    images = rng.integers(0, 60, size=(40, 16, 16, 3), dtype=np.uint8)
    images[labels == 1, :, :, 0] = 250  # a learnable cue
    np.savez(
        tmp_path / "images.npz", images=images, labels=labels, label_names=np.array(["a", "b", "c"])
    )
    meta = pretrain_image_teacher(tmp_path, tmp_path / "img.pth", size=16, epochs=2, batch_size=8)
    assert 0.0 <= meta["held_out_accuracy"] <= 1.0 and meta["classes"] == ["a", "b", "c"]
    # the record next to the weights: the returned meta, in this key order
    record = json.loads((tmp_path / "img.pth.json").read_text())
    keys = "arch size classes held_out_accuracy epochs corpus images".split()
    assert record == meta and list(record) == keys
    assert (record["corpus"], record["images"]) == (str(tmp_path), 40)
    teacher = ImageTeacher("resnet18", tmp_path / "img.pth", frame_choice="center", input_size=16)
    state = torch.load(tmp_path / "img.pth", weights_only=True)
    torch.testing.assert_close(teacher.net.conv1.weight, state["conv1.weight"])
    assert teacher(torch.randn(2, 3, 4, 16, 16)).shape == (2, 512)


def test_audio_teacher_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    labels = np.arange(24) % 2
    t = np.arange(16000) / 16000
    waves = 0.05 * rng.standard_normal((24, 16000)).astype(np.float32)
    waves[labels == 1] += 0.3 * np.sin(2 * np.pi * 880 * t).astype(np.float32)
    np.savez(
        tmp_path / "sounds.npz",
        waveforms=waves,
        labels=labels,
        label_names=np.array(["noise", "tone"]),
        sample_rate=16000,
    )
    meta = pretrain_audio_teacher(tmp_path, tmp_path / "aud.pt", epochs=2, batch_size=8)
    assert meta["classes"] == ["noise", "tone"]
    record = json.loads((tmp_path / "aud.pt.json").read_text())
    keys = "classes held_out_accuracy epochs corpus clips sample_rate".split()
    assert record == meta and list(record) == keys
    assert (record["clips"], record["sample_rate"]) == (24, 32000)
    model = load_small_audio_teacher(tmp_path / "aud.pt")
    out = model(torch.randn(3, 32000))
    assert out.embedding.shape == (3, 512) and (out.embedding >= 0).all()
    assert not any(p.requires_grad for p in model.parameters())
    with pytest.raises(FileNotFoundError, match="pretrain-teacher"):
        load_small_audio_teacher(tmp_path / "none.pt")
    with pytest.raises(ValueError, match="img|not a ccl-small-audio-cnn"):
        torch.save({"a": torch.zeros(1)}, tmp_path / "img.pt")
        load_small_audio_teacher(tmp_path / "img.pt")


def test_corrupt_corpus_is_named(tmp_path):
    corpus = tmp_path / "images.npz"
    corpus.write_bytes(b"PK\x03\x04 not a zip archive")
    with pytest.raises(ValueError, match=f"cannot read teacher corpus {corpus}: BadZipFile"):
        pretrain_image_teacher(tmp_path, tmp_path / "out.pt")


def test_resample_array_keeps_duration_and_pitch():
    """The sound corpus is resampled in memory to the teacher's 32 kHz: same duration, same
    tone (the public helper the demo teacher's training uses)."""
    from ccl.data.media import resample_array

    t = np.arange(16000) / 16000
    tone = np.sin(2 * np.pi * 880 * t).astype(np.float32)
    out = resample_array(tone, 16000, 32000)
    assert out.dtype == np.float32 and abs(len(out) - 32000) < 200
    spectrum = np.abs(np.fft.rfft(out))
    assert abs(np.argmax(spectrum) * 32000 / len(out) - 880) < 5
    assert len(resample_array(np.zeros(0, np.float32), 16000, 32000)) == 0


def test_command_offers_every_image_teacher_arch():
    """``ccl pretrain-teacher --arch`` lists the archs without importing torchvision."""
    from ccl.commands.pretrain import IMAGE_TEACHER_ARCHS
    from ccl.models.teachers import IMAGE_TEACHER_ARCHS as BUILDERS

    assert sorted(IMAGE_TEACHER_ARCHS) == sorted(BUILDERS)
