"""Clip datasets over (annotation JSON, frame-store folder) (docs/METHOD.md §5).

Modes:

* ``train``: one sample per video; a random window of ``frames`` frames (every ``stride``-th
  frame) at a random position, loop-padded when the video is short; RandomResizedCrop
  (``scale``, ``ratio``) and a random horizontal flip, the same for all frames.
* ``val``: ``val_clips`` evenly spaced windows per video (fewer for short videos, never two
  identical), short side resized then centre crop.
* ``test``: every non-overlapping window of the whole video, the last one loop-padded when
  partial (the reference's sliding window), short side resized then centre crop.

``val`` and ``test`` samples are a deterministic list ``windows`` of (video_index,
window_start) pairs; ``sample["video"]`` lets callers average predictions per video.

Samples are dicts: ``clip`` uint8 (3, T, H, W) (normalisation belongs to the training loop),
``label`` int, ``index`` (sample index), ``video`` (video index); with audio embeddings
also ``audio`` float32 (D,) and ``audio_available`` bool.

HDF5 files are opened lazily in the process that reads them (a small LRU of open handles,
dropped when the dataset is pickled or the process id changes), so DataLoader workers never
share a handle across fork.
"""

from __future__ import annotations

import logging
import os
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import h5py
import numpy as np
import torch
from torch.utils.data import Dataset, get_worker_info

from ccl.data import transforms as T
from ccl.data.annotations import iter_subset, load_annotations
from ccl.data.audio import AudioEmbeddings
from ccl.data.store import STORE_SUFFIX

log = logging.getLogger("ccl.data")

Mode = Literal["train", "val", "test"]
Decoder = Literal["cpu", "cuda", "auto"]


@dataclass(frozen=True)
class VideoRecord:
    """One annotated video (or segment): its store and 1-based half-open frame range."""

    video_id: str
    path: Path
    label: int
    first: int  # 1-based first frame
    n_frames: int


def clip_offsets(n_frames: int, start: int, frames: int, stride: int = 1) -> list[int]:
    """0-based frame offsets of a clip starting at ``start``: every ``stride``-th frame,
    loop-padded (the available frames repeated in order) up to ``frames``."""
    if n_frames <= 0:
        raise ValueError("a clip needs at least one frame")
    offsets = list(range(start, min(n_frames, start + frames * stride), stride))
    if not offsets:
        offsets = [min(start, n_frames - 1)]
    out = list(offsets)
    while len(out) < frames:
        out.extend(offsets[: frames - len(out)])
    return out


def even_starts(n_frames: int, frames: int, stride: int, n_clips: int) -> list[int]:
    """``n_clips`` evenly spaced window starts (distinct; one when the video is short)."""
    span = (frames - 1) * stride + 1
    if n_frames <= span:
        return [0]
    if n_clips == 1:
        return [(n_frames - span) // 2]
    starts = np.round(np.linspace(0, n_frames - span, n_clips)).astype(int)
    return sorted({int(s) for s in starts})


def window_starts(n_frames: int, frames: int, stride: int) -> list[int]:
    """Starts of every non-overlapping window (the last may be partial)."""
    return list(range(0, n_frames, frames * stride))


class ClipDataset(Dataset):
    """Clips of the videos of one subset of an annotation file.

    Args:
        annotation_path: JSON in the reference's schema (see :mod:`ccl.data.annotations`).
        frames_dir: folder of frame stores (``<label>/<video_id>.hdf5`` unless the entry has
            ``video_path``, relative to this folder).
        subset: ``training``, ``validation`` or ``testing`` (``validation`` follows the
            file's ``validation_subset``), or a union such as ``training+validation``
            (:func:`~ccl.data.annotations.iter_subset`).
        mode: ``train``, ``val`` or ``test`` (see the module doc).
        frames: frames per clip (T).
        size: output height and width.
        stride: temporal stride between clip frames.
        val_clips: windows per video in ``val`` mode.
        audio: audio embeddings (an :class:`AudioEmbeddings` or a folder for
            :func:`load_audio_embeddings`); adds ``audio``/``audio_available`` to samples.
        seed: mixed with a draw from torch's generator for the random crops of ``train``.
        scale, ratio, flip: RandomResizedCrop and flip settings of ``train`` mode.
        eval_short_side: short side before the centre crop in ``val``/``test`` (default size).
        decoder: ``cpu`` (torchvision / Pillow), ``cuda`` (nvJPEG through torchvision; only
            with ``num_workers=0``, returns CUDA clips, no ``pin_memory``) or ``auto``
            (``cuda`` when available and in the main process, else ``cpu``).
        reduced_decode: decode at 1/2, 1/4, 1/8 size when the crop allows (see transforms).
        missing: ``error`` (default) or ``skip`` for listed videos without a frame store.
        max_open_files: open HDF5 handles kept per process.
    """

    def __init__(
        self,
        annotation_path: str | Path,
        frames_dir: str | Path,
        subset: str,
        mode: Mode = "train",
        frames: int = 16,
        size: int = 112,
        stride: int = 1,
        val_clips: int = 3,
        audio: AudioEmbeddings | str | Path | None = None,
        seed: int = 1,
        *,
        scale: tuple[float, float] = (0.25, 1.0),
        ratio: tuple[float, float] = (3 / 4, 4 / 3),
        flip: bool = True,
        eval_short_side: int | None = None,
        decoder: Decoder = "cpu",
        reduced_decode: bool = True,
        missing: Literal["error", "skip"] = "error",
        max_open_files: int = 32,
    ) -> None:
        if mode not in ("train", "val", "test"):
            raise ValueError(f"mode must be train, val or test, got {mode!r}")
        if frames < 1 or stride < 1 or size < 1 or val_clips < 1:
            raise ValueError("frames, stride, size and val_clips must be positive")
        if decoder not in ("cpu", "cuda", "auto"):
            raise ValueError(f"decoder must be cpu, cuda or auto, got {decoder!r}")
        if decoder == "cuda" and not torch.cuda.is_available():
            raise RuntimeError("decoder='cuda' needs CUDA, which is not available; use 'cpu'")
        if missing not in ("error", "skip"):
            raise ValueError(f"missing must be 'error' or 'skip', got {missing!r}")
        self.annotation_path = Path(annotation_path)
        self.frames_dir = Path(frames_dir)
        if not self.frames_dir.is_dir():
            raise FileNotFoundError(f"frame store folder not found: {self.frames_dir}")
        self.subset, self.mode = subset, mode
        self.frames, self.size, self.stride, self.val_clips = frames, size, stride, val_clips
        self.seed = seed
        self.scale, self.ratio, self.flip = scale, ratio, flip
        self.eval_short_side = eval_short_side
        self.decoder, self.reduced_decode = decoder, reduced_decode
        self.max_open_files = max_open_files

        data = load_annotations(self.annotation_path)
        self.classes: list[str] = list(data["labels"])
        class_index = {name: i for i, name in enumerate(self.classes)}
        self.videos: list[VideoRecord] = []
        self.video_subsets: list[str] = []  # each video's own subset (unions mix them)
        missing_paths: list[str] = []
        self.skipped: list[tuple[str, str]] = []
        for video_id, entry in iter_subset(data, subset):
            ann = entry["annotations"]
            label_name = ann.get("label")
            if label_name not in class_index:
                raise ValueError(
                    f"{self.annotation_path}: video {video_id!r} has label {label_name!r}, "
                    "which is not in 'labels'"
                )
            if "video_path" in entry:
                path = self.frames_dir / entry["video_path"]
            else:
                path = self.frames_dir / label_name / f"{video_id}{STORE_SUFFIX}"
            first, end = int(ann["segment"][0]), int(ann["segment"][1])
            if end <= first:
                self.skipped.append((video_id, "empty segment"))
                continue
            if not path.is_file():
                missing_paths.append(str(path))
                self.skipped.append((video_id, "no frame store"))
                continue
            self.videos.append(
                VideoRecord(video_id, path, class_index[label_name], first, end - first)
            )
            self.video_subsets.append(entry["subset"])
        if missing_paths:
            msg = (
                f"{self.annotation_path} ({subset}): {len(missing_paths)} videos have no frame "
                f"store under {self.frames_dir}, e.g. {missing_paths[:3]}"
            )
            if missing == "error":
                raise FileNotFoundError(
                    msg + "; prepare them (ccl prepare videos) or remove them from the "
                    "annotation file (ccl train has no option to leave them out); ccl evaluate "
                    "--allow-missing counts them as wrong; in Python, ClipDataset("
                    "missing='skip') leaves them out"
                )
            log.warning(msg + "; left out")
        if not self.videos:
            raise ValueError(f"{self.annotation_path}: subset {subset!r} has no usable videos")

        self.windows: list[tuple[int, int]] = []
        if mode != "train":
            for vi, rec in enumerate(self.videos):
                if mode == "val":
                    starts = even_starts(rec.n_frames, frames, stride, val_clips)
                else:
                    starts = window_starts(rec.n_frames, frames, stride)
                self.windows.extend((vi, s) for s in starts)

        self.audio: AudioEmbeddings | None = None
        self.audio_missing: list[str] = []
        if audio is not None:
            if not isinstance(audio, AudioEmbeddings):
                from ccl.data.audio import load_audio_embeddings

                audio = load_audio_embeddings(audio)
            self.audio = audio
            self._audio_keys = [self._audio_key(rec) for rec in self.videos]
            self.audio.check_labels(
                {
                    key: self.classes[rec.label]
                    for rec, key in zip(self.videos, self._audio_keys)
                    if key is not None
                },
                str(self.annotation_path),
            )
            self.audio_missing = [
                rec.video_id for rec, key in zip(self.videos, self._audio_keys) if key is None
            ]
            if self.audio_missing:
                log.warning(
                    "%s (%s): %d of %d videos have no audio embedding (audio terms skip them),"
                    " e.g. %s",
                    self.annotation_path,
                    subset,
                    len(self.audio_missing),
                    len(self.videos),
                    self.audio_missing[:3],
                )
        self._hw: dict[int, tuple[int, int]] = {}
        self._handles: OrderedDict[str, tuple[h5py.File, h5py.Dataset]] = OrderedDict()
        self._pid: int | None = None

    # ------------------------------------------------------------------ bookkeeping

    @property
    def labels(self) -> list[int]:
        """Class index of every video (video order)."""
        return [rec.label for rec in self.videos]

    @property
    def video_ids(self) -> list[str]:
        return [rec.video_id for rec in self.videos]

    def __len__(self) -> int:
        return len(self.videos) if self.mode == "train" else len(self.windows)

    def _audio_key(self, rec: VideoRecord) -> str | None:
        assert self.audio is not None
        for key in (rec.video_id, rec.path.stem):
            if key in self.audio:
                return key
        return None

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_handles"] = OrderedDict()
        state["_pid"] = None
        return state

    def close(self) -> None:
        """Close the open HDF5 handles of this process."""
        for f, _ in self._handles.values():
            try:
                f.close()
            except Exception:  # noqa: BLE001, S110 - closing is best effort
                pass
        self._handles.clear()

    def __del__(self) -> None:
        if getattr(self, "_pid", None) == os.getpid():
            self.close()

    def _frames_dataset(self, path: Path) -> h5py.Dataset:
        """The store's ``video`` dataset, from this process's LRU of open files."""
        pid = os.getpid()
        if self._pid != pid:  # a forked copy: never touch the parent's handles
            self._handles = OrderedDict()
            self._pid = pid
        key = str(path)
        entry = self._handles.get(key)
        if entry is None:
            try:
                f = h5py.File(key, "r")
                entry = (f, f["video"])
            except (OSError, KeyError) as err:
                raise OSError(f"cannot read frame store {key}: {err}") from err
            self._handles[key] = entry
            while len(self._handles) > self.max_open_files:
                _, (old, _) = self._handles.popitem(last=False)
                old.close()
        else:
            self._handles.move_to_end(key)
        return entry[1]

    def set_epoch(self, epoch: int | None) -> None:
        """Tie training randomness to ``(seed, epoch, index)`` (the training loop calls this
        every epoch): a sample's crop, flip and window then do not depend on which worker
        loads it or on what was loaded before, so a run resumed mid-epoch sees the very
        clips an uninterrupted one would. ``None`` restores the default below."""
        self.epoch = epoch

    def rng(self, index: int | None = None) -> np.random.Generator:
        """A generator for one sample. After :meth:`set_epoch`, seeded by ``(seed, epoch,
        index)``; otherwise from ``seed`` and a draw from torch's global generator, so
        ``torch.manual_seed`` fixes the crops in the main process and the DataLoader's
        per-worker seeding makes workers differ."""
        if getattr(self, "epoch", None) is not None and index is not None:
            return np.random.default_rng([self.seed, self.epoch, index])
        draw = int(torch.randint(0, 2**62, (), dtype=torch.int64))
        return np.random.default_rng([self.seed, draw])

    # ------------------------------------------------------------------ reading

    def read_frames(self, video: int, offsets: list[int]) -> list[np.ndarray]:
        """JPEG bytes of the frames at 0-based ``offsets`` of a video (in that order), read
        in one HDF5 access of the sorted unique indices."""
        rec = self.videos[video]
        base = rec.first - 1
        unique = sorted(set(offsets))
        ds = self._frames_dataset(rec.path)
        idx = [base + o for o in unique]
        if idx[-1] >= len(ds):
            raise IndexError(
                f"{rec.path}: frame {idx[-1] + 1} requested but the store has {len(ds)} frames"
            )
        if idx[-1] - idx[0] + 1 == len(idx):  # contiguous: a slice is the cheapest read
            data = ds[idx[0] : idx[-1] + 1]
        else:
            data = ds[idx]
        by_offset = dict(zip(unique, data))
        return [by_offset[o] for o in offsets]

    def _use_cuda(self) -> bool:
        if self.decoder == "cpu":
            return False
        in_worker = get_worker_info() is not None
        if self.decoder == "cuda":
            if in_worker:
                raise RuntimeError("decoder='cuda' works only with DataLoader num_workers=0")
            return True
        return not in_worker and torch.cuda.is_available()

    def frame_size(self, video: int, buffer: np.ndarray) -> tuple[int, int]:
        """(height, width) of a video's stored frames (from a JPEG header, cached)."""
        hw = self._hw.get(video)
        if hw is None:
            hw = self._hw[video] = T.jpeg_size(buffer)
        return hw

    def _clip(
        self, video: int, buffers: list[np.ndarray], rng: np.random.Generator | None
    ) -> torch.Tensor:
        """Decode and transform; ``rng`` given = training transform."""
        if self._use_cuda():
            frames = T.decode_jpegs_cuda(buffers)
            if rng is not None:
                h, w = frames.shape[-2:]
                box = T.sample_resized_crop(h, w, rng, self.scale, self.ratio)
                flip = bool(self.flip and rng.random() < 0.5)
                clip = T.crop_resize_flip(frames, box, (self.size, self.size), flip)
            else:
                short = self.eval_short_side or self.size
                h, w = T.short_side_size(frames.shape[-2], frames.shape[-1], short)
                resized = T.resize(frames, (h, w))
                clip = T.crop_resize_flip(
                    resized, T.center_box(h, w, self.size), (self.size, self.size)
                )
            return clip.permute(1, 0, 2, 3).contiguous()
        if rng is not None:
            full_h, full_w = self.frame_size(video, buffers[0])
            box = T.sample_resized_crop(full_h, full_w, rng, self.scale, self.ratio)
            flip = bool(self.flip and rng.random() < 0.5)
            clip = T.train_clip(buffers, box, flip, self.size, self.reduced_decode)
        else:
            clip = T.eval_clip(
                buffers,
                self.size,
                self.eval_short_side,
                self.reduced_decode,
                self.frame_size(video, buffers[0]),
            )
        return clip.permute(1, 0, 2, 3).contiguous()

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not 0 <= index < len(self):
            raise IndexError(f"sample {index} out of range ({len(self)} samples)")
        if self.mode == "train":
            video = index
            rec = self.videos[video]
            span = (self.frames - 1) * self.stride + 1
            rng = self.rng(index)
            start = int(rng.integers(0, max(0, rec.n_frames - span) + 1))
        else:
            rng = None
            video, start = self.windows[index]
            rec = self.videos[video]
        offsets = clip_offsets(rec.n_frames, start, self.frames, self.stride)
        buffers = self.read_frames(video, offsets)
        try:
            clip = self._clip(video, buffers, rng)
        except (OSError, ValueError) as err:
            raise ValueError(f"{rec.path}: cannot decode frames {offsets}: {err}") from err
        sample: dict[str, Any] = {"clip": clip, "label": rec.label, "index": index, "video": video}
        if self.audio is not None:
            key = self._audio_keys[video]
            if key is None:
                vec, ok = np.zeros(self.audio.dim, dtype=np.float32), False
            else:
                vec, ok = self.audio.lookup(key, rng)
            sample["audio"] = torch.from_numpy(np.ascontiguousarray(vec, dtype=np.float32))
            sample["audio_available"] = torch.tensor(bool(ok))
        return sample

    def describe(self) -> Mapping[str, Any]:
        """Counts for logs."""
        return {
            "subset": self.subset,
            "mode": self.mode,
            "videos": len(self.videos),
            "samples": len(self),
            "classes": len(self.classes),
            "skipped": len(self.skipped),
            "audio_missing": len(self.audio_missing),
        }


# Below this share of training videos with an audio embedding, training with the audio
# teacher warns: the folder most likely belongs to other data (README, "Training").
MIN_AUDIO_SHARE = 0.5


def check_audio_coverage(dataset: ClipDataset, min_share: float = MIN_AUDIO_SHARE) -> float:
    """The share of ``dataset``'s videos that have an audio embedding, for a run with the
    audio teacher. Raises ``ValueError`` naming the audio folder and the annotations when no
    video has one (the audio terms would skip every sample: a baseline under another name);
    warns in one line with the share when it is below ``min_share``."""
    if dataset.audio is None:
        raise ValueError("the audio teacher needs data.audio_dir=DIR of per-video embeddings")
    total = len(dataset.videos)
    covered = total - len(dataset.audio_missing)
    where = dataset.audio.source
    if covered == 0:
        raise ValueError(
            f"{where}: no audio embedding for any of the {total} {dataset.subset} videos of "
            f"{dataset.annotation_path} (file names must be the video ids, e.g. "
            f"{dataset.videos[0].video_id}.npy); the audio teacher would teach nothing: "
            "give the audio folder of these videos"
        )
    share = covered / total
    if share < min_share:
        log.warning(
            "only %.0f%% of the %s videos of %s (%d of %d) have an audio embedding in "
            "%s (below %.0f%%): the audio teacher teaches only those",
            100 * share,
            dataset.subset,
            dataset.annotation_path,
            covered,
            total,
            where,
            100 * min_share,
        )
    return share


__all__ = [
    "MIN_AUDIO_SHARE",
    "ClipDataset",
    "VideoRecord",
    "check_audio_coverage",
    "clip_offsets",
    "even_starts",
    "window_starts",
]
