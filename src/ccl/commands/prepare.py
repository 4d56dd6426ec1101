"""``ccl prepare videos|annotations|audio-features``, ``ccl extract-audio`` and
``ccl import-audio-features``: the command line of the data preparation.

Exit status: 0 when everything went well, 1 when some videos or entries failed (they are
listed in the command's report or manifest), 2 for unusable input (``ccl.cli.main`` prints
the error as one line).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ccl.atomic import check_replaceable_json, write_text_atomic
from ccl.data.annotations import (
    Annotations,
    check_val_fraction,
    is_annotation_json,
    is_annotation_report,
)
from ccl.data.audio import AUDIO_MODEL_NAMES
from ccl.data.media import DEFAULT_SHORT_SIDE
from ccl.data.splits import build_activitynet, build_csv, build_ucf101, build_vggsound
from ccl.data.store import DEFAULT_JPEG_QUALITY
from ccl.errors import describe_error

# ----------------------------------------------------------------------------- argument types


def _count(minimum: int, what: str) -> Callable[[str], int]:
    """argparse type: a whole number >= ``minimum``."""

    def parse(value: str) -> int:
        try:
            n = int(value)
        except ValueError:
            msg = f"{what} wants a whole number, got {value!r}"
            raise argparse.ArgumentTypeError(msg) from None
        if n < minimum:
            raise argparse.ArgumentTypeError(f"{what} must be at least {minimum}, got {n}")
        return n

    return parse


def _fraction(value: str) -> float:
    try:
        return check_val_fraction(float(value))
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _fps(value: str) -> int | None:
    if value.lower() == "native":
        return None
    try:
        fps = int(value)
    except ValueError:
        msg = f"--fps wants 'native' or a whole number, got {value!r}"
        raise argparse.ArgumentTypeError(msg) from None
    if fps <= 0:
        raise argparse.ArgumentTypeError(f"--fps must be positive, got {fps}")
    return fps


# ----------------------------------------------------------------------------- prepare videos


def run_videos(args: argparse.Namespace) -> int:
    """``ccl prepare videos``: 0, or 1 when some videos failed."""
    from ccl.data.prepare import prepare_videos

    report = prepare_videos(
        args.src,
        args.dst,
        workers=args.workers,
        short_side=args.short_side or None,
        fps=args.fps,
        audio=args.audio,
        jpeg_quality=args.jpeg_quality,
        progress=not args.no_progress,
        reprepare=args.reprepare,
        allow_still_images=args.allow_still_images,
    )
    print(report.summary())
    return 0 if report.ok else 1


# ----------------------------------------------------------------------------- prepare annotations


def _inputs(args: argparse.Namespace) -> list[Path]:
    """The files ``prepare annotations`` reads (never to be overwritten by its outputs)."""
    if args.dataset == "ucf101":
        lists = [f"{kind}list0{i}.txt" for kind in ("train", "test") for i in (1, 2, 3)]
        return [args.splits / name for name in ["classInd.txt", *lists]]
    if args.dataset == "activitynet":
        return [args.annotation]
    return [args.csv] + ([args.labels] if args.labels else [])


def _check_outputs(out: Path, report_path: Path, inputs: list[Path]) -> None:
    """Refuse outputs that would overwrite an input, a folder, or a file this command did
    not write (a re-run may replace its own earlier annotation JSON and report, nothing
    else)."""
    check_replaceable_json(
        out, inputs=inputs, is_own=is_annotation_json, kind="an annotation JSON", option="--out"
    )
    check_replaceable_json(
        report_path,
        inputs=inputs,
        is_own=is_annotation_report,
        kind=f"the report of an annotation JSON (it is written beside --out {out})",
        option="--out",
    )


def run_annotations(args: argparse.Namespace) -> int:
    """``ccl prepare annotations DATASET``: 0, or 1 with ``--strict`` when rows were left
    out."""
    common = {
        "val_fraction": args.val_fraction,
        "validate_on_test": args.validate_on_test or args.protocol == "reference",
        "seed": args.seed,
    }
    out = Path(args.out)
    report_path = out.with_name(out.stem + ".report.json")
    _check_outputs(out, report_path, _inputs(args))
    if args.dataset == "ucf101":
        ann: Annotations = build_ucf101(
            args.splits,
            args.videos,
            split=args.split,
            audio_features_dir=args.audio_features,
            **common,
        )
    elif args.dataset == "activitynet":
        ann = build_activitynet(args.annotation, args.videos, **common)
    elif args.dataset == "vggsound":
        ann = build_vggsound(args.csv, args.videos, labels_file=args.labels, **common)
    else:
        ann = build_csv(args.csv, args.videos, labels_file=args.labels, **common)
    try:
        ann.write(out)
        write_text_atomic(report_path, json.dumps(ann.report.to_dict(), indent=1))
    except OSError as err:  # name the annotation file, whichever file the cause names
        raise OSError(f"cannot write {out} ({describe_error(err)})") from err
    print(ann.report.summary())
    print(f"wrote {out} (report: {report_path})")
    if args.strict and ann.report.n_problems:
        print(
            f"ccl prepare: error: {ann.report.n_problems} rows left out (--strict)",
            file=sys.stderr,
        )
        return 1
    return 0


# ----------------------------------------------------------------------------- audio embeddings


def run_extract(args: argparse.Namespace) -> int:
    """``ccl extract-audio``: 0, or 1 when some videos failed."""
    from ccl.data.audio_features import extract_audio

    report = extract_audio(
        args.src,
        args.checkpoint,
        args.out,
        segment_seconds=args.segment_seconds,
        batch_size=args.batch_size,
        device=args.device,
        variant=args.variant,
        progress=not args.no_progress,
    )
    print(report.summary())
    for key, reason in list(report.failed.items())[:10]:
        print(f"  failed: {key}: {reason}")
    return 0 if report.ok else 1


def run_import(args: argparse.Namespace) -> int:
    """``ccl import-audio-features`` (and ``ccl prepare audio-features``): 0, or 1 when
    entries were bad or none was written."""
    from ccl.data.archive import import_audio_archive

    report = import_audio_archive(args.from_archive, args.out)
    print(report.summary())
    for name in report.junk:
        print(f"  junk ignored: {name}")
    return 0 if report.ok else 1


def add_extract_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``extract-audio`` (reusable under another command name)."""
    parser.add_argument("src", help="folder of class sub-folders with videos or .hdf5 stores")
    parser.add_argument(
        "--checkpoint",
        required=True,
        help="PANNs checkpoint, e.g. Cnn14_emb512_mAP=0.420.pth (Zenodo record 3987831)",
    )
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument(
        "--segment-seconds",
        type=float,
        default=None,
        help="one embedding per segment of this length: (T, D) arrays",
    )
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    parser.add_argument(
        "--variant",
        choices=sorted(AUDIO_MODEL_NAMES),
        default="emb512",
        help="emb512 (512-d, the CCL teacher) or cnn14 (2048-d)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(func=run_extract)


def add_import_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``import-audio-features`` (also used as ``prepare audio-features``)."""
    parser.add_argument(
        "--from-archive",
        required=True,
        metavar="FILE",
        help="the reference's audiocnn14embed512_features.tar.gz",
    )
    parser.add_argument("--out", required=True, help="output folder")
    parser.set_defaults(func=run_import)


# ----------------------------------------------------------------------------- parsers


def register_audio_commands(subparsers: Any) -> None:
    """Add ``extract-audio`` and ``import-audio-features``."""
    extract = subparsers.add_parser(
        "extract-audio",
        help="PANNs Cnn14_emb512 embeddings of video soundtracks",
        description="Write one PANNs embedding per video (<out>/<Class>/<video_id>.npy); "
        "videos without sound are listed in <out>/manifest.json. Resumable.",
    )
    add_extract_arguments(extract)
    imp = subparsers.add_parser(
        "import-audio-features",
        help="import the reference's audiocnn14embed512_features.tar.gz",
        description="Validate and copy the reference's released UCF51 audio embeddings into "
        "<out>/<Class>/<video_id>.npy with a manifest.",
    )
    add_import_arguments(imp)


def register_prepare(subparsers: Any) -> None:
    """Add ``prepare videos``, ``prepare annotations {ucf101,activitynet,vggsound,csv}`` and
    ``prepare audio-features`` (the reference's UCF51 embedding archive)."""
    prep = subparsers.add_parser("prepare", help="prepare frame stores and annotation files")
    sub = prep.add_subparsers(dest="prepare_command", metavar="{videos,annotations,audio-features}")
    sub.required = True

    v = sub.add_parser(
        "videos",
        help="decode videos into one HDF5 frame store per video",
        description="Decode every video under SRC (class sub-folders mirrored) into "
        "DST/<Class>/<video>.hdf5: JPEG frames, short side resized. Resumable; failures are "
        "listed in DST/prepare_report.json and make the exit status 1. A store whose source "
        "file changed since is converted again. Existing stores made with other settings "
        "make the run refuse, unless --reprepare. A full disk stops the run (exit status 1), "
        "removing the store it was writing.",
    )
    v.add_argument("src", type=Path, help="folder of videos (read only)")
    v.add_argument("dst", type=Path, help="output folder of frame stores")
    v.add_argument(
        "--workers", type=_count(1, "--workers"), default=1, help="parallel processes (default 1)"
    )
    v.add_argument(
        "--short-side",
        type=_count(0, "--short-side"),
        default=DEFAULT_SHORT_SIDE,
        help="resize frames so the short side has this length; 0 keeps the size "
        f"(default {DEFAULT_SHORT_SIDE})",
    )
    v.add_argument("--fps", type=_fps, default=None, help="'native' (default) or frames per second")
    v.add_argument("--audio", action="store_true", help="also store the soundtrack (mono 32 kHz)")
    v.add_argument("--jpeg-quality", type=int, default=DEFAULT_JPEG_QUALITY, help="1-100")
    v.add_argument(
        "--reprepare",
        action="store_true",
        help="convert again the existing stores made with other settings (without it the "
        "run refuses to mix settings)",
    )
    v.add_argument(
        "--allow-still-images",
        action="store_true",
        help="store a still image (one frame of an image codec) as a 1-frame video",
    )
    v.add_argument("--no-progress", action="store_true", help="no progress bar")
    v.set_defaults(func=run_videos)

    add_import_arguments(
        sub.add_parser(
            "audio-features",
            help="import the reference's released UCF51 audio embeddings archive",
        )
    )

    a = sub.add_parser(
        "annotations",
        help="write the annotation JSON of a dataset from its split files",
        description="Write the reference's annotation JSON. A validation subset is held out "
        "from training by default (--val-fraction, --seed); --protocol reference (or "
        "--validate-on-test) holds nothing out and validates on the test split, as the "
        "reference did (train with train.protocol=reference to repeat its protocol exactly).",
    )
    asub = a.add_subparsers(dest="dataset", metavar="{ucf101,activitynet,vggsound,csv}")
    asub.required = True

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--videos", type=Path, required=True, help="folder of prepared stores")
        p.add_argument("--out", type=Path, required=True, help="annotation JSON to write")
        p.add_argument(
            "--val-fraction",
            type=_fraction,
            default=0.1,
            help="share of training held out for validation (default 0.1; 0 for none)",
        )
        p.add_argument(
            "--protocol",
            choices=("held-out", "reference"),
            default="held-out",
            help="held-out (default): validation = training groups held out (--val-fraction); "
            "reference: the whole training list trains and the test split validates, as the "
            "reference did (model selection on the test set; pair with train.protocol=reference)",
        )
        p.add_argument(
            "--validate-on-test",
            action="store_true",
            help="the same as --protocol reference",
        )
        p.add_argument("--seed", type=int, default=1, help="seed of the hold-out (default 1)")
        p.add_argument(
            "--strict",
            action="store_true",
            help="exit 1 when rows are left out (unknown labels, missing videos)",
        )
        p.set_defaults(func=run_annotations)

    u = asub.add_parser("ucf101", help="UCF101 / UCF51 official splits")
    u.add_argument(
        "--splits",
        type=Path,
        required=True,
        help="folder with classInd.txt, trainlistNN.txt, testlistNN.txt",
    )
    u.add_argument("--split", type=int, choices=(1, 2, 3), default=1)
    u.add_argument(
        "--audio-features",
        type=Path,
        default=None,
        help="audio feature folder: keep only its class folders (UCF51)",
    )
    common(u)

    an = asub.add_parser("activitynet", help="ActivityNet v1.3 segments")
    an.add_argument("--annotation", type=Path, required=True, help="activity_net.v1-3.min.json")
    common(an)

    vg = asub.add_parser("vggsound", help="VGGSound csv (youtube_id,start_seconds,label,split)")
    vg.add_argument("--csv", type=Path, required=True)
    vg.add_argument("--labels", type=Path, default=None, help="class names, one per line")
    common(vg)

    c = asub.add_parser("csv", help="generic csv (video_id,label,split)")
    c.add_argument("--csv", type=Path, required=True)
    c.add_argument("--labels", type=Path, default=None, help="class names, one per line")
    common(c)


def register(subparsers: Any) -> None:
    """Add every data-preparation command: ``extract-audio``, ``import-audio-features`` and
    the ``prepare`` group. Each sets ``func`` to a callable ``(args) -> int`` exit code."""
    register_audio_commands(subparsers)
    register_prepare(subparsers)
