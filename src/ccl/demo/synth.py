"""A synthetic audio-visual benchmark laid out like UCF101, for demos and CI (``ccl synth``).

The generative story (details in ``docs/DEMO.md``):

* **Video classes** are ``object kind x motion`` (``DiscSlide``, ``RingOrbit``, ...): one
  frame shows the kind but not the motion, and the motion alone does not give the kind.
* **Nuisances** drawn per video: object colour (never tied to the class), size, start
  position, speed, brightness drift, sensor noise, frame rate, length and orientation (and,
  where a scale turns them on, distractor blobs, camera jitter and flicker). Videos of one
  group index ``gNN`` share the scene (background and light) in every class, like a place
  shared by many actions in UCF: a background never identifies a class, and the group-wise
  split puts unseen scenes in the test set.
* **Soundtracks**: about 60 % of the classes carry a class-tied sound event (two of them share
  one; the event is missing in some videos; its SNR varies); the other classes have sound
  unrelated to the class (random melodies of one style, or ambient noise, sometimes with a
  random event): the cross-modal semantic gap.
* **Teacher corpora** with their own label spaces: images labelled by object kind (more kinds
  than the videos use) and 1-s sounds labelled by sound event (more events than the videos
  use, plus ``music`` and ``ambient``), bigger than the video training set.

Every random draw comes from a generator seeded by ``(seed, purpose, item)``, so the output is
the same for a seed whatever the number of worker processes.

Layout under ``out``::

    videos/<Class>/v_<Class>_gNN_cMM.avi     MPEG-4 Part 2 video (yuv420p) + MP2 mono 32 kHz
    splits/classInd.txt, trainlist01.txt, testlist01.txt
    corpora/images/images.npz                 images (N,H,W,3) uint8, labels, label_names
    corpora/audio/sounds.npz                  waveforms (N,S) float32, labels, label_names,
                                              sample_rate
    synth_info.json                           parameters, classes, audio relation, videos
"""

from __future__ import annotations

import argparse
import colorsys
import dataclasses
import json
import multiprocessing
import os
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

SAMPLE_RATE = 32_000
"""Audio rate of the soundtracks and the sound corpus (the rate PANNs and ``prepare`` use)."""

KINDS: tuple[str, ...] = (
    "square",
    "disc",
    "triangle",
    "cross",
    "ring",
    "diamond",
    "bar",
    "saltire",
)
"""Object kinds: the image corpus's label space. Videos use the first three or four."""

MOTIONS: tuple[str, ...] = ("slide", "bounce", "orbit")
"""Slide = horizontal back and forth, bounce = vertical hops, orbit = circle."""

EVENTS: tuple[str, ...] = (
    "beep",
    "knock",
    "chirp_up",
    "buzz",
    "hiss",
    "clicks",
    "chirp_down",
    "trill",
    "siren",
    "rumble",
)
"""Sound events. The videos use the first six; the last four exist only in the corpus."""

SOUND_LABELS: tuple[str, ...] = (*EVENTS, "music", "ambient")
"""Label space of the sound corpus: every event plus ``music`` and ``ambient`` (noise only)."""

AUDIO_TABLE: tuple[tuple[str | None, ...], ...] = (
    ("beep", "knock", None),
    (None, "chirp_up", "buzz"),
    ("hiss", None, "chirp_up"),
    (None, "clicks", None),
)
"""The sound event of each video class, by the class's kind (row: the scale's first,
second, ... video kind) and motion (column: slide, bounce, orbit); ``None`` where the
soundtrack is unrelated to the class. Seven of twelve classes carry an event, two of them
the same one (``chirp_up``), so the audio alone cannot separate them."""


def class_audio(scale: str | ScaleConfig) -> dict[str, str | None]:
    """Video class -> its sound event (``None``: unrelated audio), for a scale."""
    cfg = SCALES[scale] if isinstance(scale, str) else scale
    return {
        _class_name(kind, motion): AUDIO_TABLE[i][j]
        for i, kind in enumerate(cfg.video_kinds)
        for j, motion in enumerate(MOTIONS[: cfg.n_motions])
    }


def _class_name(kind: str, motion: str) -> str:
    return f"{kind.capitalize()}{motion.capitalize()}"


EVENT_PRESENT_PROB = 0.85
"""Chance that a video of a related class carries its event (otherwise: unrelated audio)."""

# tags separating the random streams of different purposes
_TAG_GROUP, _TAG_VIDEO, _TAG_IMAGE, _TAG_SOUND, _TAG_ORDER = 11, 12, 13, 14, 15
_JITTER_MARGIN = 3  # canvas margin in pixels for camera jitter
_PATCH_PAD = 12  # extra padding so every object / blob patch lies inside the canvas


@dataclass(frozen=True)
class ScaleConfig:
    """Sizes and nuisance levels of one benchmark scale (docs/DEMO.md, "Scales")."""

    video_kinds: tuple[str, ...]  # the object kinds the videos show (a subset of KINDS)
    n_motions: int
    n_groups: int
    test_groups: int  # groups 1..test_groups form the test list (UCF split 1 style)
    clips_per_group: tuple[int, int]  # inclusive range, drawn per (class, group)
    seconds: tuple[float, float]  # video length range
    fps_choices: tuple[int, ...]
    frame_size: tuple[int, int]  # (width, height) of landscape videos; portrait swaps them
    portrait_prob: float
    object_radius: tuple[float, float]  # object size in the video frames, pixels
    motion_rate: float  # multiplies every motion's speed, hop rate and revolution rate
    scene_styles: tuple[str, ...]  # background styles a scene is drawn from
    distractors: int  # a scene allows up to this many distractor blobs per video
    jitter: float  # camera shake: largest step std of the random walk, pixels
    flicker: float  # largest flicker amplitude (relative brightness)
    noise: tuple[float, float]  # sensor noise std range, grey levels
    n_images: int
    image_size: int
    image_object_radius: tuple[float, float]  # object size in the corpus images, pixels
    n_sounds: int
    sound_seconds: float


_DEMO = ScaleConfig(
    video_kinds=("disc", "ring", "cross", "bar"),
    n_motions=3,
    n_groups=25,
    test_groups=7,
    clips_per_group=(3, 5),
    seconds=(2.5, 3.5),
    fps_choices=(9, 10, 11),
    frame_size=(40, 32),
    portrait_prob=0.1,
    object_radius=(4.5, 7.0),
    motion_rate=2.5,
    scene_styles=("gradient",),
    distractors=0,
    jitter=0.0,
    flicker=0.0,
    noise=(1.0, 2.0),
    n_images=4000,
    image_size=32,
    image_object_radius=(7.0, 11.0),
    n_sounds=1200,
    sound_seconds=1.0,
)

SCALES: dict[str, ScaleConfig] = {
    "demo": _DEMO,
    # tiny, for CI smoke tests: the demo's look, fewer of everything
    "quick": dataclasses.replace(
        _DEMO,
        video_kinds=("disc", "ring", "cross"),
        n_motions=2,
        n_groups=3,
        test_groups=1,
        clips_per_group=(2, 2),
        seconds=(2.0, 3.0),
        fps_choices=(10, 12),
        portrait_prob=0.15,
        n_images=240,
        n_sounds=120,
    ),
    # `ccl demo --device cuda`: the demo's look with more clips per group (about 1.6 times
    # the videos: ~117 training videos per class, UCF51 has ~95), for a longer budget
    "gpu": dataclasses.replace(
        _DEMO,
        clips_per_group=(5, 8),
        scene_styles=("gradient", "texture"),
        distractors=1,
        jitter=0.5,
        flicker=0.04,
    ),
}


@dataclass
class SynthInfo:
    """What :func:`generate` wrote (also in ``out/synth_info.json``)."""

    root: Path
    videos_dir: Path
    splits_dir: Path
    images_file: Path
    sounds_file: Path
    info_file: Path
    seed: int
    scale: str
    classes: list[str]
    class_audio: dict[str, str | None]
    related_audio_classes: list[str]
    unrelated_audio_classes: list[str]
    image_label_names: list[str]
    sound_label_names: list[str]
    sample_rate: int
    n_videos: int
    n_train: int
    n_test: int
    n_images: int
    n_sounds: int
    videos: list[dict[str, Any]] = field(default_factory=list, repr=False)
    seconds: float = 0.0  # generation time, not written to the JSON file

    @property
    def unrelated_fraction(self) -> float:
        """Share of classes whose soundtrack is unrelated to the class."""
        return len(self.unrelated_audio_classes) / max(1, len(self.classes))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready view (paths relative to ``root``; no timing, so it is reproducible)."""
        d = asdict(self)
        d.pop("seconds")
        for key in ("videos_dir", "splits_dir", "images_file", "sounds_file", "info_file"):
            d[key] = str(Path(d[key]).relative_to(self.root))
        d["root"] = "."
        return d


def class_names(scale: str | ScaleConfig) -> list[str]:
    """Video classes of a scale in classInd order (alphabetical, as in UCF101)."""
    return sorted(class_audio(scale))


def _split_class(name: str) -> tuple[str, str]:
    for m in MOTIONS:
        if name.endswith(m.capitalize()):
            return name[: -len(m)].lower(), m
    raise ValueError(f"not a synthetic class name: {name!r}")


# --------------------------------------------------------------------------- images


def _hsv(h: float, s: float, v: float) -> np.ndarray:
    return np.array(colorsys.hsv_to_rgb(h % 1.0, s, v), dtype=np.float32)


def _shape_sdf(kind: str, dx: np.ndarray, dy: np.ndarray, s: float) -> np.ndarray:
    """Approximate signed distance (pixels, negative inside) to a shape of size ``s``."""
    ax, ay = np.abs(dx), np.abs(dy)
    if kind == "square":
        return np.maximum(ax, ay) - 0.8 * s
    if kind == "disc":
        return np.hypot(dx, dy) - 0.9 * s
    if kind == "triangle":  # upright equilateral, circumradius 1.15 s (image y points down)
        r = 0.575 * s
        d = np.maximum(dy, np.maximum(0.866 * dx - 0.5 * dy, -0.866 * dx - 0.5 * dy))
        return d - r
    if kind in ("cross", "saltire"):
        if kind == "saltire":
            ax, ay = np.abs(0.7071 * (dx + dy)), np.abs(0.7071 * (dx - dy))
        w = 0.33 * s
        return np.minimum(np.maximum(ax - s, ay - w), np.maximum(ax - w, ay - s))
    if kind == "ring":
        return np.abs(np.hypot(dx, dy) - 0.7 * s) - 0.28 * s
    if kind == "diamond":
        return 0.7071 * (ax + ay) - 0.75 * s
    if kind == "bar":
        return np.maximum(ax - 1.05 * s, ay - 0.4 * s)
    raise ValueError(f"unknown kind {kind!r}")


def _draw_scene(rng: np.random.Generator, cfg: ScaleConfig) -> dict[str, Any]:
    """Scene (background, clutter, camera, light) shared by the videos of one group index
    (of every class) or drawn for one corpus image."""
    style = str(rng.choice(list(cfg.scene_styles)))
    h0 = rng.random()
    return {
        "style": style,
        "c0": _hsv(h0, rng.uniform(0.0, 0.5), rng.uniform(0.15, 0.85)).tolist(),
        "c1": _hsv(
            h0 + rng.uniform(-0.3, 0.3), rng.uniform(0.0, 0.6), rng.uniform(0.15, 0.85)
        ).tolist(),
        "angle": float(rng.uniform(0, np.pi)),
        "freq": float(rng.uniform(0.08, 0.35)),
        "texture_seed": int(rng.integers(2**31)),
        "n_clutter": (0, int(rng.integers(0, cfg.distractors + 1))),
        "jitter": float(rng.uniform(0.0, cfg.jitter)),
        "light": float(rng.uniform(0.85, 1.1)),
        "noise": float(rng.uniform(*cfg.noise)),
    }


def _background(scene: dict[str, Any], hc: int, wc: int) -> np.ndarray:
    """(hc, wc, 3) float32 in [0, 1]."""
    yy, xx = np.mgrid[0:hc, 0:wc].astype(np.float32)
    a = scene["angle"]
    u = np.cos(a) * xx + np.sin(a) * yy
    style = scene["style"]
    if style == "gradient":
        m = (u - u.min()) / max(1e-6, float(u.max() - u.min()))
    elif style == "stripes":
        m = 0.5 + 0.5 * np.sin(u * scene["freq"] * 2.0)
    elif style == "checker":
        cell = max(3, int(2.0 / scene["freq"]))
        m = ((xx // cell + yy // cell) % 2).astype(np.float32) * 0.8 + 0.1
    else:  # smooth random texture: low-resolution noise, bilinear upsampling
        trng = np.random.default_rng(scene["texture_seed"])
        lo = trng.random((hc // 6 + 2, wc // 6 + 2)).astype(np.float32)
        ys = yy[:, 0] / 6.0
        xs = xx[0] / 6.0
        y0, x0 = ys.astype(int), xs.astype(int)
        fy, fx = (ys - y0)[:, None], (xs - x0)[None, :]
        m = (
            lo[y0][:, x0] * (1 - fy) * (1 - fx)
            + lo[y0 + 1][:, x0] * fy * (1 - fx)
            + lo[y0][:, x0 + 1] * (1 - fy) * fx
            + lo[y0 + 1][:, x0 + 1] * fy * fx
        )
    c0 = np.asarray(scene["c0"], np.float32)
    c1 = np.asarray(scene["c1"], np.float32)
    return c0 + (c1 - c0) * m[..., None]


def _ping_pong(u: np.ndarray, lo: float, hi: float) -> np.ndarray:
    span = max(1e-6, hi - lo)
    m = np.mod(u - lo, 2 * span)
    return lo + np.where(m < span, m, 2 * span - m)


def _trajectory(
    rng: np.random.Generator, motion: str, t: np.ndarray, w: int, h: int, s: float
) -> tuple[np.ndarray, np.ndarray, dict[str, float]]:
    """Object centre per frame (frame coordinates) for one motion pattern."""
    m = s + 2.0
    if motion == "slide":
        speed = rng.uniform(12.0, 30.0) * rng.choice([-1.0, 1.0])
        x0, y0 = rng.uniform(m, w - m), rng.uniform(m, h - m)
        x = _ping_pong(x0 + speed * t, m, w - m)
        y = y0 + rng.uniform(0.5, 1.5) * np.sin(2 * np.pi * rng.uniform(0.2, 0.6) * t)
        return x, y, {"speed": float(abs(speed))}
    if motion == "bounce":
        amp = rng.uniform(0.3, 0.6) * (h - 2 * m)
        freq = rng.uniform(0.6, 1.3)  # hops per second
        floor = rng.uniform(m + amp, h - m)
        x0 = rng.uniform(m, w - m)
        y = floor - amp * np.abs(np.sin(np.pi * (freq * t + rng.random())))
        x = x0 + rng.uniform(0.5, 1.5) * np.sin(2 * np.pi * rng.uniform(0.2, 0.6) * t)
        return x, y, {"speed": float(2 * amp * freq)}
    if motion == "orbit":
        radius = rng.uniform(0.5, 0.9) * (min(w, h) / 2 - m)
        rev = rng.uniform(0.35, 0.8) * rng.choice([-1.0, 1.0])  # revolutions per second
        cx = rng.uniform(m + radius, w - m - radius)
        cy = rng.uniform(m + radius, h - m - radius)
        phase = 2 * np.pi * (rev * t + rng.random())
        return (
            cx + radius * np.cos(phase),
            cy + radius * np.sin(phase),
            {"speed": float(2 * np.pi * radius * abs(rev))},
        )
    raise ValueError(f"unknown motion {motion!r}")


def _stamp(
    frames: np.ndarray,
    cx: np.ndarray,
    cy: np.ndarray,
    radius: int,
    alpha_fn: Callable[[np.ndarray, np.ndarray], np.ndarray],
    colour: np.ndarray,
    shade: float = 0.0,
) -> None:
    """Alpha-composite, in place, a (2 radius + 1)^2 patch per frame centred at (cx, cy).

    Only the patch is computed (cheap); ``frames`` must be padded by at least ``radius``."""
    n = len(frames)
    o = np.arange(-radius, radius + 1)
    ys = np.rint(cy).astype(int)[:, None, None] + o[None, :, None]
    xs = np.rint(cx).astype(int)[:, None, None] + o[None, None, :]
    dx = (xs - cx[:, None, None]).astype(np.float32)
    dy = (ys - cy[:, None, None]).astype(np.float32)
    a = alpha_fn(dx, dy)[..., None]
    col = np.broadcast_to(colour, (3,))
    if shade:  # soft highlight towards the top left
        col = np.clip(col * (1.0 + shade * np.clip((dx - dy) / radius, -1, 1))[..., None], 0, 1)
    tt = np.arange(n)[:, None, None]
    frames[tt, ys, xs] = frames[tt, ys, xs] * (1.0 - a) + a * col


def _render(
    rng: np.random.Generator,
    scene: dict[str, Any],
    kind: str,
    motion: str | None,
    n_frames: int,
    fps: float,
    width: int,
    height: int,
    *,
    radius: tuple[float, float],
    motion_rate: float = 1.0,
    flicker: float = 0.0,
) -> tuple[np.ndarray, dict[str, Any]]:
    """(n_frames, height, width, 3) uint8 frames of one object over a scene.

    ``motion=None`` renders a still image (image corpus). ``radius``: the object's size
    range in pixels (corpus images are object-centric, as ImageNet photos are, so their
    objects are larger than the videos': the image teacher meets a domain gap as it does on
    UCF). ``motion_rate`` multiplies the motion's speed; ``flicker`` is the largest flicker
    amplitude."""
    t = np.arange(n_frames, dtype=np.float32) / fps
    M, P = _JITTER_MARGIN, _PATCH_PAD
    hc, wc = height + 2 * M, width + 2 * M
    frames = np.zeros((n_frames, hc + 2 * P, wc + 2 * P, 3), np.float32)
    frames[:, P : P + hc, P : P + wc] = _background(scene, hc, wc)

    # distractor blobs, random straight paths bouncing off the borders, behind the object
    n_clutter = int(rng.integers(scene["n_clutter"][0], scene["n_clutter"][1] + 1))
    for _ in range(n_clutter):
        sigma = rng.uniform(1.2, 3.0)
        vx, vy = rng.normal(0, 12.0, size=2)
        bx = _ping_pong(rng.uniform(0, wc) + vx * t, 0, wc) + P
        by = _ping_pong(rng.uniform(0, hc) + vy * t, 0, hc) + P
        peak = rng.uniform(0.5, 0.9)
        _stamp(
            frames,
            bx,
            by,
            int(np.ceil(3 * sigma)),
            lambda dx, dy, s=sigma, p=peak: p * np.exp(-(dx**2 + dy**2) / (2 * s**2)),
            _hsv(rng.random(), rng.uniform(0.3, 1), rng.uniform(0.3, 1)),
        )

    # the object: colour never depends on the class
    size = rng.uniform(*radius)
    colour = _hsv(rng.random(), rng.uniform(0.5, 1.0), rng.uniform(0.55, 1.0))
    if motion is None:
        m = size + 1.0
        ox = np.full(n_frames, rng.uniform(m, width - m), np.float32)
        oy = np.full(n_frames, rng.uniform(m, height - m), np.float32)
        extra: dict[str, float] = {}
    else:
        ox, oy, extra = _trajectory(rng, motion, t * motion_rate, width, height, size)
        extra = {k: v * motion_rate for k, v in extra.items()}  # speeds per real second
    _stamp(
        frames,
        ox + M + P,
        oy + M + P,
        int(np.ceil(1.25 * size)) + 1,
        lambda dx, dy: np.clip(0.5 - _shape_sdf(kind, dx, dy, size), 0.0, 1.0),
        colour,
        shade=0.15,
    )

    # camera jitter: a smoothed random walk of integer offsets
    walk = np.cumsum(rng.normal(0, scene["jitter"], size=(n_frames, 2)), axis=0)
    walk -= walk.mean(axis=0)
    offs = np.clip(np.rint(walk), -M, M).astype(int)
    out = np.empty((n_frames, height, width, 3), np.float32)
    for k in range(n_frames):
        oy_, ox_ = P + M + offs[k, 0], P + M + offs[k, 1]
        out[k] = frames[k, oy_ : oy_ + height, ox_ : ox_ + width]

    # lighting: drift, flicker, frame-to-frame gain noise; sensor noise
    drift = rng.uniform(-0.15, 0.15)
    flicker = rng.uniform(0.0, flicker)
    gain = (
        scene["light"]
        * (1 + drift * (t / max(float(t[-1]), 1e-6) - 0.5))
        * (1 + flicker * np.sin(2 * np.pi * (rng.uniform(2, 6) * t + rng.random())))
        * (1 + rng.normal(0, 0.01, size=n_frames))
    )
    out *= 255.0 * gain.astype(np.float32)[:, None, None, None]
    out += scene["noise"] * rng.standard_normal(out.shape, dtype=np.float32)
    info = {"size": round(float(size), 3), "colour": np.round(colour, 3).tolist(), **extra}
    return np.clip(np.rint(out), 0, 255).astype(np.uint8), info


# --------------------------------------------------------------------------- sounds


def _since(t: np.ndarray, rate: float, phase: float) -> np.ndarray:
    """Seconds since the last onset of a periodic train at ``rate`` Hz."""
    return np.mod(t * rate + phase, 1.0) / rate


def _gate(t: np.ndarray, rate: float, duty: float, phase: float, ramp: float = 0.05) -> np.ndarray:
    u = np.mod(t * rate + phase, 1.0)
    return np.clip(np.minimum(u, duty - u) / ramp, 0.0, 1.0)


def _fft_len(n: int) -> int:
    """Power of two >= n: filtered noise is made at that length and truncated (fast FFT)."""
    return 1 << max(0, int(n - 1).bit_length())


def _band_noise(rng: np.random.Generator, n: int, lo: float, hi: float) -> np.ndarray:
    m = _fft_len(n)
    spec = np.fft.rfft(rng.standard_normal(m).astype(np.float32))
    f = np.fft.rfftfreq(m, 1.0 / SAMPLE_RATE)
    spec[(f < lo) | (f > hi)] = 0
    return np.fft.irfft(spec, m)[:n]


def _coloured_noise(rng: np.random.Generator, n: int, exponent: float) -> np.ndarray:
    """Noise with power ~ 1 / f**exponent (0 white, 1 pink, 2 brown), 20 Hz - 12 kHz."""
    m = _fft_len(n)
    spec = np.fft.rfft(rng.standard_normal(m).astype(np.float32))
    f = np.fft.rfftfreq(m, 1.0 / SAMPLE_RATE).astype(np.float32)
    shape = np.power(np.maximum(f, 20.0), np.float32(-exponent / 2))
    shape[(f < 20) | (f > 12_000)] = 0
    return np.fft.irfft(spec * shape, m)[:n]


def _event(rng: np.random.Generator, name: str, n: int) -> np.ndarray:
    """One sound event repeated over ``n`` samples (pitch, rhythm and onset jittered)."""
    t = np.arange(n) / SAMPLE_RATE
    ph = rng.random()
    if name == "beep":
        f = rng.uniform(800, 1000)
        return np.sin(2 * np.pi * f * t) * _gate(t, rng.uniform(3, 5), 0.45, ph)
    if name == "knock":
        since = _since(t, rng.uniform(1.5, 3.0), ph)
        f = rng.uniform(150, 250)
        body = np.sin(2 * np.pi * f * since) * np.exp(-since / 0.03)
        return body + 0.4 * rng.standard_normal(n) * np.exp(-since / 0.004)
    if name in ("chirp_up", "chirp_down"):
        lo, hi = rng.uniform(400, 600), rng.uniform(2000, 2600)
        f0, f1 = (lo, hi) if name == "chirp_up" else (hi, lo)
        dur = rng.uniform(0.2, 0.3)
        since = _since(t, rng.uniform(1.5, 2.5), ph)
        sweep = np.sin(2 * np.pi * (f0 * since + (f1 - f0) * since**2 / (2 * dur)))
        env = np.clip(np.minimum(since, dur - since) / 0.02, 0, 1)
        return sweep * env
    if name == "buzz":
        f = rng.uniform(100, 140)
        saw = 2 * np.mod(f * t + rng.random(), 1.0) - 1
        trem = 1 + 0.3 * np.sin(2 * np.pi * 3 * t)
        return saw * trem * _gate(t, rng.uniform(0.8, 1.5), 0.7, ph)
    if name == "hiss":
        lo = rng.uniform(2800, 3500)
        return _band_noise(rng, n, lo, lo + rng.uniform(2000, 3000)) * _gate(
            t, rng.uniform(1.0, 2.0), 0.5, ph, 0.1
        )
    if name == "clicks":
        since = _since(t, rng.uniform(15, 25), rng.random())
        clicks = rng.standard_normal(n) * np.exp(-since / 0.0015)
        return clicks * _gate(t, rng.uniform(0.7, 1.2), 0.5, ph)
    if name == "trill":
        fc, fm = rng.uniform(1500, 2000), rng.uniform(10, 15)
        tone = np.sin(2 * np.pi * fc * t + (150 / fm) * np.sin(2 * np.pi * fm * t))
        return tone * _gate(t, rng.uniform(0.8, 1.2), 0.6, ph)
    if name == "siren":
        f1 = rng.uniform(550, 700)
        f = np.where(np.mod(t * rng.uniform(1.5, 2.5) + ph, 1.0) < 0.5, f1, f1 * 1.33)
        return np.sin(2 * np.pi * np.cumsum(f) / SAMPLE_RATE)
    if name == "rumble":
        return _band_noise(rng, n, 20, rng.uniform(180, 280)) * (
            1 + 0.5 * np.sin(2 * np.pi * rng.uniform(0.3, 1.0) * t)
        )
    raise ValueError(f"unknown event {name!r}")


_PENTATONIC = (0, 2, 4, 7, 9)


def _music(rng: np.random.Generator, n: int) -> np.ndarray:
    """A random melody in one common style: major pentatonic, plucked harmonic tones over a
    bass note on every beat and a hi-hat tick on every eighth."""
    out = np.zeros(n)
    key = int(rng.integers(57, 70))
    eighth = 30.0 / rng.uniform(100, 160)
    step = int(eighth * SAMPLE_RATE)
    tl = np.arange(2 * step) / SAMPLE_RATE
    pos = -int(rng.integers(0, step))
    while pos < n:
        length = step * int(rng.choice([1, 1, 2]))
        note = key + _PENTATONIC[int(rng.integers(5))] + 12 * int(rng.integers(2))
        f = 440.0 * 2 ** ((note - 69) / 12)
        tt = tl[:length]
        tone = sum(np.sin(2 * np.pi * h * f * tt) / h for h in (1, 2, 3))
        tone = tone * np.exp(-tt / rng.uniform(0.1, 0.3)) * np.clip(tt / 0.005, 0, 1)
        a, b = max(pos, 0), min(pos + length, n)
        if b > a:
            out[a:b] += tone[a - pos : b - pos]
        pos += length
    t = np.arange(n) / SAMPLE_RATE
    since = np.mod(t / eighth + rng.random(), 1.0) * eighth
    beat = np.mod(t / (2 * eighth), 1.0) * 2 * eighth
    fb = 440.0 * 2 ** ((key - 12 - 69) / 12)
    out += 0.6 * np.sin(2 * np.pi * fb * beat) * np.exp(-beat / 0.25)
    out += 0.15 * _band_noise(rng, n, 6000, 11000) * np.exp(-since / 0.01)
    return out


def _ambient(rng: np.random.Generator, n: int) -> np.ndarray:
    t = np.arange(n) / SAMPLE_RATE
    am = 1 + rng.uniform(0, 0.4) * np.sin(2 * np.pi * (rng.uniform(0.1, 0.8) * t + rng.random()))
    return _coloured_noise(rng, n, rng.uniform(0.0, 2.0)) * am


def _unit(x: np.ndarray) -> np.ndarray:
    return x / max(float(np.sqrt(np.mean(x**2))), 1e-9)


def _finish_audio(rng: np.random.Generator, x: np.ndarray) -> np.ndarray:
    """Random gain: peak between 0.1 and 0.8."""
    peak = max(float(np.max(np.abs(x))), 1e-9)
    return (x * (rng.uniform(0.1, 0.8) / peak)).astype(np.float32)


def _soundtrack(
    rng: np.random.Generator, event: str | None, n: int
) -> tuple[np.ndarray, dict[str, Any]]:
    """Soundtrack of one video: its class's event (if any, most of the time) or unrelated
    sound; background noise always."""
    info: dict[str, Any] = {}
    if event is not None and rng.random() < EVENT_PRESENT_PROB:
        snr = rng.uniform(0.0, 18.0)
        x = _unit(_event(rng, event, n))
        if rng.random() < 0.25:  # quiet music bed
            x = x + 10 ** (-rng.uniform(3, 10) / 20) * _unit(_music(rng, n))
        info.update(audio="event", event=event)
    else:
        snr = rng.uniform(5.0, 20.0)
        x = _unit(_music(rng, n) if rng.random() < 0.7 else _ambient(rng, n))
        info["audio"] = "music" if event is None else "missing_event"
        if rng.random() < 0.2:  # an unrelated sound event happens to be there
            other = str(rng.choice(EVENTS))
            x = x + 10 ** (rng.uniform(-5, 5) / 20) * _unit(_event(rng, other, n))
            info["distractor_event"] = other
    x = _unit(x) + 10 ** (-snr / 20) * _unit(_ambient(rng, n))
    info["snr_db"] = round(float(snr), 2)
    return _finish_audio(rng, x), info


# --------------------------------------------------------------------------- videos


def _write_avi(path: Path, frames: np.ndarray, fps: int, audio: np.ndarray) -> None:
    """MPEG-4 Part 2 (yuv420p) + MP2 mono in AVI, single-threaded (deterministic)."""
    import av

    tmp = path.with_name(f".{path.name}.tmp")
    with av.open(str(tmp), mode="w", format="avi") as out:
        vs = out.add_stream("mpeg4", rate=fps)
        vs.width, vs.height, vs.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        vs.bit_rate = 400_000
        vs.codec_context.thread_count = 1
        aus = out.add_stream("mp2", rate=SAMPLE_RATE)
        aus.layout = "mono"
        aus.bit_rate = 64_000
        for frame in frames:
            for packet in vs.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                out.mux(packet)
        for packet in vs.encode():
            out.mux(packet)
        pcm = np.clip(np.rint(audio * 32767), -32768, 32767).astype(np.int16)
        block = 1152
        for i in range(0, len(pcm), block):
            af = av.AudioFrame.from_ndarray(pcm[None, i : i + block], format="s16", layout="mono")
            af.sample_rate = SAMPLE_RATE
            af.pts = i
            af.time_base = Fraction(1, SAMPLE_RATE)
            for packet in aus.encode(af):
                out.mux(packet)
        for packet in aus.encode():
            out.mux(packet)
    os.replace(tmp, path)


def _make_video(job: dict[str, Any]) -> dict[str, Any]:
    """Render, sonify and write one video; returns its metadata."""
    cfg: ScaleConfig = SCALES[job["scale"]]
    rng = np.random.default_rng(job["entropy"])
    fps = int(rng.choice(cfg.fps_choices))
    n_frames = int(round(rng.uniform(*cfg.seconds) * fps))
    width, height = cfg.frame_size
    portrait = bool(rng.random() < cfg.portrait_prob)
    if portrait:
        width, height = height, width
    frames, vinfo = _render(
        rng,
        job["scene"],
        job["kind"],
        job["motion"],
        n_frames,
        fps,
        width,
        height,
        radius=cfg.object_radius,
        motion_rate=cfg.motion_rate,
        flicker=cfg.flicker,
    )
    n_samples = int(round(n_frames * SAMPLE_RATE / fps))
    audio, ainfo = _soundtrack(rng, job["event"], n_samples)
    path = Path(job["path"])
    path.parent.mkdir(parents=True, exist_ok=True)
    _write_avi(path, frames, fps, audio)
    return {
        "file": job["rel"],
        "label": job["label"],
        "group": job["group"],
        "clip": job["clip"],
        "subset": job["subset"],
        "fps": fps,
        "n_frames": n_frames,
        "width": width,
        "height": height,
        "n_audio_samples": n_samples,
        **vinfo,
        **ainfo,
    }


# --------------------------------------------------------------------------- corpora


def _image_chunk(job: dict[str, Any]) -> np.ndarray:
    cfg: ScaleConfig = SCALES[job["scale"]]
    size = cfg.image_size
    out = np.empty((len(job["items"]), size, size, 3), np.uint8)
    for j, (i, label) in enumerate(job["items"]):
        rng = np.random.default_rng([job["seed"], _TAG_IMAGE, i])
        scene = _draw_scene(rng, cfg)
        frames, _ = _render(
            rng, scene, KINDS[label], None, 1, 1.0, size, size, radius=cfg.image_object_radius
        )
        out[j] = frames[0]
    return out


def _sound_chunk(job: dict[str, Any]) -> np.ndarray:
    n = job["n_samples"]
    out = np.empty((len(job["items"]), n), np.float32)
    for j, (i, label) in enumerate(job["items"]):
        rng = np.random.default_rng([job["seed"], _TAG_SOUND, i])
        name = SOUND_LABELS[label]
        if name == "ambient":
            x = _unit(_ambient(rng, n))
        else:
            fg = _music(rng, n) if name == "music" else _event(rng, name, n)
            x = _unit(fg) + 10 ** (-rng.uniform(3.0, 25.0) / 20) * _unit(_ambient(rng, n))
        out[j] = _finish_audio(rng, x)
    return out


def _balanced_labels(seed: int, tag: int, n: int, n_labels: int) -> np.ndarray:
    labels = np.arange(n, dtype=np.int64) % n_labels
    return np.random.default_rng([seed, _TAG_ORDER, tag]).permutation(labels)


def _chunks(labels: np.ndarray, size: int) -> list[list[tuple[int, int]]]:
    items = [(i, int(y)) for i, y in enumerate(labels)]
    return [items[k : k + size] for k in range(0, len(items), size)]


# --------------------------------------------------------------------------- driver


def _run(
    fn: Callable[[dict[str, Any]], Any], jobs: list[dict[str, Any]], pool: Any | None
) -> list[Any]:
    if pool is None:
        return [fn(j) for j in jobs]
    return list(pool.map(fn, jobs, chunksize=max(1, len(jobs) // 16)))


_MARKER = ".ccl-synth"  # written first, so an interrupted run is recognised as ours


def _clear_previous(out: Path) -> None:
    """Remove the output of an earlier (possibly interrupted) ``ccl synth`` run; refuse to
    touch a folder that holds ``videos``, ``splits`` or ``corpora`` of another origin."""
    owned = [out / "videos", out / "splits", out / "corpora"]
    ours = (out / "synth_info.json").is_file() or (out / _MARKER).is_file()
    if not ours:
        busy = [p.name for p in owned if p.exists()]
        if busy:
            raise FileExistsError(
                f"{out} already holds {busy} but is not a ccl synth output: refusing to overwrite"
            )
    else:
        for p in owned:
            if p.exists():
                shutil.rmtree(p)
        (out / "synth_info.json").unlink(missing_ok=True)
    (out / _MARKER).write_text("written by ccl synth\n")


def generate(
    out_dir: str | Path, seed: int = 0, scale: str = "demo", *, workers: int | None = None
) -> SynthInfo:
    """Write the synthetic benchmark under ``out_dir`` (see the module docstring).

    ``workers``: processes for rendering and encoding (default: up to 4 for ``demo`` and
    ``gpu``, none otherwise); the result does not depend on it. An earlier ``ccl synth``
    output in ``out_dir`` is replaced."""
    if scale not in SCALES:
        raise ValueError(f"unknown scale {scale!r}; choose from {sorted(SCALES)}")
    if seed < 0:
        raise ValueError(f"seed must be non-negative, got {seed}")
    t0 = time.perf_counter()
    cfg = SCALES[scale]
    out = Path(out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    _clear_previous(out)
    videos_dir, splits_dir = out / "videos", out / "splits"
    images_file = out / "corpora" / "images" / "images.npz"
    sounds_file = out / "corpora" / "audio" / "sounds.npz"
    for d in (videos_dir, splits_dir, images_file.parent, sounds_file.parent):
        d.mkdir(parents=True, exist_ok=True)

    classes = class_names(cfg)
    audio_of = class_audio(cfg)
    # One scene per group index, shared by every class: a background never identifies a
    # class (in UCF many classes share similar scenes), and the test groups' scenes are
    # never seen in training.
    scenes = {
        g: _draw_scene(np.random.default_rng([seed, _TAG_GROUP, g]), cfg)
        for g in range(1, cfg.n_groups + 1)
    }
    jobs: list[dict[str, Any]] = []
    for label in classes:
        kind, motion = _split_class(label)
        ids = [KINDS.index(kind), MOTIONS.index(motion)]
        for g in range(1, cfg.n_groups + 1):
            grng = np.random.default_rng([seed, _TAG_GROUP, *ids, g])
            scene = scenes[g]
            n_clips = int(grng.integers(cfg.clips_per_group[0], cfg.clips_per_group[1] + 1))
            for c in range(1, n_clips + 1):
                name = f"v_{label}_g{g:02d}_c{c:02d}.avi"
                jobs.append(
                    {
                        "scale": scale,
                        "entropy": [seed, _TAG_VIDEO, *ids, g, c],
                        "scene": scene,
                        "kind": kind,
                        "motion": motion,
                        "event": audio_of[label],
                        "label": label,
                        "group": g,
                        "clip": c,
                        "subset": "test" if g <= cfg.test_groups else "train",
                        "rel": f"{label}/{name}",
                        "path": str(videos_dir / label / name),
                    }
                )

    image_labels = _balanced_labels(seed, _TAG_IMAGE, cfg.n_images, len(KINDS))
    sound_labels = _balanced_labels(seed, _TAG_SOUND, cfg.n_sounds, len(SOUND_LABELS))
    image_jobs = [
        {"seed": seed, "scale": scale, "items": items}
        for items in _chunks(image_labels, 200)
    ]
    n_sound_samples = int(round(cfg.sound_seconds * SAMPLE_RATE))
    sound_jobs = [
        {"seed": seed, "n_samples": n_sound_samples, "items": items}
        for items in _chunks(sound_labels, 50)
    ]

    if workers is None:
        # the large scales in processes; small ones (and scales a test registers, which a
        # spawned worker would not know) in this process
        workers = min(4, os.cpu_count() or 1) if scale in ("demo", "gpu") else 0
    pool = None
    if workers > 1:
        pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))
    try:
        videos = _run(_make_video, jobs, pool)
        images = np.concatenate(_run(_image_chunk, image_jobs, pool))
        sounds = np.concatenate(_run(_sound_chunk, sound_jobs, pool))
    finally:
        if pool is not None:
            pool.shutdown()

    np.savez_compressed(
        images_file, images=images, labels=image_labels, label_names=np.array(KINDS)
    )
    np.savez(
        sounds_file,
        waveforms=sounds,
        labels=sound_labels,
        label_names=np.array(SOUND_LABELS),
        sample_rate=np.int64(SAMPLE_RATE),
    )

    (splits_dir / "classInd.txt").write_text(
        "".join(f"{i} {c}\n" for i, c in enumerate(classes, start=1))
    )
    index = {c: i for i, c in enumerate(classes, start=1)}
    (splits_dir / "trainlist01.txt").write_text(
        "".join(f"{v['file']} {index[v['label']]}\n" for v in videos if v["subset"] == "train")
    )
    (splits_dir / "testlist01.txt").write_text(
        "".join(f"{v['file']}\n" for v in videos if v["subset"] == "test")
    )

    related = [c for c in classes if audio_of[c] is not None]
    info = SynthInfo(
        root=out,
        videos_dir=videos_dir,
        splits_dir=splits_dir,
        images_file=images_file,
        sounds_file=sounds_file,
        info_file=out / "synth_info.json",
        seed=seed,
        scale=scale,
        classes=classes,
        class_audio={c: audio_of[c] for c in classes},
        related_audio_classes=related,
        unrelated_audio_classes=[c for c in classes if c not in related],
        image_label_names=list(KINDS),
        sound_label_names=list(SOUND_LABELS),
        sample_rate=SAMPLE_RATE,
        n_videos=len(videos),
        n_train=sum(v["subset"] == "train" for v in videos),
        n_test=sum(v["subset"] == "test" for v in videos),
        n_images=len(images),
        n_sounds=len(sounds),
        videos=videos,
    )
    payload = {
        "kind": "ccl-synth",
        "parameters": {
            **asdict(cfg),
            "event_present_prob": EVENT_PRESENT_PROB,
            "video_codec": "mpeg4",
            "audio_codec": "mp2",
            "container": "avi",
        },
        **info.to_dict(),
    }
    from ccl.atomic import write_text_atomic

    # written last, atomically: marks a complete output
    write_text_atomic(info.info_file, json.dumps(payload, indent=1))
    info.seconds = time.perf_counter() - t0
    return info


# --------------------------------------------------------------------------- CLI


def _cmd_synth(args: argparse.Namespace) -> int:
    info = generate(args.out, seed=args.seed, scale=args.scale, workers=args.workers)
    print(
        f"wrote {info.n_videos} videos ({info.n_train} train / {info.n_test} test, "
        f"{len(info.classes)} classes, {len(info.unrelated_audio_classes)} with unrelated "
        f"audio), {info.n_images} corpus images, {info.n_sounds} corpus sounds to {info.root} "
        f"in {info.seconds:.1f} s"
    )
    print(f"next: ccl prepare videos {info.videos_dir} <stores>   (splits: {info.splits_dir})")
    return 0


def register(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``synth --out DIR --seed S [--scale demo|quick|gpu] [--workers N]``."""
    p = subparsers.add_parser(
        "synth", help="write the synthetic audio-visual benchmark (UCF101 layout) and corpora"
    )
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--scale", choices=sorted(SCALES), default="demo", help="size (default demo)")
    p.add_argument(
        "--workers", type=int, default=None, help="processes (default: up to 4 for demo and gpu)"
    )
    p.set_defaults(func=_cmd_synth)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m ccl.synth`` without the package CLI."""
    parser = argparse.ArgumentParser(prog="ccl-synth")
    sub = parser.add_subparsers(dest="command", required=True)
    register(sub)
    args = parser.parse_args(["synth", *(sys.argv[1:] if argv is None else argv)])
    return int(args.func(args))


if __name__ == "__main__":
    raise SystemExit(main())
