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
