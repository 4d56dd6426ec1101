"""Video-level evaluation: recognition by the reference protocol, and video retrieval.

Recognition (docs/METHOD.md §5.4): every non-overlapping window of each test video, short
side resized then centre crop, softmax averaged over the video's windows; top-1, top-5, mean
per-class accuracy, per-class accuracies, confusion matrix. Retrieval from the same forward
pass (docs/METHOD.md §5.5): queries = test videos, gallery = the official training split
(training and held-out validation videos), features = window-averaged, L2-normalised student
features, cosine similarity; R@k and mAP.

Every expected video is accounted for: a missing or unreadable one is an error unless
``allow_missing``, and then it counts as wrong (never leaves a denominator).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from ccl import distributed, metrics
from ccl.atomic import atomic_write, sha256_file, write_text_atomic
from ccl.checkpoint import check_classes, load_checkpoint
from ccl.config import Config
from ccl.cpu_allocator import configure_cpu_allocator
from ccl.data.sampling import EpochSampler
from ccl.models import build_model
from ccl.runlock import lock_run_folder
from ccl.runs import checkpoint_label, eval_path, features_path, run_contents
from ccl.runtime import autocast_context, resolve_device, stats_tensor, to_batch

RECALL_KS = (1, 5, 10, 20, 50)
EVALUATE_LOCK_HINT = " or write the results elsewhere with --out DIR"
"""The way on that an evaluation refused by a run folder in use is told."""


@dataclass
class EvalSettings:
    split: str = "testing"  # annotation subset of the queries
    checkpoint: str = "best"  # best | last, when a run folder is given (a file: its name)
    # retrieval gallery: the official training split (the training subset and the validation
    # videos held out of it, docs/METHOD.md §5.5), another subset or union; None: no retrieval
    gallery: str | None = "training+validation"
    allow_missing: bool = False
    reduced_decode: bool | None = None  # None: the run's data.reduced_decode
    batch_size: int = 32
    workers: int = 4
    device: str = "auto"
    precision: str = "fp32"
    annotations: str | None = None  # default: the run's data.annotations
    frames_dir: str | None = None  # default: the run's data.frames_dir
    out_dir: str | None = None  # where results go; default: the run folder
    save_features: bool = True
    progress: bool = True
    extra: dict[str, Any] = field(default_factory=dict)


def resolve_checkpoint(target: str | Path, kind: str = "best") -> Path:
    """A checkpoint file, or a run folder's ``checkpoints/<kind>.pt``."""
    target = Path(target)
    if target.is_dir():
        path = target / "checkpoints" / f"{kind}.pt"
        if not path.is_file():
            raise FileNotFoundError(f"{target} has no checkpoints/{kind}.pt")
        return path
    if not target.is_file():
        raise FileNotFoundError(f"no run folder or checkpoint at {target}")
    return target


class _GuardedWindows(Dataset):
    """Windows whose store cannot be read come back marked ``failed`` (with a blank clip
    of the right shape), so one bad file neither stops the pass nor shifts other results."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> dict[str, Any]:
        try:
            sample = self.dataset[index]
            sample["failed"] = False
            sample["error"] = ""
            return sample
        except (OSError, ValueError, RuntimeError, KeyError) as err:
            video, _ = self.dataset.windows[index]  # type: ignore[attr-defined]
            frames, size = self.dataset.frames, self.dataset.size  # type: ignore[attr-defined]
            return {
                "clip": torch.zeros(3, frames, size, size, dtype=torch.uint8),
                "label": self.dataset.videos[video].label,  # type: ignore[attr-defined]
                "index": index,
                "video": video,
                "failed": True,
                "error": f"{type(err).__name__}: {err}",
            }


@torch.no_grad()
def forward_windows(
    student: nn.Module,
    dataset: Dataset,
    *,
    batch_size: int,
    workers: int,
    device: torch.device,
    mean: torch.Tensor,
    std: torch.Tensor,
    precision: str = "fp32",
    progress: bool = False,
) -> dict[str, Any]:
    """Logits and features of every window (batched across videos; sharded and gathered
    by window index under DDP). Returns tensors indexed by window, plus failures."""
    from tqdm import tqdm

    info = distributed.info()
    guarded = _GuardedWindows(dataset)
    sampler = EpochSampler(
        len(guarded),
        global_batch=batch_size * info.world_size,
        shuffle=False,
        seed=0,
        rank=info.rank,
        world_size=info.world_size,
        drop_last=False,
    )
    loader = DataLoader(
        guarded,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=workers,
        pin_memory=device.type == "cuda",
    )
    student.eval()
    parts: dict[str, list[torch.Tensor]] = {
        k: [] for k in ("logits", "features", "index", "failed")
    }
    errors: dict[int, str] = {}
    for raw in tqdm(loader, desc="evaluate", disable=not (progress and info.is_main), leave=False):
        batch = to_batch(raw, device, mean, std)
        with autocast_context(device, precision):
            out = student(batch.clip)
        parts["logits"].append(out.logits.float())
        parts["features"].append(out.feature.float())
        parts["index"].append(torch.as_tensor(raw["index"]).to(device))
        parts["failed"].append(torch.as_tensor(raw["failed"]).to(device))
        for i, failed, message in zip(raw["index"], raw["failed"], raw["error"]):
            if bool(failed):
                errors[int(i)] = message
    index = torch.cat(parts["index"])
    total = len(guarded)
    result = {
        k: distributed.gather_by_index(torch.cat(parts[k]), index, total).cpu()
        for k in ("logits", "features", "failed")
    }
    result["errors"] = errors  # this rank's messages; the failed mask is global
    return result


def video_results(dataset: Any, windows: dict[str, Any]) -> dict[str, Any]:
    """Video-level results of :func:`forward_windows`' ``windows`` on ``dataset`` (with
    ``videos`` and ``windows``): softmax scores averaged per video and features averaged
    then L2-normalised, leaving out failed windows. Returns ``videos`` (indices of the
    readable videos), ``scores``, ``features``, ``labels`` (one row per readable video) and
    ``unreadable`` (indices of the videos whose every window failed)."""
    video_of_window = torch.tensor([v for v, _ in dataset.windows], dtype=torch.long)
    ok = ~windows["failed"].bool()
    n_videos = len(dataset.videos)
    has_window = torch.zeros(n_videos, dtype=torch.bool)
    has_window[video_of_window[ok]] = True
    readable = has_window.nonzero().flatten()
    remap = torch.full((n_videos,), -1, dtype=torch.long)
    remap[readable] = torch.arange(len(readable))
    sel = ok & (remap[video_of_window] >= 0)
    scores = metrics.aggregate_windows(
        windows["logits"][sel], remap[video_of_window[sel]], len(readable)
    )
    feats = metrics.aggregate_features(
        windows["features"][sel], remap[video_of_window[sel]], len(readable)
    )
    labels = torch.tensor([dataset.videos[i].label for i in readable.tolist()], dtype=torch.long)
    unreadable = [i for i in range(n_videos) if not bool(has_window[i])]
    return {
        "videos": readable,
        "scores": scores,
        "features": feats,
        "labels": labels,
        "unreadable": unreadable,
    }


def subset_dataset(cfg: Config, settings: EvalSettings, subset: str) -> Any:
    """The test-mode windows (:class:`ccl.data.datasets.ClipDataset`) of annotation subset
    ``subset``, from the prepared frame stores, with the run's clip settings ``cfg`` and
    ``settings``' annotation file, frame folder, decoding and missing-video handling."""
    from ccl.data.datasets import ClipDataset

    annotations = settings.annotations or cfg.data.annotations
    frames_dir = settings.frames_dir or cfg.data.frames_dir
    if annotations is None or frames_dir is None:
        raise ValueError(
            "evaluation needs the annotation file and frame folder (--annotations, --frames-dir)"
        )
    return ClipDataset(
        annotations,
        frames_dir,
        subset,
        "test",
        frames=cfg.data.clip_frames,
        size=cfg.data.size,
        stride=cfg.data.frame_stride,
        reduced_decode=(
            cfg.data.reduced_decode if settings.reduced_decode is None else settings.reduced_decode
        ),
        missing="skip" if settings.allow_missing else "error",
    )


def _writable_folder(folder: Path) -> None:
    """Fail before the forward passes rather than after them: results that cannot be
    written are computed for nothing. Probes with a real file (permissions alone do not
    tell: read-only mounts, root)."""
    import tempfile

    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as err:
        raise OSError(
            err.errno,
            f"cannot write the evaluation results there ({err.strerror}); "
            "choose another folder with --out DIR",
            str(folder),
        ) from err


def _check_dataset_classes(classes: list[str], dataset: Any, ckpt_path: Path) -> None:
    """The checkpoint's outputs must mean the annotation file's classes, in its order."""
    if hasattr(dataset, "classes"):
        check_classes(
            classes,
            dataset.classes,
            saved_from=f"checkpoint {ckpt_path}",
            current_from=str(getattr(dataset, "annotation_path", "the evaluation data")),
        )


def _expected_labels(dataset: Any) -> dict[str, int]:
    """Label of every video the subset lists, including those without a store."""
    from ccl.data.annotations import iter_subset, load_annotations

    data = load_annotations(dataset.annotation_path)
    index = {name: i for i, name in enumerate(data["labels"])}
    return {vid: index[e["annotations"]["label"]] for vid, e in iter_subset(data, dataset.subset)}


def evaluate(
    target: str | Path,
    settings: EvalSettings | None = None,
    *,
    datasets: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Evaluate a run folder or checkpoint; writes :func:`ccl.runs.eval_path`'s
    ``eval_<split>[_last].json`` (and :func:`ccl.runs.features_path`'s test features) next
    to the run, or into ``settings.out_dir``, and returns the report.
    Refuses, before any forward pass, an annotation file whose classes are not the
    checkpoint's, an output folder it cannot write to, and a run folder another process
    is writing (its lock, :mod:`ccl.runlock`, is held while the results are made there).
    ``datasets`` (subset -> dataset with ``videos``/``windows``) replaces the prepared
    stores, e.g. for tests."""
    settings = settings or EvalSettings()
    ckpt_path = resolve_checkpoint(target, settings.checkpoint)
    # labelled and filed by the checkpoint read: a file's results never replace another's
    settings = replace(settings, checkpoint=checkpoint_label(ckpt_path))
    if settings.out_dir is not None:
        out_dir = Path(settings.out_dir)
    else:
        in_run = ckpt_path.parent.name == "checkpoints"
        out_dir = ckpt_path.parent.parent if in_run else ckpt_path.parent
    lock = None
    if distributed.info().is_main and run_contents(out_dir):
        lock = lock_run_folder(out_dir, "ccl evaluate", EVALUATE_LOCK_HINT)
    try:
        return _evaluate(ckpt_path, out_dir, settings, datasets)
    finally:
        if lock is not None:
            lock.release()


def _evaluate(
    ckpt_path: Path, out_dir: Path, settings: EvalSettings, datasets: dict[str, Any] | None
) -> dict[str, Any]:
    """:func:`evaluate` of one checkpoint file into ``out_dir``."""
    state = load_checkpoint(ckpt_path)
    cfg = Config.from_dict(state["config"])
    classes = list(state["classes"])
    device = resolve_device(settings.device)
    if device.type == "cpu":
        configure_cpu_allocator()  # fewer page faults; CCL_SYSTEM_MALLOC=1 opts out
    student = build_model(cfg.student, len(classes))
    student.load_state_dict(state["student"])
    student.to(device)
    if cfg.train.channels_last:  # the memory format it trained in: the faster one for it
        student.to(memory_format=torch.channels_last_3d)
    mean, std = stats_tensor(cfg.data.mean, device), stats_tensor(cfg.data.std, device)
    json_path = eval_path(out_dir, settings.split, settings.checkpoint)
    if distributed.info().is_main:
        _writable_folder(out_dir)

    def load(subset: str) -> Any:
        if datasets is not None:
            dataset = datasets[subset]
        else:
            dataset = subset_dataset(cfg, settings, subset)
        _check_dataset_classes(classes, dataset, ckpt_path)
        return dataset

    def run(dataset: Any) -> dict[str, Any]:
        windows = forward_windows(
            student,
            dataset,
            batch_size=settings.batch_size,
            workers=settings.workers,
            device=device,
            mean=mean,
            std=std,
            precision=settings.precision,
            progress=settings.progress,
        )
        results = video_results(dataset, windows)
        results["errors"] = windows["errors"]
        return results

    queries = load(settings.split)
    gallery = load(settings.gallery) if settings.gallery else None
    if gallery is not None:
        _check_disjoint(queries, gallery, settings)  # refused before any forward pass
    q = run(queries)
    expected = (
        _expected_labels(queries)
        if datasets is None
        else {v.video_id: v.label for v in queries.videos}
    )
    missing = [
        {"video_id": vid, "reason": reason} for vid, reason in getattr(queries, "skipped", [])
    ]
    for i in q["unreadable"]:
        rec = queries.videos[i]
        reasons = sorted({m for w, m in q["errors"].items() if queries.windows[w][0] == i})
        missing.append({"video_id": rec.video_id, "reason": "; ".join(reasons) or "unreadable"})
    if missing and not settings.allow_missing:
        shown = ", ".join(f"{m['video_id']} ({m['reason']})" for m in missing[:5])
        raise RuntimeError(
            f"{len(missing)} of {len(expected)} videos could not be evaluated: {shown}. "
            "Fix them, or pass --allow-missing to count them as wrong."
        )

    n_expected = len(expected)
    recognition = _recognition(q, classes, expected, queries)
    retrieval, ranks = None, None
    if gallery is not None and settings.gallery:
        g = run(gallery)
        retrieval, ranks = _retrieval(q, g, n_expected, settings.gallery)
        retrieval["gallery_subsets"] = _gallery_subsets(gallery, g)

    videos_out = []
    top = q["scores"].topk(min(5, len(classes)), dim=1)
    for row, vi in enumerate(q["videos"].tolist()):
        entry = {
            "video_id": queries.videos[vi].video_id,
            "label": int(q["labels"][row]),
            "top5": top.indices[row].tolist(),
            "top5_scores": [round(float(s), 6) for s in top.values[row]],
        }
        if ranks is not None:
            # per query, for paired comparisons: hit@k iff rank < k (None: no same-class
            # video in the gallery, never a hit)
            entry["retrieval_rank"] = ranks[row]
        videos_out.append(entry)
    features_file = None
    if settings.save_features and distributed.info().is_main:
        features_file = features_path(out_dir, settings.split, settings.checkpoint).name
        with atomic_write(out_dir / features_file, what="features file") as f:
            np.savez_compressed(
                f,
                features=q["features"].numpy().astype(np.float16),
                labels=q["labels"].numpy(),
            )
    report = {
        "split": settings.split,
        "checkpoint": str(ckpt_path),
        "checkpoint_kind": settings.checkpoint,
        "checkpoint_sha256": sha256_file(ckpt_path),
        "epoch": int(state["epoch"]),
        "classes": classes,
        "videos_expected": n_expected,
        "videos_evaluated": len(q["videos"]),
        "missing": missing,
        "recognition": recognition,
        "retrieval": retrieval,
        "videos": videos_out,
        "features_file": features_file,
        "settings": asdict(settings),
        "config": state["config"],
    }
    if distributed.info().is_main:
        write_text_atomic(json_path, json.dumps(report, indent=1) + "\n")
        report["path"] = str(json_path)
    return report


def _recognition(
    q: dict[str, Any], classes: list[str], expected: dict[str, int], dataset: Any
) -> dict[str, Any]:
    """Accuracies over every expected video: missing ones count as wrong."""
    n_expected, num_classes = len(expected), len(classes)
    scores, labels = q["scores"], q["labels"]
    acc = metrics.topk_accuracy(scores, labels, ks=(1, 5)) if len(labels) else {1: 0.0, 5: 0.0}
    top1 = acc[1] * len(labels) / n_expected
    top5 = acc[5] * len(labels) / n_expected
    preds = scores.argmax(1) if len(labels) else torch.zeros(0, dtype=torch.long)
    confusion = metrics.confusion_matrix(preds, labels, num_classes)
    per_class_expected = np.bincount(list(expected.values()), minlength=num_classes)
    correct = confusion.diag().numpy()
    per_class = [
        float(correct[c] / per_class_expected[c]) if per_class_expected[c] else None
        for c in range(num_classes)
    ]
    present = [p for p in per_class if p is not None]
    return {
        "top1": top1,
        "top5": top5,
        "mean_class_accuracy": float(np.mean(present)) if present else 0.0,
        "per_class_accuracy": per_class,
        "confusion_matrix": confusion.tolist(),
    }


def _check_disjoint(queries: Any, gallery: Any, settings: EvalSettings) -> None:
    """A query must not find itself: refuse a gallery that holds query videos (e.g. the
    reference's own annotation files, which label the test list ``validation``)."""
    shared = {r.video_id for r in queries.videos} & {r.video_id for r in gallery.videos}
    if shared:
        raise ValueError(
            f"the retrieval gallery {settings.gallery!r} holds {len(shared)} of the query videos "
            f"of {settings.split!r} (e.g. {sorted(shared)[0]}); choose another --gallery "
            "(e.g. training) or --gallery none"
        )


def _gallery_subsets(gallery: Any, g: dict[str, Any]) -> dict[str, int]:
    """Evaluated gallery videos per annotation subset (a union such as
    ``training+validation`` mixes them)."""
    subsets = getattr(gallery, "video_subsets", None)
    if subsets is None:
        return {}
    counts: dict[str, int] = {}
    for i in g["videos"].tolist():
        counts[subsets[i]] = counts.get(subsets[i], 0) + 1
    return counts


def _retrieval(
    q: dict[str, Any], g: dict[str, Any], n_queries: int, gallery: str
) -> tuple[dict[str, Any], list[int | None]]:
    """(summary, per readable query the 0-based rank of its nearest same-class gallery
    video, None when the gallery has none)."""
    if not len(g["labels"]) or not len(q["labels"]):
        raise RuntimeError("retrieval needs at least one readable query and gallery video")
    recall = metrics.retrieval_recall(
        q["features"], q["labels"], g["features"], g["labels"], ks=RECALL_KS
    )
    mean_ap = metrics.retrieval_map(q["features"], q["labels"], g["features"], g["labels"])
    ranks = metrics.retrieval_ranks(q["features"], q["labels"], g["features"], g["labels"])
    n_gallery = len(g["labels"])
    scale = len(q["labels"]) / n_queries  # missing queries retrieve nothing
    summary = {
        "gallery": gallery,
        "gallery_size": len(g["labels"]),
        "gallery_unreadable": len(g["unreadable"]),
        "recall": {str(k): v * scale for k, v in recall.items()},
        "map": mean_ap * scale,
    }
    return summary, [int(r) if r < n_gallery else None for r in ranks.tolist()]


def summary_line(report: dict[str, Any]) -> str:
    r = report["recognition"]
    line = (
        f"{report['split']}: top-1 {100 * r['top1']:.2f} top-5 {100 * r['top5']:.2f} "
        f"mean-class {100 * r['mean_class_accuracy']:.2f}"
    )
    if report["retrieval"]:
        rec = report["retrieval"]["recall"]
        line += " R@1/5/10/20 " + "/".join(f"{100 * rec[k]:.1f}" for k in ("1", "5", "10", "20"))
        line += f" mAP {100 * report['retrieval']['map']:.1f}"
    line += f" ({report['videos_evaluated']}/{report['videos_expected']} videos)"
    return line
