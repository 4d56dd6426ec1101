"""Model packages: a trained student in a folder of its own (``ccl export``), and reading one
back for ``ccl predict`` / ``ccl embed`` without the run folder or the model code.

A package holds ``model.pt`` (TorchScript) and/or ``model.onnx``, ``classes.json`` (the class
names in logit order), ``preprocessing.json`` (how to turn a video into the model's input and
its outputs into video-level scores), ``config.json`` (the run's config), ``README.md`` (the
model card) and ``checksums.json`` (SHA-256 of every other file). Either model takes a float32
clip batch ``clip`` of shape (N, 3, T, H, W), normalised as preprocessing.json says, and
returns ``logits`` (N, classes) and ``features`` (N, D), the pooled features retrieval uses.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ccl.atomic import sha256_file

PACKAGE_FORMAT = "ccl-model-package"
PACKAGE_VERSION = 1
TORCHSCRIPT_FILE = "model.pt"
ONNX_FILE = "model.onnx"
MODEL_FILES = (TORCHSCRIPT_FILE, ONNX_FILE)
PREPROCESSING_FILE = "preprocessing.json"
CLASSES_FILE = "classes.json"
CONFIG_FILE = "config.json"
CARD_FILE = "README.md"
CHECKSUMS_FILE = "checksums.json"
INPUT_NAME = "clip"
OUTPUT_NAMES = ("logits", "features")
EXPORT_EXTRA_HINT = "pip install 'ccl[export]'"


def is_package(path: str | Path) -> bool:
    """Whether ``path`` is a folder that calls itself a model package (it holds
    ``preprocessing.json`` and ``model.pt`` or ``model.onnx``)."""
    path = Path(path)
    return (path / PREPROCESSING_FILE).is_file() and any(
        (path / name).is_file() for name in MODEL_FILES
    )


def looks_like_package(path: str | Path) -> bool:
    """Whether ``path`` is a folder with a ``preprocessing.json`` or a model file but no
    ``checkpoints/`` (a package, possibly incomplete, rather than a run folder)."""
    path = Path(path)
    if not path.is_dir() or (path / "checkpoints").is_dir():
        return False
    return any((path / name).is_file() for name in (PREPROCESSING_FILE, *MODEL_FILES))


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise ValueError(f"{path}: cannot read the model package file: {err}") from err


def verify_package(path: str | Path) -> dict[str, Any]:
    """Check a package folder: every required file present, every file listed in
    ``checksums.json`` there with its digest. Returns its preprocessing.json. Raises
    ``ValueError`` naming the folder and the first missing or damaged file."""
    path = Path(path)
    required = [PREPROCESSING_FILE, CLASSES_FILE, CHECKSUMS_FILE]
    for name in required:
        if not (path / name).is_file():
            raise ValueError(f"{path}: incomplete model package: no {name}")
    if not any((path / name).is_file() for name in MODEL_FILES):
        raise ValueError(f"{path}: incomplete model package: no {' or '.join(MODEL_FILES)}")
    checksums = _read_json(path / CHECKSUMS_FILE)
    files = checksums.get("files") if isinstance(checksums, dict) else None
    if not isinstance(files, dict):
        raise ValueError(f"{path / CHECKSUMS_FILE}: no 'files' mapping of names to sha256")
    for name, digest in files.items():
        file = path / name
        if not file.is_file():
            raise ValueError(f"{file}: listed in {CHECKSUMS_FILE} but missing")
        if sha256_file(file) != digest:
            raise ValueError(f"{file}: sha256 differs from {CHECKSUMS_FILE} (damaged or edited)")
    prep = _read_json(path / PREPROCESSING_FILE)
    if not isinstance(prep, dict) or prep.get("format") != PACKAGE_FORMAT:
        raise ValueError(f"{path / PREPROCESSING_FILE}: not a {PACKAGE_FORMAT} file")
    missing = [k for k in ("clip_frames", "frame_stride", "size", "mean", "std") if k not in prep]
    if missing:
        raise ValueError(f"{path / PREPROCESSING_FILE}: has no {', '.join(missing)}")
    return prep


class _OnnxModule:
    """An ONNX Runtime session called like the TorchScript module: (N, 3, T, H, W) float
    clips in, (logits, features) tensors out."""

    def __init__(self, path: Path) -> None:
        try:
            import onnxruntime
        except ImportError as err:
            raise ValueError(
                f"{path}: running an ONNX-only package needs onnxruntime: {EXPORT_EXTRA_HINT}"
            ) from err
        self.session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])

    def __call__(self, clips: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits, features = self.session.run(
            list(OUTPUT_NAMES), {INPUT_NAME: clips.detach().cpu().numpy().astype(np.float32)}
        )
        return torch.from_numpy(logits), torch.from_numpy(features)


@dataclass
class PackagedStudent:
    """A student read from a model package, fed and used as :class:`ccl.predict.TrainedStudent`
    is (same window settings, same ``forward``)."""

    module: Any  # torch.jit.ScriptModule, or an ONNX Runtime session wrapper
    classes: list[str]
    path: Path
    device: torch.device
    mean: torch.Tensor
    std: torch.Tensor
    clip_frames: int
    frame_stride: int
    size: int
    feature_dim: int
    preprocessing: dict[str, Any]

    @torch.no_grad()
    def forward(self, clips: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits, features) of a batch of (B, 3, T, H, W) uint8 clips, as float32 on CPU."""
        x = (clips.to(self.device).float().div_(255.0) - self.mean) / self.std
        logits, features = self.module(x)
        return logits.float().cpu(), features.float().cpu()


def load_package(path: str | Path, device: torch.device) -> PackagedStudent:
    """The student of a model package folder (verified by :func:`verify_package`): its
    TorchScript model on ``device``, else its ONNX model in ONNX Runtime (CPU)."""
    path = Path(path)
    prep = verify_package(path)
    classes = [str(c) for c in _read_json(path / CLASSES_FILE)]
    if (path / TORCHSCRIPT_FILE).is_file():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated
            module: Any = torch.jit.load(str(path / TORCHSCRIPT_FILE), map_location=device)
        module.eval()
    else:
        module, device = _OnnxModule(path / ONNX_FILE), torch.device("cpu")

    def stats(values: list[float]) -> torch.Tensor:
        return torch.tensor(values, dtype=torch.float32, device=device).view(1, 3, 1, 1, 1)

    return PackagedStudent(
        module=module,
        classes=classes,
        path=path,
        device=device,
        mean=stats(prep["mean"]),
        std=stats(prep["std"]),
        clip_frames=int(prep["clip_frames"]),
        frame_stride=int(prep["frame_stride"]),
        size=int(prep["size"]),
        feature_dim=int(prep.get("feature_dim", 0)),
        preprocessing=prep,
    )


__all__ = [
    "CARD_FILE",
    "CHECKSUMS_FILE",
    "CLASSES_FILE",
    "CONFIG_FILE",
    "EXPORT_EXTRA_HINT",
    "INPUT_NAME",
    "MODEL_FILES",
    "ONNX_FILE",
    "OUTPUT_NAMES",
    "PACKAGE_FORMAT",
    "PACKAGE_VERSION",
    "PREPROCESSING_FILE",
    "PackagedStudent",
    "TORCHSCRIPT_FILE",
    "is_package",
    "load_package",
    "looks_like_package",
    "verify_package",
]
