"""Fixtures: a tiny UCF-like video tree written with PyAV, prepared once per session."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from data_helpers import SHORT_SIDE, make_video_tree  # noqa: E402


@pytest.fixture(scope="session")
def video_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_video_tree(tmp_path_factory.mktemp("videos"))


@pytest.fixture(scope="session")
def prepared(video_tree: Path, tmp_path_factory: pytest.TempPathFactory):
    from ccl.data.prepare import prepare_videos

    dst = tmp_path_factory.mktemp("stores")
    report = prepare_videos(video_tree, dst, short_side=SHORT_SIDE, audio=True, progress=False)
    return dst, report
