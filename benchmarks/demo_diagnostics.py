"""What the demo's runs did in training, and how far their test differences carry.

Reads a folder of ``ccl demo --seeds ... / --tune / --compare --out OUT`` and prints:

1. per run folder (``--runs``: shell patterns of run names, default all), the last
   epoch's numbers as each run's ``metrics.jsonl`` holds them, mean over the seeds that
   have the run: training top-1 (how well the student fits), validation top-1, the norm of
   the gradient each loss term sends to the student (``train/grad/<term>``) and the
   distillation terms' sum over the cross-entropy's: the measurements that say why a
   method fits worse or better (docs/DEMO.md);
2. with ``OUT/tuning.json`` (``ccl demo --tune``): per chosen run its test top-1 on each
   seed, its difference to the baseline of the same seed, the mean with the 95 % t
   interval over the seeds, the sd of those differences and the seeds an effect of
   ``--effect`` points would need (ccl.stats.seeds_needed: even odds of an interval that
   excludes 0, and 80 %); then the same for CCL minus each other distillation method with
   the same teachers;
3. with ``OUT/tuning.json``, per chosen run, what its test predictions get right: the
   object kind and the motion of the predicted class (a demo class is kind x motion, and
   the image teacher knows kinds only), mean +- sd over the seeds;
4. with ``--feature-probe``, per chosen run, how well linear probes read the object kind
   and the motion from its test features (``eval_test_last_features.npz``), fitted and
   scored across the test groups: what the features hold, whether or not the classifier
   uses it.

    python benchmarks/demo_diagnostics.py OUT
    python benchmarks/demo_diagnostics.py OUT --runs 'demo-ccl-a*' 'demo-fitnet-a*' --effect 5
    python benchmarks/demo_diagnostics.py OUT --feature-probe

The differences of test top-1 are those of ``tuned_table.md`` (on one seed's test videos
the mean paired difference is the difference of the two accuracies). Reads files only:
nothing is trained, nothing runs on a GPU.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import math
import re
import statistics
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ccl.config import demo_run_name
from ccl.demo.probe import fit_probe
from ccl.demo.synth import split_class
from ccl.demo.tune import ccl_pairs, label_of
from ccl.objectives.registry import BASELINE
from ccl.runs import read_metrics
from ccl.stats import seed_interval, seeds_needed


def seed_folders(out: Path) -> dict[int, Path]:
    """``out/seed_S`` folders by seed (``out`` itself as seed 0 when it is one seed's)."""
    found = {
        int(d.name.removeprefix("seed_")): d
        for d in out.glob("seed_*")
        if d.is_dir() and d.name.removeprefix("seed_").isdigit()
    }
    if not found and (out / "runs").is_dir():
        found = {0: out}
    if not found:
        raise SystemExit(f"{out}: no seed_S folders and no runs/ folder: not a demo folder")
    return dict(sorted(found.items()))


def last_epochs(out: Path, patterns: Sequence[str]) -> dict[str, dict[int, dict[str, Any]]]:
    """Per run name matching one of ``patterns``, per seed, its last epoch's record."""
    runs: dict[str, dict[int, dict[str, Any]]] = {}
    for seed, folder in seed_folders(out).items():
        for metrics in sorted((folder / "runs").glob("*/metrics.jsonl")):
            name = metrics.parent.name
            if not any(fnmatch.fnmatch(name, p) for p in patterns):
                continue
            epochs, _ = read_metrics(metrics)
            if epochs:
                runs.setdefault(name, {})[seed] = epochs[-1]
    return runs


def _mean(records: Sequence[dict[str, Any]], key: str) -> float:
    values = [float(r[key]) for r in records if r.get(key) is not None]
    return statistics.mean(values) if values else math.nan


def _cell(value: float, scale: float = 1.0, digits: int = 2) -> str:
    """``value * scale`` with ``digits`` decimals; "-" for a number no run logged (NaN)."""
    return "-" if math.isnan(value) else f"{scale * value:.{digits}f}"


def training_table(runs: dict[str, dict[int, dict[str, Any]]]) -> list[str]:
    """Section 1: the last epoch per run, mean over its seeds."""
    terms = sorted(
        {
            key.removeprefix("train/grad/")
            for per_seed in runs.values()
            for record in per_seed.values()
            for key in record
            if key.startswith("train/grad/") and key != "train/grad/ce"
        }
    )
    head = ["run", "seeds", "train top-1", "val top-1", "grad ce"]
    head += [f"grad {t}" for t in terms] + ["distillation / ce"]
    lines = [
        "Last epoch of training, mean over the seeds (top-1 in %; gradient norms on the "
        "student's parameters, per loss term)",
        "",
        "| " + " | ".join(head) + " |",
        "|---" * len(head) + "|",
    ]
    for name in sorted(runs):
        records = list(runs[name].values())
        ce = _mean(records, "train/grad/ce")
        grads = [_mean(records, f"train/grad/{t}") for t in terms]
        distill = sum(g for g in grads if not math.isnan(g))
        ratio = distill / ce if ce and not math.isnan(ce) and distill else math.nan
        cells = [
            name,
            str(len(records)),
            _cell(_mean(records, "train/acc"), 100, 1),
            _cell(_mean(records, "val/top1"), 100, 1),
            _cell(ce),
            *map(_cell, grads),
            _cell(ratio),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def difference_rows(
    test: dict[str, dict[str, dict[str, Any]]],
    pairs: Sequence[tuple[str, str]],
    effect: float,
) -> list[str]:
    """Rows of section 2: per (method, other) label pair, test top-1 differences per seed."""
    seeds = sorted(test, key=int)
    head = ["methods", *(f"seed {s}" for s in seeds), "mean [95 % CI]", "sd"]
    head += [f"seeds for {effect:g} (even odds)", f"seeds for {effect:g} (80 %)"]
    lines = ["| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
    for method, other in pairs:
        deltas: list[float | None] = []
        for s in seeds:
            mine, theirs = test[s].get(method), test[s].get(other)
            if (
                mine is None
                or theirs is None
                or any(math.isnan(float(x["top1"])) for x in (mine, theirs))
            ):
                deltas.append(None)  # not trained on this seed, or diverged
            else:
                deltas.append(100 * (float(mine["top1"]) - float(theirs["top1"])))
        have = [d for d in deltas if d is not None]
        cells = [f"{method} minus {other}", *("-" if d is None else f"{d:+.1f}" for d in deltas)]
        if len(have) >= 2:
            found = seed_interval(have)
            cells += [
                f"{found.mean:+.1f} [{found.lo:+.1f}, {found.hi:+.1f}]",
                f"{found.sd:.1f}",
                str(seeds_needed(found.sd, effect)),
                str(seeds_needed(found.sd, effect, power=0.8)),
            ]
        else:
            cells += ["-"] * 4
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def claims_table(record: dict[str, Any], effect: float) -> list[str]:
    """Section 2 from a tuning record: each chosen run against the baseline, then CCL
    against each other method of its teachers."""
    labels = {run: label_of(run) for run in record["chosen"]}
    versus_baseline = [(labels[r], BASELINE) for r in record["chosen"] if r != BASELINE]
    versus_ccl = [(labels[a], labels[b]) for a, b in ccl_pairs(record["chosen"])]
    lines = [
        f"Test top-1 differences (points) per seed of {record['command']}, their mean with the "
        "95 % Student t interval over the seeds, their sample sd, and the seeds at which a "
        f"true difference of {effect:g} points would give an interval above 0",
        "",
        *difference_rows(record["test"], versus_baseline, effect),
    ]
    if versus_ccl:
        lines += ["", *difference_rows(record["test"], versus_ccl, effect)]
    return lines


def demo_classes(evaluation: dict[str, Any], source: Path) -> list[tuple[str, str]]:
    """(object kind, motion) of each class of a demo evaluation read from ``source``."""
    try:
        return [split_class(c) for c in evaluation["classes"]]
    except ValueError as err:
        raise SystemExit(f"{source}: {err}: not a demo evaluation") from None


def kind_motion_hits(
    evaluation: dict[str, Any], classes: list[tuple[str, str]], source: Path
) -> tuple[float, float, float]:
    """Fractions of an evaluation's test videos whose top class is the label, has the
    label's object kind, has the label's motion (``classes``: :func:`demo_classes`); a
    video that could not be evaluated (``missing``) counts wrong in all three."""
    videos = evaluation["videos"]
    total = len(videos) + len(evaluation.get("missing", []))
    if not total:
        raise SystemExit(f"{source}: no test video")
    top1 = kind = motion = 0
    for video in videos:
        if not video["top5"]:
            continue
        truth, guess = classes[video["label"]], classes[video["top5"][0]]
        top1 += truth == guess
        kind += truth[0] == guess[0]
        motion += truth[1] == guess[1]
    return top1 / total, kind / total, motion / total


def chosen_run_rows(
    out: Path, record: dict[str, Any], measure: Callable[[Path], tuple[float, ...] | None]
) -> list[str]:
    """Per chosen run of a tuning record, a table row: its label, the number of seeds
    ``measure`` gave numbers for (called with the run's folder in each seed folder; None:
    nothing to measure there) and each number's mean +- sd over those seeds, in %."""
    folders = seed_folders(out).values()
    lines = []
    for run, choice in record["chosen"].items():
        folder = demo_run_name("demo", run, choice.get("overrides", ()))
        per_seed = [
            found
            for seed_folder in folders
            if (found := measure(seed_folder / "runs" / folder)) is not None
        ]
        if not per_seed:
            continue
        cells = [label_of(run), str(len(per_seed))]
        for values in zip(*per_seed):
            sd = statistics.stdev(values) if len(values) > 1 else math.nan
            cells.append(f"{100 * statistics.mean(values):.1f} +- {_cell(sd, 100, 1)}")
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def kind_motion_table(out: Path, record: dict[str, Any]) -> list[str]:
    """Section 3: per chosen run of a tuning record, top-1, kind right and motion right on
    the test videos of its last checkpoint, mean +- sd over the seeds that evaluated it."""
    parts: list[tuple[str, str]] = []

    def measure(run_dir: Path) -> tuple[float, float, float] | None:
        path = run_dir / "eval_test_last.json"
        if not path.is_file():
            return None
        evaluation = json.loads(path.read_text())
        parts[:] = demo_classes(evaluation, path)
        return kind_motion_hits(evaluation, parts, path)

    lines = chosen_run_rows(out, record, measure)
    if not lines:
        return []
    kinds, motions = len({k for k, _ in parts}), len({m for _, m in parts})
    return [
        "What the chosen runs' test predictions get right (%, last checkpoint, mean +- sd "
        f"over the seeds): the label, its object kind (chance {100 / kinds:.0f} %), its "
        f"motion (chance {100 / motions:.0f} %)",
        "",
        "| method | seeds | top-1 | kind right | motion right |",
        "|---|---|---|---|---|",
        *lines,
    ]


_GROUP = re.compile(r"_g(\d+)_c\d+$")


def kind_motion_probe(
    features: Any, evaluation: dict[str, Any], source: Path, folds: int = 5
) -> tuple[float, float]:
    """Top-1 of linear probes (:func:`ccl.demo.probe.fit_probe`) for the object kind and
    for the motion on one evaluation's test features (row i is ``evaluation["videos"][i]``),
    cross-validated over the test groups: each fold scores the groups the probe was not
    fitted on (a group's clips share a scene, so a probe never sees one clip's neighbour)."""
    import numpy as np

    videos = evaluation["videos"]
    if len(features) != len(videos):
        raise SystemExit(f"{source}: {len(features)} feature rows for {len(videos)} videos")
    classes = demo_classes(evaluation, source)
    groups = []
    for video in videos:
        found = _GROUP.search(video["video_id"])
        if not found:
            raise SystemExit(f"{source}: video id {video['video_id']!r} names no group")
        groups.append(int(found.group(1)))
    group_ids = np.asarray(groups)
    distinct = sorted(set(groups))
    if len(distinct) < 2:
        raise SystemExit(f"{source}: one test group only: nothing to cross-validate")
    n_folds = min(folds, len(distinct))
    accuracies = []
    for part in (0, 1):  # kind, motion
        names = sorted({c[part] for c in classes})
        target = np.asarray([names.index(classes[v["label"]][part]) for v in videos])
        right = 0.0
        for fold in range(n_folds):
            held = np.isin(group_ids, distinct[fold::n_folds])
            top1, _, _ = fit_probe(
                features[~held],
                target[~held],
                features[held],
                target[held],
                num_classes=len(names),
            )
            right += top1 * int(held.sum())
        accuracies.append(right / len(videos))
    return accuracies[0], accuracies[1]


def feature_probe_table(out: Path, record: dict[str, Any]) -> list[str]:
    """Section 4: per chosen run, the kind and motion probes' top-1 on its test features,
    mean +- sd over the seeds whose evaluation saved them."""
    import numpy as np

    def measure(run_dir: Path) -> tuple[float, float] | None:
        path, saved = run_dir / "eval_test_last.json", run_dir / "eval_test_last_features.npz"
        if not (path.is_file() and saved.is_file()):
            return None
        try:
            with np.load(saved) as arrays:
                features = arrays["features"].astype(np.float64)
        except (OSError, ValueError, KeyError, zipfile.BadZipFile) as err:
            raise SystemExit(f"{saved}: not a readable features file: {err!r}") from None
        return kind_motion_probe(features, json.loads(path.read_text()), saved)

    lines = chosen_run_rows(out, record, measure)
    if not lines:
        return []
    return [
        "Linear probes on the chosen runs' test features (last checkpoint), fitted and scored "
        "across the test groups (5 folds of groups), top-1 %, mean +- sd over the seeds",
        "",
        "| method | seeds | kind from the features | motion from the features |",
        "|---|---|---|---|",
        *lines,
    ]


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="the demo's --out folder")
    parser.add_argument("--runs", nargs="+", default=["*"], help="run names (shell patterns)")
    parser.add_argument("--effect", type=float, default=5.0, help="points (default 5)")
    parser.add_argument(
        "--feature-probe",
        action="store_true",
        help="also probe the chosen runs' saved test features for the kind and the motion",
    )
    args = parser.parse_args(argv)
    runs = last_epochs(args.out, args.runs)
    if not runs:
        raise SystemExit(f"{args.out}: no run matches {' '.join(args.runs)}")
    print("\n".join(training_table(runs)))
    record_path = args.out / "tuning.json"
    if args.feature_probe and not record_path.is_file():
        raise SystemExit(f"{record_path}: not found; --feature-probe reads the chosen runs")
    if record_path.is_file():
        print()
        record = json.loads(record_path.read_text())
        print("\n".join(claims_table(record, args.effect)))
        kinds = kind_motion_table(args.out, record)
        if kinds:
            print()
            print("\n".join(kinds))
        probes = feature_probe_table(args.out, record) if args.feature_probe else []
        if probes:
            print()
            print("\n".join(probes))


if __name__ == "__main__":
    main()
