"""``ccl train``: train a student from a preset, with ``section.key=value`` overrides."""

from __future__ import annotations

import argparse
import json

from ccl.objectives.registry import METHOD_NAMES, TEACHERS

# --teachers: each teacher alone or "both" (and "none")
_TEACHER_SETS: dict[str, tuple[str, ...]] = {**{t: (t,) for t in TEACHERS}, "both": TEACHERS}


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``train`` to the ``ccl`` command line."""
    p = sub.add_parser("train", help="train a student from a preset, with key=value overrides")
    p.add_argument("--preset", default="ucf51-baseline", help="see `ccl presets`")
    p.add_argument(
        "--method",
        choices=list(METHOD_NAMES),
        help="override the preset's method (with --teachers)",
    )
    p.add_argument("--teachers", choices=[*_TEACHER_SETS, "none"])
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
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Resolve the config (preset, --method/--teachers, overrides) and train, or print it."""
    from ccl.config import apply_overrides, preset
    from ccl.engine import train

    cfg = preset(args.preset)
    if args.method is not None:
        cfg.objective.method = args.method
        cfg.train.name = f"{args.preset.split('-')[0]}-{args.method}"
    if args.teachers is not None:
        cfg.objective.teachers = () if args.teachers == "none" else _TEACHER_SETS[args.teachers]
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
