"""Paired bootstrap: exact mean, the percentile interval, degenerate and mismatched inputs."""

import numpy as np
import pytest

from ccl.stats import bootstrap_mean, paired_bootstrap, paired_differences


def test_mean_difference_is_exact_and_pairs_by_video_id():
    # method right on a, b, c; baseline right on b, d -> d = (+1, 0, +1, -1, 0): mean 1/5
    method = {"a": 1, "b": 1, "c": 1, "d": 0, "e": 0}
    baseline = {"e": 0, "d": 1, "c": 0, "b": 1, "a": 0}  # other order: paired by id
    mean, lo, hi = paired_bootstrap(method, baseline, resamples=2000, seed=3)
    assert mean == pytest.approx(0.2)
    assert lo <= mean <= hi
    keys, diffs = paired_differences(method, baseline)
    assert keys == ["a", "b", "c", "d", "e"] and diffs.tolist() == [1, 0, 1, -1, 0]


def test_interval_is_the_percentile_interval_of_the_resampled_means():
    rng = np.random.default_rng(7)
    n, resamples, seed = 37, 3000, 11
    a = {f"v{i:02d}": int(x) for i, x in enumerate(rng.integers(0, 2, n))}
    b = {f"v{i:02d}": int(x) for i, x in enumerate(rng.integers(0, 2, n))}
    mean, lo, hi = paired_bootstrap(a, b, resamples=resamples, seed=seed, level=0.9)
    # independently: all resamples at once, sorted keys, numpy's percentile
    d = np.array([a[k] - b[k] for k in sorted(a)], dtype=float)
    idx = np.random.default_rng(seed).integers(0, n, size=(resamples, n))
    means = d[idx].mean(axis=1)
    assert mean == pytest.approx(d.mean())
    assert (lo, hi) == pytest.approx(tuple(np.percentile(means, [5, 95])))
    assert lo < mean < hi  # a genuine spread, not a degenerate interval
    # the same seed reproduces the table
    assert paired_bootstrap(a, b, resamples=resamples, seed=seed, level=0.9) == (mean, lo, hi)


def test_chunked_draws_equal_one_draw(monkeypatch):
    import ccl.stats

    values = np.arange(9, dtype=float) % 2
    whole = bootstrap_mean(values, resamples=500, seed=2)
    monkeypatch.setattr(ccl.stats, "_CHUNK", 20)  # 2 resamples per chunk
    assert bootstrap_mean(values, resamples=500, seed=2) == whole


@pytest.mark.parametrize("value", [1, 0, -1])
def test_equal_differences_give_a_degenerate_interval(value):
    a = {(seed, f"v{i}"): 1 if value >= 0 else 0 for seed in (1, 2) for i in range(6)}
    b = {key: a[key] - value for key in a}
    assert paired_bootstrap(a, b, resamples=500) == (value, value, value)


def test_mismatched_videos_are_refused_naming_the_first():
    with pytest.raises(ValueError, match=r"video 'v3' is in the first but not the second"):
        paired_bootstrap({"v1": 1, "v3": 0, "v4": 1}, {"v1": 1, "v4": 0, "v9": 1})
    with pytest.raises(ValueError, match=r"video 'v0' \(seed 2\) is in the second"):
        paired_bootstrap({(1, "v0"): 1}, {(1, "v0"): 1, (2, "v0"): 0})
    with pytest.raises(ValueError, match="at least one video"):
        paired_bootstrap({}, {})


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="level"):
        bootstrap_mean(np.ones(3), level=1.0)
    with pytest.raises(ValueError, match="resamples"):
        bootstrap_mean(np.ones(3), resamples=0)
    with pytest.raises(ValueError, match="non-finite"):
        paired_bootstrap({"v": float("nan")}, {"v": 1.0})


# --------------------------------------------------------------- intervals over seeds


def test_seed_interval_is_students_t_over_the_per_seed_differences():
    from ccl.stats import seed_interval

    # hand: mean 2, sd 1, t(0.975, 2 df) = 4.302652729911275 -> half width 4.3027 / sqrt(3)
    result = seed_interval([1.0, 3.0, 2.0])
    half = 4.302652729911275 / np.sqrt(3)
    assert result.mean == pytest.approx(2.0)
    assert result.sd == pytest.approx(1.0)
    assert (result.lo, result.hi) == pytest.approx((2.0 - half, 2.0 + half))
    assert result.seeds == 3 and result.deltas == (1.0, 3.0, 2.0)
    assert not result.excludes_zero  # [-0.48, 4.48]
    # five seeds of +1 .. +3 points: t(0.975, 4 df) = 2.7764451051977987
    result = seed_interval([0.01, 0.02, 0.03, 0.02, 0.02], level=0.95)
    half = 2.7764451051977987 * np.std([0.01, 0.02, 0.03, 0.02, 0.02], ddof=1) / np.sqrt(5)
    assert (result.lo, result.hi) == pytest.approx((0.02 - half, 0.02 + half))
    assert result.excludes_zero


def test_one_seed_gives_no_interval_and_separates_nothing():
    from ccl.stats import seed_interval

    result = seed_interval([0.12])
    assert result.mean == pytest.approx(0.12)
    assert np.isnan(result.lo) and np.isnan(result.hi) and np.isnan(result.sd)
    assert not result.excludes_zero


@pytest.mark.parametrize("bad", [[], [0.1, float("nan")], [float("inf")]])
def test_seed_interval_refuses_empty_or_non_finite(bad):
    from ccl.stats import seed_interval

    with pytest.raises(ValueError):
        seed_interval(bad)


def _hierarchical_slow(per_seed, resamples, seed, level):
    """The obvious loop: one resample at a time, in the draw order the docstring states."""
    rng = np.random.default_rng(seed)
    n_seeds = len(per_seed)
    drawn = rng.integers(0, n_seeds, size=(resamples, n_seeds))
    slot_means = np.empty((resamples, n_seeds))
    for slot in range(n_seeds):
        for s in sorted(set(drawn[:, slot].tolist())):
            rows = [r for r in range(resamples) if drawn[r, slot] == s]
            idx = rng.integers(0, len(per_seed[s]), size=(len(rows), len(per_seed[s])))
            for row, draw in zip(rows, idx):
                slot_means[row, slot] = np.mean([per_seed[s][i] for i in draw])
    means = [np.mean(slot_means[r]) for r in range(resamples)]
    lo, hi = np.percentile(means, [100 * (1 - level) / 2, 100 * (1 + level) / 2])
    return float(np.mean([np.mean(d) for d in per_seed])), float(lo), float(hi)


def test_hierarchical_bootstrap_equals_the_obvious_loop():
    from ccl.stats import hierarchical_bootstrap

    rng = np.random.default_rng(5)
    per_seed = [rng.integers(-1, 2, n).astype(float) for n in (23, 31, 17)]
    fast = hierarchical_bootstrap(per_seed, resamples=400, seed=9, level=0.9)
    assert fast == pytest.approx(_hierarchical_slow(per_seed, 400, 9, 0.9))
    assert fast[1] < fast[0] < fast[2]


def test_hierarchical_bootstrap_weighs_seeds_equally_and_resamples_seeds():
    from ccl.stats import hierarchical_bootstrap

    # seed 0 has 4 videos all +1, seed 1 one video at 0: the mean of means is 0.5, not 0.8
    mean, lo, hi = hierarchical_bootstrap([np.ones(4), np.zeros(1)], resamples=2000, seed=1)
    assert mean == pytest.approx(0.5)
    # videos within a seed are constant, so only the seed draw varies: means 0, 0.5 or 1
    assert (lo, hi) == (0.0, 1.0)
    # one seed with constant differences: nothing varies
    assert hierarchical_bootstrap([np.full(7, 0.25)], resamples=50) == (0.25, 0.25, 0.25)


def test_hierarchical_bootstrap_refuses_bad_input():
    from ccl.stats import hierarchical_bootstrap

    with pytest.raises(ValueError, match="at least one seed"):
        hierarchical_bootstrap([])
    with pytest.raises(ValueError, match="seed 1"):
        hierarchical_bootstrap([np.ones(3), np.array([])])
    with pytest.raises(ValueError, match="seed 0: non-finite"):
        hierarchical_bootstrap([np.array([np.nan])])
