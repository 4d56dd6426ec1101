"""``ccl demo``: the whole pipeline on the embedded synthetic benchmark, end to end.

generate videos with soundtracks -> prepare frame stores -> annotations (UCF101 format) ->
pre-train the teachers on their own corpora -> extract audio embeddings -> train baseline,
CCL-A, CCL-I and CCL-AI -> evaluate recognition and retrieval -> ``ccl report``. The same
code paths as real data; every step writes into ``--out`` and a finished step is skipped
when the demo is run again.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

METHODS = ("baseline", "ccl-a", "ccl-i", "ccl-ai")


def _step(name: str, done: Path, fn: Any) -> None:
    """Run ``fn`` unless ``done`` exists; print progress with the time taken."""
    if done.exists():
        print(f"[demo] {name}: done already ({done})", flush=True)
        return
    print(f"[demo] {name} ...", flush=True)
    t0 = time.perf_counter()
    fn()
    print(f"[demo] {name}: {time.perf_counter() - t0:.0f} s", flush=True)


def run_demo(
    out: str | Path,
    *,
    seed: int = 1,
    quick: bool = False,
    overrides: list[str] | None = None,
    methods: tuple[str, ...] = METHODS,
) -> dict[str, Any]:
    """Run the demo into ``out``; returns the report's data (one entry per method)."""
    from ccl.audio import extract_audio
    from ccl.config import apply_overrides, preset
    from ccl.data.annotations import build_ucf101
    from ccl.data.prepare import prepare_videos
    from ccl.engine import train
    from ccl.evaluation import EvalSettings, evaluate, summary_line
    from ccl.pretrain import pretrain_audio_teacher, pretrain_image_teacher
    from ccl.report import build_report
    from ccl.synth import generate

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    synth, frames = out / "synth", out / "frames"
    annotations = out / "annotations.json"
    image_teacher, audio_teacher = out / "teachers" / "image.pth", out / "teachers" / "audio.pt"
    audio_dir = out / "audio_features"
    scale = "quick" if quick else "demo"

    _step(
        "generate synthetic videos",
        synth / "synth_info.json",
        lambda: generate(synth, seed=seed, scale=scale),
    )

    def prepare() -> None:
        report = prepare_videos(
            synth / "videos", frames, workers=2, short_side=0, audio=True, progress=False
        )
        print("  " + report.summary())
        if not report.ok:
            raise RuntimeError(f"preparing the demo videos failed: {report.summary()}")

    _step("prepare frame stores", frames / "prepare_report.json", prepare)

    def annotate() -> None:
        ann = build_ucf101(synth / "splits", frames, split=1, seed=seed)
        print("  " + ann.report.summary())
        ann.write(annotations)

    _step("write annotations", annotations, annotate)
    teacher_epochs = {"image": 1, "audio": 1} if quick else {"image": 5, "audio": 5}
    _step(
        "pre-train the image teacher (object kinds)",
        image_teacher,
        lambda: pretrain_image_teacher(
            synth / "corpora" / "images",
            image_teacher,
            size=32,
            epochs=teacher_epochs["image"],
            seed=seed,
        ),
    )
    _step(
        "pre-train the audio teacher (sound events)",
        audio_teacher,
        lambda: pretrain_audio_teacher(
            synth / "corpora" / "audio", audio_teacher, epochs=teacher_epochs["audio"], seed=seed
        ),
    )

    def extract() -> None:
        report = extract_audio(frames, audio_teacher, audio_dir, variant="small", progress=False)
        print("  " + report.summary())

    _step("extract audio embeddings", audio_dir / "manifest.json", extract)

    run_dirs = []
    for method in methods:
        cfg = preset(f"demo-{method}")
        cfg.train.out_dir = str(out / "runs")
        cfg.train.seed = seed
        cfg.data.annotations = str(annotations)
        cfg.data.frames_dir = str(frames)
        cfg.data.audio_dir = str(audio_dir)
        cfg.image_teacher.weights = str(image_teacher)
        cfg.train.progress = False
        if quick:
            cfg.train.epochs = 2
            cfg.optim.milestones = (2,)
        apply_overrides(cfg, overrides or [])
        run_dir = Path(cfg.train.out_dir) / cfg.train.name
        run_dirs.append(run_dir)

        def fit(cfg: Any = cfg) -> None:
            train(cfg)

        _step(f"train {method}", run_dir / "checkpoints" / "last.pt", fit)

        def test(run_dir: Path = run_dir) -> None:
            for kind in ("best", "last"):
                report = evaluate(run_dir, EvalSettings(checkpoint=kind, workers=0, progress=False))
                print(f"  {kind}: {summary_line(report)}")

        _step(f"evaluate {method}", run_dir / "eval_test_last.json", test)

    print("[demo] report ...", flush=True)
    report_md = build_report(run_dirs, out / "report")
    data = json.loads((out / "report" / "report.json").read_text())
    table = _table(data, json.loads((synth / "synth_info.json").read_text()))
    (out / "demo_table.md").write_text(table + "\n")
    print(table)
    print(f"\n[demo] full report: {report_md}  ({(time.perf_counter() - t_start) / 60:.1f} min)")
    return data


def _table(report: dict[str, Any], synth_info: dict[str, Any]) -> str:
    """The comparison as Markdown: best-on-validation checkpoint, test split, with top-1
    split by whether the class's soundtrack is related to it (spec section 6)."""
    unrelated = set(synth_info.get("unrelated_audio_classes", []))

    def pct(x: Any) -> str:
        return "-" if x is None else f"{100 * x:.1f}"

    lines = [
        "| method | top-1 | top-5 | top-1 related audio | top-1 unrelated audio "
        "| R@1 | R@5 | mAP |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for run in report.get("runs", []):
        best = run.get("best") or {}
        retrieval = run.get("retrieval") or {}
        recall = retrieval.get("recall") or {}
        groups: dict[bool, list[float]] = {True: [], False: []}
        if best.get("eval_file"):
            ev = json.loads(Path(best["eval_file"]).read_text())
            for name, acc in zip(ev["classes"], ev["recognition"]["per_class_accuracy"]):
                if acc is not None:
                    groups[name in unrelated].append(acc)
        mean = {k: (sum(v) / len(v) if v else None) for k, v in groups.items()}
        lines.append(
            f"| {run.get('method')} | {pct(best.get('top1'))} | {pct(best.get('top5'))} | "
            f"{pct(mean[False])} | {pct(mean[True])} | {pct(recall.get('1'))} | "
            f"{pct(recall.get('5'))} | {pct(retrieval.get('map'))} |"
        )
    return "\n".join(lines)


def _cmd_demo(args: argparse.Namespace) -> int:
    run_demo(args.out, seed=args.seed, quick=args.quick, overrides=args.overrides)
    return 0


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "demo",
        help="the whole pipeline on the embedded synthetic benchmark (about 15 min on 2 cores)",
    )
    p.add_argument("--out", default="demo_runs", help="folder for everything the demo writes")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--quick", action="store_true", help="tiny scale, 2 epochs (CI smoke test)")
    p.add_argument("overrides", nargs="*", metavar="section.key=value", help="applied to every run")
    p.set_defaults(func=_cmd_demo)
