"""Data: videos -> HDF5 frame stores, split files -> annotation JSON, clip datasets.

Names are imported lazily so that ``ccl.data.prepare`` (used in spawned worker processes)
does not pull in torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "AnnotationFormatError": "ccl.data.annotations",
    "AnnotationReport": "ccl.data.annotations",
    "Annotations": "ccl.data.annotations",
    "load_annotations": "ccl.data.annotations",
    "AudioEmbeddings": "ccl.data.audio",
    "load_audio_embeddings": "ccl.data.audio",
    "ClipDataset": "ccl.data.datasets",
    "PrepareReport": "ccl.data.prepare",
    "prepare_videos": "ccl.data.prepare",
    "build_activitynet": "ccl.data.splits",
    "build_csv": "ccl.data.splits",
    "build_ucf101": "ccl.data.splits",
    "build_vggsound": "ccl.data.splits",
    "read_store_info": "ccl.data.store",
    "write_frame_store": "ccl.data.store",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'ccl.data' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return __all__
