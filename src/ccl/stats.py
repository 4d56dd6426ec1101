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

Resampling videos describes only which test videos happened to be drawn. Two trainings of
the same method on the same data differ by several points (other seeds, other floating-point
order), and that training noise is the larger part of the uncertainty of a comparison. Over
several seeds, :func:`seed_interval` therefore treats the seed as the unit: each seed's
paired difference ``delta_s`` (method minus baseline, trained and tested on that seed's data)
already carries both the training noise and the test sampling of that seed, so the spread
of the ``delta_s`` is the whole uncertainty, and the interval is Student's t over them.
:func:`hierarchical_bootstrap` resamples seeds and, within each, videos; with the 3-10 seeds
a demo affords its percentile interval is too narrow (at the 95 % level it covered the true
difference in 84 % of simulated 3-seed comparisons and 92 % of 8-seed ones, the t interval
in 95 % and 94 %: ``benchmarks/interval_coverage.py``), so it is kept as a cross-check, not
as the reported interval.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats as scipy_stats

__all__ = [
    "SeedInterval",
    "bootstrap_mean",
    "hierarchical_bootstrap",
    "paired_bootstrap",
    "paired_differences",
    "seed_interval",
    "seeds_needed",
]

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


def _check_level(level: float) -> None:
    if not 0 < level < 1:
        raise ValueError(f"level must lie in (0, 1), got {level!r}")


def hierarchical_bootstrap(
    per_seed: Sequence[np.ndarray],
    *,
    resamples: int = 10_000,
    seed: int = 0,
    level: float = 0.95,
) -> tuple[float, float, float]:
    """(mean, lo, hi) of the mean over seeds of each seed's mean paired difference, with the
    percentile interval of a two-level bootstrap.

    ``per_seed[s]`` holds seed ``s``'s per-video differences. The estimate is
    ``mean_s(mean_v(per_seed[s]))`` (every seed weighs the same, whatever its number of test
    videos). Resample ``r`` draws ``S`` seeds with replacement and, for each drawn slot
    independently, that seed's videos with replacement, and takes the same mean of means.
    Draws: ``rng = np.random.default_rng(seed)``; first the seed indices
    ``rng.integers(0, S, size=(resamples, S))``, then for slot ``j = 0 .. S-1`` and, within it,
    the drawn seeds in increasing order, ``rng.integers(0, n_s, size=(k, n_s))`` for the ``k``
    resamples that drew seed ``s`` in slot ``j``."""
    arrays = [np.asarray(d, dtype=np.float64) for d in per_seed]
    if not arrays:
        raise ValueError("hierarchical bootstrap needs at least one seed")
    for i, d in enumerate(arrays):
        if d.ndim != 1 or not len(d):
            raise ValueError(f"seed {i}: needs a non-empty 1-D array, got shape {d.shape}")
        if not np.isfinite(d).all():
            raise ValueError(f"seed {i}: non-finite difference")
    if isinstance(resamples, bool) or not isinstance(resamples, int) or resamples < 1:
        raise ValueError(f"resamples must be a positive int, got {resamples!r}")
    _check_level(level)
    n_seeds = len(arrays)
    rng = np.random.default_rng(seed)
    drawn = rng.integers(0, n_seeds, size=(resamples, n_seeds))
    slot_means = np.empty((resamples, n_seeds), dtype=np.float64)
    for slot in range(n_seeds):
        for s in np.unique(drawn[:, slot]):
            rows = np.flatnonzero(drawn[:, slot] == s)
            values = arrays[s]
            n = len(values)
            step = max(1, _CHUNK // n)
            for start in range(0, len(rows), step):
                chunk = rows[start : start + step]
                idx = rng.integers(0, n, size=(len(chunk), n))
                slot_means[chunk, slot] = values[idx].mean(axis=1)
    means = slot_means.mean(axis=1)
    lo, hi = np.percentile(means, [100 * (1 - level) / 2, 100 * (1 + level) / 2])
    estimate = float(np.mean([d.mean() for d in arrays]))
    return estimate, float(lo), float(hi)


@dataclass(frozen=True)
class SeedInterval:
    """A difference measured over seeds: ``mean`` of the per-seed differences ``deltas``,
    its ``level`` interval ``[lo, hi]`` (``nan`` with one seed: one training run cannot
    separate methods), their sample standard deviation ``sd`` (``nan`` with one seed)."""

    mean: float
    lo: float
    hi: float
    sd: float
    deltas: tuple[float, ...]
    level: float

    @property
    def seeds(self) -> int:
        return len(self.deltas)

    @property
    def excludes_zero(self) -> bool:
        """The interval lies wholly above or below 0 (never true with one seed)."""
        return bool(self.lo > 0 or self.hi < 0)


def seed_interval(deltas: Sequence[float], *, level: float = 0.95) -> SeedInterval:
    """Student's t interval of the mean of per-seed paired differences ``deltas``:
    ``mean +- t_{S-1, (1+level)/2} * sd / sqrt(S)`` with ``sd`` the sample standard deviation
    (``ddof=1``). Each ``delta_s`` is one seed's mean paired difference (method minus
    baseline on that seed's test videos), so the seeds' spread holds training noise and test
    sampling together. With one seed the interval is ``nan``."""
    values = np.asarray([float(d) for d in deltas], dtype=np.float64)
    if values.ndim != 1 or not len(values):
        raise ValueError("seed interval needs at least one seed")
    if not np.isfinite(values).all():
        raise ValueError(f"seed interval: non-finite difference in {values.tolist()}")
    _check_level(level)
    mean = float(values.mean())
    if len(values) == 1:
        nan = float("nan")
        return SeedInterval(mean, nan, nan, nan, tuple(values.tolist()), level)
    sd = float(values.std(ddof=1))
    half = float(scipy_stats.t.ppf((1 + level) / 2, len(values) - 1)) * sd / np.sqrt(len(values))
    return SeedInterval(mean, mean - half, mean + half, sd, tuple(values.tolist()), level)


def seeds_needed(
    sd: float, effect: float, *, level: float = 0.95, power: float = 0.5, most: int = 10_000
) -> int:
    """The fewest seeds S at which a true mean paired difference of ``effect`` (the same
    unit as ``sd``, the sample sd of the per-seed differences) is expected to give a
    :func:`seed_interval` that excludes 0 with probability ``power``: the smallest S >= 2
    with ``(t_{S-1, (1+level)/2} + t_{S-1, power}) * sd / sqrt(S) <= |effect|`` (the usual
    t-test sample size; power 0.5: the interval's half width equals the effect, even odds).
    ``most`` when even that many would not do."""
    if not (sd >= 0 and math.isfinite(sd)) or not math.isfinite(effect) or effect == 0:
        raise ValueError(f"seeds needed: sd {sd} and effect {effect} must be finite, effect != 0")
    _check_level(level)
    if not 0 < power < 1:
        raise ValueError(f"power must lie in (0, 1), got {power}")
    for n in range(2, most + 1):
        t = scipy_stats.t.ppf((1 + level) / 2, n - 1) + scipy_stats.t.ppf(power, n - 1)
        if t * sd / math.sqrt(n) <= abs(effect):
            return n
    return most
