"""``ccl demo``: the whole pipeline on the embedded synthetic benchmark (:mod:`ccl.demo`):
one seed, several (``--seeds``), the paper's comparison (``--compare``) or the validation
choice of every method's setting (``--tune``)."""

from __future__ import annotations

import argparse
from typing import Any

from ccl.demo.synth_audio import SOUNDTRACKS


def run(args: argparse.Namespace) -> int:
    from ccl.demo.pipeline import GPU_SEEDS, demo_scale, run_demo, run_demo_seeds

    if args.device == "cuda":
        from ccl.runtime import resolve_device

        resolve_device("cuda")  # no GPU: one clear error before anything is generated
    name = "quick" if args.quick else "gpu" if args.device == "cuda" else "demo"
    scale = demo_scale(name, args.device, args.soundtracks, args.settings)
    if args.methods and not args.tune:
        raise ValueError("--methods chooses the runs of --tune")
    seeds = tuple(args.seeds) if args.seeds else None
    if seeds is None and scale.synth == "gpu":
        seeds = GPU_SEEDS
    # --jobs by default: on a GPU every seed at once; on a CPU one seed after another, with
    # its methods (or the comparison's trainings) side by side
    gpu = scale.synth == "gpu"
    if args.runs is not None and args.runs < 1:
        raise ValueError(f"--runs must be at least 1, got {args.runs}")
    if (args.compare or args.tune) and args.runs not in (None, 1):
        raise ValueError("--runs applies to the demo itself, not to --compare or --tune")
    if args.compare or args.tune:
        jobs = args.jobs or (len(seeds) if gpu and seeds else scale.method_jobs)
        seeds = seeds or (args.seed,)
        if args.compare:
            from ccl.demo.compare import run_compare

            run_compare(args.out, seeds=seeds, scale=scale, overrides=args.overrides, jobs=jobs)
        else:
            from ccl.demo.tune import run_tuning

            run_tuning(
                args.out,
                seeds=seeds,
                scale=scale,
                overrides=args.overrides,
                runs=args.methods,
                jobs=jobs,
            )
    elif seeds:
        jobs = args.jobs or (len(seeds) if gpu else 1)
        run_demo_seeds(
            args.out,
            seeds=seeds,
            runs=args.runs or 1,
            scale=scale,
            overrides=args.overrides,
            jobs=jobs,
        )
    else:
        run_demo(
            args.out,
            seed=args.seed,
            runs=args.runs,
            scale=scale,
            overrides=args.overrides,
            jobs=args.jobs,
        )
    return 0


def register(subparsers: Any) -> None:
    """Add ``demo [--out DIR] [--seed S | --seeds S...] [--runs N] [--quick] [--compare | --tune]
    [--methods NAME...] [--settings chosen|reference] [--device auto|cpu|cuda]
    [--soundtracks families|events] [--jobs N] [section.key=value ...]``."""
    p = subparsers.add_parser(
        "demo",
        help="the whole pipeline on the embedded synthetic benchmark: each method trained 3 "
        "times, differences to the baseline with intervals over the runs (docs/DEMO.md)",
    )
    p.add_argument("--out", default="demo_runs", help="folder for everything the demo writes")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--quick", action="store_true", help="tiny scale, 2 epochs (CI smoke test)")
    task = p.add_mutually_exclusive_group()
    task.add_argument(
        "--compare",
        action="store_true",
        help="the paper's table: CCL, FitNet, PKT, CC, RKD, CRD and CMC with each teacher setting",
    )
    task.add_argument(
        "--tune",
        action="store_true",
        help="every method's setting chosen on the validation groups among 3 candidates each, "
        "then the test table of the chosen runs (ccl.demo.tune, docs/DEMO.md)",
    )
    p.add_argument(
        "--methods",
        nargs="+",
        metavar="NAME",
        help="with --tune: the runs to tune (baseline, ccl-a, pkt-ai, ...) or methods (ccl, "
        "pkt: every teacher setting); default all; the baseline always",
    )
    p.add_argument(
        "--settings",
        choices=("chosen", "reference"),
        default=None,
        help="chosen (default): the demo-* presets' settings chosen on validation; reference: "
        "the reference's loss weights and temperatures (demo-reference-* presets)",
    )
    p.add_argument(
        "--seeds",
        type=int,
        nargs="+",
        help="seeds to average over (one benchmark, teachers and runs per seed, in --out/seed_S)",
    )
    p.add_argument(
        "--runs",
        type=int,
        default=None,
        help="training runs of each method per benchmark (training seeds S, S+1000, ...): "
        "the demo's intervals are taken over them (default 3; 1 with --seeds, whose "
        "intervals are over the seeds)",
    )
    p.add_argument(
        "--device",
        choices=("auto", "cpu", "cuda"),
        default="auto",
        help="cuda: the larger 'gpu' benchmark with 15 epochs per run and seeds 1-5 side by "
        "side on one GPU (docs/DEMO.md); cpu: everything on the CPU; auto (default): the "
        "demo, on a GPU when there is one",
    )
    p.add_argument(
        "--soundtracks",
        choices=SOUNDTRACKS,
        default=None,
        help="the benchmark's soundtracks: families (default: a related class sounds the "
        "family of its motion at its kind's pitch) or events (an arbitrary event per class); "
        "docs/DEMO.md, Soundtracks",
    )
    p.add_argument(
        "--jobs",
        type=int,
        default=None,
        help="processes run at once, sharing the CPU threads: methods of one demo (default "
        "2: a second thread barely speeds up the demo's small student), seeds with --seeds "
        "(default 1; every seed at once with --device cuda), trainings with --compare or "
        "--tune (default 2; one per seed with --device cuda); the runs do not depend on it",
    )
    p.add_argument("overrides", nargs="*", metavar="section.key=value", help="applied to every run")
    p.set_defaults(func=run)
