"""The reference's protocol in one switch (docs/METHOD.md §5.3): annotations without a
hold-out, best epoch by clip accuracy on the test split, the last partial batch kept,
BatchNorm over the parts of a batch that DataParallel on 2 GPUs gave each replica."""

import copy
import json

import numpy as np
import pytest
import torch

import ccl.engine as engine
from ccl.cli import main as data_cli
from ccl.config import apply_overrides, preset
from ccl.models import build_student
from ccl.protocol import forward_in_splits

N_TRAIN, N_TEST = 20, 4  # batch 16: one full batch and a partial one of 4


@pytest.fixture(scope="module")
def tiny_split(tmp_path_factory):
    """Frame stores of 24 videos in 2 classes and their csv split (train/test)."""
    from ccl.data.store import write_frame_store

    root = tmp_path_factory.mktemp("split")
    rng = np.random.default_rng(0)
    rows = ["video_id,label,split"]
    for i in range(N_TRAIN + N_TEST):
        label, split = f"c{i % 2}", "train" if i < N_TRAIN else "test"
        frames = rng.integers(0, 255, size=(8, 16, 16, 3), dtype=np.uint8)
        write_frame_store(root / "frames" / label / f"v{i:02d}.hdf5", list(frames), fps=25)
        rows.append(f"v{i:02d},{label},{split}")
    (root / "split.csv").write_text("\n".join(rows) + "\n")
    return root


def _annotations(root, *flags):
    out = root / f"ann{'_'.join(f.strip('-') for f in flags)}.json"
    args = ["prepare", "annotations", "csv", "--csv", str(root / "split.csv")]
    assert data_cli([*args, "--videos", str(root / "frames"), "--out", str(out), *flags]) == 0
    return out


def test_reference_annotations_hold_nothing_out(tiny_split):
    held_out = json.loads(_annotations(tiny_split, "--val-fraction", "0.1").read_text())
    subsets = [e["subset"] for e in held_out["database"].values()]
    assert subsets.count("validation") == 2 and subsets.count("training") == N_TRAIN - 2
    for flags in (["--protocol", "reference"], ["--validate-on-test"]):
        data = json.loads(_annotations(tiny_split, *flags).read_text())
        subsets = [e["subset"] for e in data["database"].values()]
        assert subsets.count("training") == N_TRAIN and "validation" not in subsets
        assert data["validation_subset"] == "testing"


def _config(tiny_split, ann, name, *extra):
    return apply_overrides(
        preset("smoke-baseline"),
        [
            "data.source=prepared",
            f"data.annotations={ann}",
            f"data.frames_dir={tiny_split / 'frames'}",
            "data.clip_frames=4",
            "data.size=16",
            "data.batch_size=16",
            "data.workers=0",
            "train.epochs=2",
            "train.log_every=1",
            "train.progress=false",
            f"train.out_dir={tiny_split / 'runs'}",
            f"train.name={name}",
            *extra,
        ],
    )


def _observed_train(cfg, monkeypatch):
    """Train ``cfg`` and return (result, clips seen by the student's first BatchNorm in each
    training forward, the video ids validated on). Validation is scripted: epoch 1 has the
    better video-level top-1, epoch 2 the better clip-level top-1."""
    bn_batches: list[int] = []
    validated: list[list[str]] = []
    build_model = engine.build_model

    def observed_model(*args, **kwargs):
        student = build_model(*args, **kwargs)
        bn = next(m for m in student.modules() if isinstance(m, torch.nn.BatchNorm3d))
        bn.register_forward_pre_hook(
            lambda m, inputs: bn_batches.append(inputs[0].shape[0]) if m.training else None
        )
        return student

    scripted = [
        {"loss": 1.0, "clip_top1": 0.25, "top1": 0.75, "top5": 1.0, "videos": N_TEST},
        {"loss": 1.0, "clip_top1": 0.5, "top1": 0.5, "top5": 1.0, "videos": N_TEST},
    ]

    def evaluate_clips(student, loader, *args, **kwargs):
        validated.append(list(loader.dataset.video_ids))
        return scripted[len(validated) - 1]

    monkeypatch.setattr(engine, "build_model", observed_model)
    monkeypatch.setattr(engine, "evaluate_clips", evaluate_clips)
    return engine.train(cfg), bn_batches, validated


def _steps(run_dir):
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["type"] == "step"]


def test_reference_protocol_trains_as_the_reference(tiny_split, monkeypatch):
    ann = _annotations(tiny_split, "--protocol", "reference")
    test_ids = [f"v{i:02d}" for i in range(N_TRAIN, N_TRAIN + N_TEST)]

    cfg = _config(tiny_split, ann, "reference", "train.protocol=reference")
    result, bn_batches, validated = _observed_train(cfg, monkeypatch)
    # every epoch trains on the full batch and the last partial one (16 + 4 clips), each
    # normalised in DataParallel's two parts: 8 + 8, then 2 + 2
    assert bn_batches == [8, 8, 2, 2] * 2
    assert len(_steps(result.run_dir)) == 4
    # validated on the test split; the best epoch is the one with the best clip accuracy
    assert validated == [test_ids, test_ids]
    assert result.best["epoch"] == 2 and result.best["selected_by"] == "clip_top1"
    best = torch.load(result.run_dir / "checkpoints" / "best.pt", weights_only=True)
    assert best["epoch"] == 2 and best["best_top1"] == 0.5

    # the default protocol on the same files: full batches only, BatchNorm over the whole
    # batch, the best epoch by video-level top-1
    cfg = _config(tiny_split, ann, "held-out")
    result, bn_batches, validated = _observed_train(cfg, monkeypatch)
    assert bn_batches == [16] * 2 and len(_steps(result.run_dir)) == 2
    assert result.best["epoch"] == 1 and result.best["selected_by"] == "top1"
    # train.bn_splits alone changes only the BatchNorm parts
    cfg = _config(tiny_split, ann, "split4", "train.bn_splits=4")
    _, bn_batches, _ = _observed_train(cfg, monkeypatch)
    assert bn_batches == [4, 4, 4, 4] * 2


def test_reference_protocol_refuses_held_out_annotations(tiny_split):
    ann = _annotations(tiny_split, "--val-fraction", "0.1")
    cfg = _config(tiny_split, ann, "refused", "train.protocol=reference")
    with pytest.raises(ValueError, match=r"ann.*json: holds 2 training videos out .*--protocol"):
        engine.build_datasets(cfg)
    with pytest.raises(ValueError, match="train.bn_splits must be >= 1"):
        _config(tiny_split, ann, "bad", "train.bn_splits=0")


def test_forward_in_splits_is_dataparallel_batchnorm():
    """Each part normalised over its own clips (torch.chunk parts, as DataParallel
    scatters), outputs in batch order, running statistics from the first part only."""
    torch.manual_seed(0)
    student = build_student("r2plus1d-10", 3, width=1 / 16).double().train()
    clip = torch.randn(5, 3, 4, 32, 32, dtype=torch.float64)
    first, second = copy.deepcopy(student), copy.deepcopy(student)
    out = forward_in_splits(student, clip, 2)  # parts of 3 and 2 clips
    a, b = first(clip[:3]), second(clip[3:])
    torch.testing.assert_close(out.logits, torch.cat((a.logits, b.logits)))
    torch.testing.assert_close(out.feature, torch.cat((a.feature, b.feature)))
    whole = copy.deepcopy(first).train()
    assert not torch.allclose(whole(clip).logits, out.logits)  # not the whole batch's stats
    for name, buffer in student.named_buffers():
        torch.testing.assert_close(buffer, dict(first.named_buffers())[name], msg=name)
    (out.logits.sum() + out.feature.pow(2).sum()).backward()  # the graph is intact
    # a single clip is one part; evaluation mode is unaffected by splitting
    one = copy.deepcopy(student)
    torch.testing.assert_close(forward_in_splits(student, clip[:1], 2), one(clip[:1]))
    student.eval()
    with torch.no_grad():
        torch.testing.assert_close(forward_in_splits(student, clip, 2), student(clip))


def test_sampler_keeps_the_last_partial_batch_and_resumes_into_it():
    from ccl.data.sampling import EpochSampler

    kw = dict(global_batch=4, shuffle=True, seed=1, epoch=3)
    whole = list(EpochSampler(10, keep_last=True, **kw))
    assert sorted(whole) == list(range(10))  # nothing dropped
    assert len(list(EpochSampler(10, **kw))) == 8
    resumed = EpochSampler(10, keep_last=True, start_batch=2, **kw)
    assert list(resumed) == whole[8:] and len(resumed) == 2
    with pytest.raises(ValueError, match="needs one process"):
        EpochSampler(10, keep_last=True, world_size=2, **kw)
