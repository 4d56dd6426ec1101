"""The pictures of the synthetic benchmark (:mod:`ccl.demo.synth`): scenes, objects of a
kind moving in one of the motions, and the frames of a video or a corpus image.

A scene (background style and colours, clutter, camera shake, light, sensor noise) is drawn
once per group index and shared by every class; an object's kind is its shape, its colour
never depends on the class. Every function draws from the generator it is given, in a
fixed order, so a seed gives the same pixels.
"""

from __future__ import annotations

import colorsys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from ccl.demo.synth_scales import ScaleConfig

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

_JITTER_MARGIN = 3  # canvas margin in pixels for camera jitter
_PATCH_PAD = 12  # extra padding so every object / blob patch lies inside the canvas


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


def draw_scene(rng: np.random.Generator, cfg: ScaleConfig) -> dict[str, Any]:
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


def render(
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
