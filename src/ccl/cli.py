"""``ccl`` command line: ``train``, ``presets``, ``demo``, ``prepare``."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from ccl import __version__
from ccl.errors import describe_error
from ccl.objectives.registry import METHOD_NAMES, TEACHERS


def _cmd_train(args: argparse.Namespace) -> int:
    from ccl.config import apply_overrides, preset
    from ccl.engine import train

    cfg = preset(args.preset)
    if args.method is not None:
        cfg.objective.method = args.method
        cfg.train.name = f"{args.preset.split('-')[0]}-{args.method}"
    if args.teachers is not None:
        cfg.objective.teachers = () if args.teachers == "none" else _TEACHERS[args.teachers]
        cfg.train.name += "-" + args.teachers
    cfg = apply_overrides(cfg, args.overrides)
    if args.resume is not None:
        cfg.train.resume = args.resume
    cfg.validate()
    if args.print_config:
        print(json.dumps(cfg.to_dict(), indent=2))
        return 0
    result = train(cfg, overwrite=args.overwrite)
    print(f"run folder: {result.run_dir}")
    if result.best:
        key = result.best.get("selected_by", "top1")
        what = "clip-level top-1" if key == "clip_top1" else "top-1"
        print(f"best validation {what} {result.best[key]:.4f} at epoch {result.best['epoch']}")
    return 0


def _cmd_presets(args: argparse.Namespace) -> int:
    from ccl.config import PRESETS, preset

    for name in sorted(PRESETS):
        cfg = preset(name)
        teachers = "+".join(cfg.objective.teachers) or "-"
        print(
            f"{name:18s} method={cfg.objective.method:8s} teachers={teachers:12s} "
            f"arch={cfg.student.arch} epochs={cfg.train.epochs} batch={cfg.data.batch_size}"
        )
    return 0


# --teachers: each teacher alone or "both" (and "none")
_TEACHERS = {**{t: (t,) for t in TEACHERS}, "both": TEACHERS}
_SUBSETS = {"test": "testing", "val": "validation", "train": "training"}


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from ccl.evaluation import EvalSettings, evaluate, summary_line

    kinds = ["best", "last"] if args.checkpoint == "both" else [args.checkpoint]
    if args.target.endswith(".pt"):
        kinds = ["best"]  # a single file: its results are written as eval_<split>.json
    for kind in kinds:
        settings = EvalSettings(
            split=_SUBSETS.get(args.split, args.split),
            checkpoint=kind,
            gallery=None
            if args.gallery == "none"
            else "+".join(_SUBSETS.get(part, part) for part in args.gallery.split("+")),
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
        print(f"{kind}: {summary_line(report)} -> {report.get('path')}")
        for item in report["missing"]:
            print(f"  counted wrong: {item['video_id']}: {item['reason']}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ccl",
        description="Compositional Contrastive Learning: distil image and audio teachers "
        "into a video student.",
    )
    parser.add_argument("--version", action="version", version=f"ccl {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train a student from a preset, with key=value overrides")
    p.add_argument("--preset", default="ucf51-baseline", help="see `ccl presets`")
    p.add_argument(
        "--method",
        choices=list(METHOD_NAMES),
        help="override the preset's method (with --teachers)",
    )
    p.add_argument("--teachers", choices=[*_TEACHERS, "none"])
    p.add_argument(
        "--resume", default=None, help="'auto' (the run's newest good checkpoint) or a path"
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="start over in a run folder that holds a run: the old run is moved to "
        "<name>.old-N first (never deleted)",
    )
    p.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    p.add_argument("overrides", nargs="*", metavar="section.key=value")
    p.set_defaults(func=_cmd_train)

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
    p.set_defaults(func=_cmd_evaluate)

    p = sub.add_parser("presets", help="list the configuration presets")
    p.set_defaults(func=_cmd_presets)

    from ccl.commands.demo import register as register_demo
    from ccl.commands.pretrain import register as register_pretrain
    from ccl.commands.synth import register as register_synth
    from ccl.data.audio_features import register as register_audio
    from ccl.predict import register as register_predict
    from ccl.report import register as register_report

    register_demo(sub)
    register_audio(sub)
    register_pretrain(sub)
    register_predict(sub)
    register_report(sub)
    register_synth(sub)
    from ccl.data.cli import register as register_prepare

    register_prepare(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command. Errors of input and environment (bad values, files, folders,
    checkpoints, runs: ``ValueError``, ``OSError``, ``RuntimeError`` and the project's
    subclasses of them) end as one line on stderr and exit code 2, never a traceback."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:
        # ``key=value`` overrides may sit on both sides of a flag
        if hasattr(args, "overrides") and not any(e.startswith("-") for e in extra):
            args.overrides = [*args.overrides, *extra]
        else:
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        return int(args.func(args) or 0)
    except (ValueError, OSError, RuntimeError) as err:
        print(f"ccl {args.command}: error: {describe_error(err)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
