"""The annotation file: the reference's JSON schema, its reading, the hold-out helpers
(docs/METHOD.md §5.3 and §6).

Schema (the reference's, readable by its code)::

    {"labels": [class names, index = class id],
     "database": {video_id: {"subset": "training" | "validation" | "testing",
                             "annotations": {"label": name, "segment": [first, last + 1]},
                             "video_path": "<store path relative to the frames dir>"}}}

``segment`` is 1-based and half-open in frames: a whole video of ``n`` frames is
``[1, n + 1]``; ``n`` is read from the frame store. ``video_path`` is written only when the
store is not at ``<frames dir>/<label>/<video_id>.hdf5`` (e.g. ActivityNet segments, which
share their video's store). Optional top-level key ``validation_subset``: the subset that
plays the validation role ("testing" when validating on the test split as the reference did).

:mod:`ccl.data.splits` builds these files from the official split files.
"""

from __future__ import annotations

import json
import math
import os
import random
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ccl.atomic import write_text_atomic
from ccl.data.store import STORE_SUFFIX, read_store_info
from ccl.errors import AnnotationFormatError

SUBSETS = ("training", "validation", "testing")

# The short subset names the commands accept (``--split test``, ``--gallery train+val``).
SUBSET_SHORT_NAMES = {"test": "testing", "val": "validation", "train": "training"}


def subset_name(name: str) -> str:
    """The annotation subset a command's ``test``, ``val`` or ``train`` stands for; any
    other name (``testing``, a union ``a+b``, a custom subset) as given."""
    return SUBSET_SHORT_NAMES.get(name, name)


@dataclass
class AnnotationReport:
    """What went into the annotation file and what was left out (and why)."""

    dataset: str
    counts: dict[str, int] = field(default_factory=dict)
    n_classes: int = 0
    unknown_labels: list[dict[str, Any]] = field(default_factory=list)
    missing_videos: list[dict[str, Any]] = field(default_factory=list)
    filtered_out: int = 0
    skipped: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def n_problems(self) -> int:
        """Rows left out for a reason other than a requested class filter."""
        return len(self.unknown_labels) + len(self.missing_videos) + len(self.skipped)

    def summary(self) -> str:
        """Human-readable, a few lines."""
        counts = ", ".join(f"{s} {self.counts.get(s, 0)}" for s in SUBSETS)
        lines = [f"{self.dataset}: {self.n_classes} classes; {counts}"]
        if self.filtered_out:
            lines.append(f"  {self.filtered_out} rows outside the selected classes (filtered)")
        if self.unknown_labels:
            names = Counter(r["label"] for r in self.unknown_labels)
            shown = ", ".join(f"{k!r} x{v}" for k, v in names.most_common(5))
            lines.append(f"  {len(self.unknown_labels)} rows with unknown labels left out: {shown}")
        if self.missing_videos:
            shown = ", ".join(r["video"] for r in self.missing_videos[:5])
            more = " ..." if len(self.missing_videos) > 5 else ""
            lines.append(
                f"  {len(self.missing_videos)} listed videos without a frame store left out: "
                f"{shown}{more}"
            )
        if self.skipped:
            reasons = Counter(r["reason"] for r in self.skipped)
            shown = "; ".join(f"{k} x{v}" for k, v in reasons.most_common(5))
            lines.append(f"  {len(self.skipped)} entries skipped: {shown}")
        lines.extend(f"  note: {n}" for n in self.notes)
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def is_annotation_report(data: Any) -> bool:
    """Whether parsed JSON is an :class:`AnnotationReport` (keys it always writes)."""
    return isinstance(data, dict) and {"dataset", "counts", "missing_videos"} <= data.keys()


def is_annotation_json(data: Any) -> bool:
    """Whether parsed JSON is an annotation file (``labels`` and ``database``)."""
    return isinstance(data, dict) and "labels" in data and "database" in data


@dataclass
class Annotations:
    """An annotation file in memory: ``to_json()`` gives the reference's schema."""

    labels: list[str]
    database: dict[str, dict[str, Any]]
    report: AnnotationReport
    validation_subset: str = "validation"

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"labels": self.labels, "database": self.database}
        if self.validation_subset != "validation":
            data["validation_subset"] = self.validation_subset
        return data

    def write(self, path: str | Path) -> None:
        """Write the JSON atomically (temporary file, then rename)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(path, json.dumps(self.to_json()))


# --------------------------------------------------------------------------- frame stores


class StoreIndex:
    """Frame stores under a folder, found by video id (file stem), case-insensitively as a
    fallback (UCF101's ``HandstandPushups`` folder holds ``v_HandStandPushups_*`` videos)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"frame store folder not found: {self.root}")
        self._by_stem: dict[str, list[Path]] = defaultdict(list)
        self._by_lower: dict[str, list[Path]] = defaultdict(list)
        for dirpath, dirs, files in os.walk(self.root):
            dirs[:] = [d for d in dirs if not d.startswith(".")]
            for name in files:
                if name.startswith(".") or not name.endswith(STORE_SUFFIX):
                    continue
                rel = (Path(dirpath) / name).relative_to(self.root)
                stem = name[: -len(STORE_SUFFIX)]
                self._by_stem[stem].append(rel)
                self._by_lower[stem.lower()].append(rel)

    def __len__(self) -> int:
        return sum(len(v) for v in self._by_stem.values())

    def find(self, video_id: str, label: str | None = None) -> Path | None:
        """Relative path of the store of ``video_id`` (preferring ``<label>/``), or None."""
        for table, key in ((self._by_stem, video_id), (self._by_lower, video_id.lower())):
            hits = table.get(key)
            if not hits:
                continue
            if len(hits) > 1 and label is not None:
                same = [h for h in hits if h.parent.name.lower() == label.lower()]
                if same:
                    return same[0]
            return sorted(hits)[0]
        return None

    def n_frames_and_fps(self, rel: Path) -> tuple[int, float | None]:
        info = read_store_info(self.root / rel)
        fps = info.get("fps")
        return info["n_frames"], (float(fps) if fps else None)


# --------------------------------------------------------------------------- hold-out


def check_val_fraction(fraction: float) -> float:
    """``fraction`` when it is a share of training that can be held out: in [0, 1)."""
    if not 0 <= fraction < 1:  # also refuses NaN
        raise ValueError(f"validation fraction must be in [0, 1) (0: no hold-out), got {fraction}")
    return fraction


def hold_out_groups(groups: dict[str, str], fraction: float, seed: int) -> set[str]:
    """Keys (sample ids) to move from training to validation: whole groups, chosen by a
    seeded shuffle, added until at least ``fraction`` of the samples are held out."""
    if fraction <= 0 or not groups:
        return set()
    if fraction >= 1:
        raise ValueError(f"validation fraction must be below 1, got {fraction}")
    members: dict[str, list[str]] = defaultdict(list)
    for key, group in groups.items():
        members[group].append(key)
    order = sorted(members)
    random.Random(seed).shuffle(order)
    target = math.ceil(fraction * len(groups))
    held: set[str] = set()
    for group in order:
        if len(held) >= target:
            break
        held.update(members[group])
    return held


def read_text(path: Path, kind: str) -> str:
    """The UTF-8 text of an input file (a byte-order mark dropped). Raises
    ``FileNotFoundError`` naming ``kind`` (e.g. "split file") and :class:`AnnotationFormatError`
    with the line of the first byte that is not UTF-8."""
    if not path.is_file():
        raise FileNotFoundError(f"{kind} not found: {path}")
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        raise AnnotationFormatError(
            path, line, f"not UTF-8 text (byte 0x{data[err.start]:02x}); save it as UTF-8"
        ) from None


# --------------------------------------------------------------------------- reading


def load_annotations(path: str | Path) -> dict[str, Any]:
    """Read and check an annotation JSON (ours or the reference's)."""
    path = Path(path)
    text = read_text(path, "annotation file")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise AnnotationFormatError(path, err.lineno, f"invalid JSON: {err.msg}") from err
    if not isinstance(data, dict) or "labels" not in data or "database" not in data:
        raise AnnotationFormatError(path, None, "want an object with 'labels' and 'database'")
    labels = data["labels"]
    if not isinstance(labels, list) or len(set(labels)) != len(labels):
        raise AnnotationFormatError(path, None, "'labels' must be a list of distinct names")
    for video_id, entry in data["database"].items():
        try:
            entry["subset"]
            segment = entry["annotations"]["segment"]
            int(segment[0]), int(segment[1])
        except (KeyError, TypeError, IndexError, ValueError) as err:
            raise AnnotationFormatError(
                path, None, f"entry {video_id!r} lacks subset/annotations.segment ({err})"
            ) from err
    return data


def iter_subset(data: dict[str, Any], subset: str) -> Iterable[tuple[str, dict[str, Any]]]:
    """(video_id, entry) of one subset, in file order; ``validation`` follows the file's
    ``validation_subset`` key when there is one.

    ``a+b`` is the union of the subsets whose entries are marked ``a`` or ``b``, taken
    literally: ``training+validation`` is the official training split (the training videos
    and those held out of them for validation; the test split even when the file validates
    on it), the default retrieval gallery (docs/METHOD.md §5.5)."""
    if "+" in subset:
        parts = subset.split("+")
        unknown = [p for p in parts if p not in SUBSETS]
        if unknown:
            raise ValueError(
                f"subset {subset!r}: {', '.join(map(repr, unknown))} is not one of {SUBSETS}"
            )
        for video_id, entry in data["database"].items():
            if entry["subset"] in parts:
                yield video_id, entry
        return
    if subset == "validation":
        subset = data.get("validation_subset", "validation")
    for video_id, entry in data["database"].items():
        if entry["subset"] == subset:
            yield video_id, entry


__all__ = [
    "AnnotationFormatError",
    "AnnotationReport",
    "Annotations",
    "SUBSETS",
    "SUBSET_SHORT_NAMES",
    "StoreIndex",
    "check_val_fraction",
    "hold_out_groups",
    "iter_subset",
    "load_annotations",
    "read_text",
    "subset_name",
]
