"""``ccl presets``: list the configuration presets."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``presets`` to the ``ccl`` command line."""
    p = sub.add_parser("presets", help="list the configuration presets")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """One line per preset: method, teachers, student, epochs and batch size."""
    from ccl.config import PRESETS, preset

    for name in sorted(PRESETS):
        cfg = preset(name)
        teachers = "+".join(cfg.objective.teachers) or "-"
        print(
            f"{name:18s} method={cfg.objective.method:8s} teachers={teachers:12s} "
            f"arch={cfg.student.arch} epochs={cfg.train.epochs} batch={cfg.data.batch_size}"
        )
    return 0
