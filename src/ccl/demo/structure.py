"""How a teacher's embedding space relates the classes, measured on the teacher's embeddings
alone (no distillation run): mean cosine similarity within a class, between classes that
share an attribute (a sound event or family), and between unrelated classes.

* :func:`class_similarity`: the C x C matrix whose entry (a, b) is the mean cosine
  similarity over all pairs (one video of class a, one of class b); on the diagonal over the
  distinct pairs of one class (self-pairs excluded). Exact, from class sums of the
  L2-normalised embeddings: the sum over pairs of two classes is the dot product of their
  sums, and the self-pairs of a class add up to its video count.
* :func:`attribute_pair_groups`: class pairs grouped by a mapping class -> attribute
  (``None``: audio unrelated to the class): :data:`SAME`, :data:`DIFFERENT`,
  :data:`UNRELATED`.
* :func:`summarize` / :func:`format_summary`: within-class mean, each group's mean +- sd
  over its class pairs and range, all pairs of distinct classes, the closest class pairs.
* :func:`demo_structure`: the numbers of a demo folder's audio teacher, on the videos of
  the annotation's ``training`` subset (the ``validation`` hold-out and the test videos left
  out, so that choices made on these numbers see no test data), grouped by the benchmark's
  ``class_audio`` (``synth_info.json``).
* :func:`annotated_embeddings` / :func:`ucf_named_embeddings`: the labelled embeddings of an
  audio-feature folder, read with :func:`ccl.data.audio.load_audio_embeddings` (what training
  reads) and labelled by an annotation file or by UCF101 file names (``v_<Class>_gGG_cCC``).

Every mean over classes or class pairs weighs each class (pair) once, whatever its number of
videos; an sd is the population sd (ddof 0) over those classes or pairs.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "DIFFERENT",
    "SAME",
    "UCF101_TEST_GROUPS",
    "UNRELATED",
    "ClassPair",
    "LabelledEmbeddings",
    "Stats",
    "StructureSummary",
    "annotated_embeddings",
    "attribute_pair_groups",
    "class_similarity",
    "demo_structure",
    "format_summary",
    "summarize",
    "ucf_named_embeddings",
]

SAME = "same sound"
"""Group of the class pairs whose classes carry the same (non-null) attribute."""
DIFFERENT = "different sounds"
"""Group of the class pairs whose classes carry different (non-null) attributes."""
UNRELATED = "unrelated audio involved"
"""Group of the class pairs where at least one class has audio unrelated to it (``None``)."""

UCF101_TEST_GROUPS = range(1, 8)
"""The groups UCF101's split 1 puts in the test set (groups 8-25 are for training)."""

_UCF_NAME = re.compile(r"^v_(?P<cls>.+)_g(?P<group>\d+)_c(?P<clip>\d+)$")


# ----------------------------------------------------------------------------- the matrix


def class_similarity(
    embeddings: np.ndarray, labels: Sequence[int] | np.ndarray, num_classes: int | None = None
) -> np.ndarray:
    """(C, C) float64: entry (a, b) is the mean cosine similarity between the videos of class
    ``a`` and those of class ``b``; entry (a, a) the mean over the distinct pairs of class
    ``a`` (self-pairs excluded). Symmetric.

    ``embeddings`` (N, D) and ``labels`` (N,) integers in ``[0, num_classes)``
    (``num_classes`` defaults to ``max(labels) + 1``). Undefined entries are NaN: the row and
    column of a class without videos, the diagonal entry of a class with one video.
    Raises ``ValueError`` when the lengths differ, a label is out of range or not an
    integer, or a row is non-finite or all zero (its cosine is undefined)."""
    x = np.asarray(embeddings, dtype=np.float64)
    y = np.asarray(labels)
    if x.ndim != 2:
        raise ValueError(f"embeddings have shape {x.shape}; want (N, D)")
    if y.ndim != 1 or len(y) != len(x):
        raise ValueError(f"{y.shape} labels for {len(x)} embeddings; want one label per row")
    if not len(y):
        raise ValueError("no embeddings")
    if not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"labels must be integers, got dtype {y.dtype}")
    n_classes = int(y.max()) + 1 if num_classes is None else int(num_classes)
    if y.min() < 0 or y.max() >= n_classes:
        raise ValueError(f"labels range over {y.min()}..{y.max()}, want 0..{n_classes - 1}")
    if not np.isfinite(x).all():
        raise ValueError("embeddings have non-finite values")
    norms = np.linalg.norm(x, axis=1)
    if not norms.all():
        raise ValueError(f"embedding row {int(np.argmin(norms))} is all zero: no cosine")
    xn = x / norms[:, None]
    onehot = np.zeros((n_classes, len(y)))
    onehot[y, np.arange(len(y))] = 1.0
    sums = onehot @ xn  # (C, D): class sums of unit vectors
    counts = onehot.sum(1)
    dots = sums @ sums.T  # (a, b): the sum of the cosines over all (i in a, j in b)
    # The self-pairs' cosines are 1 up to rounding; their exact sum keeps the diagonal exact.
    self_pairs = onehot @ np.einsum("nd,nd->n", xn, xn)
    with np.errstate(invalid="ignore", divide="ignore"):
        sim = dots / np.outer(counts, counts)
        within = (np.diag(dots) - self_pairs) / (counts * (counts - 1))
    sim[np.diag_indices(n_classes)] = np.where(counts >= 2, within, np.nan)
    empty = counts == 0
    sim[empty, :] = np.nan
    sim[:, empty] = np.nan
    return sim


# ----------------------------------------------------------------------------- groups


def attribute_pair_groups(
    classes: Sequence[str], attribute: Mapping[str, str | None]
) -> dict[str, list[tuple[str, str]]]:
    """The unordered pairs of distinct ``classes`` (in class order) by their attributes
    (``attribute``: class -> a label such as its sound event or sound family, ``None`` for
    audio unrelated to the class): :data:`SAME` (both the same label), :data:`DIFFERENT`
    (both labelled, differently), :data:`UNRELATED` (at least one ``None``). Every group is
    present, perhaps empty. Raises ``ValueError`` naming a class without an entry."""
    missing = [c for c in classes if c not in attribute]
    if missing:
        raise ValueError(f"no attribute for class(es) {', '.join(missing)}")
    groups: dict[str, list[tuple[str, str]]] = {SAME: [], DIFFERENT: [], UNRELATED: []}
    for i, a in enumerate(classes):
        for b in classes[i + 1 :]:
            la, lb = attribute[a], attribute[b]
            key = UNRELATED if la is None or lb is None else SAME if la == lb else DIFFERENT
            groups[key].append((a, b))
    return groups


# ----------------------------------------------------------------------------- summary


@dataclass
class Stats:
    """Mean, population sd and range of ``n`` values (NaN when ``n`` is 0)."""

    name: str
    n: int
    mean: float
    sd: float
    min: float
    max: float

    @classmethod
    def of(cls, name: str, values: Sequence[float] | np.ndarray) -> Stats:
        v = np.asarray(values, dtype=np.float64)
        if not len(v):
            return cls(name, 0, *(4 * [float("nan")]))
        return cls(name, len(v), float(v.mean()), float(v.std()), float(v.min()), float(v.max()))


@dataclass
class ClassPair:
    """One pair of distinct classes, its mean cosine similarity and its group (if any)."""

    a: str
    b: str
    similarity: float
    group: str | None = None


@dataclass
class StructureSummary:
    """What :func:`summarize` reads off a class-similarity matrix."""

    classes: list[str]
    within: Stats  # over the classes with a within-class value
    between: Stats  # over all pairs of distinct classes with a value
    groups: list[Stats]  # over each named group's pairs, in the order given
    closest: list[ClassPair]  # highest between-class similarity first
    no_within: list[str] = field(default_factory=list)  # classes with fewer than two videos
    videos: int | None = None  # embeddings the matrix was computed from, when known
    attribute: dict[str, str | None] | None = None  # class -> attribute, when grouped by one

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def summarize(
    sim: np.ndarray,
    classes: Sequence[str],
    groups: Mapping[str, Sequence[tuple[str, str]]] | None = None,
    *,
    k: int = 10,
    videos: int | None = None,
) -> StructureSummary:
    """Summary of :func:`class_similarity`'s matrix ``sim`` over ``classes`` (its row order).

    ``groups``: name -> pairs of distinct class names (order within a pair is free), e.g.
    :func:`attribute_pair_groups`. ``within``: over the classes' diagonal entries;
    ``between``: over all unordered pairs of distinct classes; each group over its pairs;
    NaN entries (a class with too few videos) are left out of every statistic and the
    classes without a within-class value listed in ``no_within``. ``closest``: the ``k``
    pairs of highest similarity (ties in class order). Raises ``ValueError`` for a matrix
    not C x C or a pair naming an unknown class or one class twice."""
    sim = np.asarray(sim, dtype=np.float64)
    classes = list(classes)
    n = len(classes)
    if sim.shape != (n, n):
        raise ValueError(f"similarity matrix of shape {sim.shape} for {n} classes")
    index = {c: i for i, c in enumerate(classes)}
    groups = dict(groups or {})
    group_of: dict[tuple[int, int], str] = {}
    group_stats = []
    for name, pairs in groups.items():
        values = []
        for a, b in pairs:
            if a not in index or b not in index or a == b:
                raise ValueError(f"group {name!r}: ({a!r}, {b!r}) is not a pair of two classes")
            i, j = sorted((index[a], index[b]))
            group_of.setdefault((i, j), name)
            values.append(sim[i, j])
        group_stats.append(Stats.of(name, [v for v in values if np.isfinite(v)]))
    diag = np.diag(sim)
    iu, ju = np.triu_indices(n, k=1)
    upper = sim[iu, ju]
    defined = np.isfinite(upper)
    # a stable sort on the negated values keeps ties in class order
    order = [p for p in np.argsort(-upper, kind="stable") if defined[p]][: max(0, k)]
    closest = [
        ClassPair(classes[iu[p]], classes[ju[p]], float(upper[p]), group_of.get((iu[p], ju[p])))
        for p in order
    ]
    return StructureSummary(
        classes=classes,
        within=Stats.of("within a class", diag[np.isfinite(diag)]),
        between=Stats.of("between classes", upper[defined]),
        groups=group_stats,
        closest=closest,
        no_within=[c for c, v in zip(classes, diag) if not np.isfinite(v)],
        videos=videos,
    )


def format_summary(summary: StructureSummary, title: str | None = None) -> str:
    """A markdown table of the statistics and a numbered list of the closest pairs."""

    def row(s: Stats, what: str) -> str:
        if not s.n:
            return f"| {s.name} | 0 {what} | - | - | - |"
        return (
            f"| {s.name} | {s.n} {what} | {s.mean:.3f} | {s.sd:.3f} | {s.min:.3f} - {s.max:.3f} |"
        )

    lines = [f"### {title}", ""] if title else []
    videos = f"{summary.videos} videos, " if summary.videos is not None else ""
    lines += [
        f"Mean cosine similarity of the embeddings ({videos}{len(summary.classes)} classes):",
        "",
        "| | over | mean | sd | range |",
        "|---|---|---|---|---|",
        row(summary.within, "classes"),
        row(summary.between, "class pairs"),
        *(row(g, "class pairs") for g in summary.groups),
    ]
    if summary.no_within:
        lines += [
            "",
            f"No within-class value (fewer than two videos): {', '.join(summary.no_within)}.",
        ]
    if summary.closest:
        lines += ["", f"The {len(summary.closest)} closest class pairs:", ""]
        for rank, p in enumerate(summary.closest, 1):
            note = f" ({p.group})" if p.group else ""
            lines.append(f"{rank}. {p.a} - {p.b}: {p.similarity:.3f}{note}")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- inputs


@dataclass
class LabelledEmbeddings:
    """Per-video embeddings (one row each) and their class indices into ``classes``."""

    x: np.ndarray  # (N, D) float32
    y: np.ndarray  # (N,) int64
    classes: list[str]
    video_ids: list[str]
    missing: list[str] = field(default_factory=list)  # listed videos without an embedding

    def summary(
        self,
        attribute: Mapping[str, str | None] | None = None,
        *,
        k: int = 10,
    ) -> StructureSummary:
        """:func:`summarize` of these embeddings, grouped by ``attribute`` when given."""
        sim = class_similarity(self.x, self.y, len(self.classes))
        groups = attribute_pair_groups(self.classes, attribute) if attribute is not None else None
        out = summarize(sim, self.classes, groups, k=k, videos=len(self.y))
        out.attribute = None if attribute is None else {c: attribute[c] for c in self.classes}
        return out


def annotated_embeddings(
    annotations: str | Path, audio_dir: str | Path, subset: str = "training"
) -> LabelledEmbeddings:
    """The embeddings in ``audio_dir`` of the videos of ``subset`` of an annotation file
    (``training+validation``-style unions allowed), labelled by it and joined as
    :func:`ccl.demo.probe.audio_probe` joins them: by video id, else by the stem of the
    entry's ``video_path``; a (T, D) embedding gives its segment mean. Listed videos without
    an embedding are left out and named in ``missing``."""
    from ccl.data.audio import load_audio_embeddings
    from ccl.demo.probe import subset_rows

    classes, listed = subset_rows(annotations, subset)
    table = load_audio_embeddings(audio_dir)
    rows, labels, ids, missing = [], [], [], []
    for video_id, label, stem in listed:
        key = next((k for k in (video_id, stem) if k in table), None)
        if key is None:
            missing.append(video_id)
            continue
        rows.append(table.lookup(key)[0])
        labels.append(label)
        ids.append(video_id)
    if not rows:
        raise ValueError(f"no video of subset {subset!r} of {annotations} has an embedding")
    return LabelledEmbeddings(np.stack(rows), np.asarray(labels, np.int64), classes, ids, missing)


def ucf_named_embeddings(audio_dir: str | Path, split: str = "train") -> LabelledEmbeddings:
    """Every embedding in ``audio_dir`` (e.g. imported with ``ccl prepare audio-features
    --from-archive``), labelled by its UCF101 file name ``v_<Class>_gGG_cCC``: ``split``
    ``train`` keeps groups 8-25, ``test`` groups 1-7 (UCF101 split 1), ``all`` every video.
    Classes are the file names' class names, sorted (the order of UCF101's ``classInd``),
    over all videos whatever ``split``, so train and test share indices. Raises
    ``ValueError`` naming a file whose name is not of that form."""
    from ccl.data.audio import load_audio_embeddings

    if split not in ("train", "test", "all"):
        raise ValueError(f"split {split!r}: want train, test or all")
    table = load_audio_embeddings(audio_dir)
    named = []
    for video_id in table:
        m = _UCF_NAME.match(video_id)
        if m is None:
            raise ValueError(f"{audio_dir}: {video_id!r} is not a UCF101 name v_<Class>_gGG_cCC")
        named.append((video_id, m.group("cls"), int(m.group("group"))))
    classes = sorted({cls for _, cls, _ in named})
    index = {c: i for i, c in enumerate(classes)}
    keep = [
        (vid, cls)
        for vid, cls, group in named
        if split == "all" or (group in UCF101_TEST_GROUPS) == (split == "test")
    ]
    if not keep:
        raise ValueError(f"{audio_dir}: no video in the {split} groups of UCF101 split 1")
    x = np.stack([table.lookup(vid)[0] for vid, _ in keep])
    y = np.asarray([index[cls] for _, cls in keep], np.int64)
    return LabelledEmbeddings(x, y, classes, [vid for vid, _ in keep])


def demo_structure(
    demo_dir: str | Path,
    *,
    subset: str = "training",
    attribute: Mapping[str, str | None] | None = None,
    k: int = 10,
) -> StructureSummary:
    """The audio teacher's class structure in a demo folder (``ccl demo --out``): its
    ``audio_features`` of the videos of ``subset`` of its ``annotations.json``, grouped by
    ``attribute`` (class -> attribute label, ``None`` for unrelated audio; default the
    benchmark's ``class_audio`` from ``synth/synth_info.json``: the sound event or sound
    family of each class)."""
    from ccl.demo.paths import demo_paths

    paths = demo_paths(demo_dir)
    if attribute is None:
        info = json.loads(paths.synth_info.read_text())
        attribute = info["class_audio"]
    labelled = annotated_embeddings(paths.annotations, paths.audio_dir, subset)
    return labelled.summary(attribute, k=k)
