"""How often each interval for "method minus baseline over S seeds" covers the true difference.

Simulates the demo's situation: every seed trains both methods once, each training lands at
an accuracy that differs from its expectation by training noise (standard deviation
``--train-sd``, as measured between runs of one method in docs/DEMO.md), and tests both on
the same ``--videos`` test videos of that seed (hits correlated through each video's
difficulty). The true difference is the expectation over seeds and videos. Prints, per number
of seeds, the share of ``--trials`` simulated comparisons whose 95 % interval holds it, and
the mean interval width, for:

- ``videos``: the paired bootstrap over pooled (seed, video) pairs (test sampling only);
- ``hierarchical``: seeds resampled, then videos within each (``ccl.stats.hierarchical_bootstrap``);
- ``t over seeds``: Student's t over the per-seed differences (``ccl.stats.seed_interval``).

    python benchmarks/interval_coverage.py            # ~1-2 min on 2 cores
"""

from __future__ import annotations

import argparse

import numpy as np

from ccl.stats import bootstrap_mean, hierarchical_bootstrap, seed_interval


def simulate(rng: np.random.Generator, seeds: int, videos: int, args: argparse.Namespace):
    per_seed = []
    for _ in range(seeds):
        p_base = np.clip(args.base + rng.normal(0, args.train_sd), 0.02, 0.98)
        p_method = np.clip(args.base + args.effect + rng.normal(0, args.train_sd), 0.02, 0.98)
        difficulty = rng.random(videos)
        own = rng.random(videos)
        shared = rng.random(videos) < args.shared
        u_method = np.where(shared, difficulty, own)
        per_seed.append((u_method < p_method).astype(float) - (difficulty < p_base))
    return per_seed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[3, 5, 8])
    parser.add_argument("--videos", type=int, default=327)
    parser.add_argument("--trials", type=int, default=400)
    parser.add_argument("--resamples", type=int, default=2000)
    parser.add_argument("--base", type=float, default=0.45)
    parser.add_argument("--effect", type=float, default=0.03)
    parser.add_argument("--train-sd", type=float, default=0.04)
    parser.add_argument("--shared", type=float, default=0.7, help="share of videos whose "
                        "hit is decided by one difficulty for both models")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    print(f"true difference {args.effect:+.3f}, training noise sd {args.train_sd:.3f} per run, "
          f"{args.videos} test videos per seed, {args.trials} trials, 95 % intervals")
    print(f"{'seeds':>5}  {'interval':<13} {'coverage':>8}  {'mean width':>10}")
    for seeds in args.seeds:
        hits = {"videos": [], "hierarchical": [], "t over seeds": []}
        widths = {k: [] for k in hits}
        for trial in range(args.trials):
            per_seed = simulate(rng, seeds, args.videos, args)
            # the expectation of each seed's difference is the effect, up to clipping
            intervals = {
                "videos": bootstrap_mean(np.concatenate(per_seed), resamples=args.resamples,
                                         seed=trial)[1:],
                "hierarchical": hierarchical_bootstrap(per_seed, resamples=args.resamples,
                                                       seed=trial)[1:],
                "t over seeds": (lambda r: (r.lo, r.hi))(
                    seed_interval([d.mean() for d in per_seed])),
            }
            for name, (lo, hi) in intervals.items():
                hits[name].append(lo <= args.effect <= hi)
                widths[name].append(hi - lo)
        for name in hits:
            print(f"{seeds:>5}  {name:<13} {np.mean(hits[name]):>8.1%}  "
                  f"{100 * np.mean(widths[name]):>8.1f} pt")


if __name__ == "__main__":
    main()
