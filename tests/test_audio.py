"""PANNs teacher (ccl.models.panns) and audio embeddings (ccl.data.audio_features,
ccl.data.archive): front end against librosa, checkpoint compatibility, extraction from
generated videos, archive import, their commands (ccl.commands.prepare)."""

from __future__ import annotations

import argparse
import io
import json
import tarfile
from fractions import Fraction
from pathlib import Path

import av
import h5py
import librosa
import numpy as np
import pytest
import torch

from ccl.cli import main as ccl_main
from ccl.commands.prepare import register
from ccl.data.archive import import_audio_archive
from ccl.data.audio import AUDIO_MODEL_NAMES, MANIFEST_NAME
from ccl.data.audio_features import (
    ExtractionOutputs,
    ExtractReport,
    extract_audio,
    load_soundtrack,
    plan_extraction,
    segment_length,
)
from ccl.data.media import SAMPLE_RATE
from ccl.models.panns import (
    MIN_SAMPLES,
    MODEL_NAMES,
    Cnn14,
    Cnn14Emb512,
    Cnn14Output,
    LogMelFrontEnd,
    load_cnn14,
)

SR = SAMPLE_RATE

# Parameter names and shapes of PANNs Cnn14 / Cnn14_emb512, written out from the authors'
# pytorch/models.py (ConvBlock widths 1-64-128-256-512-1024-2048, bn0 over 64 mel bins) and
# torchlibrosa's Spectrogram (stft.conv_real / conv_imag: Conv1d(1, 513, 1024)) and
# LogmelFilterBank (melW: (513, 64)).
_FRONT = [
    ("spectrogram_extractor.stft.conv_real.weight", (513, 1, 1024)),
    ("spectrogram_extractor.stft.conv_imag.weight", (513, 1, 1024)),
    ("logmel_extractor.melW", (513, 64)),
    ("bn0.weight", (64,)),
    ("bn0.bias", (64,)),
    ("bn0.running_mean", (64,)),
    ("bn0.running_var", (64,)),
    ("bn0.num_batches_tracked", ()),
]
_BLOCKS = [
    ("conv_block1.conv1.weight", (64, 1, 3, 3)),
    ("conv_block1.conv2.weight", (64, 64, 3, 3)),
    ("conv_block1.bn1.weight", (64,)),
    ("conv_block1.bn1.bias", (64,)),
    ("conv_block1.bn1.running_mean", (64,)),
    ("conv_block1.bn1.running_var", (64,)),
    ("conv_block1.bn1.num_batches_tracked", ()),
    ("conv_block1.bn2.weight", (64,)),
    ("conv_block1.bn2.bias", (64,)),
    ("conv_block1.bn2.running_mean", (64,)),
    ("conv_block1.bn2.running_var", (64,)),
    ("conv_block1.bn2.num_batches_tracked", ()),
    ("conv_block2.conv1.weight", (128, 64, 3, 3)),
    ("conv_block2.conv2.weight", (128, 128, 3, 3)),
    ("conv_block2.bn1.weight", (128,)),
    ("conv_block2.bn1.bias", (128,)),
    ("conv_block2.bn1.running_mean", (128,)),
    ("conv_block2.bn1.running_var", (128,)),
    ("conv_block2.bn1.num_batches_tracked", ()),
    ("conv_block2.bn2.weight", (128,)),
    ("conv_block2.bn2.bias", (128,)),
    ("conv_block2.bn2.running_mean", (128,)),
    ("conv_block2.bn2.running_var", (128,)),
    ("conv_block2.bn2.num_batches_tracked", ()),
    ("conv_block3.conv1.weight", (256, 128, 3, 3)),
    ("conv_block3.conv2.weight", (256, 256, 3, 3)),
    ("conv_block3.bn1.weight", (256,)),
    ("conv_block3.bn1.bias", (256,)),
    ("conv_block3.bn1.running_mean", (256,)),
    ("conv_block3.bn1.running_var", (256,)),
    ("conv_block3.bn1.num_batches_tracked", ()),
    ("conv_block3.bn2.weight", (256,)),
    ("conv_block3.bn2.bias", (256,)),
    ("conv_block3.bn2.running_mean", (256,)),
    ("conv_block3.bn2.running_var", (256,)),
    ("conv_block3.bn2.num_batches_tracked", ()),
    ("conv_block4.conv1.weight", (512, 256, 3, 3)),
    ("conv_block4.conv2.weight", (512, 512, 3, 3)),
    ("conv_block4.bn1.weight", (512,)),
    ("conv_block4.bn1.bias", (512,)),
    ("conv_block4.bn1.running_mean", (512,)),
    ("conv_block4.bn1.running_var", (512,)),
    ("conv_block4.bn1.num_batches_tracked", ()),
    ("conv_block4.bn2.weight", (512,)),
    ("conv_block4.bn2.bias", (512,)),
    ("conv_block4.bn2.running_mean", (512,)),
    ("conv_block4.bn2.running_var", (512,)),
    ("conv_block4.bn2.num_batches_tracked", ()),
    ("conv_block5.conv1.weight", (1024, 512, 3, 3)),
    ("conv_block5.conv2.weight", (1024, 1024, 3, 3)),
    ("conv_block5.bn1.weight", (1024,)),
    ("conv_block5.bn1.bias", (1024,)),
    ("conv_block5.bn1.running_mean", (1024,)),
    ("conv_block5.bn1.running_var", (1024,)),
    ("conv_block5.bn1.num_batches_tracked", ()),
    ("conv_block5.bn2.weight", (1024,)),
    ("conv_block5.bn2.bias", (1024,)),
    ("conv_block5.bn2.running_mean", (1024,)),
    ("conv_block5.bn2.running_var", (1024,)),
    ("conv_block5.bn2.num_batches_tracked", ()),
    ("conv_block6.conv1.weight", (2048, 1024, 3, 3)),
    ("conv_block6.conv2.weight", (2048, 2048, 3, 3)),
    ("conv_block6.bn1.weight", (2048,)),
    ("conv_block6.bn1.bias", (2048,)),
    ("conv_block6.bn1.running_mean", (2048,)),
    ("conv_block6.bn1.running_var", (2048,)),
    ("conv_block6.bn1.num_batches_tracked", ()),
    ("conv_block6.bn2.weight", (2048,)),
    ("conv_block6.bn2.bias", (2048,)),
    ("conv_block6.bn2.running_mean", (2048,)),
    ("conv_block6.bn2.running_var", (2048,)),
    ("conv_block6.bn2.num_batches_tracked", ()),
]
CNN14_PARAMS = (
    _FRONT
    + _BLOCKS
    + [
        ("fc1.weight", (2048, 2048)),
        ("fc1.bias", (2048,)),
        ("fc_audioset.weight", (527, 2048)),
        ("fc_audioset.bias", (527,)),
    ]
)
CNN14_EMB512_PARAMS = (
    _FRONT
    + _BLOCKS
    + [
        ("fc1.weight", (512, 2048)),
        ("fc1.bias", (512,)),
        ("fc_audioset.weight", (527, 512)),
        ("fc_audioset.bias", (527,)),
    ]
)


# ----------------------------------------------------------------------------- helpers


def write_clip(
    path: Path, *, n_frames: int = 10, audio_seconds: float | None = None, fps: int = 25
) -> Path:
    """A tiny mpeg4 video (32x32), with a stereo 440 Hz AAC soundtrack when
    ``audio_seconds`` is given (left and right equal, amplitude 0.3)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rate = 44_100
    with av.open(str(path), mode="w") as out:
        vs = out.add_stream("mpeg4", rate=fps)
        vs.width, vs.height, vs.pix_fmt = 32, 32, "yuv420p"
        astream = None
        if audio_seconds is not None:
            astream = out.add_stream("aac", rate=rate)
            astream.layout = "stereo"
        for k in range(n_frames):
            img = np.full((32, 32, 3), (8 * k) % 256, dtype=np.uint8)
            for packet in vs.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(packet)
        for packet in vs.encode():
            out.mux(packet)
        if astream is not None:
            n = int(audio_seconds * rate)
            wave = (0.3 * np.sin(2 * np.pi * 440 * np.arange(n) / rate)).astype(np.float32)
            block = 1024
            for i in range(0, n, block):
                chunk = wave[i : i + block]
                frame = av.AudioFrame.from_ndarray(
                    np.stack([chunk, chunk]), format="fltp", layout="stereo"
                )
                frame.sample_rate = rate
                frame.pts = i
                frame.time_base = Fraction(1, rate)
                for packet in astream.encode(frame):
                    out.mux(packet)
            for packet in astream.encode():
                out.mux(packet)
    return path


def write_store(path: Path, audio: np.ndarray | None, rate: int = SR) -> Path:
    """An HDF5 store as written by the prepare step: 'video' plus optional 'audio'."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        ds = f.create_dataset("video", (1,), dtype=h5py.vlen_dtype(np.uint8))
        ds[0] = np.zeros(4, dtype=np.uint8)
        f.attrs["has_audio"] = audio is not None
        if audio is not None:
            a = f.create_dataset("audio", data=audio.astype(np.float32))
            a.attrs["sample_rate"] = rate
    return path


def librosa_logmel(y: np.ndarray) -> np.ndarray:
    """PANNs settings through librosa: (frames, 64) dB."""
    mel = librosa.feature.melspectrogram(
        y=y,
        sr=SR,
        n_fft=1024,
        hop_length=320,
        win_length=1024,
        window="hann",
        center=True,
        pad_mode="reflect",
        power=2.0,
        n_mels=64,
        fmin=50,
        fmax=14000,
    )
    return librosa.power_to_db(mel, ref=1.0, amin=1e-10, top_db=None).T


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """A randomly initialised Cnn14_emb512 saved in the official form: {'model': state,
    ...} plus a training-sampler state with numpy arrays, as in the published files."""
    torch.set_num_threads(1)
    torch.manual_seed(1)
    model = Cnn14Emb512()
    with torch.no_grad():  # non-trivial BN statistics so a wrong load would show
        model.bn0.running_mean.uniform_(-60, -20)
        model.bn0.running_var.uniform_(50, 150)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    path = tmp_path_factory.mktemp("ckpt") / "Cnn14_emb512_mAP=0.420.pth"
    rs = np.random.RandomState(0).get_state()
    torch.save(
        {
            "iteration": 0,
            "model": state,
            "sampler": {"random_state": rs, "indexes": [np.arange(3)]},
        },
        path,
    )
    return path, state


# ----------------------------------------------------------------------------- model


@pytest.mark.parametrize(
    "cls, expected", [(Cnn14, CNN14_PARAMS), (Cnn14Emb512, CNN14_EMB512_PARAMS)]
)
def test_parameter_names_and_shapes_match_panns(cls: type, expected: list) -> None:
    with torch.device("meta"):  # names and shapes only: skip the random initialisation
        model = cls()
    got = [(k, tuple(v.shape)) for k, v in model.state_dict().items()]
    assert sorted(got) == sorted(expected)
    assert len(expected) == 84


def test_forward_shapes_and_short_input_padding() -> None:
    model = Cnn14Emb512().eval()
    with torch.no_grad():
        out = model(torch.randn(2, MIN_SAMPLES))
        short = model(torch.randn(1, 1000))
    assert isinstance(out, Cnn14Output)
    assert out.clipwise.shape == (2, 527) and out.embedding.shape == (2, 512)
    assert ((out.clipwise > 0) & (out.clipwise < 1)).all() and (out.embedding >= 0).all()
    assert short.embedding.shape == (1, 512)
    assert MIN_SAMPLES == 9920  # 32 STFT frames at hop 320: five 2x2 poolings leave one
    # the unpadded minimum itself runs through the network without padding
    fe = LogMelFrontEnd()
    assert fe(torch.zeros(1, MIN_SAMPLES)).shape == (1, 1, 32, 64)


def test_a_long_soundtrack_goes_through_in_chunks_as_in_one_pass(monkeypatch) -> None:
    """Memory bounded by a chunk, not by the soundtrack: no pass of the conv trunk sees more
    than a chunk and its margins, and the outputs are one pass's (to float rounding); with
    less context than the trunk's reach they would not be (the check can fail)."""
    import ccl.models.panns as panns

    model = Cnn14Emb512().eval()
    wave = 0.1 * torch.randn(2, 112_000)  # 351 log-mel frames: 10 steps of 32, 31 left
    with torch.no_grad():
        model.chunk_frames = None
        whole = model(wave)
        model.chunk_frames = 64  # 2 steps a chunk: 5 chunks
        seen: list[int] = []
        trunk = Cnn14._trunk

        def spy(self, x):
            seen.append(x.shape[2])
            return trunk(self, x)

        monkeypatch.setattr(Cnn14, "_trunk", spy)
        chunked = model(wave)
        assert len(seen) == 5 and max(seen) <= 64 + 2 * panns.TRUNK_MARGIN < 351
        for got, want in zip(chunked, whole):
            torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-7)
        monkeypatch.setattr(panns, "TRUNK_MARGIN", 3 * panns.TRUNK_STEP)  # reach: 126 frames
        short_context = model(wave).embedding
    assert not torch.allclose(short_context, whole.embedding, rtol=1e-3, atol=0)


def _signals() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    t = np.arange(24_000) / SR
    return {
        "noise": 0.1 * rng.standard_normal(SR),
        "uniform-short": rng.uniform(-1, 1, 4000),
        "sine": 0.5 * np.sin(2 * np.pi * 440 * t),
        "two-tone": 0.3 * np.sin(2 * np.pi * 1234.5 * t) + 0.2 * np.sin(2 * np.pi * 7000 * t),
        "sine+noise": 0.5 * np.sin(2 * np.pi * 440 * t) + 1e-3 * rng.standard_normal(len(t)),
    }


@pytest.mark.parametrize("name", list(_signals()))
def test_front_end_matches_librosa(name: str) -> None:
    y = _signals()[name]
    ref = librosa_logmel(y)
    # float64: the algorithm (filters, padding, mel bank, dB) on every signal
    fe64 = LogMelFrontEnd().double()
    with torch.no_grad():
        out64 = fe64(torch.from_numpy(y)[None])[0, 0].numpy()
    assert out64.shape == ref.shape == (1 + len(y) // 320, 64)
    np.testing.assert_allclose(out64, ref, rtol=1e-4, atol=1e-4)
    # float32 (the model's precision): pure tones reach the -100 dB floor in far bins,
    # below float32 resolution, so only signals with a noise floor are compared
    if name in ("noise", "uniform-short", "sine+noise"):
        with torch.no_grad():
            out32 = LogMelFrontEnd()(torch.from_numpy(y).float()[None])[0, 0].numpy()
        np.testing.assert_allclose(out32, ref, rtol=1e-4, atol=1e-4)


def test_mel_filters_equal_librosa() -> None:
    fe = LogMelFrontEnd()
    ref = librosa.filters.mel(sr=SR, n_fft=1024, n_mels=64, fmin=50, fmax=14000).T
    np.testing.assert_allclose(fe.logmel_extractor.melW.numpy(), ref, rtol=1e-5, atol=1e-9)


def test_load_cnn14_round_trip(checkpoint: tuple[Path, dict]) -> None:
    path, state = checkpoint
    model = load_cnn14(path, variant="emb512")
    assert not model.training
    assert not any(p.requires_grad for p in model.parameters())
    for k, v in model.state_dict().items():
        assert torch.equal(v, state[k]), k
    with torch.no_grad():
        out = model(torch.randn(1, SR))
    assert out.embedding.shape == (1, 512)


def test_load_cnn14_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "Cnn14_emb512_mAP=0.420.pth"
    with pytest.raises(FileNotFoundError) as err:
        load_cnn14(missing)
    msg = str(err.value)
    assert str(missing) in msg and "3987831" in msg and "zenodo" in msg.lower()


def test_load_cnn14_wrong_file(tmp_path: Path) -> None:
    odd = tmp_path / "odd.pth"
    torch.save({"model": {"foo.weight": torch.zeros(1)}}, odd)
    with pytest.raises(ValueError) as err:
        load_cnn14(odd)
    msg = str(err.value)
    assert str(odd) in msg and "missing" in msg and "foo.weight" in msg
    assert "spectrogram_extractor.stft.conv_real.weight" in msg
    # right keys, wrong shapes (e.g. a Cnn14 file loaded as emb512)
    keys = [k for k, _ in CNN14_EMB512_PARAMS]
    shaped = tmp_path / "shaped.pth"
    torch.save({"model": {k: torch.zeros(2) for k in keys}}, shaped)
    with pytest.raises(ValueError, match="shape mismatch") as err:
        load_cnn14(shaped)
    assert str(shaped) in str(err.value)
    not_ckpt = tmp_path / "junk.pth"
    not_ckpt.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="junk.pth"):
        load_cnn14(not_ckpt)


# ----------------------------------------------------------------------------- extraction


def test_load_soundtrack_video_and_store(tmp_path: Path) -> None:
    with_sound = write_clip(tmp_path / "a.mp4", audio_seconds=1.0)
    silent = write_clip(tmp_path / "b.mp4")
    y = load_soundtrack(with_sound)
    assert y is not None and y.dtype == np.float32 and y.ndim == 1
    assert abs(len(y) - SR) < 0.1 * SR
    # channels are averaged: the 0.3 sine keeps its amplitude (FFmpeg's mono matrix: 0.42)
    assert 0.27 < np.abs(y[4000:20000]).max() < 0.33
    assert load_soundtrack(silent) is None
    wave = np.sin(np.arange(16_000) / 5).astype(np.float32)
    assert np.array_equal(load_soundtrack(write_store(tmp_path / "s.hdf5", wave)), wave)
    assert load_soundtrack(write_store(tmp_path / "n.hdf5", None)) is None
    resampled = load_soundtrack(write_store(tmp_path / "r.hdf5", wave, rate=16_000))
    assert resampled is not None and abs(len(resampled) - 32_000) < 200


def test_extract_audio_files_manifest_and_resume(
    tmp_path: Path, checkpoint: tuple[Path, dict]
) -> None:
    ckpt, _ = checkpoint
    src, out = tmp_path / "videos", tmp_path / "emb"
    write_clip(src / "ClassA" / "v_ClassA_g01_c01.mp4", audio_seconds=1.0)
    write_clip(src / "ClassA" / "v_ClassA_g02_c01.mp4")  # no audio stream
    write_clip(src / "ClassB" / "v_ClassB_g01_c01.mp4", audio_seconds=0.1)  # < MIN_SAMPLES
    store_wave = (0.2 * np.sin(np.arange(20_000) / 7)).astype(np.float32)
    write_store(src / "ClassB" / "v_ClassB_g02_c01.hdf5", store_wave)
    write_store(src / "ClassC" / "v_ClassC_g01_c01.hdf5", None)

    report = extract_audio(src, ckpt, out, batch_size=2, device="cpu", progress=False)
    assert report.ok and report.n_found == 5
    assert sorted(report.written) == [
        "ClassA/v_ClassA_g01_c01",
        "ClassB/v_ClassB_g01_c01",
        "ClassB/v_ClassB_g02_c01",
    ]
    assert sorted(report.unavailable) == ["ClassA/v_ClassA_g02_c01", "ClassC/v_ClassC_g01_c01"]
    for key in report.written:
        emb = np.load(out / f"{key}.npy")
        assert emb.shape == (512,) and emb.dtype == np.float32 and (emb >= 0).all()
    assert not (out / "ClassA" / "v_ClassA_g02_c01.npy").exists()  # no zero-vector file
    assert not (out / "ClassC").exists() or not any((out / "ClassC").iterdir())
    assert not list(out.rglob("*.tmp"))

    manifest = json.loads((out / MANIFEST_NAME).read_text())
    assert manifest["model"] == "cnn14_emb512" and manifest["variant"] == "emb512"
    assert (
        manifest["checkpoint_sha256"] == __import__("hashlib").sha256(ckpt.read_bytes()).hexdigest()
    )
    assert manifest["settings"]["sample_rate"] == SR and manifest["settings"]["mel_bins"] == 64
    assert manifest["settings"]["segment_seconds"] is None
    assert set(manifest["unavailable"]) == set(report.unavailable)
    assert manifest["videos"]["ClassB/v_ClassB_g01_c01"]["padded"] is True
    assert manifest["videos"]["ClassA/v_ClassA_g01_c01"]["padded"] is False

    # the store's embedding is the model's output on its samples
    model = load_cnn14(ckpt)
    with torch.no_grad():
        direct = model(torch.from_numpy(store_wave)[None]).embedding[0].numpy()
    np.testing.assert_allclose(np.load(out / "ClassB/v_ClassB_g02_c01.npy"), direct, atol=1e-5)

    # resumption: nothing recomputed, files untouched
    mtimes = {p: p.stat().st_mtime_ns for p in out.rglob("*.npy")}
    again = extract_audio(src, ckpt, out, batch_size=2, device="cpu", progress=False)
    assert again.written == [] and len(again.skipped) == 5 and again.ok
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.npy")} == mtimes
    # a deleted output is redone alone
    (out / "ClassA/v_ClassA_g01_c01.npy").unlink()
    third = extract_audio(src, ckpt, out, device="cpu", progress=False)
    assert third.written == ["ClassA/v_ClassA_g01_c01"]

    # other settings into the same folder are refused
    with pytest.raises(ValueError, match="another model, checkpoint or settings"):
        extract_audio(src, ckpt, out, segment_seconds=0.4, device="cpu", progress=False)


def test_extract_audio_segments(tmp_path: Path, checkpoint: tuple[Path, dict]) -> None:
    ckpt, _ = checkpoint
    src, out = tmp_path / "videos", tmp_path / "seg"
    write_store(src / "K" / "v_K_g01_c01.hdf5", 0.1 * np.ones(30_000, dtype=np.float32))
    write_store(src / "K" / "v_K_g02_c01.hdf5", 0.1 * np.ones(5_000, dtype=np.float32))
    report = extract_audio(
        src, ckpt, out, segment_seconds=0.4, batch_size=1, device="cpu", progress=False
    )
    assert report.ok
    # 30000 samples / 12800 per segment: two full segments, remainder 4400 < MIN_SAMPLES dropped
    seg = np.load(out / "K" / "v_K_g01_c01.npy")
    assert seg.shape == (2, 512) and seg.dtype == np.float32
    np.testing.assert_allclose(seg[0], seg[1], atol=1e-5)  # constant signal, equal segments
    # a clip shorter than one segment gives one (padded) row
    assert np.load(out / "K" / "v_K_g02_c01.npy").shape == (1, 512)
    manifest = json.loads((out / MANIFEST_NAME).read_text())
    assert manifest["settings"]["segment_seconds"] == 0.4
    assert manifest["videos"]["K/v_K_g01_c01"]["shape"] == [2, 512]


def test_segment_length() -> None:
    """Segments are counted in 32 kHz samples; ones shorter than the model's minimum input
    are refused (they would be mostly padding)."""
    assert SAMPLE_RATE == 32_000
    assert segment_length(None, MIN_SAMPLES) is None
    assert segment_length(0.4, MIN_SAMPLES) == 12_800
    with pytest.raises(ValueError, match="segment_seconds=0.2 is shorter than"):
        segment_length(0.2, MIN_SAMPLES)


def test_audio_model_names_name_the_panns_variants() -> None:
    """The manifests' model names (a torch-free table the command line offers as
    ``--variant``) are PANNs' own, plus the demo's small CNN."""
    assert {k: AUDIO_MODEL_NAMES[k] for k in MODEL_NAMES} == MODEL_NAMES
    assert set(AUDIO_MODEL_NAMES) - set(MODEL_NAMES) == {"small"}


def test_plan_extraction_resumes_and_refuses_duplicates(tmp_path: Path) -> None:
    """What a resumed run redoes, without a model: listed outputs and videos without sound
    are skipped, a readable output of an interrupted run is adopted, an unreadable one is
    deleted and redone, a second source with the same id fails."""
    src, out = tmp_path / "videos", tmp_path / "emb"
    names = ["K/done.mp4", "K/dup.hdf5", "K/dup.mp4", "K/new.mp4", "K/orphan.mp4"]
    names += ["K/silent.mp4", "K/torn.mp4"]
    sources = [src / n for n in names]
    (out / "K").mkdir(parents=True)
    np.save(out / "K" / "done.npy", np.zeros(4, np.float32))
    np.save(out / "K" / "orphan.npy", np.zeros((2, 4), np.float32))
    (out / "K" / "torn.npy").write_bytes(b"half a file")
    manifest = {
        "videos": {"K/done": {"file": "K/done.npy", "shape": [4]}},
        "unavailable": {"K/silent": "no audio stream"},
        "failed": {"K/orphan": "model error: earlier", "K/new": "decode error: earlier"},
    }
    report = ExtractReport(src=str(src), out=str(out), n_found=len(sources))
    outputs = ExtractionOutputs(out, manifest, report, minimum=MIN_SAMPLES)

    todo = plan_extraction(sources, src, outputs)

    assert [(key, path.name, target) for key, path, target in todo] == [
        ("K/dup", "dup.hdf5", out / "K" / "dup.npy"),
        ("K/new", "new.mp4", out / "K" / "new.npy"),
        ("K/torn", "torn.mp4", out / "K" / "torn.npy"),
    ]
    assert report.skipped == ["K/done", "K/orphan", "K/silent"]
    assert report.failed == {"K/dup": "duplicate video id (dup.mp4); first one kept"}
    assert manifest["videos"]["K/orphan"] == {"file": "K/orphan.npy", "shape": [2, 4]}
    assert manifest["failed"] == {"K/new": "decode error: earlier"}
    assert not (out / "K" / "torn.npy").exists()
    assert report.written == [] and report.unavailable == {}


# ----------------------------------------------------------------------------- archive import


def _npy_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array)
    return buf.getvalue()


def _add(
    tar: tarfile.TarFile, name: str, data: bytes, kind: bytes = tarfile.REGTYPE, link: str = ""
) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data) if kind == tarfile.REGTYPE else 0
    info.type = kind
    info.linkname = link
    tar.addfile(info, io.BytesIO(data) if kind == tarfile.REGTYPE else None)


def _build_archive(path: Path) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    good: dict[str, np.ndarray] = {}
    with tarfile.open(path, "w:gz") as tar:
        _add(tar, "._ucf101_audiocnn14embed512_features", b"\x00\x05\x16\x07 mac junk")
        for cls in ("ApplyEyeMakeup", "HandstandPushups"):
            for g in (1, 2):
                vid = f"v_{cls.replace('Handstand', 'HandStand')}_g{g:02d}_c01"
                vec = np.maximum(rng.standard_normal(512), 0).astype(np.float32)
                if cls == "ApplyEyeMakeup" and g == 2:
                    vec[:] = 0  # the reference's "no sound" marker, kept as is
                good[f"{cls}/{vid}"] = vec
                _add(tar, f"{cls}/{vid}.npy", _npy_bytes(vec))
        _add(tar, "HandstandPushups/._v_HandStandPushups_g01_c01.npy", b"junk")
        _add(
            tar,
            "ApplyEyeMakeup/v_ApplyEyeMakeup_g03_c01.npy",
            _npy_bytes(np.zeros(256, np.float32)),
        )  # bad shape
        _add(
            tar,
            "ApplyEyeMakeup/v_ApplyEyeMakeup_g04_c01.npy",
            _npy_bytes(np.zeros(512, np.float64)),
        )  # bad dtype
        nan = np.zeros(512, np.float32)
        nan[3] = np.nan
        _add(tar, "ApplyEyeMakeup/v_ApplyEyeMakeup_g05_c01.npy", _npy_bytes(nan))
        _add(tar, "../evil/v_x.npy", _npy_bytes(np.zeros(512, np.float32)))
        _add(tar, "ApplyEyeMakeup/v_link.npy", b"", tarfile.SYMTYPE, "/etc/passwd")
        _add(tar, "README.txt", b"hello")
    return good


def test_import_audio_archive(tmp_path: Path) -> None:
    archive = tmp_path / "audiocnn14embed512_features.tar.gz"
    good = _build_archive(archive)
    out = tmp_path / "lib" / "audio"
    report = import_audio_archive(archive, out)

    assert sorted(report.written) == sorted(good)
    for key, vec in good.items():
        got = np.load(out / f"{key}.npy")
        assert got.dtype == np.float32 and got.shape == (512,)
        assert np.array_equal(got, vec)  # values unchanged
    assert report.classes == ["ApplyEyeMakeup", "HandstandPushups"]
    assert report.all_zero == ["ApplyEyeMakeup/v_ApplyEyeMakeup_g02_c01"]
    assert sorted(report.junk) == [
        "._ucf101_audiocnn14embed512_features",
        "HandstandPushups/._v_HandStandPushups_g01_c01.npy",
    ]
    assert report.ignored == ["README.txt"]
    bad = {b["member"]: b["reason"] for b in report.bad}
    assert set(bad) == {
        "ApplyEyeMakeup/v_ApplyEyeMakeup_g03_c01.npy",
        "ApplyEyeMakeup/v_ApplyEyeMakeup_g04_c01.npy",
        "ApplyEyeMakeup/v_ApplyEyeMakeup_g05_c01.npy",
        "../evil/v_x.npy",
        "ApplyEyeMakeup/v_link.npy",
    }
    assert "shape" in bad["ApplyEyeMakeup/v_ApplyEyeMakeup_g03_c01.npy"]
    assert "dtype" in bad["ApplyEyeMakeup/v_ApplyEyeMakeup_g04_c01.npy"]
    assert "non-finite" in bad["ApplyEyeMakeup/v_ApplyEyeMakeup_g05_c01.npy"]
    assert not report.ok
    assert "v_ApplyEyeMakeup_g03_c01" in report.summary()
    # nothing written for bad entries, nothing outside out
    assert not (out / "ApplyEyeMakeup" / "v_ApplyEyeMakeup_g03_c01.npy").exists()
    assert not (tmp_path / "lib" / "evil").exists() and not (out.parent / "evil").exists()
    assert {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()} == {
        f"{k}.npy" for k in good
    } | {MANIFEST_NAME}

    manifest = json.loads((out / MANIFEST_NAME).read_text())
    assert manifest["source"] == "archive" and manifest["n_classes"] == 2
    assert len(manifest["videos"]) == 4 and len(manifest["bad"]) == 5
    assert manifest["all_zero"] == report.all_zero and len(manifest["archive_sha256"]) == 64

    # idempotent re-import
    again = import_audio_archive(archive, out)
    assert sorted(again.written) == sorted(good)


def test_cli_register(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser(prog="ccl")
    register(parser.add_subparsers(dest="command", required=True))
    archive = tmp_path / "a.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        _add(tar, "._junk", b"x")
        _add(tar, "Drumming/v_Drumming_g01_c01.npy", _npy_bytes(np.ones(512, np.float32)))
    args = parser.parse_args(
        ["import-audio-features", "--from-archive", str(archive), "--out", str(tmp_path / "o")]
    )
    assert args.func(args) == 0
    assert (tmp_path / "o" / "Drumming" / "v_Drumming_g01_c01.npy").is_file()
    # user errors: exit status 2 and one line on stderr from ``ccl``'s error handler
    missing = tmp_path / "nope.tar.gz"
    capsys.readouterr()
    out = str(tmp_path / "o2")
    assert ccl_main(["import-audio-features", "--from-archive", str(missing), "--out", out]) == 1
    assert capsys.readouterr().err.startswith(
        f"ccl import-audio-features: error: audio feature archive not found: {missing}"
    )
    # a file where the output folder should be: one line naming it, no traceback
    (tmp_path / "file").write_text("x")
    into_file = ["--from-archive", str(archive), "--out", str(tmp_path / "file")]
    assert ccl_main(["import-audio-features", *into_file]) == 1
    printed = capsys.readouterr()
    assert printed.out == ""
    assert printed.err.strip() == (
        f"ccl import-audio-features: error: {tmp_path / 'file'}: a file where a folder is "
        "expected"
    )
    assert ccl_main(["prepare", "audio-features", *into_file]) == 1
    assert capsys.readouterr().err.strip().startswith(f"ccl prepare: error: {tmp_path / 'file'}")
    # extract-audio reports its user errors the same way
    no_src = ["extract-audio", str(tmp_path / "nosrc"), "--checkpoint", "c.pth", "--out", "O"]
    assert ccl_main(no_src) == 1
    assert capsys.readouterr().err.strip() == (
        f"ccl extract-audio: error: source not found: {tmp_path / 'nosrc'}"
    )
    ext = parser.parse_args(
        [
            "extract-audio",
            "SRC",
            "--checkpoint",
            "c.pth",
            "--out",
            "O",
            "--segment-seconds",
            "2.5",
            "--batch-size",
            "4",
            "--device",
            "cpu",
        ]
    )
    assert (ext.src, ext.segment_seconds, ext.batch_size, ext.device) == ("SRC", 2.5, 4, "cpu")
    assert callable(ext.func)


def test_extract_cli_batches_equal_lengths(tmp_path: Path, checkpoint: tuple[Path, dict]) -> None:
    """Equal-length soundtracks share a forward pass and give the per-clip embeddings."""
    ckpt, _ = checkpoint
    src, out = tmp_path / "videos", tmp_path / "emb"
    rng = np.random.default_rng(3)
    waves = {
        f"v_K_g0{i}_c01": (0.1 * rng.standard_normal(12_000)).astype(np.float32)
        for i in range(1, 4)
    }
    for vid, wave in waves.items():
        write_store(src / "K" / f"{vid}.hdf5", wave)
    parser = argparse.ArgumentParser(prog="ccl")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(
        [
            "extract-audio",
            str(src),
            "--checkpoint",
            str(ckpt),
            "--out",
            str(out),
            "--batch-size",
            "2",
            "--device",
            "cpu",
            "--no-progress",
        ]
    )
    assert args.func(args) == 0
    model = load_cnn14(ckpt)
    with torch.no_grad():
        for vid, wave in waves.items():
            direct = model(torch.from_numpy(wave)[None]).embedding[0].numpy()
            np.testing.assert_allclose(np.load(out / "K" / f"{vid}.npy"), direct, atol=1e-5)


def test_frame_store_soundtrack_equals_the_video_files(tmp_path: Path) -> None:
    """`ccl prepare videos --audio` and `ccl extract-audio` on the video file downmix alike,
    so embeddings from stores and from videos agree (stereo sources included)."""
    from ccl.data.prepare import prepare_videos

    video = write_clip(tmp_path / "src" / "Class" / "v_a.avi", audio_seconds=1.0)
    report = prepare_videos(tmp_path / "src", tmp_path / "stores", audio=True, progress=False)
    assert report.ok
    from_store = load_soundtrack(tmp_path / "stores" / "Class" / "v_a.hdf5")
    from_video = load_soundtrack(video)
    assert from_store is not None and from_video is not None
    np.testing.assert_allclose(from_store, from_video, rtol=0, atol=1e-6)
    assert 0.27 < np.abs(from_store[4000:20000]).max() < 0.33


@pytest.mark.skipif(torch.cuda.is_available(), reason="asks for CUDA on a machine without it")
def test_extract_on_missing_cuda_is_a_clear_error(
    tmp_path: Path, checkpoint: tuple[Path, dict], capsys
) -> None:
    """Extraction resolves devices as training does: CUDA asked for by name on a machine
    without it stops with one line instead of silently running on the CPU."""
    from ccl.cli import main

    ckpt, _ = checkpoint
    src, out = tmp_path / "videos", tmp_path / "emb"
    write_store(src / "K" / "v_K_g01_c01.hdf5", np.zeros(12_000, dtype=np.float32))
    argv = ["extract-audio", str(src), "--checkpoint", str(ckpt), "--out", str(out)]
    assert main([*argv, "--device", "cuda", "--no-progress"]) == 1
    err = capsys.readouterr().err.strip()
    assert err == "ccl extract-audio: error: device 'cuda' requested but CUDA is not available"
    assert not list(out.rglob("*.npy"))
