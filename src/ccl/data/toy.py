"""In-memory toy clips for smoke tests and benchmarks (no files, no decoding).

Class ``c`` is a coloured square (colour ``c % 2``) moving in one of several directions
(``c // 2``) over noise, so neither one frame nor colour alone solves the task. The audio
embedding is a class prototype plus noise, absent for a fixed share of samples. Each sample
depends only on ``(seed, index)``: the data set is the same in every process and epoch.
The realistic demo (videos on disk with soundtracks) is ``ccl synth``.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

_DIRECTIONS = [(1, 0), (-1, 0), (0, 1), (0, -1), (1, 1), (-1, -1), (1, -1), (-1, 1)]


class ToyClipDataset(Dataset):
    def __init__(
        self,
        num_samples: int,
        num_classes: int,
        *,
        frames: int = 8,
        size: int = 32,
        audio_dim: int = 64,
        audio_missing: float = 0.2,
        seed: int = 0,
        split: str = "train",
    ) -> None:
        if num_classes > 2 * len(_DIRECTIONS):
            raise ValueError(f"the toy data has at most {2 * len(_DIRECTIONS)} classes")
        self.num_samples = num_samples
        self.num_classes = num_classes
        self.classes = [f"class_{c:02d}" for c in range(num_classes)]
        self.frames, self.size, self.audio_dim = frames, size, audio_dim
        self.audio_missing = audio_missing
        self.seed = seed
        self._split_offset = {"train": 0, "val": 1_000_003, "test": 2_000_003}[split]
        protos = np.random.default_rng(seed).random((num_classes, audio_dim), dtype=np.float32)
        self._audio_prototypes = protos

    def __len__(self) -> int:
        return self.num_samples

    def __getitem__(self, index: int) -> dict[str, torch.Tensor | int]:
        rng = np.random.default_rng((self.seed, self._split_offset + index))
        label = index % self.num_classes
        t, s = self.frames, self.size
        clip = rng.integers(0, 90, size=(3, t, s, s), dtype=np.uint8)
        side = max(2, s // 4)
        dy, dx = _DIRECTIONS[label // 2]
        y0, x0 = rng.integers(side, s - 2 * side, size=2)
        speed = max(1, s // (2 * t))
        colour = (220, 60, 60) if label % 2 == 0 else (60, 60, 220)
        for f in range(t):
            y = int(np.clip(y0 + dy * speed * f, 0, s - side))
            x = int(np.clip(x0 + dx * speed * f, 0, s - side))
            for ch in range(3):
                clip[ch, f, y : y + side, x : x + side] = colour[ch]
        available = rng.random() >= self.audio_missing
        audio = np.zeros(self.audio_dim, dtype=np.float32)
        if available:
            noise = rng.random(self.audio_dim, dtype=np.float32)
            audio = np.maximum(self._audio_prototypes[label] + 0.5 * noise - 0.25, 0)
        return {
            "clip": torch.from_numpy(clip),
            "label": label,
            "index": index,
            "video": index,
            "audio": torch.from_numpy(audio.astype(np.float32)),
            "audio_available": torch.tensor(bool(available)),
        }
