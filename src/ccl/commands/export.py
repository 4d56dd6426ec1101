"""``ccl export RUN --out DIR``: a run's student as a self-contained model package
(:func:`ccl.export.export_package`), which ``ccl predict`` and ``ccl embed`` accept as TARGET."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``export RUN [--checkpoint C] --out DIR [--format F] [--overwrite]``."""
    p = subparsers.add_parser(
        "export",
        help="write a trained student as a model package (TorchScript and/or ONNX)",
        description="Write DIR with model.pt (TorchScript) and/or model.onnx, classes.json, "
        "preprocessing.json (windows, resize, normalisation, score averaging), config.json, "
        "a model card README.md and checksums.json. The folder appears complete or not at "
        "all; an existing non-empty DIR is refused unless --overwrite (and it is a package).",
    )
    p.add_argument("target", metavar="RUN", help="run folder (or checkpoint file)")
    p.add_argument(
        "--checkpoint",
        default="best",
        metavar="best|last|FILE",
        help="which checkpoint of the run (default best)",
    )
    p.add_argument("--out", required=True, metavar="DIR", help="package folder to write")
    p.add_argument(
        "--format",
        default="torchscript",
        metavar="torchscript|onnx|both",
        help="model file(s) to write (default torchscript; onnx needs pip install 'ccl[export]')",
    )
    p.add_argument("--overwrite", action="store_true", help="replace an earlier package in DIR")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Export; every failure ends as one line in :func:`ccl.cli.main`."""
    from ccl.export import export_package
    from ccl.package import CHECKSUMS_FILE

    out = export_package(
        args.target,
        args.out,
        checkpoint=args.checkpoint,
        fmt=args.format,
        overwrite=args.overwrite,
    )
    files = sorted(p.name for p in out.iterdir())
    print(f"model package -> {out} ({', '.join(files)}; sha256 in {CHECKSUMS_FILE})")
    return 0
