"""Clip datasets: shapes, modes, determinism, audio, and fast-vs-naive equivalence."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from data_helpers import N_FRAMES, write_ucf_splits
from PIL import Image
from torch.utils.data import DataLoader

from ccl.data import transforms as T
from ccl.data.audio import AudioEmbeddings, load_audio_embeddings
from ccl.data.datasets import ClipDataset, clip_offsets, even_starts, window_starts
from ccl.data.splits import build_ucf101
from ccl.data.store import write_frame_store


@pytest.fixture(scope="module")
def ucf_json(prepared, tmp_path_factory) -> tuple[Path, Path]:
    stores, _ = prepared
    root = tmp_path_factory.mktemp("ann")
    ann = build_ucf101(write_ucf_splits(root / "splits"), stores, val_fraction=0)
    ann.write(root / "ucf101_01.json")
    return root / "ucf101_01.json", stores


def test_temporal_helpers() -> None:
    assert clip_offsets(10, 0, 16) == list(range(10)) + list(range(6))  # loop padding
    assert clip_offsets(40, 30, 16) == list(range(30, 40)) + list(range(30, 36))
    assert clip_offsets(100, 4, 4, stride=2) == [4, 6, 8, 10]
    assert even_starts(36, 8, 1, 3) == [0, 14, 28]
    assert even_starts(8, 8, 1, 3) == [0]  # short video: one clip, never repeated
    assert window_starts(40, 16, 1) == [0, 16, 32]  # the last (partial) one padded
    assert window_starts(32, 16, 1) == [0, 16]


def test_train_batches_through_dataloader(ucf_json) -> None:
    ann, stores = ucf_json
    ds = ClipDataset(ann, stores, "training", "train", frames=16, size=24)
    assert ds.classes == ["ApplyEyeMakeup", "Basketball", "HandstandPushups"]
    assert len(ds) == 5
    for workers in (0, 2):
        torch.manual_seed(0)
        batches = list(DataLoader(ds, batch_size=3, num_workers=workers))
        clip = batches[0]["clip"]
        assert clip.shape == (3, 3, 16, 24, 24) and clip.dtype == torch.uint8
        labels = torch.cat([b["label"] for b in batches]).tolist()
        assert labels == ds.labels
        assert torch.cat([b["index"] for b in batches]).tolist() == list(range(5))
        assert torch.cat([b["video"] for b in batches]).tolist() == list(range(5))
        assert "audio" not in batches[0]


def test_train_sampling_is_seeded(ucf_json) -> None:
    ann, stores = ucf_json
    ds = ClipDataset(ann, stores, "training", "train", frames=8, size=16)
    torch.manual_seed(5)
    a = [ds[i]["clip"] for i in range(len(ds))]
    torch.manual_seed(5)
    b = [ds[i]["clip"] for i in range(len(ds))]
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    c = [ds[i]["clip"] for i in range(len(ds))]  # the stream moves on
    assert not all(torch.equal(x, y) for x, y in zip(a, c))


def test_eval_windows_are_deterministic(ucf_json) -> None:
    ann, stores = ucf_json
    test = ClipDataset(ann, stores, "testing", "test", frames=16, size=24)
    ids = test.video_ids
    expected = []
    for vi, vid in enumerate(ids):
        expected += [(vi, s) for s in range(0, N_FRAMES[vid], 16)]
    assert test.windows == expected
    again = ClipDataset(ann, stores, "testing", "test", frames=16, size=24)
    assert again.windows == test.windows
    for i in (0, len(test) - 1):
        assert torch.equal(test[i]["clip"], again[i]["clip"])
    val = ClipDataset(ann, stores, "training", "val", frames=8, size=24, val_clips=3)
    short = val.video_ids.index("v_HandStandPushups_g10_c02")  # 10 frames
    assert [s for v, s in val.windows if v == short] == [0, 1, 2]
    assert len(val) == sum(len(even_starts(N_FRAMES[v], 8, 1, 3)) for v in val.video_ids)


def test_short_video_is_loop_padded(ucf_json) -> None:
    ann, stores = ucf_json
    ds = ClipDataset(ann, stores, "training", "test", frames=16, size=24)
    vi = ds.video_ids.index("v_HandStandPushups_g10_c02")
    (index,) = [i for i, (v, _) in enumerate(ds.windows) if v == vi]
    clip = ds[index]["clip"]
    assert clip.shape == (3, 16, 24, 24)
    for k in range(6):
        assert torch.equal(clip[:, 10 + k], clip[:, k])
    assert not torch.equal(clip[:, 1], clip[:, 0])


def test_audio_embeddings_joined_by_video(ucf_json, tmp_path: Path) -> None:
    ann, stores = ucf_json
    audio = tmp_path / "audio"
    (audio / "ApplyEyeMakeup").mkdir(parents=True)
    (audio / "HandstandPushups").mkdir()
    (audio / "._junk.npy").write_bytes(b"mac junk")
    rng = np.random.default_rng(0)
    vec = rng.random(512).astype(np.float32)
    np.save(audio / "ApplyEyeMakeup" / "v_ApplyEyeMakeup_g08_c01.npy", vec)
    np.save(
        audio / "HandstandPushups" / "v_HandStandPushups_g08_c01.npy",
        rng.random((4, 512)).astype(np.float32),
    )
    np.save(
        audio / "HandstandPushups" / "v_HandStandPushups_g10_c02.npy", np.zeros(512, np.float32)
    )  # the reference's mark of a missing soundtrack
    emb = load_audio_embeddings(audio)
    assert isinstance(emb, AudioEmbeddings) and len(emb) == 2 and emb.dim == 512
    assert emb.load_report.all_zero == ["v_HandStandPushups_g10_c02"]
    ds = ClipDataset(ann, stores, "training", "train", frames=4, size=16, audio=emb)
    assert len(ds.audio_missing) == 3  # two without a file, one all-zero
    batch = next(iter(DataLoader(ds, batch_size=5)))
    assert batch["audio"].shape == (5, 512) and batch["audio"].dtype == torch.float32
    assert batch["audio_available"].dtype == torch.bool
    avail = dict(zip(ds.video_ids, batch["audio_available"].tolist()))
    assert avail == {
        "v_ApplyEyeMakeup_g08_c01": True,
        "v_ApplyEyeMakeup_g09_c01": False,
        "v_HandStandPushups_g08_c01": True,
        "v_HandStandPushups_g10_c02": False,
        "v_Basketball_g09_c01": False,
    }
    row = ds.video_ids.index("v_ApplyEyeMakeup_g08_c01")
    assert np.allclose(batch["audio"][row].numpy(), vec)
    by_path = ClipDataset(ann, stores, "training", "val", frames=4, size=16, audio=audio)
    assert by_path[0]["audio"].shape == (512,)


def test_audio_loader_errors_name_the_file(tmp_path: Path) -> None:
    (tmp_path / "A").mkdir()
    (tmp_path / "B").mkdir()
    np.save(tmp_path / "A" / "v1.npy", np.ones(8, np.float32))
    np.save(tmp_path / "B" / "v1.npy", np.ones(8, np.float32))
    with pytest.raises(ValueError, match="v1.*twice"):
        load_audio_embeddings(tmp_path)
    (tmp_path / "B" / "v1.npy").unlink()
    np.save(tmp_path / "B" / "v2.npy", np.ones((2, 3, 8), np.float32))
    with pytest.raises(ValueError, match=r"v2\.npy.*shape"):
        load_audio_embeddings(tmp_path)


def test_missing_store_is_an_error_unless_skipped(ucf_json, tmp_path: Path) -> None:
    ann, stores = ucf_json
    data = json.loads(ann.read_text())
    data["database"]["v_Ghost_g08_c01"] = {
        "subset": "training",
        "annotations": {"label": "Basketball", "segment": [1, 11]},
    }
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(data))
    with pytest.raises(FileNotFoundError, match="1 videos have no frame store") as err:
        ClipDataset(bad, stores, "training", "train")
    # the hint names the command-line ways out, and says that training has none
    assert "ccl evaluate --allow-missing" in str(err.value)
    assert "ccl train has no option to leave them out" in str(err.value)
    ds = ClipDataset(bad, stores, "training", "train", missing="skip")
    assert len(ds) == 5 and ds.skipped == [("v_Ghost_g08_c01", "no frame store")]
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="CUDA"):
            ClipDataset(ann, stores, "training", "train", decoder="cuda")


# --------------------------------------------------------------------------- fast vs naive


def _textured(k: int, h: int = 240, w: int = 320) -> np.ndarray:
    rng = np.random.default_rng(k)
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.stack(
        [
            128 + 90 * np.sin((x + 3 * k) / 17.0),
            128 + 90 * np.cos(y / 11.0 - k),
            (x + y + 7 * k) % 256,
        ],
        axis=-1,
    ) + rng.normal(0, 4, (h, w, 3))
    img[40 + k : 100 + k, 60:130] = (230, 40, 30)
    return np.clip(img, 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def big_stores(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("big")
    db = {}
    for v in range(2):
        write_frame_store(
            root / "frames" / "c" / f"v{v}.hdf5", (_textured(k + 16 * v) for k in range(16)), fps=25
        )
        db[f"v{v}"] = {"subset": "training", "annotations": {"label": "c", "segment": [1, 17]}}
    (root / "ann.json").write_text(json.dumps({"labels": ["c"], "database": db}))
    return root / "ann.json", root / "frames"


def _diff(fast: torch.Tensor, naive: torch.Tensor) -> tuple[float, float, float]:
    """(mean, 99th percentile, max) absolute difference in grey levels of 255."""
    ref = (naive * 255).round()
    d = (fast.float() - ref).abs().flatten()
    return d.mean().item(), torch.quantile(d[:1_000_000], 0.99).item(), d.max().item()


@pytest.mark.parametrize("box", [(0, 40, 240, 240), (6, 10, 232, 300), (50, 61, 120, 131)])
def test_fast_batch_matches_naive_pipeline(big_stores, box, monkeypatch) -> None:
    ann, frames = big_stores
    ds = ClipDataset(ann, frames, "training", "train", frames=16, size=112, flip=False)
    monkeypatch.setattr(T, "sample_resized_crop", lambda *a, **k: box)
    batch = next(iter(DataLoader(ds, batch_size=2)))["clip"]  # (2, 3, 16, 112, 112) uint8
    naive = torch.stack(
        [T.naive_train_clip(ds.read_frames(v, list(range(16))), box, False, 112) for v in range(2)]
    )
    mean, p99, mx = _diff(batch, naive)
    if T.draft_factor(box[2], box[3], 112, 112) > 1:  # reduced-size decoding
        assert mean <= T.REDUCED_DECODE_MEAN_TOL and p99 <= T.REDUCED_DECODE_P99_TOL
    else:  # same decode, torch vs Pillow resize: rounding only
        assert mean <= 0.01 and mx <= 1
    exact = ClipDataset(
        ann, frames, "training", "train", frames=16, size=112, flip=False, reduced_decode=False
    )
    full = next(iter(DataLoader(exact, batch_size=2)))["clip"]
    mean, _, mx = _diff(full, naive)
    assert mean <= T.RESIZE_MEAN_TOL and mx <= 1


def test_fast_flip_and_eval_match_naive(big_stores) -> None:
    ann, frames = big_stores
    ds = ClipDataset(ann, frames, "training", "test", frames=16, size=112)
    buffers = ds.read_frames(0, list(range(16)))
    fast = T.train_clip(buffers, (10, 20, 200, 210), True, 112).permute(1, 0, 2, 3)
    mean, _, mx = _diff(fast, T.naive_train_clip(buffers, (10, 20, 200, 210), True, 112))
    assert mean <= 0.01 and mx <= 1
    clip = ds[0]["clip"]  # short side 240 -> 112 decodes at 1/2 then resizes
    mean, p99, _ = _diff(clip, T.naive_eval_clip(buffers, 112))
    assert mean <= T.REDUCED_DECODE_MEAN_TOL and p99 <= T.REDUCED_DECODE_P99_TOL
    exact = ClipDataset(ann, frames, "training", "test", frames=16, size=112, reduced_decode=False)
    mean, _, mx = _diff(exact[0]["clip"], T.naive_eval_clip(buffers, 112))
    assert mean <= T.RESIZE_MEAN_TOL and mx <= 1
    norm = T.naive_train_clip(buffers, (0, 0, 240, 320), False, 112, mean=[0.5] * 3, std=[0.25] * 3)
    plain = T.naive_train_clip(buffers, (0, 0, 240, 320), False, 112)
    assert torch.allclose(norm, (plain - 0.5) / 0.25, atol=1e-5)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_decoder_matches_cpu_decoder(big_stores) -> None:
    """nvJPEG clips (train and test mode, same crops) against the CPU pipeline's."""
    ann, frames = big_stores
    for mode in ("train", "test"):
        kw = dict(frames=16, size=112, flip=True)
        cpu = ClipDataset(ann, frames, "training", mode, reduced_decode=False, **kw)
        gpu = ClipDataset(ann, frames, "training", mode, decoder="cuda", **kw)
        cpu.set_epoch(0)
        gpu.set_epoch(0)
        for i in range(len(cpu)):
            a, b = cpu[i]["clip"], gpu[i]["clip"]
            assert b.is_cuda and b.dtype == torch.uint8 and b.shape == a.shape
            d = (a.float() - b.cpu().float()).abs().flatten()
            mean, p99 = d.mean().item(), torch.quantile(d[:1_000_000], 0.99).item()
            print(f"{mode} sample {i}: nvJPEG vs CPU mean {mean:.3f} p99 {p99:.1f}")
            assert mean <= T.GPU_DECODE_MEAN_TOL and p99 <= T.GPU_DECODE_P99_TOL


def _jpeg(arr: np.ndarray, **kw) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG", **kw)
    return buf.getvalue()


def test_decode_jpegs_sizes_colour_and_bad_frames() -> None:
    rgb = _textured(0, 61, 83)
    frames = [_jpeg(rgb, quality=95), _jpeg(rgb, quality=95, progressive=True)]
    full = T.decode_jpegs(frames)
    assert full.shape == (2, 61, 83, 3) and np.array_equal(full[0], full[1])
    pillow = np.asarray(Image.open(io.BytesIO(frames[0])).convert("RGB"))
    assert np.abs(full[0].astype(int) - pillow).max() <= 1  # both are libjpeg-turbo
    for factor in (2, 4, 8):  # DCT scaling, sizes rounded up as libjpeg does
        assert T.decode_jpegs(frames, factor).shape == (2, -(-61 // factor), -(-83 // factor), 3)
    grey = T.decode_jpegs([_jpeg(np.full((16, 24), 90, np.uint8))])
    assert grey.shape == (1, 16, 24, 3) and np.abs(grey.astype(int) - 90).max() <= 1
    with pytest.raises(ValueError, match="frame 1 has size"):
        T.decode_jpegs([frames[0], _jpeg(rgb[:40])])
    with pytest.raises(ValueError):
        T.decode_jpegs([frames[0], frames[0][: len(frames[0]) // 2]])  # truncated
    with pytest.raises(ValueError):
        T.decode_jpegs([b"not a jpeg"])
    with pytest.raises(ValueError, match="factor"):
        T.decode_jpegs(frames, 3)


def test_random_crop_distribution() -> None:
    rng = np.random.default_rng(0)
    boxes = [T.sample_resized_crop(240, 320, rng) for _ in range(2000)]
    areas = np.array([h * w / (240 * 320) for _, _, h, w in boxes])
    ratios = np.array([w / h for _, _, h, w in boxes])
    assert areas.min() >= 0.24 and areas.max() <= 1.0
    assert ratios.min() >= 0.74 and ratios.max() <= 1.34
    assert all(0 <= t and 0 <= lft and t + h <= 240 and lft + w <= 320 for t, lft, h, w in boxes)


def test_epoch_seeded_sampling_is_independent_of_workers_and_order(ucf_json) -> None:
    ann, stores = ucf_json
    ds = ClipDataset(ann, stores, "training", "train", frames=8, size=16)
    ds.set_epoch(3)
    torch.manual_seed(1)
    first = [ds[i]["clip"] for i in range(len(ds))]
    torch.manual_seed(2)  # the global stream no longer matters
    reverse = [ds[i]["clip"] for i in reversed(range(len(ds)))][::-1]
    assert all(torch.equal(x, y) for x, y in zip(first, reverse))
    loaded = torch.cat([b["clip"] for b in DataLoader(ds, batch_size=2, num_workers=2)])
    assert torch.equal(loaded, torch.stack(first))
    ds.set_epoch(4)
    assert not all(torch.equal(ds[i]["clip"], first[i]) for i in range(len(ds)))


def test_reduced_decode_switch_reaches_training_and_evaluation(
    big_stores, tmp_path, monkeypatch
) -> None:
    """data.reduced_decode (and ``ccl evaluate --[no-]reduced-decode``) picks the decoder's
    output: off gives the full-size decode's pixels, on the DCT-reduced ones, for the
    training and validation datasets of a run and for evaluation."""
    from ccl import cli
    from ccl.config import Config, apply_overrides
    from ccl.engine import build_datasets
    from ccl.evaluation import EvalSettings, subset_dataset

    ann, frames = big_stores
    data = json.loads(Path(ann).read_text())
    data["database"]["v1"]["subset"] = "validation"
    split = tmp_path / "ann.json"
    split.write_text(json.dumps(data))
    kw = dict(frames=16, size=112)
    full = ClipDataset(split, frames, "validation", "test", reduced_decode=False, **kw)
    small = ClipDataset(split, frames, "validation", "test", **kw)
    assert not torch.equal(full[0]["clip"], small[0]["clip"])  # 240 -> 112: decoded at 1/2

    base = ["data.source=prepared", f"data.annotations={split}", f"data.frames_dir={frames}"]
    for value, expected in (("false", full), ("true", small)):
        cfg = apply_overrides(Config(), [*base, f"data.reduced_decode={value}"])
        train_set, val_set, _ = build_datasets(cfg)
        assert train_set.reduced_decode is val_set.reduced_decode is (value == "true")
        assert torch.equal(val_set[0]["clip"], expected[0]["clip"])
        test_set = subset_dataset(cfg, EvalSettings(), "validation")
        assert torch.equal(test_set[0]["clip"], expected[0]["clip"])
    assert Config().data.reduced_decode is True  # on by default
    # an evaluation setting overrides the run's value
    cfg = apply_overrides(Config(), [*base, "data.reduced_decode=true"])
    off = subset_dataset(cfg, EvalSettings(reduced_decode=False), "validation")
    assert torch.equal(off[0]["clip"], full[0]["clip"])
    import ccl.evaluation

    seen = []
    report = {"missing": [], "checkpoint_kind": "best"}
    monkeypatch.setattr(ccl.evaluation, "evaluate", lambda _t, s: seen.append(s) or report)
    monkeypatch.setattr(ccl.evaluation, "summary_line", lambda _r: "")
    for flag in ("--reduced-decode", "--no-reduced-decode"):
        assert cli.main(["evaluate", "run.pt", flag]) == 0
    assert cli.main(["evaluate", "run.pt"]) == 0
    assert [s.reduced_decode for s in seen] == [True, False, None]
