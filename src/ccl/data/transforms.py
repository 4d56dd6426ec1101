"""Clip decoding and spatial transforms on stacked uint8 tensors.

The fast path decodes the JPEG frames a clip needs straight into one (T, H, W, 3) uint8
block with libjpeg-turbo (through simplejpeg: no per-frame image objects, no copies), at a
reduced size when the crop allows it (DCT scaling: 1/2, 1/4 or 1/8 of the stored size,
chosen so the cropped region still has at least the output's size, i.e. never upsampled),
then crops, resizes (bilinear with antialiasing, as Pillow's resize) and flips the whole clip
at once with torch. Every frame of a clip gets the same crop and flip.

Why simplejpeg rather than Pillow or torchvision (measured on the 2-core development machine,
one thread, 16 frames of 320x240 at quality 90, best of interleaved rounds): full size
simplejpeg 5.8 ms, ``torchvision.io.decode_jpeg`` 6.6 ms, Pillow 9-13 ms (an image object and
a copy per frame); at 1/2 size simplejpeg 4.7 ms, Pillow's ``draft`` 8.0 ms (torchvision
cannot scale). The same libjpeg-turbo decoder, so full-size pixels are identical to
torchvision's and Pillow's. The resize runs on the channels-last uint8 clip (about 1 ms for
16 frames to 112x112; 4-6 ms in NCHW layout or per frame with Pillow). Entropy decoding of
the whole frame stays the floor (about 4 ms for 16 frames even at 1/8 size).

Pixels: without reduced decoding the result equals the reference's per-frame Pillow
pipeline to +-1 grey level (torch's uint8 antialiased bilinear matches Pillow's).
Reduced-size decoding changes pixels slightly (the DCT-domain downscale is not the same
low-pass filter as an antialiased resize): against full-size decoding followed by the same
crop and resize, the mean absolute difference is at most ``REDUCED_DECODE_MEAN_TOL`` grey
levels (of 255) and the 99th percentile at most ``REDUCED_DECODE_P99_TOL`` (measured about
0.6 and 6-7; single pixels on sharp edges can differ by ~45); tests check it.

``naive_*`` functions reproduce the reference's per-frame Pillow pipeline (decode every
frame, crop, resize, flip, ToTensor, normalise) for benchmarks and equivalence tests.
"""

from __future__ import annotations

import io
import math
import warnings
from collections.abc import Sequence

import numpy as np
import simplejpeg
import torch
import torch.nn.functional as F
from PIL import Image

Box = tuple[int, int, int, int]  # top, left, height, width


REDUCED_DECODE_MEAN_TOL = 2.0
REDUCED_DECODE_P99_TOL = 12.0
# nvJPEG (GPU) and libjpeg-turbo (CPU) use different IDCT and chroma upsampling; clips from
# the two decoders, with the same crop and resize, agree within these (grey levels of 255)
GPU_DECODE_MEAN_TOL = 2.0
GPU_DECODE_P99_TOL = 12.0
# Pillow's resize and torch's antialiased bilinear agree to within rounding on the same input.
RESIZE_MEAN_TOL = 1.0
DRAFT_FACTORS = (8, 4, 2, 1)


def sample_resized_crop(
    height: int,
    width: int,
    rng: np.random.Generator,
    scale: tuple[float, float] = (0.25, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
) -> Box:
    """A random crop box (top, left, h, w) with area share in ``scale`` and aspect ratio
    (w/h) log-uniform in ``ratio``; the same distribution as torchvision's
    RandomResizedCrop (10 tries, then the largest centred box within ``ratio``)."""
    area = height * width
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    for _ in range(10):
        target = area * rng.uniform(scale[0], scale[1])
        aspect = math.exp(rng.uniform(log_lo, log_hi))
        w = int(round(math.sqrt(target * aspect)))
        h = int(round(math.sqrt(target / aspect)))
        if 0 < w <= width and 0 < h <= height:
            top = int(rng.integers(0, height - h + 1))
            left = int(rng.integers(0, width - w + 1))
            return top, left, h, w
    in_ratio = width / height
    if in_ratio < min(ratio):
        w, h = width, int(round(width / min(ratio)))
    elif in_ratio > max(ratio):
        h, w = height, int(round(height * max(ratio)))
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


def draft_factor(region_h: float, region_w: float, out_h: int, out_w: int) -> int:
    """Largest DCT scale-down factor (1, 2, 4, 8) keeping the region at least the output's
    size, so the reduced decode is never followed by upsampling."""
    for f in DRAFT_FACTORS:
        if region_h / f >= out_h and region_w / f >= out_w:
            return f
    return 1


def decode_jpegs(buffers: Sequence[np.ndarray | bytes], factor: int = 1) -> np.ndarray:
    """Decode JPEG frames (all the same size) into one (T, H, W, 3) uint8 array, at
    1/``factor`` of the stored size (DCT scaling; factor 1, 2, 4 or 8; sizes rounded up).

    libjpeg-turbo through simplejpeg, each frame decoded straight into its slot of the
    output (no image objects, no copies)."""
    if not buffers:
        raise ValueError("no frames to decode")
    if factor not in DRAFT_FACTORS:
        raise ValueError(f"factor must be one of {DRAFT_FACTORS}, got {factor}")
    height, width = jpeg_size(buffers[0])
    out_h, out_w = -(-height // factor), -(-width // factor)
    out = np.empty((len(buffers), out_h, out_w, 3), dtype=np.uint8)
    for k, buf in enumerate(buffers):
        size = jpeg_size(buf) if k else (height, width)
        if size != (height, width):
            raise ValueError(f"frame {k} has size {size}, frame 0 {(height, width)}")
        simplejpeg.decode_jpeg(
            memoryview(buf),
            colorspace="RGB",
            min_height=out_h,
            min_width=out_w,
            min_factor=factor,
            buffer=out[k],
        )
    return out


def decode_clip(
    buffers: Sequence[np.ndarray | bytes], factor: int = 1, box: Box | None = None
) -> torch.Tensor:
    """Decode JPEG frames into a (T, 3, H, W) uint8 clip (a channels-last view of one
    (T, H, W, 3) block) at 1/``factor`` size, cropped to ``box`` (given in full-size
    coordinates, mapped to the reduced grid) when given."""
    arr = decode_jpegs(buffers, factor)
    clip = to_tchw(arr)
    if box is None:
        return clip
    t, lft, h, w = scale_box(box, factor, arr.shape[1], arr.shape[2])
    return clip[:, :, t : t + h, lft : lft + w]


def jpeg_size(buf: np.ndarray | bytes) -> tuple[int, int]:
    """(height, width) of a JPEG from its header (no decoding)."""
    height, width, _, _ = simplejpeg.decode_jpeg_header(memoryview(buf))
    return int(height), int(width)


def to_tchw(frames: np.ndarray) -> torch.Tensor:
    """(T, H, W, 3) array -> (T, 3, H, W) tensor view (channels-last memory, no copy)."""
    return torch.from_numpy(frames).permute(0, 3, 1, 2)


def resize(frames: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear resize with antialiasing of a (T, 3, H, W) clip, keeping its dtype (uint8
    runs natively on CPU; elsewhere through float with rounding)."""
    if tuple(frames.shape[-2:]) == tuple(size):
        return frames
    if frames.dtype == torch.uint8 and frames.device.type == "cpu":
        return F.interpolate(
            frames, size=size, mode="bilinear", antialias=True, align_corners=False
        )
    out = F.interpolate(
        frames.float(), size=size, mode="bilinear", antialias=True, align_corners=False
    )
    if frames.dtype == torch.uint8:
        out = out.round_().clamp_(0, 255).to(torch.uint8)
    return out


def scale_box(box: Box, factor: int, height: int, width: int) -> Box:
    """A full-size crop box in the coordinates of a 1/``factor`` decode of size (height,
    width) (rounded to whole pixels, kept inside the image)."""
    if factor == 1:
        return box
    top, left, h, w = box
    t, lft = round(top / factor), round(left / factor)
    hh = max(1, min(round(h / factor), height - t))
    ww = max(1, min(round(w / factor), width - lft))
    return t, lft, hh, ww


def crop_resize_flip(
    frames: torch.Tensor, box: Box, size: tuple[int, int], flip: bool = False
) -> torch.Tensor:
    """Crop ``box`` from every frame of a (T, 3, H, W) clip, resize to ``size``, flip."""
    top, left, h, w = box
    out = resize(frames[:, :, top : top + h, left : left + w], size)
    return out.flip(-1) if flip else out


def short_side_size(height: int, width: int, short: int) -> tuple[int, int]:
    """(h, w) with the short side ``short`` (long side truncated, as torchvision's Resize)."""
    if height <= width:
        return short, int(short * width / height)
    return int(short * height / width), short


def center_box(height: int, width: int, crop: int) -> Box:
    """Centred ``crop`` x ``crop`` box (torchvision's CenterCrop rounding)."""
    top = int(round((height - crop) / 2.0))
    left = int(round((width - crop) / 2.0))
    return top, left, min(crop, height), min(crop, width)


def train_clip(
    buffers: Sequence[np.ndarray | bytes],
    box: Box,
    flip: bool,
    size: int,
    reduced_decode: bool = True,
) -> torch.Tensor:
    """Fast training transform: decode (reduced when the box allows), crop ``box`` (in
    full-size coordinates), resize to ``size`` x ``size``, flip. -> (T, 3, size, size) uint8."""
    factor = draft_factor(box[2], box[3], size, size) if reduced_decode else 1
    cropped = decode_clip(buffers, factor, box)
    out = resize(cropped, (size, size))
    return out.flip(-1) if flip else out


def eval_clip(
    buffers: Sequence[np.ndarray | bytes],
    size: int,
    short_side: int | None = None,
    reduced_decode: bool = True,
    full_hw: tuple[int, int] | None = None,
) -> torch.Tensor:
    """Fast evaluation transform: resize the short side to ``short_side`` (default
    ``size``), centre crop ``size``. -> (T, 3, size, size) uint8."""
    short_side = short_side or size
    full_h, full_w = full_hw if full_hw is not None else jpeg_size(buffers[0])
    short = min(full_h, full_w)
    factor = draft_factor(short, short, short_side, short_side) if reduced_decode else 1
    return eval_frames(decode_clip(buffers, factor), size, short_side, (full_h, full_w))


def eval_frames(
    frames: torch.Tensor,
    size: int,
    short_side: int | None = None,
    full_hw: tuple[int, int] | None = None,
) -> torch.Tensor:
    """The evaluation transform of decoded frames, shared by frame stores and ``ccl
    predict`` on video files: resize a (T, 3, H, W) uint8 clip so its short side is
    ``short_side`` (default ``size``), centre crop ``size``. ``full_hw`` is the size the
    output geometry is computed from when ``frames`` were decoded at a reduced size."""
    short_side = short_side or size
    full_h, full_w = full_hw if full_hw is not None else tuple(frames.shape[-2:])
    h, w = short_side_size(full_h, full_w, short_side)
    resized = resize(frames, (h, w))
    return crop_resize_flip(resized, center_box(h, w, size), (size, size))


def _as_tensor(buf: np.ndarray | bytes) -> torch.Tensor:
    if isinstance(buf, np.ndarray):
        return torch.from_numpy(buf if buf.flags.writeable else buf.copy())
    return torch.frombuffer(bytearray(buf), dtype=torch.uint8)


def decode_jpegs_cuda(
    buffers: Sequence[np.ndarray | bytes], device: str | torch.device = "cuda"
) -> torch.Tensor:
    """GPU decoding (nvJPEG through torchvision): -> (T, 3, H, W) uint8 on ``device``."""
    from torchvision.io import ImageReadMode, decode_jpeg

    if not torch.cuda.is_available():
        raise RuntimeError("GPU JPEG decoding needs CUDA, which is not available")
    data = [_as_tensor(b) for b in buffers]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        decoded = decode_jpeg(data, mode=ImageReadMode.RGB, device=device)
    return torch.stack(decoded)


# --------------------------------------------------------------------------- reference


def naive_train_clip(
    buffers: Sequence[np.ndarray | bytes],
    box: Box,
    flip: bool,
    size: int,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
) -> torch.Tensor:
    """The reference's pipeline: per frame Pillow decode, crop, bilinear resize, flip,
    ToTensor (and normalise when ``mean``/``std`` are given) -> (3, T, size, size) float."""
    top, left, h, w = box
    out = []
    for buf in buffers:
        img = Image.open(io.BytesIO(memoryview(buf))).convert("RGB")
        img = img.crop((left, top, left + w, top + h)).resize((size, size), Image.BILINEAR)
        if flip:
            img = img.transpose(Image.FLIP_LEFT_RIGHT)
        t = torch.from_numpy(np.array(img, dtype=np.uint8)).permute(2, 0, 1).float().div(255)
        if mean is not None and std is not None:
            m = torch.tensor(mean).view(3, 1, 1)
            s = torch.tensor(std).view(3, 1, 1)
            t = (t - m) / s
        out.append(t)
    return torch.stack(out, 0).permute(1, 0, 2, 3)


def naive_eval_clip(buffers: Sequence[np.ndarray | bytes], size: int) -> torch.Tensor:
    """The reference's evaluation: Pillow resize of the short side to ``size`` then centre
    crop, per frame -> (3, T, size, size) float in [0, 1]."""
    out = []
    for buf in buffers:
        img = Image.open(io.BytesIO(memoryview(buf))).convert("RGB")
        h, w = short_side_size(img.height, img.width, size)
        img = img.resize((w, h), Image.BILINEAR)
        top, left, ch, cw = center_box(h, w, size)
        img = img.crop((left, top, left + cw, top + ch))
        out.append(torch.from_numpy(np.array(img, dtype=np.uint8)).permute(2, 0, 1).float() / 255)
    return torch.stack(out, 0).permute(1, 0, 2, 3)


__all__ = [
    "Box",
    "GPU_DECODE_MEAN_TOL",
    "GPU_DECODE_P99_TOL",
    "REDUCED_DECODE_MEAN_TOL",
    "REDUCED_DECODE_P99_TOL",
    "RESIZE_MEAN_TOL",
    "center_box",
    "crop_resize_flip",
    "decode_clip",
    "decode_jpegs",
    "jpeg_size",
    "decode_jpegs_cuda",
    "draft_factor",
    "eval_clip",
    "eval_frames",
    "naive_eval_clip",
    "naive_train_clip",
    "resize",
    "sample_resized_crop",
    "scale_box",
    "short_side_size",
    "to_tchw",
    "train_clip",
]
