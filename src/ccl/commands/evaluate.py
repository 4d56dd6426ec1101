"""``ccl evaluate``: video-level recognition and retrieval of a run or checkpoint."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``evaluate`` to the ``ccl`` command line."""
    p = sub.add_parser("evaluate", help="video-level recognition and retrieval of a run")
    p.add_argument("target", help="run folder or checkpoint file")
    p.add_argument("--split", default="test", help="test | val | train, or a subset name")
    p.add_argument("--checkpoint", default="both", choices=["best", "last", "both"])
    p.add_argument(
        "--gallery",
        default="train+val",
        help="retrieval gallery: a subset (train, val, test, or a subset name) or a union "
        "joined by '+'; default train+val, the official training split (the training videos "
        "and the validation videos held out of them); 'none' skips retrieval. The JSON "
        "records gallery_size and gallery_subsets",
    )
    p.add_argument("--allow-missing", action="store_true", help="count unreadable videos as wrong")
    p.add_argument(
        "--reduced-decode",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="decode frames at 1/2 size when the 112-pixel short side allows (faster; about 1 "
        "grey level from the reference's Pillow pixels on average); --no-reduced-decode "
        "decodes at full size. Default: the run's data.reduced_decode (on unless set off)",
    )
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--workers", type=int, default=4)
    p.add_argument("--device", default="auto")
    p.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "fp16"])
    p.add_argument("--annotations", default=None, help="default: the run's data.annotations")
    p.add_argument("--frames-dir", default=None, help="default: the run's data.frames_dir")
    p.add_argument("--out", default=None, help="folder for the results (default: the run folder)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Evaluate the best and/or last checkpoint; one summary line each, and the videos
    counted wrong because they could not be read."""
    from ccl.data.annotations import subset_name
    from ccl.evaluation import EvalSettings, evaluate, summary_line

    kinds = ["best", "last"] if args.checkpoint == "both" else [args.checkpoint]
    if args.target.endswith(".pt"):
        kinds = ["best"]  # a single file: labelled and filed by its own name (best, last, ...)
    gallery = (
        None
        if args.gallery == "none"
        else "+".join(subset_name(part) for part in args.gallery.split("+"))
    )
    for kind in kinds:
        settings = EvalSettings(
            split=subset_name(args.split),
            checkpoint=kind,
            gallery=gallery,
            allow_missing=args.allow_missing,
            reduced_decode=args.reduced_decode,
            batch_size=args.batch_size,
            workers=args.workers,
            device=args.device,
            precision=args.precision,
            annotations=args.annotations,
            frames_dir=args.frames_dir,
            out_dir=args.out,
        )
        report = evaluate(args.target, settings)
        label = report["checkpoint_kind"]
        print(f"{label}: {summary_line(report)} -> {report.get('path')}")
        for item in report["missing"]:
            print(f"  counted wrong: {item['video_id']}: {item['reason']}")
    return 0
