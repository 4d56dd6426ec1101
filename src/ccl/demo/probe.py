"""Linear probes of the frozen teachers: how much of the task each teacher's features already
solve, as reference rows next to the students (docs/DEMO.md, "How the tables are computed").

A probe is a multinomial logistic regression on standardised features of the annotation's
``training`` subset (the videos the student trains on; the ``validation`` hold-out, when the
file has one, is left out, as in training), scored on the ``testing`` subset:

* audio: each video's audio-teacher embedding (the mean over its segments, as
  :meth:`AudioEmbeddings.lookup` gives it without a generator);
* image: the frozen image teacher's pooled feature of each video's centre frame, prepared as
  the student's evaluation prepares frames (short side resized to ``size``, centre crop,
  normalised with the clip statistics) and then handed to :class:`ImageTeacher` as a
  one-frame clip, which resizes (and re-normalises) it as it does during training.

A test video without a feature (no soundtrack embedding, unreadable or missing frame store)
counts as wrong: the denominator is every test video the annotation lists. Training videos
without a feature cannot be fitted and are left out; both counts are reported.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ccl.models.teachers import KINETICS_MEAN, KINETICS_STD

__all__ = [
    "ImageProbeSettings",
    "ProbeResult",
    "audio_probe",
    "fit_probe",
    "image_features",
    "image_probe",
    "image_probe_settings",
    "subset_rows",
]

MAX_ITER = 2000
_SHOWN = 5  # missing videos named in a result


@dataclass
class ProbeResult:
    """Top-1 / top-5 of one teacher's linear probe on the test videos (fractions)."""

    teacher: str
    top1: float
    top5: float
    train_videos: int  # listed in the training subset
    train_missing: int  # of those, without a feature (left out of the fit)
    test_videos: int  # listed in the test subset: the denominator
    test_missing: int  # of those, without a feature (counted wrong)
    missing_examples: list[str] = field(default_factory=list)
    converged: bool = True

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ProbeResult:
        return cls(**dict(data))

    def summary(self) -> str:
        line = (
            f"{self.teacher} teacher, linear probe: top-1 {100 * self.top1:.1f} "
            f"top-5 {100 * self.top5:.1f} ({self.test_videos} test videos"
        )
        if self.test_missing:
            line += f", {self.test_missing} without a feature counted wrong"
        return line + ")"


def fit_probe(
    train_x: np.ndarray,
    train_y: Sequence[int],
    test_x: np.ndarray,
    test_y: Sequence[int],
    *,
    num_classes: int,
    test_total: int | None = None,
    seed: int = 0,
    max_iter: int = MAX_ITER,
) -> tuple[float, float, bool]:
    """(top-1, top-5, converged) of a logistic regression fitted on standardised
    ``train_x`` and scored on ``test_x``. ``test_total`` (default ``len(test_y)``) is the
    denominator: the test videos beyond ``test_x`` count as wrong. Classes missing from the
    training set are never predicted; ties go to the lower class index (ccl.metrics)."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    from ccl import metrics

    train_x, test_x = np.asarray(train_x, np.float64), np.asarray(test_x, np.float64)
    train_y, test_y = np.asarray(train_y, np.int64), np.asarray(test_y, np.int64)
    total = len(test_y) if test_total is None else int(test_total)
    if not len(train_y):
        raise ValueError("a linear probe needs at least one training video with a feature")
    if total < len(test_y) or total < 1:
        raise ValueError(f"test_total {total} must be at least the {len(test_y)} test rows and 1")
    if not len(test_y):
        return 0.0, 0.0, True
    scaler = StandardScaler().fit(train_x)
    seen = np.unique(train_y)
    scores = np.full((len(test_y), num_classes), -1.0)
    converged = True
    if len(seen) == 1:  # nothing to separate: the only class seen is always predicted
        scores[:, seen[0]] = 1.0
    else:
        clf = LogisticRegression(max_iter=max_iter, random_state=seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            clf.fit(scaler.transform(train_x), train_y)
        converged = bool(np.max(clf.n_iter_) < max_iter)
        scores[:, clf.classes_] = clf.predict_proba(scaler.transform(test_x))
    acc = metrics.topk_accuracy(torch.from_numpy(scores), torch.from_numpy(test_y), ks=(1, 5))
    scale = len(test_y) / total
    return acc[1] * scale, acc[5] * scale, converged


def subset_rows(
    annotations: str | Path, subset: str
) -> tuple[list[str], list[tuple[str, int, str]]]:
    """(class names, [(video_id, label, store stem)] of ``subset`` in file order)."""
    from ccl.data.annotations import iter_subset, load_annotations

    data = load_annotations(annotations)
    index = {name: i for i, name in enumerate(data["labels"])}
    rows = []
    for video_id, entry in iter_subset(data, subset):
        label = entry["annotations"].get("label")
        if label not in index:
            raise ValueError(
                f"{annotations}: video {video_id!r} has label {label!r}, which is not in 'labels'"
            )
        stem = Path(entry["video_path"]).stem if "video_path" in entry else video_id
        rows.append((video_id, index[label], stem))
    return list(data["labels"]), rows


def _probe(
    teacher: str,
    classes: list[str],
    rows: dict[str, list[tuple[str, int, str]]],
    features: dict[str, dict[str, np.ndarray]],
    seed: int,
) -> ProbeResult:
    """Fit on ``rows["train"]``, score on ``rows["test"]``; ``features[split][video_id]``."""

    def arrays(split: str) -> tuple[np.ndarray, list[int], list[str]]:
        have = [(vid, y) for vid, y, _ in rows[split] if vid in features[split]]
        missing = [vid for vid, _, _ in rows[split] if vid not in features[split]]
        x = np.stack([features[split][vid] for vid, _ in have]) if have else np.zeros((0, 1))
        return x, [y for _, y in have], missing

    train_x, train_y, train_missing = arrays("train")
    test_x, test_y, test_missing = arrays("test")
    if not train_y:
        raise ValueError(f"{teacher} probe: no training video has a {teacher} feature")
    if not len(test_y):
        test_x = np.zeros((0, train_x.shape[1]))
    top1, top5, converged = fit_probe(
        train_x,
        train_y,
        test_x,
        test_y,
        num_classes=len(classes),
        test_total=len(rows["test"]),
        seed=seed,
    )
    return ProbeResult(
        teacher=teacher,
        top1=top1,
        top5=top5,
        train_videos=len(rows["train"]),
        train_missing=len(train_missing),
        test_videos=len(rows["test"]),
        test_missing=len(test_missing),
        missing_examples=test_missing[:_SHOWN],
        converged=converged,
    )


def audio_probe(
    annotations: str | Path,
    audio_dir: str | Path,
    *,
    train_subset: str = "training",
    test_subset: str = "testing",
    seed: int = 0,
) -> ProbeResult:
    """The audio teacher's probe on the per-video embeddings in ``audio_dir`` (joined by video
    id, else by frame-store name, as :class:`ccl.data.ClipDataset` joins them)."""
    from ccl.data.audio import load_audio_embeddings

    embeddings = load_audio_embeddings(audio_dir)
    classes, train = subset_rows(annotations, train_subset)
    _, test = subset_rows(annotations, test_subset)
    rows = {"train": train, "test": test}
    features: dict[str, dict[str, np.ndarray]] = {}
    for split, listed in rows.items():
        features[split] = {}
        for video_id, _, stem in listed:
            for key in (video_id, stem):
                if key in embeddings:
                    features[split][video_id] = embeddings.lookup(key)[0]
                    break
    return _probe("audio", classes, rows, features, seed)


@dataclass
class ImageProbeSettings:
    """How frames reach the image teacher: the student's evaluation transform (``size``,
    ``mean``/``std``) then the teacher's own settings (ccl.config.ImageTeacherConfig)."""

    arch: str = "resnet18"
    input_size: int | None = None
    normalization: str = "clip"
    size: int = 112
    mean: tuple[float, float, float] = KINETICS_MEAN
    std: tuple[float, float, float] = KINETICS_STD
    batch_size: int = 64


def image_features(
    annotations: str | Path,
    frames_dir: str | Path,
    subset: str,
    teacher: torch.nn.Module,
    settings: ImageProbeSettings,
) -> dict[str, np.ndarray]:
    """video_id -> the teacher's pooled feature of its centre frame; videos whose store is
    missing or unreadable are absent."""
    from ccl.data import transforms as T
    from ccl.data.datasets import ClipDataset

    dataset = ClipDataset(
        annotations, frames_dir, subset, "val", frames=1, size=settings.size, missing="skip"
    )
    mean = torch.tensor(settings.mean).view(1, 3, 1, 1, 1)
    std = torch.tensor(settings.std).view(1, 3, 1, 1, 1)
    out: dict[str, np.ndarray] = {}
    ids: list[str] = []
    frames: list[torch.Tensor] = []

    def flush() -> None:
        if not frames:
            return
        clip = torch.stack(frames).permute(0, 2, 1, 3, 4).float().div(255.0)  # (B, 3, 1, H, W)
        feats = teacher((clip - mean) / std)
        for video_id, feat in zip(ids, feats.numpy()):
            out[video_id] = feat.astype(np.float32)
        ids.clear()
        frames.clear()

    for v, rec in enumerate(dataset.videos):
        try:
            buffers = dataset.read_frames(v, [rec.n_frames // 2])
            frames.append(
                T.eval_clip(buffers, settings.size, None, True, dataset.frame_size(v, buffers[0]))
            )  # (1, 3, size, size) uint8, as evaluation prepares the student's windows
            ids.append(rec.video_id)
        except (OSError, ValueError, IndexError, KeyError):
            continue  # counted as missing by the caller
        if len(frames) >= settings.batch_size:
            flush()
    flush()
    dataset.close()
    return out


@torch.no_grad()
def image_probe(
    annotations: str | Path,
    frames_dir: str | Path,
    weights: str | Path | None,
    settings: ImageProbeSettings | None = None,
    *,
    train_subset: str = "training",
    test_subset: str = "testing",
    seed: int = 0,
) -> ProbeResult:
    """The image teacher's probe: ``weights`` loaded into :class:`ImageTeacher` (frozen,
    centre frame; None: random weights, for tests), features of each video's centre frame
    from the stores in ``frames_dir``."""
    from ccl.models.teachers import ImageTeacher

    settings = settings or ImageProbeSettings()
    teacher = ImageTeacher(
        settings.arch,
        weights,
        frame_choice="center",
        input_size=settings.input_size,
        normalization=settings.normalization,  # type: ignore[arg-type]
        clip_mean=tuple(settings.mean),  # type: ignore[arg-type]
        clip_std=tuple(settings.std),  # type: ignore[arg-type]
    )
    classes, train = subset_rows(annotations, train_subset)
    _, test = subset_rows(annotations, test_subset)
    rows = {"train": train, "test": test}
    subsets = {"train": train_subset, "test": test_subset}
    features = {
        split: image_features(annotations, frames_dir, subsets[split], teacher, settings)
        for split in rows
    }
    return _probe("image", classes, rows, features, seed)


def image_probe_settings(cfg: Any) -> ImageProbeSettings:
    """The image probe's settings from a run :class:`ccl.config.Config`."""
    t, d = cfg.image_teacher, cfg.data
    return ImageProbeSettings(
        arch=t.arch,
        input_size=t.input_size,
        normalization=t.normalization,
        size=d.size,
        mean=tuple(d.mean),
        std=tuple(d.std),
    )
