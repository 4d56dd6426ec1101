"""Video-level evaluation: aggregation, retrieval, missing videos never leave a denominator."""

import json
import re
from dataclasses import dataclass

import numpy as np
import pytest
import torch

from ccl import metrics
from ccl.evaluation import EvalSettings, evaluate, summary_line


@dataclass
class Rec:
    video_id: str
    label: int


class FakeWindows(torch.utils.data.Dataset):
    """Stands in for ClipDataset(mode='test'): videos, windows, samples."""

    def __init__(self, n_videos, classes, windows_per_video=(1, 2, 3), broken=(), seed=0):
        g = np.random.default_rng(seed)
        self.frames, self.size = 4, 16
        self.videos = [Rec(f"v{seed}_{i}", i % classes) for i in range(n_videos)]
        self.windows = [(v, w) for v in range(n_videos) for w in range(windows_per_video[v % 3])]
        self.clips = g.integers(0, 255, size=(len(self.windows), 3, 4, 16, 16), dtype=np.uint8)
        self.broken = set(broken)

    def __len__(self):
        return len(self.windows)

    def __getitem__(self, i):
        video = self.windows[i][0]
        if video in self.broken:
            raise OSError(f"/data/{self.videos[video].video_id}.hdf5: truncated file")
        return {
            "clip": torch.from_numpy(self.clips[i]),
            "label": self.videos[video].label,
            "index": i,
            "video": video,
        }


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, train_tiny_run):
    return train_tiny_run(tmp_path_factory.mktemp("run"))


def _settings(**kw):
    return EvalSettings(workers=0, batch_size=3, progress=False, **kw)


def test_evaluate_matches_direct_computation(run_dir):
    queries, gallery = FakeWindows(7, 4, seed=1), FakeWindows(9, 4, seed=2)
    report = evaluate(
        run_dir, _settings(gallery="training"), datasets={"testing": queries, "training": gallery}
    )
    # recompute straightforwardly, one video at a time
    from ccl.checkpoint import load_checkpoint
    from ccl.config import Config
    from ccl.models import build_model
    from ccl.runtime import stats_tensor, to_batch

    state = load_checkpoint(run_dir / "checkpoints" / "best.pt")
    cfg = Config.from_dict(state["config"])
    model = build_model(cfg.student, 4)
    model.load_state_dict(state["student"])
    model.eval()
    mean, std = (
        stats_tensor(cfg.data.mean, torch.device("cpu")),
        stats_tensor(cfg.data.std, torch.device("cpu")),
    )

    def per_video(ds):
        scores, feats = [], []
        for v in range(len(ds.videos)):
            idx = [i for i, (vv, _) in enumerate(ds.windows) if vv == v]
            raw = {
                "clip": torch.stack([ds[i]["clip"] for i in idx]),
                "label": torch.zeros(len(idx), dtype=torch.long),
            }
            with torch.no_grad():
                out = model(to_batch(raw, torch.device("cpu"), mean, std).clip)
            scores.append(torch.softmax(out.logits, 1).mean(0))
            f = out.feature.mean(0)
            feats.append(f / f.norm())
        return torch.stack(scores), torch.stack(feats), torch.tensor([r.label for r in ds.videos])

    qs, qf, ql = per_video(queries)
    gs, gf, gl = per_video(gallery)
    assert report["recognition"]["top1"] == pytest.approx(metrics.topk_accuracy(qs, ql, ks=(1,))[1])
    assert report["videos_evaluated"] == report["videos_expected"] == 7
    for k, v in metrics.retrieval_recall(qf, ql, gf, gl, ks=(1, 5)).items():
        assert report["retrieval"]["recall"][str(k)] == pytest.approx(v)
    assert [v["top5"][0] for v in report["videos"]] == qs.argmax(1).tolist()
    # per query: the nearest training video has the query's class <=> retrieval rank 0
    nearest_same = (gl[(qf @ gf.T).argmax(1)] == ql).tolist()
    assert [v["retrieval_rank"] == 0 for v in report["videos"]] == nearest_same
    assert sum(nearest_same) / 7 == pytest.approx(report["retrieval"]["recall"]["1"])
    assert all(v["retrieval_rank"] is None or v["retrieval_rank"] >= 0 for v in report["videos"])
    saved = json.loads((run_dir / "eval_test.json").read_text())
    assert (
        saved["checkpoint_sha256"] == report["checkpoint_sha256"]
        and len(saved["checkpoint_sha256"]) == 64
    )
    assert np.load(run_dir / saved["features_file"])["features"].shape == (7, qf.shape[1])
    assert "(7/7 videos)" in summary_line(report)


def test_unreadable_video_is_an_error_or_counted_wrong(run_dir):
    queries = FakeWindows(6, 3, broken={2}, seed=3)
    with pytest.raises(
        RuntimeError, match=r"1 of 6 videos could not be evaluated: v3_2 \(.*truncated"
    ):
        evaluate(run_dir, _settings(gallery=None), datasets={"testing": queries})
    report = evaluate(
        run_dir, _settings(gallery=None, allow_missing=True), datasets={"testing": queries}
    )
    assert report["videos_expected"] == 6 and report["videos_evaluated"] == 5
    assert report["missing"][0]["video_id"] == "v3_2"
    whole = evaluate(
        run_dir, _settings(gallery=None), datasets={"testing": FakeWindows(6, 3, seed=3)}
    )
    # the five readable videos keep their predictions; the missing one counts as wrong
    correct_whole = round(whole["recognition"]["top1"] * 6)
    pred_2 = whole["videos"][2]["top5"][0] == whole["videos"][2]["label"]
    assert report["recognition"]["top1"] == pytest.approx((correct_whole - pred_2) / 6)
    assert sum(map(sum, report["recognition"]["confusion_matrix"])) == 5


def _prepared(root, labels, folder_of=None, subsets=("training", "testing")):
    """Frame stores (8 random 16x16 frames) and an annotation file listing ``labels`` in
    that order: one video per class of each of ``subsets``, filed under their class."""
    from ccl.data.store import write_frame_store

    rng = np.random.default_rng(0)
    frames, database = root / "frames", {}
    for label in sorted(labels):
        for subset in subsets:
            vid = f"v_{label}_{subset}"
            clip = rng.integers(0, 255, size=(8, 16, 16, 3), dtype=np.uint8)
            write_frame_store(frames / label / f"{vid}.hdf5", list(clip), fps=25)
            database[vid] = {"subset": subset, "annotations": {"label": label, "segment": [1, 9]}}
    path = root / "annotations.json"
    path.write_text(json.dumps({"labels": list(labels), "database": database}))
    return path, frames


CLASSES = [f"class_{c:02d}" for c in range(4)]  # the synthetic run's, in its order


@pytest.mark.parametrize(
    "labels, message",
    [
        (CLASSES[::-1], r"class 0 is 'class_00' in checkpoint .* but 'class_03' in .*json"),
        (CLASSES[:3], r"class 3 \('class_03'\) is only in checkpoint"),
    ],
)
def test_annotations_with_other_classes_than_the_checkpoint_are_refused(
    labels, message, run_dir, tmp_path, capsys, tree_hashes
):
    from ccl.cli import main

    ann, frames = _prepared(tmp_path, labels)
    before = tree_hashes(run_dir)
    args = ["evaluate", str(run_dir), "--annotations", str(ann), "--frames-dir", str(frames)]
    assert main([*args, "--workers", "0"]) == 1
    err = capsys.readouterr().err
    assert re.search(message, err), err
    assert tree_hashes(run_dir) == before  # nothing scored, nothing written
    # the same files in the checkpoint's order evaluate
    ann, frames = _prepared(tmp_path / "ok", CLASSES)
    out = tmp_path / "results"
    settings = _settings(annotations=str(ann), frames_dir=str(frames), out_dir=str(out))
    assert evaluate(run_dir, settings)["videos_evaluated"] == 4
    assert (out / "eval_test.json").is_file()


def test_audio_table_filed_under_other_classes_is_refused(tmp_path):
    from ccl.checkpoint import ClassMismatchError
    from ccl.data.audio import load_audio_embeddings
    from ccl.data.datasets import ClipDataset

    ann, frames = _prepared(tmp_path, CLASSES)
    audio = tmp_path / "audio"
    for label in CLASSES:  # filed under the class names, in other case (as UCF101's are)
        (audio / label.upper()).mkdir(parents=True)
        np.save(audio / label.upper() / f"v_{label}_training.npy", np.ones(8, dtype=np.float32))
    misfiled = audio / "CLASS_02" / "v_class_02_training.npy"
    misfiled.rename(audio / "CLASS_03" / misfiled.name)
    with pytest.raises(
        ClassMismatchError,
        match=r"'v_class_02_training' is in class folder 'CLASS_03', but .* labels the video "
        r"'class_02'",
    ):
        ClipDataset(ann, frames, "training", "train", frames=4, size=16, audio=audio)
    (audio / "CLASS_03" / misfiled.name).rename(misfiled)
    table = load_audio_embeddings(audio)
    assert len(ClipDataset(ann, frames, "training", "train", frames=4, size=16, audio=table)) == 4


def test_unwritable_results_folder_fails_before_any_forward_pass(run_dir, tmp_path, monkeypatch):
    import ccl.evaluation as ev

    def forward_windows(*args, **kwargs):
        raise AssertionError("evaluated although the results could not be written")

    monkeypatch.setattr(ev, "forward_windows", forward_windows)
    (tmp_path / "file").write_text("a file where a folder is expected")
    settings = _settings(gallery=None, out_dir=str(tmp_path / "file" / "results"))
    with pytest.raises(OSError, match="cannot write the evaluation results") as e:
        evaluate(run_dir, settings, datasets={"testing": FakeWindows(3, 3)})
    assert e.value.filename == str(tmp_path / "file" / "results")


def test_retrieval_gallery_is_the_official_training_split(run_dir, tmp_path):
    """By default the gallery is every video of the official training list: the training
    subset and the validation videos held out of it, never the test split, even when the
    file validates on it; the JSON records its size and make-up."""
    from ccl.cli import main

    ann, frames = _prepared(tmp_path, CLASSES, subsets=("training", "validation", "testing"))
    common = dict(annotations=str(ann), frames_dir=str(frames), out_dir=str(tmp_path / "out"))
    report = evaluate(run_dir, _settings(**common))
    ret = report["retrieval"]
    assert ret["gallery"] == "training+validation"
    assert ret["gallery_size"] == 8 and ret["gallery_subsets"] == {"training": 4, "validation": 4}
    saved = json.loads((tmp_path / "out" / "eval_test.json").read_text())["retrieval"]
    assert saved["gallery_size"] == 8 and saved["gallery_subsets"]["validation"] == 4
    only_train = evaluate(run_dir, _settings(gallery="training", **common))["retrieval"]
    assert only_train["gallery_size"] == 4 and only_train["gallery_subsets"] == {"training": 4}
    # the CLI's default is the same union, and its short names map onto subsets
    args = ["evaluate", str(run_dir), "--annotations", str(ann), "--frames-dir", str(frames)]
    args += ["--workers", "0", "--checkpoint", "best"]
    for extra, size in (([], 8), (["--gallery", "train"], 4), (["--gallery", "train+val"], 8)):
        out = tmp_path / f"cli{size}{len(extra)}"
        assert main([*args, "--out", str(out), *extra]) == 0
        assert json.loads((out / "eval_test.json").read_text())["retrieval"]["gallery_size"] == size

    # validating on the test split (the reference's protocol): no held-out videos, and the
    # gallery is the training subset alone, not the "validation" (= test) videos
    data = json.loads(ann.read_text())
    data["database"] = {k: e for k, e in data["database"].items() if e["subset"] != "validation"}
    data["validation_subset"] = "testing"
    ann.write_text(json.dumps(data))
    ret = evaluate(run_dir, _settings(**common))["retrieval"]
    assert ret["gallery_size"] == 4 and ret["gallery_subsets"] == {"training": 4}

    # the reference's own files label the test list "validation": querying it against the
    # default gallery would find the queries themselves, which is refused
    for entry in data["database"].values():
        if entry["subset"] == "testing":
            entry["subset"] = "validation"
    del data["validation_subset"]
    ann.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=r"gallery 'training\+validation' holds 4 of the query"):
        evaluate(run_dir, _settings(split="validation", **common))


def test_a_gallery_holding_the_queries_is_refused_before_any_forward_pass(
    run_dir, monkeypatch
):
    import ccl.evaluation

    passes = []
    monkeypatch.setattr(
        ccl.evaluation, "forward_windows", lambda *a, **k: passes.append(1) or {}
    )
    queries, gallery = FakeWindows(7, 4, seed=1), FakeWindows(9, 4, seed=1)  # ids v1_0..
    with pytest.raises(ValueError, match=r"gallery 'training' holds 7 of the query videos"):
        evaluate(
            run_dir,
            _settings(gallery="training"),
            datasets={"testing": queries, "training": gallery},
        )
    assert passes == []


def test_an_evaluation_is_labelled_and_filed_by_the_checkpoint_it_read(
    tmp_path, train_tiny_run, monkeypatch, capsys
):
    """``ccl evaluate RUN/checkpoints/last.pt`` is last.pt's evaluation: printed, labelled
    and filed as ``last``; any other checkpoint file under its own name; none replaces
    another checkpoint's results."""
    import functools

    import ccl.evaluation as ev
    from ccl.cli import main

    run = train_tiny_run(tmp_path, "train.epochs=2", "train.save_every=1")
    queries = FakeWindows(6, 3)
    monkeypatch.setattr(ev, "evaluate", functools.partial(evaluate, datasets={"testing": queries}))
    args = ["--gallery", "none", "--workers", "0"]
    assert main(["evaluate", str(run), "--checkpoint", "best", *args]) == 0
    best = (run / "eval_test.json").read_text()
    assert json.loads(best)["checkpoint_kind"] == "best"
    ckpts = run / "checkpoints"
    for name, label in [("last.pt", "last"), ("epoch_0001.pt", "epoch_0001")]:
        capsys.readouterr()
        assert main(["evaluate", str(ckpts / name), *args]) == 0
        out = capsys.readouterr().out
        path = run / f"eval_test_{label}.json"
        assert out.startswith(f"{label}: ") and str(path) in out, out
        report = json.loads(path.read_text())
        assert report["checkpoint_kind"] == label and report["checkpoint"] == str(ckpts / name)
        assert (run / f"eval_test_{label}_features.npz").is_file()
    assert (run / "eval_test.json").read_text() == best  # best.pt's results untouched
