"""Data safety: inputs that match nothing, damaged logs, extreme videos, full disks."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest

from ccl.cli import main

CLASSES = ["class_00", "class_01"]


def _prepared(root, videos_per_class=2):
    """Frame stores (8 random 16x16 frames) and an annotation file: ``videos_per_class``
    training videos and one testing video per class."""
    from ccl.data.store import write_frame_store

    rng = np.random.default_rng(0)
    frames, database = root / "frames", {}
    for label in CLASSES:
        for k in range(videos_per_class + 1):
            subset = "training" if k < videos_per_class else "testing"
            vid = f"v_{label}_{k}"
            clip = rng.integers(0, 255, size=(8, 16, 16, 3), dtype=np.uint8)
            write_frame_store(frames / label / f"{vid}.hdf5", list(clip), fps=25)
            database[vid] = {"subset": subset, "annotations": {"label": label, "segment": [1, 9]}}
    path = root / "annotations.json"
    path.write_text(json.dumps({"labels": CLASSES, "database": database}))
    return path, frames


def _audio(root, video_ids):
    for vid in video_ids:
        label = vid[2:10]
        (root / label).mkdir(parents=True, exist_ok=True)
        np.save(root / label / f"{vid}.npy", np.ones(8, dtype=np.float32))
    return root


def test_an_audio_teacher_without_any_training_video_embedding_is_refused(tmp_path, capsys):
    ann, frames = _prepared(tmp_path)
    # embeddings of other videos (another data set's folder): the teacher would teach nothing
    audio = _audio(tmp_path / "audio", ["v_class_00_7", "v_class_01_8"])
    args = [
        "train",
        "--preset",
        "ucf51-ccl-a",
        f"data.annotations={ann}",
        f"data.frames_dir={frames}",
        f"data.audio_dir={audio}",
        f"train.out_dir={tmp_path / 'runs'}",
        "train.device=cpu",
        "data.workers=0",
    ]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith("ccl train: error: ") and str(audio) in err and str(ann) in err, err
    assert "no audio embedding for any of the 4 training videos" in err, err
    assert not list((tmp_path / "runs").rglob("*.pt"))


@pytest.mark.parametrize("covered, warns", [(1, True), (2, False), (4, False)])
def test_a_small_share_of_training_videos_with_audio_warns_with_the_share(
    tmp_path, caplog, covered, warns
):
    from ccl.data.datasets import MIN_AUDIO_SHARE, ClipDataset, check_audio_coverage

    ann, frames = _prepared(tmp_path)
    ids = ["v_class_00_0", "v_class_01_0", "v_class_00_1", "v_class_01_1"][:covered]
    audio = _audio(tmp_path / "audio", ids)
    train = ClipDataset(ann, frames, "training", "train", frames=4, size=16, audio=audio)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="ccl.data"):
        assert check_audio_coverage(train) == covered / 4
    assert MIN_AUDIO_SHARE == 0.5
    messages = [r.getMessage() for r in caplog.records]
    if warns:
        assert messages == [
            f"only 25% of the training videos of {ann} (1 of 4) have an audio embedding in "
            f"{audio} (below 50%): the audio teacher teaches only those"
        ]
    else:
        assert messages == []
