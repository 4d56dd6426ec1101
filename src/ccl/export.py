"""``ccl export``: a run's student as a self-contained model package (:mod:`ccl.package`).

The student is traced to TorchScript and/or exported to ONNX (opset :data:`ONNX_OPSET`,
the legacy TorchScript-based exporter: no ``onnxscript``, works offline) with a dynamic
batch axis; each exported model is checked against the eager student on a random batch
before the package is written. The package is assembled in a temporary sibling folder and
renamed into place, so ``--out`` holds either the previous package or the complete new one.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ccl.atomic import TMP_SUFFIX, current_umask, sha256_file, write_text_atomic
from ccl.checkpoint import load_checkpoint
from ccl.config import Config
from ccl.data.media import DEFAULT_SHORT_SIDE
from ccl.models import build_model
from ccl.package import (
    CARD_FILE,
    CHECKSUMS_FILE,
    CLASSES_FILE,
    CONFIG_FILE,
    EXPORT_EXTRA_HINT,
    INPUT_NAME,
    ONNX_FILE,
    OUTPUT_NAMES,
    PACKAGE_FORMAT,
    PACKAGE_VERSION,
    PREPROCESSING_FILE,
    TORCHSCRIPT_FILE,
    is_package,
)
from ccl.runs import checkpoint_label, eval_path, method_label

EXPORT_FORMATS = ("torchscript", "onnx", "both")
ONNX_OPSET = 17
# largest |exported - eager| difference accepted, in units of the output's scale
# (max(1, max |eager|)): float32 rounding grows with the values
TOLERANCE = 1e-4
EVAL_SPLIT = "test"


class ExportedStudent(nn.Module):
    """The student with a plain tuple output: a normalised (N, 3, T, H, W) float clip batch
    in, ``(logits, features)`` out (the pooled features retrieval uses)."""

    def __init__(self, student: nn.Module) -> None:
        super().__init__()
        self.student = student

    def forward(self, clip: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.student(clip)
        return out.logits, out.feature


@dataclass
class ExportSource:
    """The checkpoint to export and the run folder it belongs to (None for a loose file)."""

    checkpoint: Path
    run_dir: Path | None
    label: str  # best, last, epoch_0050, ...: names its evaluation file


def resolve_source(target: str | Path, checkpoint: str = "best") -> ExportSource:
    """The checkpoint of run folder ``target`` named by ``checkpoint`` (``best``, ``last``,
    a file name in its ``checkpoints/``, or a path), or ``target`` itself when it is a
    checkpoint file. Raises ``FileNotFoundError`` naming what is missing."""
    target = Path(target)
    if target.is_dir():
        if checkpoint in ("best", "last"):
            path = target / "checkpoints" / f"{checkpoint}.pt"
            if not path.is_file():
                raise FileNotFoundError(f"{target} has no checkpoints/{checkpoint}.pt")
        else:
            candidates = [Path(checkpoint), target / "checkpoints" / checkpoint]
            path = next((p for p in candidates if p.is_file()), None)  # type: ignore[assignment]
            if path is None:
                raise FileNotFoundError(f"no checkpoint {checkpoint} (nor {candidates[1]})")
    elif target.is_file():
        path = target
    else:
        raise FileNotFoundError(f"no run folder or checkpoint at {target}")
    parent = path.resolve().parent
    run_dir = parent.parent if parent.name == "checkpoints" else None
    if run_dir is not None and not (run_dir / "config.json").is_file():
        run_dir = None
    return ExportSource(path, run_dir, checkpoint_label(path))


def preprocessing_spec(
    cfg: Config, num_classes: int, feature_dim: int, formats: list[str]
) -> dict[str, Any]:
    """Everything needed to feed the exported model as ``ccl predict`` does, and to turn
    its window outputs into video-level scores, as a JSON object."""
    data = cfg.data
    spec: dict[str, Any] = {
        "format": PACKAGE_FORMAT,
        "format_version": PACKAGE_VERSION,
        "models": formats,
        "input": {
            "name": INPUT_NAME,
            "shape": ["N", 3, data.clip_frames, data.size, data.size],
            "dtype": "float32",
            "layout": "N C T H W, RGB",
        },
        "outputs": {
            "logits": ["N", num_classes],
            "features": ["N", feature_dim],
        },
        "clip_frames": data.clip_frames,
        "frame_stride": data.frame_stride,
        "size": data.size,
        "feature_dim": feature_dim,
        "mean": list(data.mean),
        "std": list(data.std),
        "decode": (
            f"RGB frames in displayed orientation, resized so the short side is "
            f"{DEFAULT_SHORT_SIDE} px (bilinear, antialiased), as the frame stores hold them"
        ),
        "normalisation": "uint8 values / 255, then (x - mean) / std per RGB channel",
        "windowing": (
            f"every non-overlapping window of {data.clip_frames * data.frame_stride} "
            f"consecutive frames (clip_frames x frame_stride), starting at frame 0; a window "
            f"takes every {data.frame_stride}-th frame from its start; the last, shorter "
            f"window repeats its frames in order up to {data.clip_frames} (loop padding); "
            f"a video shorter than one window gives one looped window"
        ),
        "resize": (
            f"each window resized so its short side is {data.size} px (bilinear, "
            f"antialiased), then centre-cropped to {data.size}x{data.size}"
        ),
        "scores": "softmax over classes per window, then the mean over the video's windows",
        "video_features": "mean of the window features, then L2-normalised",
    }
    if "onnx" in formats:
        spec["onnx_opset"] = ONNX_OPSET
    return spec


def _number(value: Any) -> str:
    return f"{100 * value:.2f}" if isinstance(value, float) and abs(value) <= 1 else str(value)


def evaluation_lines(evaluation: dict[str, Any] | None, source: Path | None) -> list[str]:
    """The model card's results: the scalar recognition and retrieval results of the
    checkpoint's evaluation file, or why there are none."""
    if evaluation is None:
        return ["Not evaluated (no evaluation file of this checkpoint beside the run)."]
    lines = [
        f"From `{source.name if source else '?'}` "
        f"({evaluation.get('videos_evaluated', '?')} of "
        f"{evaluation.get('videos_expected', '?')} videos of "
        f"subset `{evaluation.get('split', EVAL_SPLIT)}`; percentages):",
        "",
    ]
    for section in ("recognition", "retrieval"):
        for key, value in (evaluation.get(section) or {}).items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                lines.append(f"- {section} {key}: {_number(value)}")
            elif isinstance(value, dict) and all(
                isinstance(v, (int, float)) for v in value.values()
            ):
                shown = ", ".join(f"@{k} {_number(v)}" for k, v in value.items())
                lines.append(f"- {section} {key}: {shown}")
    return lines


def model_card(
    state: dict[str, Any],
    source: ExportSource,
    spec: dict[str, Any],
    evaluation: dict[str, Any] | None,
    evaluation_file: Path | None,
) -> str:
    """The package's ``README.md``: what was trained on what, how, how well, and what the
    model is (and is not) for."""
    config = state["config"]
    data, train = config.get("data", {}), config.get("train", {})
    objective, student = config.get("objective", {}), config.get("student", {})
    teachers = [str(t) for t in objective.get("teachers", []) or []]
    classes = state["classes"]
    if data.get("source") == "synthetic":
        trained_on = "synthetic in-memory clips (a smoke test: no real data)"
    else:
        trained_on = f"`{data.get('annotations')}` (frame stores `{data.get('frames_dir')}`)"
    formats = " and ".join(
        f"`{name}`"
        for name, fmt in ((TORCHSCRIPT_FILE, "torchscript"), (ONNX_FILE, "onnx"))
        if fmt in spec["models"]
    )
    opset = f" (ONNX opset {spec['onnx_opset']})" if "onnx_opset" in spec else ""
    lines = [
        f"# {train.get('name', 'ccl student')}: a video classifier exported by `ccl export`",
        "",
        "## Training",
        "",
        f"- data: {trained_on}, {len(classes)} classes (`{CLASSES_FILE}`)",
        f"- method: {method_label(objective)}"
        + (f", teachers: {', '.join(teachers)}" if teachers else ", no teachers"),
        f"- student: {student.get('arch')} (width {student.get('width')}, "
        f"features {spec['feature_dim']})",
        f"- checkpoint: `{source.checkpoint.name}` after epoch {state.get('epoch', '?')} of "
        f"{train.get('epochs', '?')} configured; full settings in `{CONFIG_FILE}`",
        "",
        "## Results",
        "",
        *evaluation_lines(evaluation, evaluation_file),
        "",
        "## Use",
        "",
        f"Model: {formats}{opset}. Input `{INPUT_NAME}`: float32 (N, 3, "
        f"{spec['clip_frames']}, {spec['size']}, {spec['size']}) clips normalised as "
        f"`{PREPROCESSING_FILE}` says; outputs `logits` and `features` (pooled, before the "
        "classifier). Video-level scores: softmax per window averaged over the video's "
        f"windows, as `{PREPROCESSING_FILE}` describes. `ccl predict THIS_FOLDER VIDEO...` "
        "and `ccl embed THIS_FOLDER VIDEO... --out FILE.npz` run it.",
        "",
        "## Intended use and limits",
        "",
        f"- Recognises only the {len(classes)} classes it was trained on; any other input "
        "still gets one of them, with no 'none of these' answer.",
        "- Expects videos like its training data (frame rate, framing, content); accuracy "
        "elsewhere is unknown. The results above are on its own test subset only.",
        "- Scores are not calibrated probabilities; do not use it for decisions about people.",
        f"- `{CHECKSUMS_FILE}` holds the SHA-256 of every file; `ccl predict` checks them.",
    ]
    return "\n".join(lines) + "\n"


def _check_close(name: str, got: tuple[Any, ...], want: tuple[torch.Tensor, ...]) -> None:
    for out_name, g, w in zip(OUTPUT_NAMES, got, want):
        diff = float((torch.as_tensor(g) - w).abs().max())
        scale = max(1.0, float(w.abs().max()))
        if not diff <= TOLERANCE * scale:
            raise RuntimeError(
                f"exported {name} {out_name} differ from the student by {diff:.2e} "
                f"(more than {TOLERANCE} x {scale:.3g}); the package is not written"
            )


def write_torchscript(model: ExportedStudent, example: torch.Tensor, path: Path) -> None:
    """Trace ``model`` on ``example`` and save it; the traced model must give the eager
    outputs on another batch size."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit is deprecated in favour of torch.export
        traced = torch.jit.trace(model, example)
        traced.save(str(path))
        loaded = torch.jit.load(str(path))
    check = torch.randn(3, *example.shape[1:])
    with torch.no_grad():
        _check_close("TorchScript", loaded(check), model(check))


def write_onnx(model: ExportedStudent, example: torch.Tensor, path: Path) -> None:
    """Export ``model`` to ONNX with a dynamic batch axis, check it with ``onnx`` and, when
    ``onnxruntime`` is installed, against the eager outputs on another batch size."""
    import onnx

    axes = {name: {0: "batch"} for name in (INPUT_NAME, *OUTPUT_NAMES)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the legacy exporter warns it is legacy
        torch.onnx.export(
            model,
            (example,),
            str(path),
            input_names=[INPUT_NAME],
            output_names=list(OUTPUT_NAMES),
            dynamic_axes=axes,
            opset_version=ONNX_OPSET,
            dynamo=False,
        )
    onnx.checker.check_model(str(path))
    if importlib.util.find_spec("onnxruntime") is None:
        return
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    check = torch.randn(3, *example.shape[1:])
    with torch.no_grad():
        _check_close("ONNX", tuple(session.run(None, {INPUT_NAME: check.numpy()})), model(check))


def prepare_out(out: Path, overwrite: bool) -> None:
    """Refuse an ``out`` that is a file, or a non-empty folder without ``overwrite``; with it,
    anything but an earlier model package (a run folder, say) is refused too."""
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"{out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise FileExistsError(
                f"{out} exists and is not empty; choose another --out or add --overwrite"
            )
        if not is_package(out):
            raise FileExistsError(
                f"{out} is not a model package; --overwrite replaces only an earlier package"
            )


def install_folder(tmp: Path, out: Path) -> None:
    """Rename the complete folder ``tmp`` to ``out``: an empty ``out`` is replaced, a full
    one moved aside first and removed once the new one is in place."""
    old = None
    if out.is_dir():
        if any(out.iterdir()):
            old = Path(
                tempfile.mkdtemp(prefix=f".{out.name}.old.", suffix=TMP_SUFFIX, dir=out.parent)
            )
            os.replace(out, old / out.name)
        else:
            out.rmdir()
    os.replace(tmp, out)
    dir_fd = os.open(out.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def export_package(
    target: str | Path,
    out: str | Path,
    *,
    checkpoint: str = "best",
    fmt: str = "torchscript",
    overwrite: bool = False,
) -> Path:
    """Write the model package of run folder (or checkpoint file) ``target`` to folder
    ``out`` atomically and return ``out``. ``fmt``: ``torchscript``, ``onnx`` or ``both``."""
    if fmt not in EXPORT_FORMATS:
        raise ValueError(f"unknown format {fmt!r}: choose {', '.join(EXPORT_FORMATS)}")
    formats = ["torchscript", "onnx"] if fmt == "both" else [fmt]
    if "onnx" in formats and importlib.util.find_spec("onnx") is None:
        raise ValueError(f"--format {fmt} needs the onnx package: {EXPORT_EXTRA_HINT}")
    out = Path(out)
    prepare_out(out, overwrite)
    source = resolve_source(target, checkpoint)
    state = load_checkpoint(source.checkpoint)
    cfg = Config.from_dict(state["config"])
    classes = [str(c) for c in state["classes"]]
    student = build_model(cfg.student, len(classes))
    student.load_state_dict(state["student"])
    model = ExportedStudent(student.float()).eval()
    example = torch.randn(2, 3, cfg.data.clip_frames, cfg.data.size, cfg.data.size)
    with torch.no_grad():
        feature_dim = int(model(example)[1].shape[1])
    spec = preprocessing_spec(cfg, len(classes), feature_dim, formats)
    evaluation, evaluation_file = None, None
    if source.run_dir is not None:
        candidate = eval_path(source.run_dir, EVAL_SPLIT, source.label)
        if candidate.is_file():
            evaluation, evaluation_file = json.loads(candidate.read_text()), candidate

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=TMP_SUFFIX, dir=out.parent))
    try:
        tmp.chmod(0o777 & ~current_umask())  # a folder's mode as mkdir gives it, not 0700
        if "torchscript" in formats:
            write_torchscript(model, example, tmp / TORCHSCRIPT_FILE)
        if "onnx" in formats:
            write_onnx(model, example, tmp / ONNX_FILE)
        texts = {
            CLASSES_FILE: json.dumps(classes, indent=1),
            PREPROCESSING_FILE: json.dumps(spec, indent=2),
            CONFIG_FILE: json.dumps(state["config"], indent=2),
        }
        for name, text in texts.items():
            write_text_atomic(tmp / name, text + "\n")
        write_text_atomic(
            tmp / CARD_FILE, model_card(state, source, spec, evaluation, evaluation_file)
        )
        digests = {p.name: sha256_file(p) for p in sorted(tmp.iterdir()) if p.is_file()}
        checksums = {"algorithm": "sha256", "files": digests}
        write_text_atomic(tmp / CHECKSUMS_FILE, json.dumps(checksums, indent=1) + "\n")
        prepare_out(out, overwrite)  # nothing appeared there meanwhile
        install_folder(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


__all__ = [
    "EXPORT_FORMATS",
    "ExportSource",
    "ExportedStudent",
    "ONNX_OPSET",
    "evaluation_lines",
    "export_package",
    "install_folder",
    "model_card",
    "preprocessing_spec",
    "resolve_source",
]
