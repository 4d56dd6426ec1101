"""Paired comparison of two models evaluated on the same videos, with a bootstrap interval.

Two methods trained on the same data and tested on the same videos are compared video by
video: ``d = hit_a - hit_b`` per video (hits 0/1, e.g. top-1 correct), and the mean of ``d`` is
the difference in accuracy. Its uncertainty comes from a percentile bootstrap over the
videos: the pairs are resampled with replacement, the mean difference of each resample is
taken, and the interval holds the central ``level`` of those means. Pairing (rather than
comparing two accuracies with their own intervals) removes what the two models share, the
difficulty of each video, so the interval is much narrower for the same data.

Pairs of several seeds are pooled by keying them ``(seed, video_id)``; each key must be on
both sides, so a comparison never silently mixes different test sets.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping

import numpy as np

__all__ = ["bootstrap_mean", "paired_bootstrap", "paired_differences"]

_CHUNK = 1 << 20  # index draws held in memory at once


def _name(key: Hashable) -> str:
    if isinstance(key, tuple) and len(key) == 2:
        return f"video {key[1]!r} (seed {key[0]})"
    return f"video {key!r}"


def paired_differences(
    a_hits: Mapping[Hashable, float], b_hits: Mapping[Hashable, float]
) -> tuple[list[Hashable], np.ndarray]:
    """(keys in sorted order, ``a_hits[k] - b_hits[k]`` per key) as float64.

    Raises ValueError when the two sides do not hold the same keys (naming the first key,
    in sorted order, that only one side has), when there are none, or on non-finite hits."""
    only_a = [k for k in a_hits if k not in b_hits]
    only_b = [k for k in b_hits if k not in a_hits]
    if only_a or only_b:
        first, side = min(
            [(k, "first") for k in only_a] + [(k, "second") for k in only_b],
            key=lambda item: (repr(type(item[0])), item[0]),
        )
        other = "second" if side == "first" else "first"
        raise ValueError(
            f"paired comparison needs the same videos on both sides: {_name(first)} is in "
            f"the {side} but not the {other} ({len(only_a) + len(only_b)} such videos)"
        )
    if not a_hits:
        raise ValueError("paired comparison needs at least one video")
    keys = sorted(a_hits)
    diffs = np.array([float(a_hits[k]) - float(b_hits[k]) for k in keys], dtype=np.float64)
    if not np.isfinite(diffs).all():
        bad = keys[int(np.flatnonzero(~np.isfinite(diffs))[0])]
        raise ValueError(f"paired comparison: {_name(bad)} has a non-finite hit value")
    return keys, diffs


def bootstrap_mean(
    values: np.ndarray, *, resamples: int = 10_000, seed: int = 0, level: float = 0.95
) -> tuple[float, float, float]:
    """(mean, lo, hi): the mean of ``values`` and the percentile bootstrap interval of it.

    Resample ``r`` (``r = 0 .. resamples - 1``) is ``values[idx]`` with ``idx`` the ``r``-th
    block of ``n`` draws of ``np.random.default_rng(seed).integers(0, n)``, i.e. row ``r`` of
    ``integers(0, n, size=(resamples, n))`` (drawn in chunks, same numbers); ``lo``/``hi``
    are numpy's default (linear) percentiles ``(1 - level) / 2`` and ``(1 + level) / 2`` of
    the resample means. The same seed therefore gives the same interval."""
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 1 or not len(values):
        raise ValueError(f"bootstrap needs a non-empty 1-D array, got shape {values.shape}")
    if isinstance(resamples, bool) or not isinstance(resamples, int) or resamples < 1:
        raise ValueError(f"resamples must be a positive int, got {resamples!r}")
    if not 0 < level < 1:
        raise ValueError(f"level must lie in (0, 1), got {level!r}")
    n = len(values)
    rng = np.random.default_rng(seed)
    means = np.empty(resamples, dtype=np.float64)
    rows = max(1, _CHUNK // n)
    for start in range(0, resamples, rows):
        stop = min(resamples, start + rows)
        idx = rng.integers(0, n, size=(stop - start, n))
        means[start:stop] = values[idx].mean(axis=1)
    lo, hi = np.percentile(means, [100 * (1 - level) / 2, 100 * (1 + level) / 2])
    return float(values.mean()), float(lo), float(hi)


def paired_bootstrap(
    a_hits: Mapping[Hashable, float],
    b_hits: Mapping[Hashable, float],
    *,
    resamples: int = 10_000,
    seed: int = 0,
    level: float = 0.95,
) -> tuple[float, float, float]:
    """(mean difference, lo, hi) of ``a - b`` over the videos both sides share, with the
    percentile bootstrap interval of :func:`bootstrap_mean` (pairs resampled in the sorted
    order of their keys, so the result does not depend on the mappings' order).

    ``a_hits`` / ``b_hits`` map a video key (a video id, or ``(seed, video_id)`` to pool
    several seeds) to a hit (0/1 or a score). Raises ValueError naming the first video only
    one side has."""
    _, diffs = paired_differences(a_hits, b_hits)
    return bootstrap_mean(diffs, resamples=resamples, seed=seed, level=level)
