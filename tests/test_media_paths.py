"""One way to read a video file: ``ccl prepare videos``, ``ccl predict`` and ``ccl embed``
refuse a still image, warn of a truncated file and name a symlink loop in the same words."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ccl.cli import main
from ccl.data.media import VideoReader, still_image_reason
from ccl.data.prepare import prepare_videos
from ccl.errors import MediaError
from ccl.predict import load_student, video_windows

sys.path.insert(0, str(Path(__file__).parent / "data"))
from data_helpers import write_video  # noqa: E402

LOOP = "a symlink loop (too many levels of symbolic links)"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, train_tiny_run):
    return train_tiny_run(tmp_path_factory.mktemp("run"), "data.clip_frames=4", "data.size=32")


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    """A folder of one class: a PNG renamed .mp4, an AVI cut to 70 %, a symlink to itself,
    a good video, and the report of ``prepare videos`` on it."""
    src = tmp_path_factory.mktemp("media")
    folder = src / "A"
    folder.mkdir()
    Image.fromarray(np.zeros((48, 64, 3), np.uint8)).save(folder / "photo.png")
    (folder / "photo.png").rename(folder / "photo.mp4")
    full = write_video(src / "full.avi", 60, 64, 48)
    data = full.read_bytes()
    full.unlink()
    (folder / "cut.avi").write_bytes(data[: len(data) * 7 // 10])
    os.symlink("loop.mp4", folder / "loop.mp4")
    write_video(folder / "good.mkv", 6, 64, 48)
    report = prepare_videos(src, tmp_path_factory.mktemp("stores"), short_side=16, progress=False)
    return folder, report


def test_prepare_refuses_and_warns_in_the_shared_words(media):
    folder, report = media
    failed = {Path(f["source"]).name: f["reason"] for f in report.failed}
    assert failed == {"photo.mp4": still_image_reason("png"), "loop.mp4": LOOP}
    assert still_image_reason("png") == (
        "a still image (png), not a video; pass --allow-still-images "
        "(allow_still_images=True) to use it as a 1-frame video"
    )
    warned = {Path(w["source"]).name: w["warning"] for w in report.warnings}
    assert list(warned) == ["cut.avi"]
    assert warned["cut.avi"].endswith(
        "frames the container declares could be decoded (truncated file?); kept those"
    )
    assert sorted(Path(p).name for p in report.converted) == ["cut.avi", "good.mkv"]


def test_prepare_names_a_symlink_loop_given_by_name(media, tmp_path):
    folder, _ = media
    loop = folder / "loop.mp4"
    report = prepare_videos(folder.parent, tmp_path / "dst", videos=[loop], progress=False)
    assert report.failed == [{"source": str(loop), "reason": LOOP}]


@pytest.mark.parametrize("name, message", [("photo.mp4", None), ("loop.mp4", LOOP)])
def test_the_reader_refuses_with_one_error_type(media, name, message):
    folder, report = media
    reason = {Path(f["source"]).name: f["reason"] for f in report.failed}[name]
    assert reason == (message or still_image_reason("png"))
    with pytest.raises(MediaError) as err:
        list(video_windows(folder / name, 4, 1, 32))
    assert str(err.value) == reason
    with pytest.raises(MediaError):
        with VideoReader(folder / name, short_side=16) as reader:
            list(reader.frames())


def _lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("ccl ")]


@pytest.mark.parametrize("command", ["predict", "embed"])
def test_predict_and_embed_say_what_prepare_says(media, run_dir, tmp_path, capsys, command):
    folder, report = media
    names = ["photo.mp4", "cut.avi", "loop.mp4", "good.mkv"]
    args = [command, str(run_dir), *(str(folder / n) for n in names)]
    if command == "embed":
        args += ["--out", str(tmp_path / "features.npz")]
    assert main(args) == 1
    failed = {Path(f["source"]).name: f["reason"] for f in report.failed}
    warned = {Path(w["source"]).name: w["warning"] for w in report.warnings}
    assert _lines(capsys.readouterr().err) == [
        f"ccl {command}: error: {folder / 'photo.mp4'}: {failed['photo.mp4']}",
        f"ccl {command}: warning: {folder / 'cut.avi'}: {warned['cut.avi']}",
        f"ccl {command}: error: {folder / 'loop.mp4'}: {failed['loop.mp4']}",
        f"ccl {command}: 2 of 4 videos could not be processed",
    ]
    if command == "embed":
        saved = np.load(tmp_path / "features.npz")
        assert list(saved["video_ids"]) == [str(folder / "cut.avi"), str(folder / "good.mkv")]


def test_predict_takes_a_still_image_when_allowed(media, run_dir, tmp_path, capsys):
    folder, _ = media
    out = tmp_path / "pred.json"
    photo = str(folder / "photo.mp4")
    args = ["predict", str(run_dir), photo, "--allow-still-images", "--json", str(out)]
    assert main(args) == 0
    assert f"{photo} (1 window)" in capsys.readouterr().out
    (entry,) = json.loads(out.read_text())
    classes = load_student(run_dir).classes
    assert entry["video"] == photo and "error" not in entry
    assert len(entry["top"]) == min(5, len(classes))
    assert {t["label"] for t in entry["top"]} <= set(classes)


def test_missing_files_and_folders_are_named_alike(tmp_path, run_dir, capsys):
    (tmp_path / "dangling.mp4").symlink_to(tmp_path / "gone.mp4")
    (tmp_path / "folder.mp4").mkdir()
    paths = [tmp_path / "absent.mp4", tmp_path / "dangling.mp4", tmp_path / "folder.mp4"]
    assert main(["predict", str(run_dir), *map(str, paths)]) == 1
    assert _lines(capsys.readouterr().err)[:3] == [
        f"ccl predict: error: {paths[0]}: no such file",
        f"ccl predict: error: {paths[1]}: a broken symlink (to {tmp_path / 'gone.mp4'}, which "
        "does not exist)",
        f"ccl predict: error: {paths[2]}: a folder, not a file",
    ]
