"""The sounds of the synthetic benchmark (:mod:`ccl.demo.synth`): sound events, melodies,
ambient noise, the soundtrack of a video and the clips of the sound corpus.

Two kinds of soundtrack (:data:`SOUNDTRACKS`, docs/DEMO.md "Soundtracks"):

* ``families`` (the default): the sound of a related class belongs to the family of its
  motion (impacts for bounces, scraping for slides, a whirr for orbits) and its object kind
  sets the register (pitch), so classes that share a motion sound alike, as related actions
  do in UCF (string instruments, drums, water). The audio teacher learns the families from
  its corpus, whose family clips take any register: its embedding relates the classes of a
  motion to each other, which the image teacher (object kinds) does not.
* ``events``: one arbitrary sound event per related class (two classes share one); no class
  sounds like another, so the audio space relates no class to any other.

Every function draws from the generator it is given, in a fixed order, so a seed gives the
same samples.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ccl.data.media import SAMPLE_RATE

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
"""Label space of the ``events`` sound corpus: every event plus ``music`` and ``ambient``
(noise only)."""

SOUNDTRACKS: tuple[str, ...] = ("families", "events")
"""The kinds of soundtrack :func:`ccl.demo.synth.generate` writes (the module docstring)."""

FAMILIES: tuple[str, ...] = ("scrape", "impact", "whirr")
"""Sound families of the ``families`` soundtracks, one per motion (slide, bounce, orbit)."""

FAMILY_EVENTS: tuple[str, ...] = (*FAMILIES, "beep", "chirp_up", "chirp_down", "trill", "siren")
"""Sound events of the ``families`` soundtracks: the families (the videos use them), then
events only the corpus and the distractors use."""

FAMILY_SOUND_LABELS: tuple[str, ...] = (*FAMILY_EVENTS, "music", "ambient")
"""Label space of the ``families`` sound corpus."""

KIND_REGISTER: dict[str, float] = {
    "square": 0.0,
    "disc": 4.0,
    "triangle": 8.0,
    "cross": 12.0,
    "ring": 16.0,
    "diamond": 20.0,
    "bar": 24.0,
    "saltire": 28.0,
}
"""Semitones above a family's lowest pitch at which an object kind sounds (``families``)."""

REGISTER_RANGE = (0.0, 28.0)
"""Registers of the corpus's family clips: any pitch a kind may have, drawn uniformly."""

REGISTER_JITTER = 1.0
"""Largest deviation, in semitones, of a video's register from its kind's."""

EVENT_PRESENT_PROB = 0.85
"""Chance that a video of a related class carries its event (otherwise: unrelated audio)."""


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


def sound_labels(soundtracks: str) -> tuple[str, ...]:
    """The sound corpus's label space for a kind of soundtrack (:data:`SOUNDTRACKS`)."""
    return {"families": FAMILY_SOUND_LABELS, "events": SOUND_LABELS}[soundtracks]


def _family(rng: np.random.Generator, name: str, n: int, register: float) -> np.ndarray:
    """One sound of a family, ``register`` semitones above the family's lowest pitch."""
    t = np.arange(n) / SAMPLE_RATE
    ph = rng.random()
    pitch = 2.0 ** (register / 12.0)
    if name == "impact":  # a bounce: a damped body tone and a click at every hit
        since = _since(t, rng.uniform(1.5, 3.0), ph)
        f = 110.0 * pitch * rng.uniform(0.97, 1.03)
        body = np.sin(2 * np.pi * f * since) * np.exp(-since / rng.uniform(0.04, 0.07))
        return body + 0.3 * rng.standard_normal(n) * np.exp(-since / 0.003)
    if name == "scrape":  # a slide: band noise around a pitch, rough, in strokes
        fc = 450.0 * pitch * rng.uniform(0.97, 1.03)
        rough = 1 + 0.6 * np.sin(2 * np.pi * rng.uniform(25, 40) * t)
        strokes = _gate(t, rng.uniform(0.8, 1.5), 0.75, ph, 0.1)
        return _band_noise(rng, n, 0.8 * fc, 1.25 * fc) * rough * strokes
    if name == "whirr":  # an orbit: a buzzing tone whose loudness and pitch turn round
        rate = rng.uniform(2.0, 4.0)
        f = 70.0 * pitch * rng.uniform(0.97, 1.03)
        turn = np.sin(2 * np.pi * (rate * t + ph))
        phase = 2 * np.pi * np.cumsum(f * (1 + 0.02 * turn)) / SAMPLE_RATE
        tone = sum(np.sin(h * phase) / h for h in (1, 2, 3, 4, 5))
        return tone * (1 + 0.7 * turn)
    raise ValueError(f"unknown sound family {name!r}")


def _event(
    rng: np.random.Generator, name: str, n: int, register: float | None = None
) -> np.ndarray:
    """One sound event repeated over ``n`` samples (pitch, rhythm and onset jittered); a
    family (:data:`FAMILIES`) at ``register`` (None: a random one)."""
    if name in FAMILIES:
        if register is None:
            register = rng.uniform(*REGISTER_RANGE)
        return _family(rng, name, n, register)
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


def soundtrack(
    rng: np.random.Generator,
    event: str | None,
    n: int,
    *,
    register: float | None = None,
    distractors: tuple[str, ...] = EVENTS,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Soundtrack of one video: its class's event (if any, most of the time) or unrelated
    sound, sometimes with a random one of ``distractors``; background noise always. A
    family event sounds at ``register`` semitones, jittered by up to
    :data:`REGISTER_JITTER`."""
    info: dict[str, Any] = {}
    if event is not None and rng.random() < EVENT_PRESENT_PROB:
        snr = rng.uniform(0.0, 18.0)
        if register is None:
            x = _unit(_event(rng, event, n))
        else:
            register = register + rng.uniform(-REGISTER_JITTER, REGISTER_JITTER)
            x = _unit(_event(rng, event, n, register))
            info["register"] = round(float(register), 2)
        if rng.random() < 0.25:  # quiet music bed
            x = x + 10 ** (-rng.uniform(3, 10) / 20) * _unit(_music(rng, n))
        info.update(audio="event", event=event)
    else:
        snr = rng.uniform(5.0, 20.0)
        x = _unit(_music(rng, n) if rng.random() < 0.7 else _ambient(rng, n))
        info["audio"] = "music" if event is None else "missing_event"
        if rng.random() < 0.2:  # an unrelated sound event happens to be there
            other = str(rng.choice(distractors))
            x = x + 10 ** (rng.uniform(-5, 5) / 20) * _unit(_event(rng, other, n))
            info["distractor_event"] = other
    x = _unit(x) + 10 ** (-snr / 20) * _unit(_ambient(rng, n))
    info["snr_db"] = round(float(snr), 2)
    return _finish_audio(rng, x), info


def corpus_sound(rng: np.random.Generator, name: str, n: int) -> np.ndarray:
    """One clip of the sound corpus labelled ``name`` (a :func:`sound_labels` entry): the
    event (a family at a random register) or melody over quiet ambient noise, or ambient
    noise alone; ``n`` samples."""
    if name == "ambient":
        x = _unit(_ambient(rng, n))
    else:
        fg = _music(rng, n) if name == "music" else _event(rng, name, n)
        x = _unit(fg) + 10 ** (-rng.uniform(3.0, 25.0) / 20) * _unit(_ambient(rng, n))
    return _finish_audio(rng, x)
