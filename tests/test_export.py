"""``ccl export``: a model package whose TorchScript and ONNX models give the student's
outputs, whose files match their checksums, written atomically, and which ``ccl predict``
and ``ccl embed`` run with the same results as the run folder."""

import importlib.util
import json
import os
import stat
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from ccl.atomic import sha256_file
from ccl.checkpoint import load_checkpoint, save_checkpoint
from ccl.cli import main
from ccl.export import ONNX_OPSET
from ccl.predict import load_student

sys.path.insert(0, str(Path(__file__).parent / "data"))
from data_helpers import write_video  # noqa: E402

# the `export` extra (make test installs it); without it only the TorchScript half runs
HAS_ONNX = all(importlib.util.find_spec(m) for m in ("onnx", "onnxruntime"))

FRAMES, SIZE = 4, 16
PACKAGE_FILES = {
    "model.pt",
    "model.onnx",
    "classes.json",
    "preprocessing.json",
    "config.json",
    "checksums.json",
    "README.md",
}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, train_tiny_run):
    """The tiny run, plus ``checkpoints/sharp.pt``: its best checkpoint with the classifier
    scaled by 30 (one epoch leaves near-uniform probabilities, which any model would match)."""
    run = train_tiny_run(
        tmp_path_factory.mktemp("run"), f"data.clip_frames={FRAMES}", f"data.size={SIZE}"
    )
    state = load_checkpoint(run / "checkpoints" / "best.pt")
    for key in ("linear.weight", "linear.bias"):
        state["student"][key] = state["student"][key] * 30
    save_checkpoint(state, run / "checkpoints" / "sharp.pt")
    return run


@pytest.fixture(scope="module")
def package(run_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("exports") / "pkg"
    args = ["export", str(run_dir), "--checkpoint", "sharp.pt", "--out", str(out)]
    assert main([*args, "--format", "both" if HAS_ONNX else "torchscript"]) == 0
    return out


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    root = tmp_path_factory.mktemp("videos")
    write_video(root / "landscape.mp4", 10, 64, 48, codec="libx264")  # 3 windows
    write_video(root / "portrait.avi", 5, 48, 64, codec="mpeg4")
    return root


def _one_error_line(err: str, command: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"ccl {command}: error: "), err
    return lines[0]


@pytest.mark.filterwarnings("ignore::FutureWarning")  # torch.jit is deprecated
@pytest.mark.parametrize("batch", [2, 3])
def test_exported_models_give_the_eager_outputs(run_dir, package, batch):
    student = load_student(run_dir / "checkpoints" / "sharp.pt", device="cpu").student
    clips = torch.randn(batch, 3, FRAMES, SIZE, SIZE, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        eager = student(clips)
        scripted = torch.jit.load(str(package / "model.pt"))(clips)
    if HAS_ONNX:
        import onnxruntime

        session = onnxruntime.InferenceSession(
            str(package / "model.onnx"), providers=["CPUExecutionProvider"]
        )
        assert [o.name for o in session.get_outputs()] == ["logits", "features"]
        onnx_out = session.run(None, {"clip": clips.numpy()})
    else:
        onnx_out = [t.numpy() for t in scripted]
    for i, want in enumerate((eager.logits, eager.feature)):
        assert scripted[i].shape == want.shape and onnx_out[i].shape == tuple(want.shape)
        # 1e-4 of the output's scale: the one-epoch tiny student's outputs reach 1e6, where
        # float32 rounding alone is 0.1 (ONNX Runtime's kernels round differently)
        tol = 1e-4 * max(1.0, float(want.abs().max()))
        torch.testing.assert_close(scripted[i], want, atol=tol, rtol=0)
        np.testing.assert_allclose(onnx_out[i], want.numpy(), atol=tol, rtol=0)


@pytest.mark.skipif(not HAS_ONNX, reason="needs the export extra (onnx, onnxruntime)")
def test_package_files_and_checksums(run_dir, package):
    assert {p.name for p in package.iterdir()} == PACKAGE_FILES
    assert not [p for p in package.parent.iterdir() if p.name.startswith(".")]  # no temporaries
    digests = json.loads((package / "checksums.json").read_text())
    assert digests["algorithm"] == "sha256"
    assert digests["files"] == {
        name: sha256_file(package / name) for name in PACKAGE_FILES - {"checksums.json"}
    }
    state = load_checkpoint(run_dir / "checkpoints" / "sharp.pt")
    assert json.loads((package / "classes.json").read_text()) == state["classes"]
    assert json.loads((package / "config.json").read_text()) == json.loads(
        json.dumps(state["config"])
    )
    prep = json.loads((package / "preprocessing.json").read_text())
    data = state["config"]["data"]
    assert (prep["clip_frames"], prep["frame_stride"], prep["size"]) == (
        FRAMES,
        data["frame_stride"],
        SIZE,
    )
    assert prep["mean"] == list(data["mean"]) and prep["std"] == list(data["std"])
    assert prep["onnx_opset"] == ONNX_OPSET and prep["input"]["name"] == "clip"
    assert "softmax" in prep["scores"] and "loop" in prep["windowing"]
    card = (package / "README.md").read_text()
    assert f"{len(state['classes'])} classes" in card and "method: baseline" in card
    assert f"opset {ONNX_OPSET}" in card and "Intended use and limits" in card


def test_model_card_reports_the_evaluation(run_dir, tmp_path):
    evaluation = {
        "split": "testing",
        "videos_evaluated": 4,
        "videos_expected": 4,
        "recognition": {"top1": 0.5, "top5": 1.0, "confusion_matrix": [[1]]},
        "retrieval": {"recall": {"1": 0.25}, "map": 0.4},
    }
    (run_dir / "eval_test_sharp.json").write_text(json.dumps(evaluation))
    try:
        out = tmp_path / "pkg"
        assert main(["export", str(run_dir), "--checkpoint", "sharp.pt", "--out", str(out)]) == 0
    finally:
        (run_dir / "eval_test_sharp.json").unlink()
    card = (out / "README.md").read_text()
    assert "eval_test_sharp.json" in card and "recognition top1: 50.00" in card
    assert "retrieval recall: @1 25.00" in card and "confusion" not in card
    assert {p.name for p in out.iterdir()} == PACKAGE_FILES - {"model.onnx"}  # torchscript
    umask = os.umask(0o022)
    os.umask(umask)
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in [out, *out.iterdir()]}
    assert modes == {"pkg": 0o777 & ~umask, **{p.name: 0o666 & ~umask for p in out.iterdir()}}


@pytest.mark.skipif(not HAS_ONNX, reason="needs the export extra (onnx, onnxruntime)")
def test_existing_folder_is_refused_without_overwrite(run_dir, package, tmp_path, capsys):
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    assert main(["export", str(run_dir), "--out", str(busy)]) == 1
    assert "--overwrite" in _one_error_line(capsys.readouterr().err, "export")
    # --overwrite replaces only an earlier package, never another folder (a run, say)
    assert main(["export", str(run_dir), "--out", str(busy), "--overwrite"]) == 1
    assert "not a model package" in _one_error_line(capsys.readouterr().err, "export")
    assert [p.name for p in busy.iterdir()] == ["notes.txt"]
    # an empty folder is fine; an earlier package is replaced, whole
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["export", str(run_dir), "--out", str(empty)]) == 0
    assert main(["export", str(run_dir), "--out", str(empty), "--format", "onnx"]) == 1
    capsys.readouterr()
    args = ["export", str(run_dir), "--out", str(empty), "--format", "onnx", "--overwrite"]
    assert main(args) == 0
    assert {p.name for p in empty.iterdir()} == PACKAGE_FILES - {"model.pt"}
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_predict_and_embed_on_the_package_match_the_run(run_dir, package, videos, tmp_path):
    files = [str(videos / "landscape.mp4"), str(videos / "portrait.avi")]
    sharp = str(run_dir / "checkpoints" / "sharp.pt")
    results = {}
    for name, target in (("run", sharp), ("package", str(package))):
        out = tmp_path / f"{name}.json"
        assert main(["predict", target, *files, "--top", "3", "--json", str(out)]) == 0
        assert main(["embed", target, *files, "--out", str(tmp_path / f"{name}.npz")]) == 0
        results[name] = json.loads(out.read_text())
    for run_entry, pkg_entry in zip(results["run"], results["package"]):
        assert [t["label"] for t in pkg_entry["top"]] == [t["label"] for t in run_entry["top"]]
        np.testing.assert_allclose(
            [t["prob"] for t in pkg_entry["top"]],
            [t["prob"] for t in run_entry["top"]],
            atol=1e-4,
            rtol=0,
        )
    assert max(t["prob"] for t in results["run"][0]["top"]) > 0.5  # sharp: a real comparison
    with np.load(tmp_path / "run.npz") as a, np.load(tmp_path / "package.npz") as b:
        assert a["video_ids"].tolist() == b["video_ids"].tolist()
        np.testing.assert_allclose(a["features"], b["features"], atol=1e-4, rtol=0)


def test_failing_inputs_give_one_line(run_dir, package, videos, tmp_path, capsys, monkeypatch):
    video = str(videos / "portrait.avi")
    not_a_package = tmp_path / "stuff"
    not_a_package.mkdir()
    (not_a_package / "notes.txt").write_text("hello")
    assert main(["predict", str(not_a_package), video]) == 1
    assert "neither a run folder" in _one_error_line(capsys.readouterr().err, "predict")

    damaged = tmp_path / "damaged"
    damaged.mkdir()
    for name in PACKAGE_FILES - {"classes.json"}:
        (damaged / name).write_bytes((package / name).read_bytes())
    assert main(["predict", str(damaged), video]) == 1
    line = _one_error_line(capsys.readouterr().err, "predict")
    assert str(damaged) in line and "no classes.json" in line
    (damaged / "classes.json").write_text('["edited"]\n')
    assert main(["embed", str(damaged), video, "--out", str(tmp_path / "x.npz")]) == 1
    assert "classes.json: sha256 differs" in _one_error_line(capsys.readouterr().err, "embed")

    out = str(tmp_path / "pkg")
    assert main(["export", str(run_dir), "--checkpoint", "epoch_9999.pt", "--out", out]) == 1
    assert "epoch_9999.pt" in _one_error_line(capsys.readouterr().err, "export")
    assert main(["export", str(not_a_package), "--out", out]) == 1
    assert "no checkpoints/best.pt" in _one_error_line(capsys.readouterr().err, "export")
    assert main(["export", str(run_dir), "--out", out, "--format", "tflite"]) == 1
    assert "unknown format 'tflite'" in _one_error_line(capsys.readouterr().err, "export")

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "onnx" else real_find_spec(name, *a),
    )
    assert main(["export", str(run_dir), "--out", out, "--format", "onnx"]) == 1
    assert "pip install 'ccl[export]'" in _one_error_line(capsys.readouterr().err, "export")
    assert not Path(out).exists()
