"""``ccl synth``: write the synthetic audio-visual benchmark (:mod:`ccl.demo.synth`)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from ccl.demo.synth import SCALES, SOUNDTRACKS


def run(args: argparse.Namespace) -> int:
    from ccl.demo.synth import generate

    info = generate(
        args.out,
        seed=args.seed,
        scale=args.scale,
        soundtracks=args.soundtracks,
        workers=args.workers,
    )
    print(
        f"wrote {info.n_videos} videos ({info.n_train} train / {info.n_test} test, "
        f"{len(info.classes)} classes, {len(info.unrelated_audio_classes)} with unrelated "
        f"audio), {info.n_images} corpus images, {info.n_sounds} corpus sounds to {info.root} "
        f"in {info.seconds:.1f} s"
    )
    print(f"next: ccl prepare videos {info.videos_dir} <stores>   (splits: {info.splits_dir})")
    return 0


def register(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``synth --out DIR --seed S [--scale demo|quick|gpu] [--soundtracks families|events]
    [--workers N]``."""
    p = subparsers.add_parser(
        "synth", help="write the synthetic audio-visual benchmark (UCF101 layout) and corpora"
    )
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--scale", choices=sorted(SCALES), default="demo", help="size (default demo)")
    p.add_argument(
        "--soundtracks",
        choices=SOUNDTRACKS,
        default="families",
        help="families: a related class sounds the family of its motion at its kind's pitch "
        "(default); events: an arbitrary event per class (docs/DEMO.md, Soundtracks)",
    )
    p.add_argument(
        "--workers", type=int, default=None, help="processes (default: up to 4 for demo and gpu)"
    )
    p.set_defaults(func=run)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m ccl.commands.synth`` without the package CLI."""
    parser = argparse.ArgumentParser(prog="ccl-synth")
    sub = parser.add_subparsers(dest="command", required=True)
    register(sub)
    args = parser.parse_args(["synth", *(sys.argv[1:] if argv is None else argv)])
    return int(args.func(args))


if __name__ == "__main__":
    raise SystemExit(main())
