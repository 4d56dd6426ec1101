"""``ccl report``: Markdown/JSON table, figures and error handling on fake run folders."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("matplotlib")
pytest.importorskip("sklearn")

from matplotlib.image import imread  # noqa: E402

from ccl import cli  # noqa: E402
from ccl.errors import ReportError  # noqa: E402
from ccl.plots import plot_tsne  # noqa: E402
from ccl.report import build_report, grad_norm_section, human_duration  # noqa: E402
from ccl.runs import (  # noqa: E402
    eval_path,
    features_path,
    load_run,
    method_label,
    read_metrics,
)

CLASSES = ["ApplyEyeMakeup", "Archery", "Basketball", "BenchPress", "Biking"]
N_VIDEOS = 30


def _config(name: str, method: str, teachers: list[str], epochs: int = 4) -> dict[str, Any]:
    return {
        "student": {"arch": "r2plus1d-10"},
        "objective": {"method": method, "teachers": teachers, "head_update": "reference"},
        "train": {"name": name, "epochs": epochs},
        "data": {},
        "optim": {},
        "image_teacher": {},
    }


def _metrics_lines(teachers: list[str], epochs: int, quality: float) -> list[str]:
    lines = []
    step = 0
    for e in range(1, epochs + 1):
        step += 10
        lines.append(json.dumps({"type": "step", "epoch": e, "step": step, "ce": 1.0}))
        rec: dict[str, Any] = {
            "type": "epoch",
            "epoch": e,
            "step": step,
            "train/ce": 1.6 / e,
            "train/acc": min(1.0, 0.2 * e * quality),
            "train/loss_v": 2.0 / e,
            "lr/student": 0.1 / e,
            "lr/heads": 0.01 / e,
            "epoch_s": 1800.0,
            "clips_per_s": 50.0,
            "val/top1": min(1.0, 0.15 * e * quality),
            "val/top5": min(1.0, 0.4 * e * quality),
            "val/loss": 1.5 / e,
        }
        for t in teachers:
            for term in ("contrast_vm", "contrast_vt", "jsd", "head_ce"):
                rec[f"train/{t}/{term}"] = 1.0 / e + 0.1
        lines.append(json.dumps(rec))
    return lines


def _eval(run: Path, rng: np.random.Generator, top1: float, kind: str = "best") -> dict[str, Any]:
    labels = np.arange(N_VIDEOS) % len(CLASSES)
    n_correct = round(top1 * N_VIDEOS)
    preds = labels.copy()
    preds[n_correct:] = (labels[n_correct:] + 1) % len(CLASSES)
    cm = np.zeros((len(CLASSES), len(CLASSES)), dtype=int)
    for y, p in zip(labels, preds):
        cm[y, p] += 1
    per_class = [float(cm[c, c] / cm[c].sum()) for c in range(len(CLASSES))]
    feats = rng.normal(size=(N_VIDEOS, 16)) + 3 * np.eye(16)[labels]
    feats /= np.linalg.norm(feats, axis=1, keepdims=True)
    np.savez_compressed(
        run / "eval_test_features.npz", features=feats.astype(np.float16), labels=labels
    )
    return {
        "split": "testing",
        "checkpoint": str(run / "checkpoints" / f"{kind}.pt"),
        "checkpoint_kind": kind,
        "checkpoint_sha256": "0" * 64,
        "epoch": 3,
        "classes": CLASSES,
        "videos_expected": N_VIDEOS,
        "videos_evaluated": N_VIDEOS,
        "missing": [],
        "recognition": {
            "top1": top1,
            "top5": 0.9,
            "mean_class_accuracy": float(np.mean(per_class)),
            "per_class_accuracy": per_class,
            "confusion_matrix": cm.tolist(),
        },
        "retrieval": {
            "gallery": "training",
            "gallery_size": 100,
            "recall": {"1": 0.5, "5": 0.6, "10": 0.7, "20": 0.8, "50": 0.9},
            "map": 0.25,
        },
        "videos": [],
        "features_file": "eval_test_features.npz",
        "config": {},
    }


def _make_run(
    root: Path,
    name: str,
    method: str,
    teachers: list[str],
    *,
    top1: float | None,
    quality: float = 1.0,
    last_top1: float | None = None,
    extra_lines: list[str] | None = None,
) -> Path:
    run = root / name
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.json").write_text(json.dumps(_config(name, method, teachers)))
    lines = _metrics_lines(teachers, 3, quality)
    if extra_lines:
        lines[1:1] = extra_lines
    (run / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    for kind in ("best", "last"):
        (run / "checkpoints" / f"{kind}.pt").write_bytes(b"x" * 1000)
    rng = np.random.default_rng(len(name))
    if top1 is not None:
        (run / "eval_test.json").write_text(json.dumps(_eval(run, rng, top1)))
    if last_top1 is not None:
        ev = _eval(run, rng, last_top1, "last")
        ev["videos_evaluated"] = N_VIDEOS - 2
        ev["missing"] = [{"video_id": "v_x_01", "reason": "unreadable"}]
        (run / "eval_test_last.json").write_text(json.dumps(ev))
    return run


@pytest.fixture()
def runs(tmp_path: Path) -> list[Path]:
    root = tmp_path / "runs"
    return [
        _make_run(root, "base", "baseline", [], top1=0.6, quality=0.8),
        _make_run(
            root,
            "cclai",
            "ccl",
            ["audio", "image"],
            top1=0.7,
            last_top1=2 / 3,
            extra_lines=["{not json", "[1, 2]"],
        ),
        _make_run(root, "ccla", "ccl", ["audio"], top1=None, quality=0.9),
    ]


def _check_png(path: Path) -> None:
    assert path.is_file(), f"missing {path.name}"
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", path.name
    assert path.stat().st_size > 5000, path.name
    img = imread(path)
    assert img.ndim == 3 and img.shape[0] > 200 and img.shape[1] > 200
    flat = img.reshape(-1, img.shape[2])
    assert len(np.unique(flat[:: max(1, len(flat) // 20000)], axis=0)) > 10, path.name


def test_build_report(runs: list[Path], tmp_path: Path) -> None:
    out = tmp_path / "report"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # damaged log lines are the report's warnings only
        report = build_report(runs, out)
    assert report.md_path == out / "report.md"
    assert report.json_path == out / "report.json"
    md = report.md_path.read_text()

    assert "| Run | Method | Teachers | Top-1 | Top-5 |" in md
    rows = {line.split("|")[1].strip(): line for line in md.splitlines() if line.startswith("| ")}
    assert set(rows) >= {"Run", "base", "cclai", "ccla"}
    cells = {k: [c.strip() for c in v.strip().strip("|").split("|")] for k, v in rows.items()}
    header = cells["Run"]

    def cell(run: str, col: str) -> str:
        return cells[run][header.index(col)]

    assert cell("base", "Method") == "baseline"
    assert cell("cclai", "Method") == "CCL-AI"
    assert cell("ccla", "Method") == "CCL-A"
    assert cell("cclai", "Teachers") == "audio+image"
    assert cell("base", "Top-1") == "60.0"
    assert cell("cclai", "Top-1") == "70.0"
    assert cell("cclai", "Top-5") == "90.0"
    assert cell("cclai", "Top-1 (last)") == "66.7"
    assert cell("base", "Top-1 (last)") == "-"
    assert cell("cclai", "R@1") == "50.0" and cell("cclai", "R@50") == "90.0"
    assert cell("cclai", "mAP") == "25.0"
    assert cell("ccla", "Top-1") == "-" and cell("ccla", "mAP") == "-"
    assert cell("base", "Epochs") == "3/4"
    assert cell("base", "Wall time") == "1 h 30 min"
    assert "checkpoints/best.pt" in cell("cclai", "Checkpoint")

    # notes: missing eval, incomplete eval, skipped corrupt lines
    assert f"run ccla: no eval_test.json (run `ccl evaluate {runs[2]}`)" in md
    assert "evaluated 28 of 30 videos" in md
    assert "metrics.jsonl:2: skipped" in md and "metrics.jsonl:3: skipped" in md

    expected = [
        *(f"curves_{r}.png" for r in ("base", "cclai", "ccla")),
        "confusion_base.png",
        "confusion_cclai.png",
        "tsne_base.png",
        "tsne_cclai.png",
        "per_class_cclai.png",
        "compare_curves.png",
    ]
    for name in expected:
        _check_png(out / name)
        assert f"({name})" in md
    for name in ("confusion_ccla.png", "tsne_ccla.png", "per_class_ccla.png"):
        assert not (out / name).exists()
        assert f"- {name}:" in md  # listed as skipped

    data = json.loads((out / "report.json").read_text())
    assert data == report.data  # the returned content is what was written
    assert sorted(report.figure_paths) == sorted(out / name for name in expected)
    by_name = {r["name"]: r for r in data["runs"]}
    assert by_name["cclai"]["best"]["top1"] == pytest.approx(0.7)
    assert by_name["cclai"]["last"]["top1"] == pytest.approx(2 / 3)
    assert by_name["ccla"]["best"] is None
    assert by_name["base"]["wall_time_s"] == pytest.approx(5400.0)
    assert by_name["base"]["epochs_trained"] == 3
    assert set(data["figures"]) == set(expected)


def test_cli(runs: list[Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cli_out"
    assert cli.main(["report", str(runs[2]), "--out", str(out), "--split", "test"]) == 0
    assert (out / "report.md").is_file() and (out / "report.json").is_file()
    assert "per_class" not in " ".join(p.name for p in out.iterdir())  # ccla has no eval
    assert "report written" in capsys.readouterr().out


@pytest.mark.parametrize("broken", ["missing", "no_config"])
def test_cli_bad_run_dir(
    runs: list[Path], tmp_path: Path, capsys: pytest.CaptureFixture[str], broken: str
) -> None:
    bad = tmp_path / "nope"
    if broken == "no_config":
        bad.mkdir()
    assert cli.main(["report", str(runs[0]), str(bad), "--out", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("ccl report: error: ") and str(bad) in err
    assert ("does not exist" if broken == "missing" else "no config.json") in err
    with pytest.raises(ReportError):
        build_report([bad], tmp_path / "o2")


def test_corrupt_features_file_is_named_and_its_figure_skipped(
    runs: list[Path], tmp_path: Path
) -> None:
    features = runs[0] / "eval_test_features.npz"
    features.write_bytes(b"PK\x03\x04 not a zip archive")
    with pytest.raises(ValueError, match=f"cannot read saved features {features}: BadZipFile"):
        plot_tsne(load_run(runs[0]), tmp_path / "tsne.png")
    build_report([runs[0]], tmp_path / "report")
    skipped = json.loads((tmp_path / "report" / "report.json").read_text())["skipped_figures"]
    assert any(str(features) in s for s in skipped), skipped


def test_helpers(tmp_path: Path) -> None:
    assert method_label({"method": "baseline", "teachers": []}) == "baseline"
    assert method_label({"method": "ccl", "teachers": ["image"]}) == "CCL-I"
    assert method_label({"method": "ccl", "teachers": ["image", "audio"]}) == "CCL-AI"
    assert human_duration(None) == "-"
    assert human_duration(42) == "42 s"
    assert human_duration(3 * 86400 + 7200) == "3 d 02 h"
    path = tmp_path / "metrics.jsonl"
    path.write_text(
        '{"type": "epoch", "epoch": 1, "epoch_s": 1}\n\n'
        '{"type": "epoch", "epoch": 2, "epo\n'
        '{"type": "epoch", "epoch": 1, "epoch_s": 2}\n'
    )
    records, messages = read_metrics(path)
    assert [r["epoch_s"] for r in records] == [2]  # resumed epoch: the last record wins
    assert len(messages) == 1 and messages[0].startswith(f"{path}:3: skipped corrupt")


def test_report_warnings_go_to_stderr_once(runs, tmp_path, capsys):
    out = tmp_path / "report"
    assert cli.main(["report", *map(str, runs), "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert captured.out == f"report written to {out / 'report.md'}\n"
    metrics = runs[1] / "metrics.jsonl"
    lines = captured.err.splitlines()
    assert [line.partition(" (")[0] for line in lines] == [
        f"ccl report: warning: {metrics}:2: skipped corrupt metrics line",
        f"ccl report: warning: {metrics}:3: skipped corrupt metrics line",
    ]


def test_gradient_norm_section(tmp_path: Path) -> None:
    grads = {"train/grad/ce": 2.0, "train/grad/contrast": 0.5, "train/grad/divergence": 0.25}
    with_norms = _make_run(tmp_path, "ccl-a", "ccl", ["audio"], top1=0.5)
    metrics = with_norms / "metrics.jsonl"
    records = [json.loads(x) for x in metrics.read_text().splitlines()]
    records = [{**r, **grads} if r["type"] == "epoch" else r for r in records]
    metrics.write_text("".join(json.dumps(r) + "\n" for r in records))
    without = _make_run(tmp_path, "base", "baseline", [], top1=0.4)
    lines = grad_norm_section([load_run(without), load_run(with_norms)])
    assert lines[0] == "## Gradient norms of the student's loss parts"
    assert "| epoch | ce | contrast | divergence |" in lines
    assert "| 1 | 2 | 0.5 | 0.25 |" in lines
    assert not any("base" in line for line in lines)
    assert grad_norm_section([load_run(without)]) == []


def test_eval_file_names(tmp_path: Path) -> None:
    assert eval_path(tmp_path, "testing") == tmp_path / "eval_test.json"
    assert eval_path(tmp_path, "test", "last") == tmp_path / "eval_test_last.json"
    assert eval_path(tmp_path, "validation") == tmp_path / "eval_validation.json"
    assert features_path(tmp_path, "testing", "last") == tmp_path / "eval_test_last_features.npz"
    # any other checkpoint file is filed under its own name
    assert eval_path(tmp_path, "testing", "epoch_3") == tmp_path / "eval_test_epoch_3.json"
    with pytest.raises(ValueError, match="checkpoint must be a name"):
        eval_path(tmp_path, "testing", "../x")
