"""Training-pipeline loading speed: ours (ClipDataset) vs a naive pipeline as the reference's.

Generates synthetic 240p frame stores the way real ones are made (H.264 videos converted by
``ccl prepare videos``: 320x240 JPEG frames in HDF5; ``--content raw`` stores the noisy frames
directly instead, a harder case), then loads 16-frame 112x112 training clips through a
DataLoader with 0 and 2 workers for both pipelines in the same run:

* ours: one HDF5 read per clip, libjpeg-turbo decode of all frames into one block (at
  reduced size when the crop allows), crop /
  resize / flip on the stacked uint8 clip; uint8 output (normalised later on the device).
* naive (the reference's): open the store per clip, read and Pillow-decode every frame one by
  one, per-frame RandomResizedCrop + flip (Pillow), ToTensor, Normalize, stack.

Ends with one line per configuration:
``pipeline=<ours|naive> workers=<n> clips_per_s=<value>``.

The main process runs torch with one thread by default (``--threads``), as DataLoader
workers do, so the numbers are per-core throughput; each configuration is measured in
``--rounds`` alternating rounds and the best is reported.

Usage: ``python benchmarks/data_loading.py [--videos 20] [--frames 100] [--epochs 16]
[--rounds 2] [--content video|raw]``
"""

from __future__ import annotations

import argparse
import io
import json
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset, RandomSampler
from torchvision import transforms as tv

from ccl.data.datasets import ClipDataset, clip_offsets
from ccl.data.prepare import prepare_videos
from ccl.data.store import write_frame_store

KINETICS_MEAN = [0.4345, 0.4051, 0.3775]
KINETICS_STD = [0.2768, 0.2713, 0.2737]


def synthetic_frame(
    k: int, seed: int, noise: np.ndarray, width: int = 320, height: int = 240
) -> np.ndarray:
    """Textured moving content: smooth gradients, a moving square and mild (moving) noise."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    r = 128 + 90 * np.sin((x + 3 * k + seed * 7) / 37.0)
    g = 128 + 90 * np.cos((y - 2 * k) / 23.0 + seed)
    b = (x * 0.5 + y * 0.7 + 5 * k) % 256
    img = np.stack([r, g, b], axis=-1) + np.roll(noise, 2 * k, axis=1)
    x0, y0 = (4 * k + 11 * seed) % (width - 60), (3 * k + 5 * seed) % (height - 60)
    img[y0 : y0 + 60, x0 : x0 + 60] = (230, 50, 40)
    return np.clip(img, 0, 255).astype(np.uint8)


def _write_h264(path: Path, frames, fps: int = 25) -> None:
    """Encode RGB frames as an H.264 MP4 (libx264, its default quality), as videos come."""
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = 320, 240, "yuv420p"
        for rgb in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def make_stores(root: Path, n_videos: int, n_frames: int, content: str = "video") -> Path:
    """240p frame stores and their annotation file.

    ``video`` (default): each clip is encoded as an H.264 video and converted by
    ``ccl prepare videos`` (``prepare_videos``), so the stored JPEGs are re-encodings of
    codec-decoded frames, as with real datasets (about 10 KiB per frame). ``raw``: the
    synthetic frames, sensor noise included, are JPEG-encoded directly (about 19 KiB per
    frame; a harder case for every decoder, since entropy decoding dominates)."""
    rows = []
    for v in range(n_videos):
        label = f"class{v % 4}"
        vid = f"video{v:03d}"
        noise = np.random.default_rng(v).normal(0, 6, (240, 320, 3)).astype(np.float32)
        frames = (synthetic_frame(k, v, noise) for k in range(n_frames))
        if content == "raw":
            write_frame_store(root / "frames" / label / f"{vid}.hdf5", frames, fps=25.0)
        else:
            _write_h264(root / "videos" / label / f"{vid}.mp4", frames)
        rows.append((vid, label, n_frames))
    if content != "raw":
        report = prepare_videos(root / "videos", root / "frames", workers=2, progress=False)
        if not report.ok:
            raise RuntimeError(report.summary())
    data = {
        "labels": sorted({r[1] for r in rows}),
        "database": {
            vid: {"subset": "training", "annotations": {"label": label, "segment": [1, n + 1]}}
            for vid, label, n in rows
        },
    }
    ann = root / "annotations.json"
    ann.write_text(json.dumps(data))
    return ann


class NaiveDataset(Dataset):
    """The reference's loading: per-frame reads, Pillow decode and per-frame transforms."""

    def __init__(self, annotation: Path, frames_dir: Path, frames: int = 16, size: int = 112):
        data = json.loads(annotation.read_text())
        labels = {name: i for i, name in enumerate(data["labels"])}
        self.items = [
            (
                frames_dir / e["annotations"]["label"] / f"{vid}.hdf5",
                labels[e["annotations"]["label"]],
                e["annotations"]["segment"],
            )
            for vid, e in data["database"].items()
        ]
        self.frames = frames
        self.crop = tv.RandomResizedCrop(size, scale=(0.25, 1.0), ratio=(3 / 4, 4 / 3))
        self.to_tensor = tv.ToTensor()
        self.norm = tv.Normalize(KINETICS_MEAN, KINETICS_STD)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int):
        path, label, (first, end) = self.items[index]
        n = end - first
        start = int(torch.randint(0, max(0, n - self.frames) + 1, ()).item())
        indices = [first + o for o in clip_offsets(n, start, self.frames)]
        with h5py.File(path, "r") as f:
            video = f["video"]
            imgs = [Image.open(io.BytesIO(video[i - 1])) for i in indices]
        params = self.crop.get_params(imgs[0], self.crop.scale, self.crop.ratio)
        flip = torch.rand(()) < 0.5
        out = []
        for img in imgs:
            img = tv.functional.resized_crop(img, *params, self.crop.size)
            if flip:
                img = img.transpose(Image.FLIP_LEFT_RIGHT)
            out.append(self.norm(self.to_tensor(img) * 1.0))  # ToTensor, ScaleValue(1), Normalize
        return torch.stack(out, 0).permute(1, 0, 2, 3), label


def measure(dataset: Dataset, workers: int, epochs: int, batch: int) -> float:
    """Clips per second over ``epochs`` passes drawn by one sampler (no epoch-boundary
    stalls), after the first ``workers + 1`` batches (worker start-up) are discarded."""
    warm = workers + 1
    sampler = RandomSampler(dataset, num_samples=(epochs * len(dataset)) + warm * batch)
    loader = DataLoader(dataset, batch_size=batch, sampler=sampler, num_workers=workers)
    n, start = 0, 0.0
    for k, b in enumerate(loader):
        if k == warm - 1:
            start = time.perf_counter()
        elif k >= warm:
            clips = b["clip"] if isinstance(b, dict) else b[0]
            n += clips.shape[0]
    return n / (time.perf_counter() - start)


def _getitem_loop(args: tuple[str, Path, Path, int, int]) -> tuple[float, float]:
    """In a fresh process: ``n`` random clips of one pipeline straight from its dataset (no
    DataLoader) -> (start, end) wall-clock times, to see how its work alone scales."""
    name, ann, frames_dir, n, seed = args
    torch.set_num_threads(1)
    torch.manual_seed(seed)
    if name == "ours":
        ds: Dataset = ClipDataset(ann, frames_dir, "training", "train", frames=16, size=112)
    else:
        ds = NaiveDataset(ann, frames_dir)
    order = torch.randint(0, len(ds), (n + 4,)).tolist()
    for i in order[:4]:  # warm-up: imports, file handles, allocator
        ds[i]
    start = time.time()
    for i in order[4:]:
        ds[i]
    return start, time.time()


def scaling(ann: Path, frames_dir: Path, clips: int, rounds: int) -> None:
    """Each pipeline's per-clip work in one process alone, then in two processes at once
    (each on its own core, no DataLoader): the speed-up two cores give that work on this
    machine, the ceiling for what two DataLoader workers can give it."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    ctx = multiprocessing.get_context("spawn")
    best: dict[tuple[str, int], float] = {}
    for r in range(rounds):
        for name in ("ours", "naive"):
            for procs in (1, 2):
                jobs = [(name, ann, frames_dir, clips, 100 * r + k) for k in range(procs)]
                with ProcessPoolExecutor(procs, mp_context=ctx) as pool:
                    spans = list(pool.map(_getitem_loop, jobs))
                # clips/s over the span every process was working
                rate = procs * clips / (max(e for _, e in spans) - min(s for s, _ in spans))
                best[(name, procs)] = max(best.get((name, procs), 0.0), rate)
                print(f"  round {r + 1} {name:5s} processes={procs}: {rate:7.1f} clips/s")
    for name in ("ours", "naive"):
        one, two = best[(name, 1)], best[(name, 2)]
        print(f"pipeline={name} processes=1 clips_per_s={one:.1f}")
        print(f"pipeline={name} processes=2 clips_per_s={two:.1f} scaling={two / one:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--videos", type=int, default=20)
    parser.add_argument("--frames", type=int, default=100)
    parser.add_argument(
        "--epochs",
        type=int,
        default=64,
        help="passes over the videos per measurement (64: about 4 s for ours with 2 workers; "
        "16 gave about 1 s, short enough for worker start-up to lower its rate by 8 %%)",
    )
    parser.add_argument(
        "--content",
        choices=["video", "raw"],
        default="video",
        help="stores from H.264 videos through prepare_videos (default) or raw noisy frames",
    )
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads of the main process (DataLoader workers always use 1)",
    )
    parser.add_argument(
        "--rounds", type=int, default=2, help="alternating rounds; the best is reported"
    )
    parser.add_argument(
        "--decoder",
        choices=["cpu", "cuda"],
        default="cpu",
        help="ours: libjpeg-turbo on the CPU, or nvJPEG on the GPU (main process only)",
    )
    parser.add_argument(
        "--scaling",
        type=int,
        default=0,
        metavar="CLIPS",
        help="instead: each pipeline's clips in 1 and in 2 processes at once (CLIPS each, no "
        "DataLoader), the speed-up two cores give that work",
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        t0 = time.perf_counter()
        ann = make_stores(root, args.videos, args.frames, args.content)
        with h5py.File(next((root / "frames").rglob("*.hdf5")), "r") as f:
            sizes = [len(b) for b in f["video"][:]]
        print(
            f"wrote {args.videos} stores ({args.content}) of {args.frames} 320x240 frames "
            f"(mean JPEG {np.mean(sizes) / 1024:.1f} KiB) in {time.perf_counter() - t0:.1f}s; "
            f"torch threads {torch.get_num_threads()}"
        )
        if args.scaling:
            scaling(ann, root / "frames", args.scaling, args.rounds)
            return
        ours = ClipDataset(
            ann, root / "frames", "training", "train", frames=16, size=112, decoder=args.decoder
        )
        naive = NaiveDataset(ann, root / "frames")
        best: dict[tuple[str, int], float] = {}
        for r in range(args.rounds):  # alternate so background load hits both alike
            for workers in args.workers:
                for name, ds in (("ours", ours), ("naive", naive)):
                    if name == "ours" and args.decoder == "cuda" and workers:
                        continue  # GPU decoding runs in the main process
                    rate = measure(ds, workers, args.epochs, args.batch)
                    best[(name, workers)] = max(best.get((name, workers), 0.0), rate)
                    print(f"  round {r + 1} {name:5s} workers={workers}: {rate:7.1f} clips/s")
        results = [
            (n, w, best[(n, w)]) for w in args.workers for n in ("ours", "naive") if (n, w) in best
        ]
        for w in args.workers:
            if ("ours", w) in best:
                ratio = best[("ours", w)] / best[("naive", w)]
                print(f"  speed-up with {w} workers: {ratio:.2f}x")
        for name, workers, rate in results:
            tag = f" decoder={args.decoder}" if name == "ours" and args.decoder != "cpu" else ""
            print(f"pipeline={name} workers={workers}{tag} clips_per_s={rate:.1f}")


if __name__ == "__main__":
    main()
