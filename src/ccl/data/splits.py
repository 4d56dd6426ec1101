"""Official split files -> annotation files (docs/METHOD.md §5.3 and §6): UCF101 / UCF51,
ActivityNet v1.3, VGGSound and a generic csv, written in the schema of
:mod:`ccl.data.annotations`.

Validation: by default a held-out part of the training split (``val_fraction``, chosen by
``seed``) so model selection never sees the test split. Held-out units are groups that must
not leak: UCF101 groups ``gNN`` (the same group numbers in every class, as the official
splits do), the YouTube video of ActivityNet segments and VGGSound clips, the video id
otherwise. ``validate_on_test=True`` reproduces the reference (no hold-out; validation on the
test split).

Problems never disappear silently: rows with unknown labels and listed videos without a
frame store are left out of the JSON but counted and listed in
:class:`~ccl.data.annotations.AnnotationReport`. Malformed lines and text that is not UTF-8
raise :class:`AnnotationFormatError` naming the file and line.
"""

from __future__ import annotations

import csv
import io
import json
import math
import random
import re
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ccl.data.annotations import (
    AnnotationReport,
    Annotations,
    StoreIndex,
    check_val_fraction,
    hold_out_groups,
    read_text,
)
from ccl.data.store import STORE_SUFFIX
from ccl.errors import AnnotationFormatError

_SPLIT_NAMES = {
    "train": "training",
    "training": "training",
    "val": "validation",
    "valid": "validation",
    "validation": "validation",
    "test": "testing",
    "testing": "testing",
}
_UCF_GROUP = re.compile(r"_g(\d+)_c(\d+)$")


# --------------------------------------------------------------------------- entries


def _default_rel(video_id: str, label: str) -> Path:
    return Path(label) / f"{video_id}{STORE_SUFFIX}"


def _entry(
    subset: str,
    label: str,
    n_frames: int,
    rel: Path,
    video_id: str,
    segment: tuple[int, int] | None = None,
) -> dict[str, Any]:
    seg = list(segment) if segment is not None else [1, n_frames + 1]
    entry: dict[str, Any] = {"subset": subset, "annotations": {"label": label, "segment": seg}}
    if rel != _default_rel(video_id, label):
        entry["video_path"] = rel.as_posix()
    return entry


# --------------------------------------------------------------------------- split files


def _read_lines(path: Path, kind: str = "split file") -> Iterator[tuple[int, str]]:
    for lineno, line in enumerate(read_text(path, kind).splitlines(), start=1):
        line = line.strip()
        if line:
            yield lineno, line


def _read_label_file(path: str | Path) -> list[str]:
    path = Path(path)
    labels = [line for _, line in _read_lines(path, "labels file")]
    dup = [k for k, v in Counter(labels).items() if v > 1]
    if dup:
        raise AnnotationFormatError(path, None, f"duplicate class names {dup[:5]}")
    return labels


def _finish(
    dataset: str,
    labels: list[str],
    rows: list[dict[str, Any]],
    index: StoreIndex,
    report: AnnotationReport,
    *,
    val_fraction: float,
    validate_on_test: bool,
    seed: int,
    ucf_groups: bool = False,
) -> Annotations:
    """rows: {id, label, subset, group, lookup ids, (segment seconds)} -> Annotations.

    Resolves stores and frame counts, reports unknown labels and missing videos, and holds
    out the validation part of training."""
    known = set(labels)
    database: dict[str, dict[str, Any]] = {}
    groups: dict[str, str] = {}
    explicit_val = any(r["subset"] == "validation" for r in rows)
    info_cache: dict[Path, tuple[int, float | None]] = {}
    for row in rows:
        if row["label"] not in known:
            report.unknown_labels.append(
                {
                    "file": row["file"],
                    "line": row["line"],
                    "label": row["label"],
                    "video": row["id"],
                }
            )
            continue
        rel = None
        for candidate in row["lookup"]:
            rel = index.find(candidate, row["label"])
            if rel is not None:
                break
        if rel is None:
            report.missing_videos.append(
                {"file": row["file"], "line": row["line"], "video": row["lookup"][0]}
            )
            continue
        if rel not in info_cache:
            info_cache[rel] = index.n_frames_and_fps(rel)
        n_frames, fps = info_cache[rel]
        video_id = row["id"] if row.get("segment_seconds") else rel.stem
        segment = None
        if row.get("segment_seconds") is not None:
            if not fps:
                raise ValueError(f"{index.root / rel}: no fps attribute; cannot place segments")
            start_s, end_s = row["segment_seconds"]
            first = min(max(1, math.floor(start_s * fps) + 1), n_frames)
            last = min(max(first, math.ceil(end_s * fps)), n_frames)
            segment = (first, last + 1)
        if n_frames <= 0:
            report.skipped.append({"video": video_id, "reason": "frame store has no frames"})
            continue
        if video_id in database:
            raise AnnotationFormatError(row["file"], row["line"], f"duplicate video {video_id!r}")
        database[video_id] = _entry(row["subset"], row["label"], n_frames, rel, video_id, segment)
        if row["subset"] == "training":
            groups[video_id] = row["group"]

    validation_subset = "validation"
    if validate_on_test:
        validation_subset = "testing"
        report.notes.append("validation on the test split (the reference's protocol)")
    elif explicit_val:
        report.notes.append("the split file defines a validation subset; no hold-out made")
    elif val_fraction > 0:
        if ucf_groups:
            held = _hold_out_ucf_groups(groups, val_fraction, seed, report)
        else:
            held = hold_out_groups(groups, val_fraction, seed)
        for key in held:
            database[key]["subset"] = "validation"
    report.counts = dict(Counter(e["subset"] for e in database.values()))
    report.n_classes = len(labels)
    return Annotations(labels, database, report, validation_subset)


def _hold_out_ucf_groups(
    groups: dict[str, str], fraction: float, seed: int, report: AnnotationReport
) -> set[str]:
    numbers = sorted({g for g in groups.values()})
    if fraction >= 1:
        raise ValueError(f"validation fraction must be below 1, got {fraction}")
    k = min(len(numbers) - 1, max(1, round(fraction * len(numbers))))
    if k <= 0:
        return set()
    chosen = sorted(random.Random(seed).sample(numbers, k))
    report.notes.append(f"validation = training groups {', '.join(chosen)} of every class")
    return {key for key, g in groups.items() if g in chosen}


# --------------------------------------------------------------------------- UCF101 / UCF51


def ucf101_group(video_id: str) -> str:
    """``v_Class_g08_c01`` -> ``g08`` (the video id itself when the name has no group)."""
    m = _UCF_GROUP.search(video_id)
    return f"g{int(m.group(1)):02d}" if m else video_id


def audio_classes(audio_dir: str | Path) -> list[str]:
    """Class folder names of an audio-feature directory, sorted (``._`` junk ignored)."""
    audio_dir = Path(audio_dir)
    if not audio_dir.is_dir():
        raise FileNotFoundError(f"audio feature folder not found: {audio_dir}")
    names = sorted(p.name for p in audio_dir.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not names:
        raise ValueError(f"{audio_dir}: no class folders")
    return names


def build_ucf101(
    splits_dir: str | Path,
    videos_dir: str | Path,
    *,
    split: int = 1,
    audio_features_dir: str | Path | None = None,
    val_fraction: float = 0.1,
    validate_on_test: bool = False,
    seed: int = 1,
) -> Annotations:
    """UCF101 (or UCF51 with ``audio_features_dir``: classes = its class folders).

    ``splits_dir`` holds ``classInd.txt``, ``trainlist0N.txt`` and ``testlist0N.txt``;
    ``videos_dir`` the prepared stores (``<Class>/<video_id>.hdf5``)."""
    check_val_fraction(val_fraction)
    if split not in (1, 2, 3):
        raise ValueError(f"UCF101 split must be 1, 2 or 3, got {split}")
    splits_dir = Path(splits_dir)
    class_file = splits_dir / "classInd.txt"
    class_index: dict[int, str] = {}
    for lineno, line in _read_lines(class_file):
        parts = line.split()
        if len(parts) != 2 or not parts[0].isdigit():
            raise AnnotationFormatError(
                class_file, lineno, f"expected '<index> <class name>', got {line!r}"
            )
        if int(parts[0]) in class_index or parts[1] in class_index.values():
            raise AnnotationFormatError(class_file, lineno, f"duplicate class entry {line!r}")
        class_index[int(parts[0])] = parts[1]
    ucf_classes = [class_index[k] for k in sorted(class_index)]

    name = "ucf101"
    report = AnnotationReport(dataset=name)
    labels = ucf_classes
    canonical = {c.lower(): c for c in ucf_classes}
    if audio_features_dir is not None:
        name = "ucf51"
        report.dataset = name
        labels = audio_classes(audio_features_dir)
        # the audio folders' spelling wins; matching is case-insensitive
        canonical = {c.lower(): c for c in labels}
        strangers = [c for c in labels if c.lower() not in {u.lower() for u in ucf_classes}]
        if strangers:
            report.notes.append(f"audio class folders not in classInd.txt: {strangers}")
    selected = set(canonical)
    ucf_lower = {c.lower() for c in ucf_classes}

    rows: list[dict[str, Any]] = []
    for subset, fname in (
        ("training", f"trainlist0{split}.txt"),
        ("testing", f"testlist0{split}.txt"),
    ):
        path = splits_dir / fname
        for lineno, line in _read_lines(path):
            parts = line.split()
            if len(parts) not in (1, 2) or "/" not in parts[0]:
                raise AnnotationFormatError(
                    path, lineno, f"expected '<Class>/<video file> [<class index>]', got {line!r}"
                )
            folder, _, filename = parts[0].partition("/")
            if not folder or not filename or "/" in filename:
                raise AnnotationFormatError(path, lineno, f"bad video path {parts[0]!r}")
            if len(parts) == 2:
                if not parts[1].isdigit():
                    raise AnnotationFormatError(
                        path, lineno, f"class index {parts[1]!r} is not a number"
                    )
                listed = class_index.get(int(parts[1]))
                if listed is None or listed.lower() != folder.lower():
                    raise AnnotationFormatError(
                        path,
                        lineno,
                        f"class index {parts[1]} is {listed!r} in classInd.txt but the video is "
                        f"in folder {folder!r}",
                    )
            video_id = Path(filename).stem
            row = {
                "file": str(path),
                "line": lineno,
                "id": video_id,
                "subset": subset,
                "group": ucf101_group(video_id),
                "lookup": [video_id],
            }
            key = folder.lower()
            if key not in ucf_lower:
                row["label"] = folder
            elif key not in selected:
                report.filtered_out += 1
                continue
            else:
                row["label"] = canonical[key]
            rows.append(row)
    return _finish(
        name,
        labels,
        rows,
        StoreIndex(videos_dir),
        report,
        val_fraction=val_fraction,
        validate_on_test=validate_on_test,
        seed=seed,
        ucf_groups=True,
    )


# --------------------------------------------------------------------------- ActivityNet


def build_activitynet(
    annotation_file: str | Path,
    videos_dir: str | Path,
    *,
    val_fraction: float = 0.1,
    validate_on_test: bool = False,
    seed: int = 1,
) -> Annotations:
    """ActivityNet v1.3 (``activity_net.v1-3.min.json``): every labelled segment is a sample
    ``<youtube_id>_<k>`` (k = its position in the video's list) with its frames located via
    the store's fps. Official ``training`` -> training (minus the held-out validation,
    grouped by YouTube video), official ``validation`` -> testing; the unlabelled official
    ``testing`` videos are skipped (counted). Stores may be named ``<id>`` or ``v_<id>``."""
    check_val_fraction(val_fraction)
    path = Path(annotation_file)
    text = read_text(path, "ActivityNet annotation file")
    try:
        data = json.loads(text)
        database = data["database"]
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        raise AnnotationFormatError(
            path, None, f"not an ActivityNet annotation file: {err}"
        ) from err
    subset_map = {"training": "training", "validation": "testing"}
    report = AnnotationReport(dataset="activitynet")
    rows: list[dict[str, Any]] = []
    label_set: set[str] = set()
    for yid, video in database.items():
        if not isinstance(video, dict) or "subset" not in video:
            raise AnnotationFormatError(path, None, f"video {yid!r}: no 'subset'")
        subset = subset_map.get(video["subset"])
        if subset is None:
            report.skipped.append(
                {"video": yid, "reason": f"official {video['subset']} (unlabelled)"}
            )
            continue
        for k, ann in enumerate(video.get("annotations") or []):
            try:
                label = str(ann["label"])
                start_s, end_s = (float(x) for x in ann["segment"])
            except (KeyError, TypeError, ValueError) as err:
                raise AnnotationFormatError(
                    path, None, f"video {yid!r} annotation {k}: bad label/segment ({err})"
                ) from err
            if not end_s > start_s:
                report.skipped.append({"video": f"{yid}_{k}", "reason": "empty segment"})
                continue
            label_set.add(label)
            rows.append(
                {
                    "file": str(path),
                    "line": None,
                    "id": f"{yid}_{k}",
                    "subset": subset,
                    "group": yid,
                    "label": label,
                    "lookup": [yid, f"v_{yid}"],
                    "segment_seconds": (start_s, end_s),
                }
            )
    labels = sorted(label_set)
    return _finish(
        "activitynet",
        labels,
        rows,
        StoreIndex(videos_dir),
        report,
        val_fraction=val_fraction,
        validate_on_test=validate_on_test,
        seed=seed,
    )


# --------------------------------------------------------------------------- csv formats


def _csv_rows(path: Path, n_cols: int, header_first: str) -> Iterator[tuple[int, list[str]]]:
    text = read_text(path, "csv file")
    with io.StringIO(text, newline="") as f:
        for lineno, row in enumerate(csv.reader(f), start=1):
            if not row or all(not c.strip() for c in row):
                continue
            row = [c.strip() for c in row]
            if lineno == 1 and row[0].lower() == header_first:
                continue
            if len(row) != n_cols:
                raise AnnotationFormatError(
                    path, lineno, f"expected {n_cols} comma-separated fields, got {len(row)}: {row}"
                )
            yield lineno, row


def _split_name(path: Path, lineno: int, value: str) -> str:
    subset = _SPLIT_NAMES.get(value.lower())
    if subset is None:
        raise AnnotationFormatError(
            path,
            lineno,
            f"unknown split {value!r} (want train/val/test or training/validation/testing)",
        )
    return subset


def _csv_sample(
    path: Path,
    lineno: int,
    video_id: str,
    label: str,
    split: str,
    *,
    group: str,
    lookup: list[str],
) -> dict[str, Any]:
    """One csv line as the row :func:`_finish` takes (its split name checked)."""
    return {
        "file": str(path),
        "line": lineno,
        "id": video_id,
        "label": label,
        "subset": _split_name(path, lineno, split),
        "group": group,
        "lookup": lookup,
    }


def _finish_csv(
    dataset: str,
    rows: list[dict[str, Any]],
    videos_dir: str | Path,
    labels_file: str | Path | None,
    val_fraction: float,
    validate_on_test: bool,
    seed: int,
) -> Annotations:
    """The csv formats' classes are ``labels_file`` (one per line) or, without one, the
    sorted labels the csv uses; then :func:`_finish` with a fresh report."""
    labels = _read_label_file(labels_file) if labels_file else sorted({r["label"] for r in rows})
    return _finish(
        dataset,
        labels,
        rows,
        StoreIndex(videos_dir),
        AnnotationReport(dataset),
        val_fraction=val_fraction,
        validate_on_test=validate_on_test,
        seed=seed,
    )


def build_vggsound(
    csv_file: str | Path,
    videos_dir: str | Path,
    *,
    labels_file: str | Path | None = None,
    val_fraction: float = 0.1,
    validate_on_test: bool = False,
    seed: int = 1,
) -> Annotations:
    """VGGSound ``vggsound.csv`` rows ``youtube_id,start_seconds,label,split`` (split
    train/test). Stores are looked up as ``<id>_<start:06d>``, ``<id>_<start>`` or ``<id>``.
    Classes: ``labels_file`` (one per line) or the sorted labels of the csv."""
    check_val_fraction(val_fraction)
    path = Path(csv_file)
    rows: list[dict[str, Any]] = []
    for lineno, (yid, start, label, split) in _csv_rows(path, 4, "youtube_id"):
        try:
            start_i = int(float(start))
        except ValueError:
            raise AnnotationFormatError(
                path, lineno, f"start_seconds {start!r} is not a number"
            ) from None
        if not yid or not label:
            raise AnnotationFormatError(path, lineno, "empty youtube_id or label")
        canonical = f"{yid}_{start_i:06d}"
        lookup = [canonical, f"{yid}_{start_i}", yid]
        rows.append(_csv_sample(path, lineno, canonical, label, split, group=yid, lookup=lookup))
    return _finish_csv(
        "vggsound", rows, videos_dir, labels_file, val_fraction, validate_on_test, seed
    )


def build_csv(
    csv_file: str | Path,
    videos_dir: str | Path,
    *,
    labels_file: str | Path | None = None,
    val_fraction: float = 0.1,
    validate_on_test: bool = False,
    seed: int = 1,
) -> Annotations:
    """Generic csv rows ``video_id,label,split`` (split train/val/test; an optional header
    line ``video_id,label,split``). Stores are found by video id anywhere under
    ``videos_dir``. When the csv has validation rows no hold-out is made."""
    check_val_fraction(val_fraction)
    path = Path(csv_file)
    rows: list[dict[str, Any]] = []
    for lineno, (video_id, label, split) in _csv_rows(path, 3, "video_id"):
        if not video_id or not label:
            raise AnnotationFormatError(path, lineno, "empty video_id or label")
        video_id = Path(video_id).stem if video_id.endswith(STORE_SUFFIX) else video_id
        rows.append(
            _csv_sample(path, lineno, video_id, label, split, group=video_id, lookup=[video_id])
        )
    return _finish_csv("csv", rows, videos_dir, labels_file, val_fraction, validate_on_test, seed)


__all__ = [
    "audio_classes",
    "build_activitynet",
    "build_csv",
    "build_ucf101",
    "build_vggsound",
    "ucf101_group",
]
