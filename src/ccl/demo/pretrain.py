"""The demo's teachers trained on their own corpora (``ccl pretrain-teacher``).

The image teacher is a torchvision ResNet trained on single images labelled by object kind
and saved as a torchvision state dict, so CCL loads it exactly as it loads ImageNet weights
(``image_teacher.weights=FILE``). The audio teacher is :class:`SmallAudioCNN` trained on
sound clips labelled by sound event; ``ccl extract-audio --variant small`` then writes its
per-video embeddings in the PANNs layout. Neither corpus shares the video label space, as
ImageNet and AudioSet do not share UCF's.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ccl.checkpoint import save_checkpoint
from ccl.models.teachers import IMAGE_TEACHER_ARCHS, KINETICS_MEAN, KINETICS_STD
from ccl.runtime import resolve_device


def _load_npz(path: Path, name: str, keys: tuple[str, ...]) -> dict[str, np.ndarray]:
    path = path / name if path.is_dir() else path
    if not path.is_file():
        raise FileNotFoundError(f"teacher corpus not found: {path} (made by `ccl synth`)")
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except Exception as err:  # noqa: BLE001 - any unreadable file: one message naming it
        raise ValueError(f"cannot read teacher corpus {path}: {type(err).__name__}: {err}") from err
    absent = [k for k in keys if k not in arrays]
    if absent:
        raise ValueError(f"{path} lacks arrays {absent}")
    return arrays


def _split(n: int, seed: int, held_out: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    order = np.random.default_rng(seed).permutation(n)
    k = max(1, int(round(n * held_out)))
    return order[k:], order[:k]


def _fit(
    model: torch.nn.Module,
    forward: Any,
    inputs: torch.Tensor,
    labels: torch.Tensor,
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    seed: int,
    augment: Any = None,
    log_prefix: str = "",
    device: torch.device | None = None,
) -> float:
    """Adam with a cosine schedule on ``device`` (the corpus stays on the CPU, batches move);
    the model is left on the CPU. Returns held-out accuracy (10 % of the corpus)."""
    device = device or torch.device("cpu")
    model.to(device)
    train_idx, val_idx = _split(len(labels), seed)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=1e-4)
    steps = epochs * max(1, len(train_idx) // batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps)
    g = torch.Generator().manual_seed(seed)
    train_t = torch.from_numpy(train_idx)
    acc = 0.0
    for epoch in range(epochs):
        model.train()
        perm = train_t[torch.randperm(len(train_t), generator=g)]
        t0, total, n = time.perf_counter(), 0.0, 0
        for i in range(0, len(perm) - batch_size + 1, batch_size):
            idx = perm[i : i + batch_size]
            x = inputs[idx]
            if augment is not None:
                x = augment(x, g)  # on the CPU, from the seeded generator
            loss = F.cross_entropy(forward(x.to(device)), labels[idx].to(device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total, n = total + float(loss.detach()) * len(idx), n + len(idx)
        acc = _accuracy(model, forward, inputs[val_idx], labels[val_idx], device)
        print(
            f"{log_prefix}epoch {epoch + 1}/{epochs} loss {total / max(n, 1):.3f} "
            f"held-out acc {acc:.3f} ({time.perf_counter() - t0:.1f}s)",
            flush=True,
        )
    model.to("cpu")
    return acc


@torch.no_grad()
def _accuracy(
    model: torch.nn.Module, forward: Any, x: torch.Tensor, y: torch.Tensor, device: torch.device
) -> float:
    model.eval()
    preds = torch.cat(
        [forward(x[i : i + 256].to(device)).argmax(1).cpu() for i in range(0, len(x), 256)]
    )
    return float((preds == y).float().mean())


def _training_record(
    names: list[str], acc: float, epochs: int, corpus: str | Path
) -> dict[str, Any]:
    """What every pretrained teacher records of its training: classes, held-out accuracy,
    epochs and corpus."""
    return {"classes": names, "held_out_accuracy": acc, "epochs": epochs, "corpus": str(corpus)}


def _write_record(out: str | Path, meta: dict[str, Any]) -> None:
    """Write ``meta`` next to the teacher's weights as ``<out>.json``, for people to read."""
    Path(str(out) + ".json").write_text(json.dumps(meta, indent=1) + "\n")


def pretrain_image_teacher(
    corpus: str | Path,
    out: str | Path,
    *,
    arch: str = "resnet18",
    size: int = 32,
    epochs: int = 6,
    batch_size: int = 64,
    lr: float = 2e-3,
    seed: int = 0,
    device: str = "auto",
) -> dict[str, Any]:
    """Train a torchvision ResNet on ``images.npz`` (``images`` (N, H, W, 3) uint8,
    ``labels``, ``label_names``); write its state dict to ``out`` and ``out.json``."""
    data = _load_npz(Path(corpus), "images.npz", ("images", "labels", "label_names"))
    images = torch.from_numpy(data["images"]).permute(0, 3, 1, 2).float().div_(255)
    if images.shape[-1] != size:
        images = F.interpolate(images, size=(size, size), mode="bilinear", antialias=True)
    mean = torch.tensor(KINETICS_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(KINETICS_STD).view(1, 3, 1, 1)
    images = (images - mean) / std  # what the teacher sees inside CCL: clip-normalised frames
    labels = torch.from_numpy(data["labels"].astype(np.int64))
    names = [str(n) for n in data["label_names"]]
    torch.manual_seed(seed)
    model = IMAGE_TEACHER_ARCHS[arch](weights=None, num_classes=len(names))

    def augment(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        flip = torch.rand(len(x), generator=g) < 0.5
        x = torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x)
        shift = torch.randint(-2, 3, (2,), generator=g).tolist()
        return torch.roll(x, shifts=shift, dims=(2, 3))

    acc = _fit(
        model,
        model,
        images,
        labels,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        seed=seed,
        augment=augment,
        log_prefix="image teacher ",
        device=resolve_device(device),
    )
    save_checkpoint(model.state_dict(), Path(out))
    meta = {
        "arch": arch,
        "size": size,
        **_training_record(names, acc, epochs, corpus),
        "images": len(labels),
    }
    _write_record(out, meta)
    return meta


def pretrain_audio_teacher(
    corpus: str | Path,
    out: str | Path,
    *,
    epochs: int = 8,
    batch_size: int = 64,
    lr: float = 2e-3,
    seed: int = 0,
    device: str = "auto",
) -> dict[str, Any]:
    """Train :class:`SmallAudioCNN` on ``sounds.npz`` (``waveforms`` (N, samples),
    ``labels``, ``label_names``, ``sample_rate``) resampled to 32 kHz; save to ``out``."""
    from ccl.data.media import SAMPLE_RATE, resample_array
    from ccl.models.small_audio import SmallAudioCNN, save_small_audio_teacher

    data = _load_npz(Path(corpus), "sounds.npz", ("waveforms", "labels", "label_names"))
    rate = int(data.get("sample_rate", SAMPLE_RATE))
    waves = data["waveforms"].astype(np.float32)
    if rate != SAMPLE_RATE:
        waves = np.stack([resample_array(w, rate, SAMPLE_RATE) for w in waves])
    labels = torch.from_numpy(data["labels"].astype(np.int64))
    names = [str(n) for n in data["label_names"]]
    torch.manual_seed(seed)
    model = SmallAudioCNN(len(names))
    with torch.no_grad():  # the front end is fixed: compute the log-mels once
        logmel = torch.cat(
            [
                model.frontend(torch.from_numpy(waves[i : i + 128]))
                for i in range(0, len(waves), 128)
            ]
        )

    def forward(x: torch.Tensor) -> torch.Tensor:
        return model.fc_out(model.embed_logmel(x))

    def augment(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        shift = int(torch.randint(0, x.shape[2], (1,), generator=g))
        return torch.roll(x, shifts=shift, dims=2)

    acc = _fit(
        model,
        forward,
        logmel,
        labels,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        seed=seed,
        augment=augment,
        log_prefix="audio teacher ",
        device=resolve_device(device),
    )
    meta = {
        **_training_record(names, acc, epochs, corpus),
        "clips": len(labels),
        "sample_rate": SAMPLE_RATE,
    }
    save_small_audio_teacher(model, out, meta)
    _write_record(out, meta)
    return meta


__all__ = ["pretrain_audio_teacher", "pretrain_image_teacher"]
