"""``ccl`` command line: the parser of every command and the one error handler.

Each command lives in its own module of :mod:`ccl.commands` (``register`` adds its parser,
``run`` does the work); this module only assembles them and turns user errors into one line.
Building the parser imports no torch, so ``ccl --help`` answers at once.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from ccl import __version__
from ccl.commands import (
    demo,
    evaluate,
    export,
    predict,
    prepare,
    presets,
    pretrain,
    report,
    synth,
    train,
)
from ccl.errors import USER_ERRORS, describe_error

# The command modules, in the order ``ccl --help`` lists them.
COMMANDS = (train, evaluate, presets, demo, prepare, pretrain, predict, export, report, synth)

# What an interrupted command (Ctrl-C) adds to its one line: how to go on.
INTERRUPT_HINTS = {
    "train": "; its last checkpoint is kept: continue with the same command and --resume auto",
}
# Exit statuses: bad input (a file, a value, a run folder) is one line and 1; a command line
# argparse cannot parse is its usage message and 2; Ctrl-C is one line and 130, the shell's
# status of a process ended by SIGINT.
BAD_INPUT = 1
INTERRUPTED = 130


def build_parser() -> argparse.ArgumentParser:
    """The ``ccl`` parser with every command's subparser."""
    parser = argparse.ArgumentParser(
        prog="ccl",
        description="Compositional Contrastive Learning: distil image and audio teachers "
        "into a video student.",
    )
    parser.add_argument("--version", action="version", version=f"ccl {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command. Errors of input and environment (bad values, files, folders,
    checkpoints, runs: ``ValueError``, ``OSError``, ``RuntimeError`` and the project's
    subclasses of them) end as one line on stderr and exit code 1, never a traceback; Ctrl-C
    (``KeyboardInterrupt``) ends as one line saying what was interrupted and how to go on,
    exit code 130."""
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
    except USER_ERRORS as err:
        print(f"ccl {args.command}: error: {describe_error(err)}", file=sys.stderr)
        return BAD_INPUT
    except KeyboardInterrupt:
        hint = INTERRUPT_HINTS.get(args.command, "")
        print(f"\nccl {args.command}: interrupted{hint}", file=sys.stderr)
        return INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
