"""Metrics for video recognition and retrieval.

Recognition: :func:`topk_accuracy`, :func:`mean_class_accuracy`, :func:`confusion_matrix`, and
the clip-to-video helpers :func:`aggregate_windows` (softmax per window, averaged per video, the
reference test protocol) and :func:`aggregate_features` (mean per video, then L2-normalised).

Retrieval: :func:`retrieval_recall` (recall@k) and :func:`retrieval_map` (mean average
precision) with cosine similarity on L2-normalised features. The reference implementation has
no retrieval code; the conventions below are this package's own.

Tie rule (all ranking metrics)
------------------------------
Items are ranked by descending score; equal scores are ordered by **lower index first**
(class index for logits, gallery index for retrieval). This is exactly the order of a stable
descending sort (``torch.sort(..., descending=True, stable=True)``). It is *not* delegated to
``torch.topk``, whose order among equal values is unspecified and differs between backends, so
results are deterministic for a given score matrix. Scores are compared exactly as computed;
features are normalised and multiplied with ``torch.matmul``, so two gallery items that are
mathematically tied can differ in the last bit when their features differ.

Memory
------
Retrieval processes the queries in chunks of ``chunk_size`` rows, so only a
``(chunk_size, G)`` block of scores (plus a few same-shaped temporaries) ever exists; a full
``(Q, G)`` matrix is never built. Lower ``chunk_size`` for very large galleries.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn.functional as F

__all__ = [
    "aggregate_features",
    "aggregate_windows",
    "confusion_matrix",
    "mean_class_accuracy",
    "retrieval_map",
    "retrieval_ranks",
    "retrieval_recall",
    "topk_accuracy",
]

_MAX_LISTED = 20


# --------------------------------------------------------------------------- validation helpers


def _check_2d(x: torch.Tensor, name: str) -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() != 2:
        raise ValueError(f"{name} must be 2-D, got shape {tuple(x.shape)}")


def _check_labels(labels: torch.Tensor, name: str, length: int, other: str) -> None:
    if not isinstance(labels, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(labels).__name__}")
    if labels.dim() != 1:
        raise ValueError(f"{name} must be 1-D, got shape {tuple(labels.shape)}")
    if labels.dtype.is_floating_point or labels.dtype.is_complex or labels.dtype == torch.bool:
        raise ValueError(f"{name} must have an integer dtype, got {labels.dtype}")
    if labels.shape[0] != length:
        raise ValueError(
            f"length mismatch: {name} has {labels.shape[0]} entries but {other} has {length} rows"
        )


def _check_range(values: torch.Tensor, name: str, upper: int) -> None:
    if values.numel() == 0:
        return
    lo, hi = int(values.min()), int(values.max())
    if lo < 0 or hi >= upper:
        raise ValueError(f"{name} must lie in [0, {upper}), found values in [{lo}, {hi}]")


def _check_positive_int(value: int, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")


def _check_ks(ks: Iterable[int] | int) -> list[int]:
    ks_list = [ks] if isinstance(ks, int) else list(ks)
    if not ks_list:
        raise ValueError("ks must contain at least one k")
    for k in ks_list:
        _check_positive_int(k, "every k in ks")
    return list(dict.fromkeys(ks_list))


def _check_finite_free(x: torch.Tensor, name: str) -> None:
    if x.is_floating_point() and bool(torch.isnan(x).any()):
        raise ValueError(f"{name} contains NaN")


def _float_dtype(*tensors: torch.Tensor) -> torch.dtype:
    """At least float32, float64 if any input is float64."""
    dtype = torch.float32
    for t in tensors:
        if t.is_floating_point():
            dtype = torch.promote_types(dtype, t.dtype)
    return dtype


def _label_ranks(scores: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """0-based rank of ``labels[i]`` in row ``i`` of ``scores`` under the module's tie rule."""
    target = scores.gather(1, labels.view(-1, 1))
    cols = torch.arange(scores.shape[1], device=scores.device).view(1, -1)
    ahead = (scores > target) | ((scores == target) & (cols < labels.view(-1, 1)))
    return ahead.sum(dim=1)


# --------------------------------------------------------------------------- recognition


def topk_accuracy(
    logits: torch.Tensor, labels: torch.Tensor, ks: Iterable[int] | int = (1, 5)
) -> dict[int, float]:
    """Fraction of rows whose label is among the ``k`` highest scores, for each ``k`` in ``ks``.

    Args:
        logits: ``(N, C)`` scores (logits or probabilities; only their order matters).
        labels: ``(N,)`` integer class indices in ``[0, C)``.
        ks: positive ints. A ``k`` larger than ``C`` is clamped to ``C`` (accuracy 1.0).

    Returns:
        ``{k: accuracy}`` keyed by the requested (unclamped) ``k``.

    Ties are broken by lower class index first (stable descending sort): a row scores at ``k``
    iff fewer than ``k`` classes have a higher score or an equal score and a lower index.

    Raises:
        ValueError: empty input, wrong shapes or dtypes, labels out of range, NaN logits,
            non-positive ``k``.
    """
    _check_2d(logits, "logits")
    _check_labels(labels, "labels", logits.shape[0], "logits")
    ks_list = _check_ks(ks)
    n, c = logits.shape
    if n == 0 or c == 0:
        raise ValueError(f"topk_accuracy needs a non-empty input, got logits of shape {(n, c)}")
    _check_range(labels, "labels", c)
    _check_finite_free(logits, "logits")
    ranks = _label_ranks(logits, labels.to(device=logits.device, dtype=torch.long))
    return {k: float((ranks < min(k, c)).sum().item()) / n for k in ks_list}


def confusion_matrix(preds: torch.Tensor, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """``(num_classes, num_classes)`` int64 counts; row = true class, column = predicted class.

    Empty inputs give an all-zero matrix.

    Raises:
        ValueError: mismatched lengths, non-1-D or non-integer inputs, values outside
            ``[0, num_classes)``.
    """
    _check_positive_int(num_classes, "num_classes")
    if not isinstance(preds, torch.Tensor):
        raise TypeError(f"preds must be a torch.Tensor, got {type(preds).__name__}")
    if preds.dim() != 1:
        raise ValueError(f"preds must be 1-D, got shape {tuple(preds.shape)}")
    _check_labels(preds, "preds", preds.shape[0], "preds")
    _check_labels(labels, "labels", preds.shape[0], "preds")
    _check_range(preds, "preds", num_classes)
    _check_range(labels, "labels", num_classes)
    flat = labels.to(device=preds.device, dtype=torch.long) * num_classes + preds.long()
    counts = torch.bincount(flat, minlength=num_classes * num_classes)
    return counts.view(num_classes, num_classes)


def mean_class_accuracy(
    logits: torch.Tensor, labels: torch.Tensor, num_classes: int
) -> tuple[float, torch.Tensor]:
    """Mean of per-class top-1 accuracies over the classes present in ``labels``.

    The prediction of a row is its arg-max, ties to the lower class index (the module's rule).

    Returns:
        ``(mean, per_class)`` where ``per_class`` is a CPU float64 ``(num_classes,)`` tensor of
        per-class accuracies with NaN for the classes absent from ``labels``; ``mean`` is the
        mean over the non-NaN entries.

    Raises:
        ValueError: empty input, ``logits.shape[1] != num_classes``, bad shapes or labels.
    """
    _check_positive_int(num_classes, "num_classes")
    _check_2d(logits, "logits")
    _check_labels(labels, "labels", logits.shape[0], "logits")
    if logits.shape[0] == 0:
        raise ValueError("mean_class_accuracy needs a non-empty input")
    if logits.shape[1] != num_classes:
        raise ValueError(f"logits has {logits.shape[1]} columns but num_classes is {num_classes}")
    _check_range(labels, "labels", num_classes)
    _check_finite_free(logits, "logits")
    preds = logits.argmax(dim=1)  # first maximal index: lower index wins ties
    cm = confusion_matrix(preds, labels, num_classes).cpu()
    support = cm.sum(dim=1).to(torch.float64)
    correct = cm.diagonal().to(torch.float64)
    per_class = torch.where(support > 0, correct / support.clamp(min=1), torch.nan)
    present = support > 0
    return float(per_class[present].mean().item()), per_class


# --------------------------------------------------------------------------- window aggregation


def _video_sums(
    values: torch.Tensor, video_index: torch.Tensor, num_videos: int, name: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-video sums and window counts; raises if a video has no window."""
    _check_positive_int(num_videos, "num_videos")
    _check_labels(video_index, "video_index", values.shape[0], name)
    _check_range(video_index, "video_index", num_videos)
    index = video_index.to(device=values.device, dtype=torch.long)
    counts = torch.bincount(index, minlength=num_videos)
    missing = (counts == 0).nonzero().flatten().tolist()
    if missing:
        shown = ", ".join(str(v) for v in missing[:_MAX_LISTED])
        more = f", ... ({len(missing) - _MAX_LISTED} more)" if len(missing) > _MAX_LISTED else ""
        raise ValueError(f"{len(missing)} of {num_videos} videos have no window: [{shown}{more}]")
    sums = values.new_zeros((num_videos, values.shape[1])).index_add_(0, index, values)
    return sums, counts


def aggregate_windows(
    window_logits: torch.Tensor, video_index: torch.Tensor, num_videos: int
) -> torch.Tensor:
    """Video-level class probabilities: softmax over classes per window, averaged per video.

    Args:
        window_logits: ``(N, C)`` logits, one row per window (clip) of a video.
        video_index: ``(N,)`` integer video id of each window, in ``[0, num_videos)``.
        num_videos: number of videos; every one must have at least one window.

    Returns:
        ``(num_videos, C)`` averaged probabilities (rows sum to 1), dtype at least float32.

    Raises:
        ValueError: naming the videos that have no window (none is silently dropped), or on
            bad shapes / out-of-range indices.
    """
    _check_2d(window_logits, "window_logits")
    probs = torch.softmax(window_logits.to(_float_dtype(window_logits)), dim=1)
    sums, counts = _video_sums(probs, video_index, num_videos, "window_logits")
    return sums / counts.to(sums.dtype).unsqueeze(1)


def aggregate_features(
    window_feats: torch.Tensor, video_index: torch.Tensor, num_videos: int
) -> torch.Tensor:
    """Video-level features: mean of the window features per video, then L2-normalised.

    A video whose mean feature is exactly zero stays zero (``F.normalize`` with ``eps=1e-12``).

    Returns:
        ``(num_videos, D)`` tensor, dtype at least float32.

    Raises:
        ValueError: naming the videos that have no window, or on bad shapes / indices.
    """
    _check_2d(window_feats, "window_feats")
    feats = window_feats.to(_float_dtype(window_feats))
    sums, counts = _video_sums(feats, video_index, num_videos, "window_feats")
    return F.normalize(sums / counts.to(sums.dtype).unsqueeze(1), dim=1)


# --------------------------------------------------------------------------- retrieval


def _prepare_retrieval(
    query_feats: torch.Tensor,
    query_labels: torch.Tensor,
    gallery_feats: torch.Tensor,
    gallery_labels: torch.Tensor,
    chunk_size: int,
    exclude_self: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    _check_2d(query_feats, "query_feats")
    _check_2d(gallery_feats, "gallery_feats")
    _check_labels(query_labels, "query_labels", query_feats.shape[0], "query_feats")
    _check_labels(gallery_labels, "gallery_labels", gallery_feats.shape[0], "gallery_feats")
    _check_positive_int(chunk_size, "chunk_size")
    if gallery_feats.shape[0] == 0:
        raise ValueError("the gallery is empty (gallery_feats has 0 rows)")
    if query_feats.shape[0] == 0:
        raise ValueError("there are no queries (query_feats has 0 rows)")
    if query_feats.shape[1] != gallery_feats.shape[1]:
        raise ValueError(
            f"feature width mismatch: query_feats is {query_feats.shape[1]}-d, "
            f"gallery_feats is {gallery_feats.shape[1]}-d"
        )
    if exclude_self:
        if query_feats.shape[0] != gallery_feats.shape[0]:
            raise ValueError(
                "exclude_self=True needs query i to be gallery item i, but there are "
                f"{query_feats.shape[0]} queries and {gallery_feats.shape[0]} gallery items"
            )
        if gallery_feats.shape[0] < 2:
            raise ValueError("exclude_self=True needs a gallery of at least 2 items")
    _check_finite_free(query_feats, "query_feats")
    _check_finite_free(gallery_feats, "gallery_feats")
    device = gallery_feats.device
    dtype = _float_dtype(query_feats, gallery_feats)
    gallery = F.normalize(gallery_feats.to(dtype), dim=1)
    queries = F.normalize(query_feats.to(device=device, dtype=dtype), dim=1)
    return queries, query_labels.to(device), gallery, gallery_labels.to(device)


def _chunk_scores(
    queries: torch.Tensor,
    query_labels: torch.Tensor,
    gallery: torch.Tensor,
    gallery_labels: torch.Tensor,
    start: int,
    stop: int,
    exclude_self: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(b, G)`` cosine scores and relevance mask for queries ``start:stop``."""
    scores = queries[start:stop] @ gallery.T
    relevant = query_labels[start:stop].unsqueeze(1) == gallery_labels.unsqueeze(0)
    if exclude_self:
        rows = torch.arange(stop - start, device=scores.device)
        scores[rows, rows + start] = -torch.inf
        relevant[rows, rows + start] = False
    return scores, relevant


def retrieval_recall(
    query_feats: torch.Tensor,
    query_labels: torch.Tensor,
    gallery_feats: torch.Tensor,
    gallery_labels: torch.Tensor,
    ks: Iterable[int] | int = (1, 5, 10, 20, 50),
    *,
    chunk_size: int = 1024,
    exclude_self: bool = False,
) -> dict[int, float]:
    """Recall@k: fraction of queries with a same-label item among their ``k`` nearest neighbours.

    Similarity is the cosine of L2-normalised features (zero vectors score 0 with everything).
    Ranking is by descending similarity, ties broken by lower gallery index first. A ``k``
    larger than the gallery (``G``, or ``G - 1`` with ``exclude_self``) is clamped to it. A
    query without any same-label gallery item scores 0 at every ``k`` and stays in the mean.

    Instead of materialising a top-k list (whose tie order ``torch.topk`` leaves unspecified),
    each query's best relevant item is located and its exact rank under the tie rule is
    counted; the query hits at ``k`` iff that rank is below ``k``. Queries are processed
    ``chunk_size`` at a time, so memory is ``O(chunk_size * G)``, never ``O(Q * G)``.

    Args:
        query_feats: ``(Q, D)`` query features.
        query_labels: ``(Q,)`` integer labels (any integer values).
        gallery_feats: ``(G, D)`` gallery features, ``G >= 1``.
        gallery_labels: ``(G,)`` integer labels.
        ks: positive ints.
        chunk_size: number of queries scored at a time.
        exclude_self: query ``i`` is gallery item ``i`` (requires ``Q == G``); that item is
            removed from query ``i``'s ranking (leave-one-out retrieval within one set).

    Returns:
        ``{k: recall}`` keyed by the requested (unclamped) ``k``.

    Raises:
        ValueError: mismatched lengths or widths, non-2-D features, empty gallery or query
            set, NaN features, invalid ``ks`` / ``chunk_size``.
    """
    ks_list = _check_ks(ks)
    ranks = retrieval_ranks(
        query_feats,
        query_labels,
        gallery_feats,
        gallery_labels,
        chunk_size=chunk_size,
        exclude_self=exclude_self,
    )
    num_q, num_g = ranks.shape[0], gallery_feats.shape[0]
    return {k: float((ranks < min(k, num_g)).sum().item()) / num_q for k in ks_list}


def retrieval_ranks(
    query_feats: torch.Tensor,
    query_labels: torch.Tensor,
    gallery_feats: torch.Tensor,
    gallery_labels: torch.Tensor,
    *,
    chunk_size: int = 1024,
    exclude_self: bool = False,
) -> torch.Tensor:
    """Per query, the 0-based rank of its best same-label gallery item (``(Q,)`` int64), so
    query ``i`` hits at ``k`` iff ``ranks[i] < min(k, G)``: the per-query view behind
    :func:`retrieval_recall` (e.g. for paired comparisons of two models query by query).

    Same similarity, tie rule, chunking and errors as :func:`retrieval_recall`. A query with
    no same-label gallery item gets rank ``G`` (the gallery size), which no ``k`` reaches.
    """
    queries, q_labels, gallery, g_labels = _prepare_retrieval(
        query_feats, query_labels, gallery_feats, gallery_labels, chunk_size, exclude_self
    )
    num_q, num_g = queries.shape[0], gallery.shape[0]
    cols = torch.arange(num_g, device=gallery.device).unsqueeze(0)
    ranks = torch.empty(num_q, dtype=torch.long, device=gallery.device)
    for start in range(0, num_q, chunk_size):
        stop = min(start + chunk_size, num_q)
        scores, relevant = _chunk_scores(
            queries, q_labels, gallery, g_labels, start, stop, exclude_self
        )
        best = scores.masked_fill(~relevant, -torch.inf).amax(dim=1, keepdim=True)
        at_best = scores == best
        # lowest gallery index among the relevant items sharing the best score
        first = (relevant & at_best).to(torch.uint8).argmax(dim=1, keepdim=True)
        rank = ((scores > best) | (at_best & (cols < first))).sum(dim=1)
        # a query with no relevant item never hits: rank G is out of reach of every clamped k
        ranks[start:stop] = torch.where(relevant.any(dim=1), rank, num_g)
    return ranks


def retrieval_map(
    query_feats: torch.Tensor,
    query_labels: torch.Tensor,
    gallery_feats: torch.Tensor,
    gallery_labels: torch.Tensor,
    *,
    chunk_size: int = 1024,
    exclude_self: bool = False,
) -> float:
    """Mean average precision over queries, each ranking the whole gallery.

    For a query with ``R`` same-label gallery items at 1-based ranked positions
    ``p_1 < ... < p_R``, ``AP = (1/R) * sum_m m / p_m``. A query with no same-label item in the
    gallery has ``AP = 0`` and is included in the mean (no query is dropped).

    Ranking is by descending cosine similarity of L2-normalised features, ties broken by lower
    gallery index first (stable sort). Queries are processed ``chunk_size`` at a time; peak
    memory is a few ``(chunk_size, G)`` blocks (roughly ``24 * chunk_size * G`` bytes for
    float32 features, dominated by the sort), never ``(Q, G)``. Time is dominated by one
    ``O(G log G)`` sort per query (about 30 s for 1024 queries x 100k items on 2 CPU cores).

    Arguments and errors as in :func:`retrieval_recall`.
    """
    queries, q_labels, gallery, g_labels = _prepare_retrieval(
        query_feats, query_labels, gallery_feats, gallery_labels, chunk_size, exclude_self
    )
    num_q, num_g = queries.shape[0], gallery.shape[0]
    positions = torch.arange(1, num_g + 1, device=gallery.device, dtype=torch.float64)
    total = 0.0
    for start in range(0, num_q, chunk_size):
        stop = min(start + chunk_size, num_q)
        scores, relevant = _chunk_scores(
            queries, q_labels, gallery, g_labels, start, stop, exclude_self
        )
        order = torch.sort(scores, dim=1, descending=True, stable=True).indices
        del scores
        rel_sorted = relevant.gather(1, order)
        del order, relevant
        hits_so_far = rel_sorted.cumsum(dim=1, dtype=torch.int32)
        precision_sum = (hits_so_far / positions).masked_fill_(~rel_sorted, 0.0).sum(dim=1)
        num_rel = rel_sorted.sum(dim=1)
        ap = torch.where(num_rel > 0, precision_sum / num_rel.clamp(min=1), 0.0)
        total += float(ap.sum().item())
    return total / num_q
