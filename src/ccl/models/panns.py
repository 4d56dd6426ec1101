"""PANNs audio tagging networks (Kong et al., 2020): ``Cnn14`` and ``Cnn14_emb512``.

The CCL audio teacher (docs/METHOD.md §2.3) is PANNs ``Cnn14_emb512``: Cnn14 whose first fully
connected layer maps 2048 -> 512, trained on AudioSet (527 classes). This module is an
independent implementation whose parameter names and shapes are those of the published
PANNs classes, so the authors' checkpoints (``Cnn14_mAP=0.431.pth``,
``Cnn14_emb512_mAP=0.420.pth``, Zenodo record 3987831) load unchanged with
:func:`load_cnn14`.

Front end (PANNs settings): 32 kHz mono waveform, centred STFT with reflect padding, periodic
Hann window of 1024 samples, hop 320, power spectrogram, 64 Slaney mel bands 50-14000 Hz
(librosa's default mel filters), ``10 log10(max(x, 1e-10))`` with ``ref = 1``, no top-dB
clipping. As in PANNs the STFT is a pair of frozen ``Conv1d`` layers (real and imaginary
DFT rows times the window), so a checkpoint's stored filters are the ones used.

Differences from PANNs: SpecAugment and mixup (training-time only) are not implemented; they
hold no parameters, so checkpoints are unaffected. Clips shorter than :data:`MIN_SAMPLES`
are zero-padded at the end (PANNs would fail on them).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Literal, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ccl.checkpoint import load_weights
from ccl.data.media import SAMPLE_RATE

WINDOW_SIZE = 1024
HOP_SIZE = 320
MEL_BINS = 64
FMIN = 50.0
FMAX = 14_000.0
AUDIOSET_CLASSES = 527
REF = 1.0
AMIN = 1e-10
N_POOLINGS = 5  # conv blocks 1-5 halve time and frequency; block 6 does not pool
TRUNK_STEP = 2**N_POOLINGS
"""Log-mel frames per time step of the last conv block."""
TRUNK_MARGIN = 4 * TRUNK_STEP
"""Log-mel frames of context on each side of a chunk of a long soundtrack (:class:`Cnn14`):
at least the conv trunk's reach, two 3x3 convolutions per block at 1, 2, 4, 8, 16 and 32
frames per step (126 frames), so the chunk's own steps equal those of one pass."""
CHUNK_FRAMES = 32 * TRUNK_STEP
"""Log-mel frames (10.24 s at 32 kHz) per chunk of a soundtrack long enough to be chunked."""

Variant = Literal["emb512", "cnn14"]

CHECKPOINT_FILES: dict[str, str] = {
    "cnn14": "Cnn14_mAP=0.431.pth",
    "emb512": "Cnn14_emb512_mAP=0.420.pth",
}
CHECKPOINT_SOURCE = "https://zenodo.org/record/3987831 (PANNs authors, Kong et al.)"


def min_samples(window_size: int = WINDOW_SIZE, hop_size: int = HOP_SIZE) -> int:
    """Shortest waveform (in samples) for which Cnn14 produces an output.

    The centred STFT gives ``1 + n // hop`` frames; five 2x2 poolings need at least 32 frames,
    and reflect padding needs more than ``window // 2`` samples. With the PANNs settings
    (window 1024, hop 320) this is 9920 samples (0.31 s at 32 kHz).
    """
    frames_needed = 2**N_POOLINGS
    return max((frames_needed - 1) * hop_size, window_size // 2 + 1)


MIN_SAMPLES = min_samples()


class Cnn14Output(NamedTuple):
    """Outputs of :class:`Cnn14` / :class:`Cnn14Emb512` in eval mode."""

    clipwise: torch.Tensor
    """(B, 527) AudioSet tag probabilities (sigmoid)."""
    embedding: torch.Tensor
    """(B, 2048) for Cnn14, (B, 512) for Cnn14_emb512: the ReLU output of ``fc1``."""


# ----------------------------------------------------------------------------- front end


def _hz_to_mel_slaney(hz: np.ndarray) -> np.ndarray:
    """Slaney's auditory-toolbox mel scale: linear below 1 kHz, logarithmic above."""
    hz = np.asarray(hz, dtype=np.float64)
    f_sp = 200.0 / 3.0
    min_log_hz = 1000.0
    min_log_mel = min_log_hz / f_sp
    logstep = math.log(6.4) / 27.0
    mel = hz / f_sp
    above = hz >= min_log_hz
    mel = np.where(above, min_log_mel + np.log(np.maximum(hz, 1e-30) / min_log_hz) / logstep, mel)
    return mel


def _mel_to_hz_slaney(mel: np.ndarray) -> np.ndarray:
    """Inverse of :func:`_hz_to_mel_slaney`."""
    mel = np.asarray(mel, dtype=np.float64)
    f_sp = 200.0 / 3.0
    min_log_hz = 1000.0
    min_log_mel = min_log_hz / f_sp
    logstep = math.log(6.4) / 27.0
    hz = f_sp * mel
    return np.where(mel >= min_log_mel, min_log_hz * np.exp(logstep * (mel - min_log_mel)), hz)


def mel_filterbank(
    sample_rate: int, n_fft: int, n_mels: int, fmin: float, fmax: float
) -> np.ndarray:
    """Triangular Slaney-normalised mel filters, (n_fft // 2 + 1, n_mels) float32.

    Equal to ``librosa.filters.mel(sr=sample_rate, n_fft=n_fft, n_mels=n_mels, fmin=fmin,
    fmax=fmax).T`` (Slaney mel scale, area normalisation), built without librosa.
    """
    n_freqs = n_fft // 2 + 1
    fft_freqs = np.linspace(0.0, sample_rate / 2.0, n_freqs)
    edges_mel = np.linspace(_hz_to_mel_slaney(fmin), _hz_to_mel_slaney(fmax), n_mels + 2)
    edges = _mel_to_hz_slaney(edges_mel)
    widths = np.diff(edges)
    # distance of every FFT bin to every band edge: (n_mels + 2, n_freqs)
    dist = edges[:, None] - fft_freqs[None, :]
    rising = -dist[:-2] / widths[:-1, None]
    falling = dist[2:] / widths[1:, None]
    weights = np.maximum(0.0, np.minimum(rising, falling))
    weights *= (2.0 / (edges[2:] - edges[:-2]))[:, None]
    return weights.T.astype(np.float32)


def stft_filters(n_fft: int) -> tuple[np.ndarray, np.ndarray]:
    """Real and imaginary DFT rows times a periodic Hann window, each (n_fft // 2 + 1, 1, n_fft).

    Row ``k`` holds ``w[n] cos(2 pi k n / N)`` and ``-w[n] sin(2 pi k n / N)``, so convolving
    (correlating) a frame with them gives the real and imaginary part of its windowed DFT.
    """
    n = np.arange(n_fft, dtype=np.float64)
    window = 0.5 - 0.5 * np.cos(2.0 * np.pi * n / n_fft)  # periodic ("fftbins") Hann
    k = np.arange(n_fft // 2 + 1, dtype=np.float64)
    # (k * n) mod N keeps the phase argument small and exact for large products
    phase = 2.0 * np.pi * ((k[:, None] * n[None, :]) % n_fft) / n_fft
    real = (np.cos(phase) * window[None, :]).astype(np.float32)[:, None, :]
    imag = (-np.sin(phase) * window[None, :]).astype(np.float32)[:, None, :]
    return real, imag


class _ConvSTFT(nn.Module):
    """Frozen STFT as two strided ``Conv1d`` (parameters ``conv_real`` and ``conv_imag``)."""

    def __init__(self, n_fft: int, hop_length: int) -> None:
        super().__init__()
        self.n_fft = n_fft
        self.hop_length = hop_length
        bins = n_fft // 2 + 1
        self.conv_real = nn.Conv1d(1, bins, kernel_size=n_fft, stride=hop_length, bias=False)
        self.conv_imag = nn.Conv1d(1, bins, kernel_size=n_fft, stride=hop_length, bias=False)
        real, imag = stft_filters(n_fft)
        with torch.no_grad():
            self.conv_real.weight.copy_(torch.from_numpy(real))
            self.conv_imag.weight.copy_(torch.from_numpy(imag))
        self.requires_grad_(False)

    def forward(self, waveform: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, samples) -> real, imag, each (B, 1, frames, n_fft // 2 + 1)."""
        return self.frames(self.pad(waveform))

    def pad(self, waveform: torch.Tensor) -> torch.Tensor:
        """(B, samples) -> (B, 1, samples + n_fft), reflect-padded so frames are centred."""
        half = self.n_fft // 2
        return F.pad(waveform[:, None, :], (half, half), mode="reflect")

    def frames(self, padded: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Real and imaginary parts of every frame of a padded waveform (or of a slice of
        one starting at a multiple of the hop: its own frames)."""
        real = self.conv_real(padded).transpose(1, 2)[:, None]
        imag = self.conv_imag(padded).transpose(1, 2)[:, None]
        return real, imag


class _Spectrogram(nn.Module):
    """Power spectrogram; holds the STFT as ``stft`` (PANNs naming)."""

    def __init__(self, n_fft: int, hop_length: int) -> None:
        super().__init__()
        self.stft = _ConvSTFT(n_fft, hop_length)

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        """(B, samples) -> (B, 1, frames, n_fft // 2 + 1) power spectrogram."""
        return self.power(self.stft.pad(waveform))

    def power(self, padded: torch.Tensor) -> torch.Tensor:
        """The power spectrogram of a padded waveform, or of a slice of one
        (:meth:`_ConvSTFT.frames`)."""
        real, imag = self.stft.frames(padded)
        return real.square() + imag.square()


class _LogMel(nn.Module):
    """Mel projection (parameter ``melW``, (n_fft // 2 + 1, mel_bins)) and power to dB."""

    def __init__(
        self,
        sample_rate: int,
        n_fft: int,
        mel_bins: int,
        fmin: float,
        fmax: float,
        ref: float = REF,
        amin: float = AMIN,
    ) -> None:
        super().__init__()
        weights = mel_filterbank(sample_rate, n_fft, mel_bins, fmin, fmax)
        self.melW = nn.Parameter(torch.from_numpy(weights), requires_grad=False)
        self.amin = amin
        self.db_offset = 10.0 * math.log10(max(amin, ref))

    def forward(self, power: torch.Tensor) -> torch.Tensor:
        """(..., n_fft // 2 + 1) power -> (..., mel_bins) log-mel in dB."""
        mel = torch.matmul(power, self.melW)
        return 10.0 * torch.log10(torch.clamp(mel, min=self.amin)) - self.db_offset


class LogMelFrontEnd(nn.Module):
    """PANNs log-mel front end: waveform (B, samples) -> (B, 1, frames, mel_bins) in dB.

    ``frames = 1 + samples // hop`` (centred STFT, reflect padding, which needs
    ``samples > window // 2``). Children are named as in PANNs (``spectrogram_extractor``,
    ``logmel_extractor``); all parameters are frozen.
    """

    def __init__(
        self,
        sample_rate: int = SAMPLE_RATE,
        window: int = WINDOW_SIZE,
        hop: int = HOP_SIZE,
        mel_bins: int = MEL_BINS,
        fmin: float = FMIN,
        fmax: float = FMAX,
    ) -> None:
        super().__init__()
        self.sample_rate = sample_rate
        self.window = window
        self.hop = hop
        self.mel_bins = mel_bins
        self.spectrogram_extractor = _Spectrogram(window, hop)
        self.logmel_extractor = _LogMel(sample_rate, window, mel_bins, fmin, fmax)

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        """(B, samples) float waveform -> (B, 1, frames, mel_bins) log-mel spectrogram."""
        return self.logmel_extractor(self.spectrogram_extractor(waveform))


# ----------------------------------------------------------------------------- network


class ConvBlock(nn.Module):
    """Two 3x3 conv + BN + ReLU layers (no conv bias), then average pooling."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.bn2 = nn.BatchNorm2d(out_channels)
        for conv in (self.conv1, self.conv2):
            nn.init.xavier_uniform_(conv.weight)

    def forward(self, x: torch.Tensor, pool_size: tuple[int, int] = (2, 2)) -> torch.Tensor:
        x = F.relu_(self.bn1(self.conv1(x)))
        x = F.relu_(self.bn2(self.conv2(x)))
        if pool_size != (1, 1):
            x = F.avg_pool2d(x, kernel_size=pool_size)
        return x


class Cnn14(nn.Module):
    """PANNs Cnn14 (parameter names and shapes as the published class).

    ``forward(waveform)`` takes (B, samples) mono audio at ``sample_rate`` and returns
    :class:`Cnn14Output`. Waveforms shorter than :attr:`min_samples` are zero-padded at the
    end. The front-end parameters (STFT filters, mel matrix) are frozen.

    In eval mode a soundtrack of more than ``chunk_frames + 2 * TRUNK_MARGIN`` log-mel frames
    (about 13 s) goes through the front end and the conv trunk ``chunk_frames`` frames at a
    time, each trunk chunk with :data:`TRUNK_MARGIN` frames of context on each side, and
    its steps are pooled as one pass's would be: memory stays that of a 13 s clip however
    long the soundtrack, and the outputs equal one pass's up to float rounding (tested).
    ``chunk_frames=None`` always makes one pass.
    """

    chunk_frames: int | None = CHUNK_FRAMES

    embedding_dim = 2048

    def __init__(
        self,
        sample_rate: int = SAMPLE_RATE,
        window_size: int = WINDOW_SIZE,
        hop_size: int = HOP_SIZE,
        mel_bins: int = MEL_BINS,
        fmin: float = FMIN,
        fmax: float = FMAX,
        classes_num: int = AUDIOSET_CLASSES,
    ) -> None:
        super().__init__()
        self.sample_rate = sample_rate
        self.min_samples = min_samples(window_size, hop_size)
        self.spectrogram_extractor = _Spectrogram(window_size, hop_size)
        self.logmel_extractor = _LogMel(sample_rate, window_size, mel_bins, fmin, fmax)
        self.bn0 = nn.BatchNorm2d(mel_bins)
        widths = (1, 64, 128, 256, 512, 1024, 2048)
        for i in range(6):
            setattr(self, f"conv_block{i + 1}", ConvBlock(widths[i], widths[i + 1]))
        self.fc1 = nn.Linear(2048, self.embedding_dim)
        self.fc_audioset = nn.Linear(self.embedding_dim, classes_num)
        for fc in (self.fc1, self.fc_audioset):
            nn.init.xavier_uniform_(fc.weight)
            nn.init.zeros_(fc.bias)

    def _chunk(self, frames: int) -> int:
        """Log-mel frames per chunk for a soundtrack of ``frames`` frames (all of them: one
        pass)."""
        chunk = self.chunk_frames
        if self.training or not chunk or frames <= chunk + 2 * TRUNK_MARGIN:
            return frames
        if chunk % TRUNK_STEP:
            raise ValueError(f"chunk_frames must be a multiple of {TRUNK_STEP}, got {chunk}")
        return chunk

    def logmel(self, waveform: torch.Tensor) -> torch.Tensor:
        """(B, samples) -> (B, 1, frames, mel_bins) log-mel (before ``bn0``)."""
        if waveform.shape[-1] < self.min_samples:
            waveform = F.pad(waveform, (0, self.min_samples - waveform.shape[-1]))
        stft = self.spectrogram_extractor.stft
        hop, frames = stft.hop_length, 1 + waveform.shape[-1] // stft.hop_length
        padded, step, parts = stft.pad(waveform), self._chunk(frames), []
        for start in range(0, frames, step):
            end = min(frames, start + step)  # frame k reads padded[k * hop : k * hop + n_fft]
            piece = padded[..., start * hop : (end - 1) * hop + stft.n_fft]
            parts.append(self.logmel_extractor(self.spectrogram_extractor.power(piece)))
        return parts[0] if len(parts) == 1 else torch.cat(parts, dim=2)

    def _trunk(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 1, T, M) normalised log-mel -> (B, C, T // 32): the conv blocks, then the mean
        over frequency."""
        for i in range(6):
            block = getattr(self, f"conv_block{i + 1}")
            x = block(x, pool_size=(2, 2) if i < N_POOLINGS else (1, 1))
            x = F.dropout(x, p=0.2, training=self.training)
        return x.mean(dim=3)

    def _trunk_in_chunks(self, x: torch.Tensor) -> torch.Tensor:
        """:meth:`_trunk` of a whole log-mel, chunk by chunk (see the class). Each chunk
        starts and ends at a multiple of :data:`TRUNK_STEP` (or at the soundtrack's end), so
        its poolings fall where one pass's do."""
        frames = x.shape[2]
        steps, per_chunk = frames // TRUNK_STEP, self._chunk(frames) // TRUNK_STEP
        parts = []
        for first in range(0, steps, per_chunk):
            last = min(steps, first + per_chunk)
            start = max(0, first * TRUNK_STEP - TRUNK_MARGIN)
            end = min(frames, last * TRUNK_STEP + TRUNK_MARGIN)
            offset = first - start // TRUNK_STEP
            parts.append(self._trunk(x[:, :, start:end])[:, :, offset : offset + last - first])
        return parts[0] if len(parts) == 1 else torch.cat(parts, dim=2)

    def forward(self, waveform: torch.Tensor) -> Cnn14Output:
        """(B, samples) -> Cnn14Output(clipwise (B, classes), embedding (B, embedding_dim))."""
        if waveform.dim() != 2:
            raise ValueError(f"want a (batch, samples) waveform, got shape {tuple(waveform.shape)}")
        x = self.logmel(waveform)  # (B, 1, T, M)
        x = self.bn0(x.transpose(1, 3)).transpose(1, 3)  # normalise each mel bin
        x = self._trunk_in_chunks(x)  # (B, C, T // 32)
        x = x.amax(dim=2) + x.mean(dim=2)  # max + mean over time
        x = F.dropout(x, p=0.5, training=self.training)
        x = F.relu_(self.fc1(x))
        embedding = F.dropout(x, p=0.5, training=self.training)
        clipwise = torch.sigmoid(self.fc_audioset(x))
        return Cnn14Output(clipwise=clipwise, embedding=embedding)


class Cnn14Emb512(Cnn14):
    """PANNs Cnn14_emb512: Cnn14 with ``fc1`` 2048 -> 512 and ``fc_audioset`` 512 -> 527."""

    embedding_dim = 512


MODEL_CLASSES: dict[str, type[Cnn14]] = {"cnn14": Cnn14, "emb512": Cnn14Emb512}
MODEL_NAMES: dict[str, str] = {"cnn14": "cnn14", "emb512": "cnn14_emb512"}


# ----------------------------------------------------------------------------- loading


def _numpy_safe_globals() -> list:
    """Globals needed to unpickle the numpy arrays some PANNs checkpoints carry (the training
    sampler's random state) with ``weights_only=True``: array reconstruction only."""
    try:
        from numpy._core import multiarray
    except ImportError:  # numpy < 2
        from numpy.core import multiarray  # type: ignore[no-redef]
    names = (
        "bool",
        "int8",
        "uint8",
        "int16",
        "uint16",
        "int32",
        "uint32",
        "int64",
        "uint64",
        "float16",
        "float32",
        "float64",
        "complex64",
        "complex128",
    )
    allowed: list = [np.ndarray, np.dtype, multiarray._reconstruct, multiarray.scalar]
    allowed += [type(np.dtype(name)) for name in names]
    # pickles written with numpy 1.x name the module numpy.core.multiarray
    allowed.append((multiarray._reconstruct, "numpy.core.multiarray._reconstruct"))
    allowed.append((multiarray.scalar, "numpy.core.multiarray.scalar"))
    return allowed


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The model state dict of a PANNs checkpoint (``{'model': state_dict, ...}``) or of a
    bare state-dict file, read by :func:`ccl.checkpoint.load_weights`."""
    path = Path(path)
    obj = load_weights(
        path,
        what="PANNs checkpoint",
        hint=f". Download {CHECKPOINT_FILES['emb512']} (the CCL audio teacher) or "
        f"{CHECKPOINT_FILES['cnn14']} from {CHECKPOINT_SOURCE} and pass its local path.",
        safe_globals=_numpy_safe_globals(),
    )
    if isinstance(obj, Mapping) and isinstance(obj.get("model"), Mapping):
        obj = obj["model"]
    if not isinstance(obj, Mapping) or not all(torch.is_tensor(v) for v in obj.values()):
        raise ValueError(f"{path} is not a PANNs checkpoint: want a dict with a 'model' state dict")
    state = dict(obj)
    # DataParallel-saved state dicts carry a 'module.' prefix
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module.") :]: v for k, v in state.items()}
    return state


def check_state_dict(
    model: nn.Module, state: Mapping[str, torch.Tensor], source: str | Path
) -> None:
    """Raise ValueError naming ``source`` and the first offending keys when ``state`` does not
    fit ``model`` (missing or unexpected keys, shape mismatches). BatchNorm's
    ``num_batches_tracked`` counters may be absent (older PyTorch)."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in expected]
    mismatched = [
        f"{k} {tuple(state[k].shape)} (model {tuple(v.shape)})"
        for k, v in expected.items()
        if k in state and tuple(state[k].shape) != tuple(v.shape)
    ]
    problems = []
    for label, keys in (
        ("missing", missing),
        ("unexpected", unexpected),
        ("shape mismatch", mismatched),
    ):
        if keys:
            shown = ", ".join(keys[:5]) + (f", ... ({len(keys)} in all)" if len(keys) > 5 else "")
            problems.append(f"{label} keys: {shown}")
    if problems:
        raise ValueError(
            f"{source} does not fit {type(model).__name__}: "
            + "; ".join(problems)
            + ". Is it the right PANNs checkpoint for this variant "
            f"({', '.join(CHECKPOINT_FILES.values())})?"
        )


def build_cnn14(variant: Variant = "emb512") -> Cnn14:
    """A randomly initialised PANNs model (``'emb512'`` or ``'cnn14'``) with PANNs settings."""
    if variant not in MODEL_CLASSES:
        raise ValueError(f"unknown PANNs variant {variant!r}; choose from {sorted(MODEL_CLASSES)}")
    return MODEL_CLASSES[variant]()


def load_cnn14(path: str | Path, variant: Variant = "emb512") -> Cnn14:
    """Build a PANNs model and load a checkpoint; returned frozen and in eval mode.

    Args:
        path: ``Cnn14_emb512_mAP=0.420.pth`` (variant ``'emb512'``) or
            ``Cnn14_mAP=0.431.pth`` (variant ``'cnn14'``), from Zenodo record 3987831;
            any file holding ``{'model': state_dict}`` or a bare state dict works.
        variant: ``'emb512'`` (512-d embedding, the CCL teacher) or ``'cnn14'`` (2048-d).

    Raises:
        FileNotFoundError: ``path`` does not exist (the message says where to get it).
        ValueError: unreadable file, or keys / shapes that do not fit the variant.
    """
    if variant not in MODEL_CLASSES:
        raise ValueError(f"unknown PANNs variant {variant!r}; choose from {sorted(MODEL_CLASSES)}")
    state = read_state_dict(path)
    with torch.device("meta"):  # no random initialisation: every tensor comes from the file
        model = MODEL_CLASSES[variant]()
    check_state_dict(model, state, path)
    for key, value in model.state_dict().items():
        if key not in state:  # only BatchNorm counters can be absent (checked above)
            state[key] = torch.zeros((), dtype=value.dtype)
    model.load_state_dict(state, assign=True)
    model.float()
    model.requires_grad_(False)
    return model.eval()
