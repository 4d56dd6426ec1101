"""``ccl predict`` and ``ccl embed``: video files decoded directly, the same numbers as
``ccl evaluate`` on the frame stores made from them, bad files reported by name."""

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from ccl.checkpoint import load_checkpoint, save_checkpoint
from ccl.cli import main
from ccl.data.prepare import prepare_videos
from ccl.evaluation import EvalSettings, evaluate
from ccl.predict import embed_stores, load_student, run_video

sys.path.insert(0, str(Path(__file__).parent / "data"))
from data_helpers import write_video  # noqa: E402

FRAMES = 4  # data.clip_frames of the fixture run


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, train_tiny_run):
    return train_tiny_run(
        tmp_path_factory.mktemp("run"), f"data.clip_frames={FRAMES}", "data.size=32"
    )


# name -> (frames, width, height, codec, audio codec)
GOOD = {
    "landscape.mp4": (10, 64, 48, "libx264", "aac"),  # 3 windows, the last loop-padded
    "portrait.avi": (9, 48, 64, "mpeg4", None),
    "short.mkv": (2, 64, 48, "mpeg4", None),  # shorter than one window
    "clip.webm": (8, 80, 48, "libvpx", None),
}


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    root = tmp_path_factory.mktemp("videos")
    for name, (n, w, h, codec, audio) in GOOD.items():
        write_video(root / name, n, w, h, codec=codec, audio_codec=audio)
    (root / "corrupt.avi").write_bytes(np.random.default_rng(0).bytes(4096))
    (root / "notes.mp4").write_text("these are my notes, not a video\n")
    return root


def test_predict_cli_reports_bad_files_and_predicts_the_rest(run_dir, videos, tmp_path, capsys):
    good = [str(videos / name) for name in GOOD]
    bad = [str(videos / "corrupt.avi"), str(videos / "notes.mp4"), str(videos / "absent.mp4")]
    out = tmp_path / "pred.json"
    rc = main(
        ["predict", str(run_dir), *good[:2], *bad, *good[2:], "--top", "3", "--json", str(out)]
    )
    assert rc == 1
    captured = capsys.readouterr()
    for path in bad:
        assert f"error: {path}: " in captured.err
    assert "absent.mp4: no such file" in captured.err
    assert "notes.mp4: cannot decode" in captured.err
    assert "3 of 7 videos could not be processed" in captured.err
    assert "Traceback" not in captured.err
    entries = {e["video"]: e for e in json.loads(out.read_text())}
    assert set(entries) == set(good) | set(bad)
    classes = load_student(run_dir).classes
    for path in good:
        top = entries[path]["top"]
        assert len(top) == 3 and "error" not in entries[path]
        probs = [t["prob"] for t in top]
        assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1 + 1e-6
        assert all(t["label"] in classes for t in top)
        assert f"{path} (" in captured.out
    for path in bad:
        assert entries[path]["top"] == [] and entries[path]["error"]
    # every good video: all its classes, probabilities summing to one
    assert main(["predict", str(run_dir), *good, "--top", "100"]) == 0
    assert capsys.readouterr().out.count(classes[0]) == len(good)


def test_windows_follow_evaluation(run_dir, videos):
    model = load_student(run_dir)
    for name, (n, *_) in GOOD.items():
        result = run_video(model, videos / name, batch_size=2)
        assert result.error is None
        assert result.windows == max(1, -(-n // FRAMES))  # non-overlapping, last padded
        assert float(result.probs.sum()) == pytest.approx(1.0, abs=1e-5)
        assert float(result.feature.norm()) == pytest.approx(1.0, abs=1e-5)
    # batching across windows does not change the result
    a = run_video(model, videos / "landscape.mp4", batch_size=1)
    b = run_video(model, videos / "landscape.mp4", batch_size=16)
    torch.testing.assert_close(a.probs, b.probs, atol=1e-5, rtol=0)


def _annotations(path: Path, classes: list[str], stores: dict[str, int]) -> Path:
    database = {
        vid: {
            "subset": "testing",
            "annotations": {"label": classes[i % len(classes)], "segment": [1, n + 1]},
        }
        for i, (vid, n) in enumerate(stores.items())
    }
    path.write_text(json.dumps({"labels": classes, "database": database}))
    return path


@pytest.fixture(scope="module")
def stores(run_dir, videos, tmp_path_factory):
    """Frame stores of the landscape and portrait videos, filed under the run's classes,
    with a test-subset annotation file."""
    classes = load_student(run_dir).classes
    tmp = tmp_path_factory.mktemp("stores")
    src, dst = tmp / "src", tmp / "frames"
    chosen = {"landscape.mp4": classes[0], "portrait.avi": classes[1]}
    for name, label in chosen.items():
        (src / label).mkdir(parents=True, exist_ok=True)
        (src / label / name).write_bytes((videos / name).read_bytes())
    report = prepare_videos(src, dst, progress=False)
    assert report.ok, report.failed
    n = {Path(name).stem: GOOD[name][0] for name in chosen}
    return _annotations(tmp / "ann.json", classes, n), dst


@pytest.fixture(scope="module")
def sharp_checkpoint(run_dir, tmp_path_factory):
    """The run's checkpoint with its classifier scaled by 30: one epoch leaves near-uniform
    probabilities that any input would match; sharper ones make the comparison a real check."""
    state = load_checkpoint(run_dir / "checkpoints" / "best.pt")
    for key in ("linear.weight", "linear.bias"):
        state["student"][key] = state["student"][key] * 30
    path = tmp_path_factory.mktemp("sharp") / "sharp.pt"
    save_checkpoint(state, path)
    return path


def test_predict_matches_evaluate_on_the_frame_store(sharp_checkpoint, videos, stores):
    ann, frames_dir = stores
    report = evaluate(
        sharp_checkpoint,
        EvalSettings(
            gallery=None,
            annotations=str(ann),
            frames_dir=str(frames_dir),
            workers=0,
            batch_size=2,
            progress=False,
            save_features=False,
        ),
    )
    model = load_student(sharp_checkpoint)  # a checkpoint file works as TARGET too
    store_feats, errors = embed_stores(model, "testing", str(ann), str(frames_dir))
    assert errors == []
    other = run_video(model, videos / "clip.webm")
    prob_tol, feat_tol = 5e-4, 2e-4  # measured 7e-5 and 5e-5: the JPEG round trip (q 90)
    for row, entry in enumerate(report["videos"]):
        name = {"landscape": "landscape.mp4", "portrait": "portrait.avi"}[entry["video_id"]]
        pred = run_video(model, videos / name)
        np.testing.assert_allclose(
            pred.probs[entry["top5"]].numpy(), entry["top5_scores"], atol=prob_tol, rtol=0
        )
        assert store_feats["video_ids"][row] == entry["video_id"]
        np.testing.assert_allclose(
            store_feats["features"][row], pred.feature.numpy(), atol=feat_tol, rtol=0
        )
        # another video is far outside both tolerances (the comparison can fail)
        assert float((other.probs - pred.probs).abs().max()) > 10 * prob_tol
        assert float((other.feature - pred.feature).abs().max()) > 10 * feat_tol


def test_embed_video_files_round_trip(run_dir, videos, tmp_path, capsys):
    good = [str(videos / "landscape.mp4"), str(videos / "short.mkv")]
    out = tmp_path / "feats.npz"
    rc = main(
        ["embed", str(run_dir), good[0], str(videos / "notes.mp4"), good[1], "--out", str(out)]
    )
    assert rc == 1
    err = capsys.readouterr().err
    assert "notes.mp4: cannot decode" in err and "1 of 3 videos" in err
    with np.load(out) as data:
        assert set(data.files) == {"features", "video_ids"}  # no labels for bare files
        feats, ids = data["features"], data["video_ids"]
    model = load_student(run_dir)
    assert feats.dtype == np.float32 and feats.shape == (2, model.student.feature_dim)
    assert ids.tolist() == good
    for row, path in enumerate(good):
        np.testing.assert_allclose(feats[row], run_video(model, path).feature.numpy(), atol=1e-6)


def test_embed_frame_stores_has_labels(run_dir, stores, tmp_path):
    ann, frames_dir = stores
    out = tmp_path / "stores.npz"
    args = ["embed", str(run_dir), "--annotations", str(ann), "--frames-dir", str(frames_dir)]
    assert main([*args, "--subset", "test", "--out", str(out)]) == 0
    with np.load(out) as data:
        assert data["features"].shape == (2, load_student(run_dir).student.feature_dim)
        assert data["video_ids"].tolist() == ["landscape", "portrait"]
        assert data["labels"].tolist() == [0, 1]
        assert data["classes"].tolist() == load_student(run_dir).classes
    # an unreadable store is reported by name, the other video is still saved
    copy = shutil.copytree(frames_dir, tmp_path / "frames")
    (copy / load_student(run_dir).classes[1] / "portrait.hdf5").write_bytes(b"not hdf5")
    args[-1] = str(copy)
    assert main([*args, "--subset", "test", "--out", str(out)]) == 1
    with np.load(out) as data:
        assert data["video_ids"].tolist() == ["landscape"]


def test_bad_arguments_are_one_line_errors(run_dir, videos, tmp_path, capsys):
    assert main(["predict", str(tmp_path / "no_run"), str(videos / "short.mkv")]) == 1
    assert "no run folder or checkpoint" in capsys.readouterr().err
    out = str(tmp_path / "x.npz")
    assert main(["embed", str(run_dir), "--out", out]) == 1  # neither videos nor stores
    assert main(["embed", str(run_dir), str(videos / "short.mkv"), "--out", "x.txt"]) == 1
    err = capsys.readouterr().err
    assert "either video files or --subset" in err and "must be a .npz" in err
    assert not Path(out).exists()


def test_predict_json_never_replaces_an_input_or_a_foreign_file(
    run_dir, videos, tmp_path, capsys, tree_hashes
):
    video = tmp_path / "in.mkv"
    shutil.copy(videos / "short.mkv", video)
    notes = tmp_path / "notes.json"
    notes.write_text('{"mine": 1}\n')
    before = tree_hashes(tmp_path)
    predict = ["predict", str(run_dir), str(video), "--json"]
    for target, why in [(video, "is one of the inputs"), (notes, "is not a ccl predict result")]:
        assert main([*predict, str(target)]) == 1
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and str(target) in err and why in err, err
    assert tree_hashes(tmp_path) == before
    out = tmp_path / "pred.json"
    assert main([*predict, str(out)]) == 0
    assert main(["predict", str(run_dir), str(video), str(video), "--json", str(out)]) == 0
    assert len(json.loads(out.read_text())) == 2  # its own earlier output is replaced
