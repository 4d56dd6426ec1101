"""How an audio teacher's embeddings relate the classes, and its linear probe.

Prints the mean cosine similarity of the embeddings within a class, between all pairs of
distinct classes, per group of class pairs (demo folders: same sound, different sounds,
unrelated audio involved, from the benchmark's ``class_audio``), the closest class pairs
(ccl.demo.structure), and the top-1 / top-5 of a linear probe (ccl.demo.probe.fit_probe)
fitted on the training videos and scored on the test videos. The similarities are of the
training videos unless ``--subset`` says otherwise, so that choices made on them see no
test data. Embeddings are read with ccl.data.audio.load_audio_embeddings, as training reads
them (all-zero files count as missing; a (T, D) file gives its segment mean).

    # a demo folder (ccl demo --out DIR, or one seed_S of it)
    python benchmarks/teacher_structure.py --demo DIR
    # the reference's UCF51 embeddings, imported with
    #   ccl prepare audio-features --from-archive audiocnn14embed512_features.tar.gz --out F
    # labelled by their UCF101 file names; probe on split 1 (groups 8-25 -> groups 1-7)
    python benchmarks/teacher_structure.py --features F --ucf-names
    # any feature folder with its annotation file (probe: training -> testing subset)
    python benchmarks/teacher_structure.py --features F --annotations annotations.json

Nothing is downloaded and everything runs on the CPU. The similarities are quick even for
the UCF51 archive; the probe's logistic regression is the slow part, and ``--no-probe``
leaves it out.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ccl.demo.paths import demo_paths
from ccl.demo.probe import ProbeResult, audio_probe, fit_probe
from ccl.demo.structure import (
    LabelledEmbeddings,
    StructureSummary,
    annotated_embeddings,
    format_summary,
    ucf_named_embeddings,
)

_UCF_SPLITS = {"training": "train", "testing": "test", "all": "all"}


def ucf_probe(features: str | Path) -> ProbeResult:
    """The linear probe on UCF101-named embeddings, split 1: groups 8-25 -> groups 1-7."""
    train = ucf_named_embeddings(features, "train")
    test = ucf_named_embeddings(features, "test")
    top1, top5, converged = fit_probe(
        train.x, train.y, test.x, test.y, num_classes=len(train.classes)
    )
    return ProbeResult(
        teacher="audio",
        top1=top1,
        top5=top5,
        train_videos=len(train.y),
        train_missing=0,
        test_videos=len(test.y),
        test_missing=0,
        converged=converged,
    )


def _cached_image_probe(demo: Path) -> str | None:
    """The image teacher's probe as ``ccl demo`` cached it (teacher_probes.json), if any."""
    path = demo_paths(demo).probes
    try:
        image = json.loads(path.read_text())["image"]
        return ProbeResult.from_dict(image).summary() + f" [cached in {path}]"
    except (OSError, ValueError, KeyError, TypeError):
        return None


def measure(args: argparse.Namespace) -> tuple[StructureSummary, LabelledEmbeddings, list[str]]:
    """(structure summary, the embeddings it is of, probe lines) for the parsed arguments."""
    lines = []
    if args.demo:
        paths = demo_paths(args.demo)
        attribute = json.loads(paths.synth_info.read_text())["class_audio"]
        labelled = annotated_embeddings(paths.annotations, paths.audio_dir, args.subset)
        if not args.no_probe:
            lines.append(audio_probe(paths.annotations, paths.audio_dir).summary())
            cached = _cached_image_probe(Path(args.demo))
            if cached:
                lines.append(cached)
    elif args.ucf_names:
        if args.subset not in _UCF_SPLITS:
            raise SystemExit(f"--ucf-names: --subset must be one of {sorted(_UCF_SPLITS)}")
        attribute = None
        labelled = ucf_named_embeddings(args.features, _UCF_SPLITS[args.subset])
        if not args.no_probe:
            probe = ucf_probe(args.features)
            lines.append(
                probe.summary()
                + f", UCF101 split 1: {probe.train_videos} training videos (groups 8-25)"
            )
    else:
        attribute = None
        labelled = annotated_embeddings(args.annotations, args.features, args.subset)
        if not args.no_probe:
            lines.append(audio_probe(args.annotations, args.features).summary())
    summary = labelled.summary(attribute, k=args.k)
    return summary, labelled, lines


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--demo", help="a demo folder (ccl demo --out, or one seed_S of it)")
    source.add_argument("--features", help="an audio-feature folder (<Class>/<video_id>.npy)")
    labels = parser.add_mutually_exclusive_group()
    labels.add_argument("--annotations", help="the annotation file labelling --features")
    labels.add_argument(
        "--ucf-names",
        action="store_true",
        help="label --features by UCF101 file names v_<Class>_gGG_cCC (split 1 by group)",
    )
    parser.add_argument(
        "--subset",
        default="training",
        help="the videos the similarities are of: an annotation subset (training+validation "
        "allowed); with --ucf-names training, testing or all (default: training)",
    )
    parser.add_argument("--k", type=int, default=10, help="closest class pairs listed")
    parser.add_argument("--no-probe", action="store_true", help="skip the linear probes")
    parser.add_argument("--json", help="also write the summary and probe lines here")
    args = parser.parse_args(argv)
    if args.features and not (args.annotations or args.ucf_names):
        parser.error("--features needs --annotations FILE or --ucf-names")
    if args.demo and (args.annotations or args.ucf_names):
        parser.error("--demo reads its own annotations")

    t0 = time.perf_counter()
    summary, labelled, probe_lines = measure(args)
    source = args.demo or args.features
    print(format_summary(summary, title=f"{source} ({args.subset} videos)"))
    if labelled.missing:
        print(f"\n{len(labelled.missing)} listed videos without an embedding left out")
    if summary.attribute:
        attrs = ", ".join(f"{c}={a or '-'}" for c, a in summary.attribute.items())
        print(f"\nclass attributes ('-': unrelated audio): {attrs}")
    print()
    for line in probe_lines:
        print(line)
    print(f"\n({time.perf_counter() - t0:.1f} s)")
    if args.json:
        record: dict[str, Any] = {
            "source": str(source),
            "subset": args.subset,
            "structure": summary.to_dict(),
            "probes": probe_lines,
        }
        Path(args.json).write_text(json.dumps(record, indent=1))


if __name__ == "__main__":
    main()
