"""How fast does the demo student learn a version of the synthetic benchmark? (calibration)

Renders a benchmark in memory with the generator's own renderer (``ccl.demo.synth``: scenes per
group index, kinds x motions, the nuisances of a ``ScaleConfig``), trains the demo student
(R(2+1)D-10, width 1/4, 512-d features, 8x32x32 clips) with the demo's crop, flip and clip
sampling, and prints training accuracy and validation top-1 (window-averaged softmax, as
``ccl evaluate``) per epoch. No codec, no frame stores: minutes instead of the full
pipeline's quarter hour, so a generator or optimiser setting can be tried before the
``ccl demo`` run that confirms it. It prints validation only: calibration never looks at
test groups.

    python benchmarks/demo_calibration.py --kinds disc,ring,cross,bar --optimizer adamw \\
        --lr 1e-3 --weight-decay 1e-4 --epochs 6       # the demo's setting (docs/DEMO.md)
    python benchmarks/demo_calibration.py ... --styles gradient,texture --distractors 1 \\
        --jitter 0.5 --flicker 0.04                    # nuisances back in
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import time

import numpy as np
import torch
import torch.nn.functional as F

from ccl.demo import synth, synth_video
from ccl.models.r2plus1d import build_student
from ccl.models.teachers import KINETICS_MEAN, KINETICS_STD

MEAN = torch.tensor(KINETICS_MEAN).view(3, 1, 1, 1)
STD = torch.tensor(KINETICS_STD).view(3, 1, 1, 1)


def render_benchmark(args: argparse.Namespace) -> dict[str, list[tuple[np.ndarray, int]]]:
    """{train, val}: (frames (T,H,W,3) uint8, label) per video; groups 1..val_groups are
    validation, the rest training (no test groups are made)."""
    cfg = dataclasses.replace(
        synth.SCALES["demo"],
        object_radius=tuple(args.radius),
        motion_rate=args.motion_rate,
        scene_styles=tuple(args.styles.split(",")),
        distractors=args.distractors,
        jitter=args.jitter,
        flicker=args.flicker,
    )
    kinds = args.kinds.split(",")
    classes = [(k, m) for k in kinds for m in synth.MOTIONS[: args.motions]]
    data: dict[str, list[tuple[np.ndarray, int]]] = {"train": [], "val": []}
    w, h = cfg.frame_size
    n_frames = int(round(args.seconds * args.fps))
    for g in range(1, args.groups + 1):
        scene = synth_video.draw_scene(np.random.default_rng([args.seed, 1, g]), cfg)
        subset = "val" if g <= args.val_groups else "train"
        for label, (kind, motion) in enumerate(classes):
            for c in range(args.clips):
                rng = np.random.default_rng([args.seed, 3, label, g, c])
                frames, _ = synth_video.render(
                    rng,
                    scene,
                    kind,
                    motion,
                    n_frames,
                    args.fps,
                    w,
                    h,
                    radius=cfg.object_radius,
                    motion_rate=cfg.motion_rate,
                    flicker=cfg.flicker,
                )
                data[subset].append((frames, label))
    return data


def _normalise(x: torch.Tensor) -> torch.Tensor:
    """(T,3,H,W) float in [0,255] -> (3,T,H,W) normalised."""
    return (x.permute(1, 0, 2, 3) / 255 - MEAN) / STD


def train_clip(
    frames: np.ndarray, rng: np.random.Generator, size: int, length: int, crop_min: float
) -> torch.Tensor:
    """A random window, one random resized crop (area crop_min..1, ratio 3/4..4/3) and flip."""
    start = int(rng.integers(0, len(frames) - length + 1))
    clip = frames[start : start + length]
    height, width = clip.shape[1:3]
    ch, cw = height, width
    for _ in range(10):
        area = height * width * rng.uniform(crop_min, 1.0)
        ratio = math.exp(rng.uniform(math.log(3 / 4), math.log(4 / 3)))
        cw, ch = int(round(math.sqrt(area * ratio))), int(round(math.sqrt(area / ratio)))
        if cw <= width and ch <= height:
            break
    else:
        ch = cw = min(height, width)
    top, left = int(rng.integers(0, height - ch + 1)), int(rng.integers(0, width - cw + 1))
    x = torch.from_numpy(clip[:, top : top + ch, left : left + cw]).permute(0, 3, 1, 2).float()
    x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    if rng.random() < 0.5:
        x = x.flip(-1)
    return _normalise(x)


def eval_windows(frames: np.ndarray, size: int, length: int) -> torch.Tensor:
    """Every non-overlapping window, short side resized to ``size``, centre crop."""
    height, width = frames.shape[1:3]
    scale = size / min(height, width)
    nh, nw = max(size, round(height * scale)), max(size, round(width * scale))
    x = torch.from_numpy(frames).permute(0, 3, 1, 2).float()
    x = F.interpolate(x, size=(nh, nw), mode="bilinear", antialias=True, align_corners=False)
    top, left = (nh - size) // 2, (nw - size) // 2
    x = _normalise(x[:, :, top : top + size, left : left + size])
    starts = list(range(0, x.shape[1] - length + 1, length)) or [0]
    return torch.stack([x[:, s : s + length] for s in starts])


@torch.no_grad()
def validation_top1(model: torch.nn.Module, videos: list, size: int, length: int) -> float:
    model.eval()
    hits = 0
    for frames, label in videos:
        probs = F.softmax(model(eval_windows(frames, size, length)).logits, 1).mean(0)
        hits += int(probs.argmax() == label)
    model.train()
    return hits / max(1, len(videos))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--kinds", default="disc,ring,cross,bar", help="video kinds, comma-separated")
    p.add_argument("--motions", type=int, default=3)
    p.add_argument("--motion-rate", type=float, default=2.5)
    p.add_argument("--radius", type=float, nargs=2, default=(4.5, 7.0))
    p.add_argument("--styles", default="gradient", help="background styles, comma-separated")
    p.add_argument("--distractors", type=int, default=0)
    p.add_argument("--jitter", type=float, default=0.0)
    p.add_argument("--flicker", type=float, default=0.0)
    p.add_argument("--groups", type=int, default=18, help="training + validation groups")
    p.add_argument("--val-groups", type=int, default=3)
    p.add_argument("--clips", type=int, default=4, help="clips per class and group")
    p.add_argument("--seconds", type=float, default=3.0)
    p.add_argument("--fps", type=int, default=10)
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--frames", type=int, default=8)
    p.add_argument("--crop-min", type=float, default=0.8)
    p.add_argument("--optimizer", choices=["sgd", "adamw"], default="adamw")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--weight-decay", type=float, default=1e-4)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)

    t0 = time.perf_counter()
    data = render_benchmark(args)
    n_classes = len(args.kinds.split(",")) * args.motions
    print(
        f"{len(data['train'])} training / {len(data['val'])} validation videos, "
        f"{n_classes} classes, rendered in {time.perf_counter() - t0:.0f} s",
        flush=True,
    )
    torch.manual_seed(args.seed)
    model = build_student("r2plus1d-10", n_classes, width=0.25, feature_dim=512)
    if args.optimizer == "adamw":
        opt: torch.optim.Optimizer = torch.optim.AdamW(
            model.parameters(), lr=args.lr, weight_decay=args.weight_decay
        )
    else:
        opt = torch.optim.SGD(
            model.parameters(), lr=args.lr, momentum=0.9, weight_decay=args.weight_decay
        )
    rng = np.random.default_rng(args.seed + 100)
    train = data["train"]
    steps = len(train) // args.batch
    t0 = time.perf_counter()
    for epoch in range(args.epochs):
        order = rng.permutation(len(train))
        hits = seen = 0
        loss_sum = 0.0
        for b in range(steps):
            items = [train[i] for i in order[b * args.batch : (b + 1) * args.batch]]
            x = torch.stack(
                [train_clip(f, rng, args.size, args.frames, args.crop_min) for f, _ in items]
            )
            y = torch.tensor([label for _, label in items])
            out = model(x)
            loss = F.cross_entropy(out.logits, y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            hits += int((out.logits.argmax(1) == y).sum())
            seen += len(y)
            loss_sum += float(loss.detach()) * len(y)
        val = validation_top1(model, data["val"], args.size, args.frames)
        print(
            f"epoch {epoch + 1} step {(epoch + 1) * steps} train_acc {hits / seen:.3f} "
            f"loss {loss_sum / seen:.3f} val_top1 {val:.3f} ({time.perf_counter() - t0:.0f} s)",
            flush=True,
        )


if __name__ == "__main__":
    main()
