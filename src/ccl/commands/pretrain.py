"""``ccl pretrain-teacher``: train the demo's image or audio teacher on its corpus
(:mod:`ccl.demo.pretrain`)."""

from __future__ import annotations

import argparse
from typing import Any

IMAGE_TEACHER_ARCHS = ("resnet18", "resnet34", "resnet50")
"""The keys of :data:`ccl.models.teachers.IMAGE_TEACHER_ARCHS`, spelled out so that building
the parser does not import torchvision (a test keeps the two equal)."""


def run(args: argparse.Namespace) -> int:
    from ccl.demo.pretrain import pretrain_audio_teacher, pretrain_image_teacher

    if args.modality == "image":
        meta = pretrain_image_teacher(
            args.corpus,
            args.out,
            arch=args.arch,
            size=args.size,
            epochs=args.epochs or 6,
            seed=args.seed,
            device=args.device,
        )
    else:
        meta = pretrain_audio_teacher(
            args.corpus, args.out, epochs=args.epochs or 8, seed=args.seed, device=args.device
        )
    print(
        f"{args.modality} teacher: held-out accuracy {meta['held_out_accuracy']:.3f} -> {args.out}"
    )
    return 0


def register(subparsers: Any) -> None:
    """Add ``pretrain-teacher --modality image|audio --corpus DIR --out FILE``."""
    p = subparsers.add_parser(
        "pretrain-teacher", help="train the demo's image or audio teacher on its corpus"
    )
    p.add_argument("--modality", required=True, choices=["image", "audio"])
    p.add_argument("--corpus", required=True, help="folder with images.npz / sounds.npz")
    p.add_argument("--out", required=True, help="checkpoint file to write")
    p.add_argument("--arch", default="resnet18", choices=IMAGE_TEACHER_ARCHS)
    p.add_argument("--size", type=int, default=32, help="image teacher input size")
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", help="auto (a GPU when there is one), cpu, cuda")
    p.set_defaults(func=run)
