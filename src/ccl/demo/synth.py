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
* **Soundtracks**: about 60 % of the classes carry a class-tied sound (missing in some videos;
  its SNR varies); the other classes have sound unrelated to the class (random melodies of
  one style, or ambient noise, sometimes with a random event): the cross-modal semantic gap.
  By default (``families``) the class-tied sound belongs to the family of the class's motion
  at the pitch of its kind, so classes sharing a motion sound alike; ``events`` gives each
  related class an arbitrary event instead (two classes share one). See
  :mod:`ccl.demo.synth_audio`.
* **Teacher corpora** with their own label spaces: images labelled by object kind (more kinds
  than the videos use) and 1-s sounds labelled by sound event or family (more than the videos
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

import json
import multiprocessing
import os
import shutil
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from ccl.atomic import write_text_atomic
from ccl.data.media import SAMPLE_RATE
from ccl.demo.synth_audio import (
    EVENT_PRESENT_PROB,
    EVENTS,
    FAMILY_EVENTS,
    KIND_REGISTER,
    SOUND_LABELS,
    SOUNDTRACKS,
    corpus_sound,
    sound_labels,
    soundtrack,
)
from ccl.demo.synth_scales import SCALES, ScaleConfig
from ccl.demo.synth_video import KINDS, MOTIONS, draw_scene, render

__all__ = [
    "AUDIO_TABLE",
    "EVENTS",
    "EVENT_PRESENT_PROB",
    "INFO_FILE",
    "KINDS",
    "MOTIONS",
    "SAMPLE_RATE",
    "SCALES",
    "SOUNDTRACKS",
    "SOUND_LABELS",
    "ScaleConfig",
    "SynthInfo",
    "class_audio",
    "class_names",
    "generate",
    "split_class",
]

INFO_FILE = "synth_info.json"
"""What :func:`generate` writes last, atomically: its presence marks a complete output."""

AUDIO_TABLE: tuple[tuple[str | None, ...], ...] = (
    ("beep", "knock", None),
    (None, "chirp_up", "buzz"),
    ("hiss", None, "chirp_up"),
    (None, "clicks", None),
)
"""The sound event of each video class with ``events`` soundtracks, by the class's kind
(row: the scale's first, second, ... video kind) and motion (column: slide, bounce, orbit);
``None`` where the soundtrack is unrelated to the class. Seven of twelve classes carry an
event, two of them the same one (``chirp_up``), so the audio alone cannot separate them.
With ``families`` soundtracks the same seven classes are related, each sounding the family
of its motion (:data:`MOTION_FAMILY`)."""

MOTION_FAMILY: dict[str, str] = {"slide": "scrape", "bounce": "impact", "orbit": "whirr"}
"""The sound family of each motion (``families`` soundtracks)."""


def class_audio(scale: str | ScaleConfig, soundtracks: str = "families") -> dict[str, str | None]:
    """Video class -> its sound event or family (``None``: unrelated audio), for a scale."""
    cfg = SCALES[scale] if isinstance(scale, str) else scale
    _check_soundtracks(soundtracks)
    return {
        _class_name(kind, motion): (
            AUDIO_TABLE[i][j]
            if soundtracks == "events" or AUDIO_TABLE[i][j] is None
            else MOTION_FAMILY[motion]
        )
        for i, kind in enumerate(cfg.video_kinds)
        for j, motion in enumerate(MOTIONS[: cfg.n_motions])
    }


def _check_soundtracks(soundtracks: str) -> None:
    if soundtracks not in SOUNDTRACKS:
        raise ValueError(f"unknown soundtracks {soundtracks!r}; choose from {list(SOUNDTRACKS)}")


def _class_name(kind: str, motion: str) -> str:
    return f"{kind.capitalize()}{motion.capitalize()}"


# tags separating the random streams of different purposes
_TAG_GROUP, _TAG_VIDEO, _TAG_IMAGE, _TAG_SOUND, _TAG_ORDER = 11, 12, 13, 14, 15


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
    soundtracks: str
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


def split_class(name: str) -> tuple[str, str]:
    """A video class's object kind and motion: ``DiscSlide`` -> ``("disc", "slide")``."""
    for m in MOTIONS:
        if name.endswith(m.capitalize()):
            return name[: -len(m)].lower(), m
    raise ValueError(f"not a synthetic class name: {name!r}")


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
    frames, vinfo = render(
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
    if job["soundtracks"] == "families":
        audio, ainfo = soundtrack(
            rng, job["event"], n_samples, register=job["register"], distractors=FAMILY_EVENTS
        )
    else:
        audio, ainfo = soundtrack(rng, job["event"], n_samples)
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
        scene = draw_scene(rng, cfg)
        frames, _ = render(
            rng, scene, KINDS[label], None, 1, 1.0, size, size, radius=cfg.image_object_radius
        )
        out[j] = frames[0]
    return out


def _sound_chunk(job: dict[str, Any]) -> np.ndarray:
    n = job["n_samples"]
    names = sound_labels(job["soundtracks"])
    out = np.empty((len(job["items"]), n), np.float32)
    for j, (i, label) in enumerate(job["items"]):
        rng = np.random.default_rng([job["seed"], _TAG_SOUND, i])
        out[j] = corpus_sound(rng, names[label], n)
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
    ours = (out / INFO_FILE).is_file() or (out / _MARKER).is_file()
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
        (out / INFO_FILE).unlink(missing_ok=True)
    (out / _MARKER).write_text("written by ccl synth\n")


def generate(
    out_dir: str | Path,
    seed: int = 0,
    scale: str = "demo",
    *,
    soundtracks: str = "families",
    workers: int | None = None,
) -> SynthInfo:
    """Write the synthetic benchmark under ``out_dir`` (see the module docstring).

    ``soundtracks``: ``families`` or ``events`` (:mod:`ccl.demo.synth_audio`); the videos'
    frames do not depend on it. ``workers``: processes for rendering and encoding (default:
    up to 4 for ``demo`` and ``gpu``, none otherwise); the result does not depend on it. An
    earlier ``ccl synth`` output in ``out_dir`` is replaced."""
    if scale not in SCALES:
        raise ValueError(f"unknown scale {scale!r}; choose from {sorted(SCALES)}")
    _check_soundtracks(soundtracks)
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
    audio_of = class_audio(cfg, soundtracks)
    corpus_labels = sound_labels(soundtracks)
    # One scene per group index, shared by every class: a background never identifies a
    # class (in UCF many classes share similar scenes), and the test groups' scenes are
    # never seen in training.
    scenes = {
        g: draw_scene(np.random.default_rng([seed, _TAG_GROUP, g]), cfg)
        for g in range(1, cfg.n_groups + 1)
    }
    jobs: list[dict[str, Any]] = []
    for label in classes:
        kind, motion = split_class(label)
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
                        "soundtracks": soundtracks,
                        "register": KIND_REGISTER[kind],
                        "label": label,
                        "group": g,
                        "clip": c,
                        "subset": "test" if g <= cfg.test_groups else "train",
                        "rel": f"{label}/{name}",
                        "path": str(videos_dir / label / name),
                    }
                )

    image_labels = _balanced_labels(seed, _TAG_IMAGE, cfg.n_images, len(KINDS))
    corpus_sound_labels = _balanced_labels(seed, _TAG_SOUND, cfg.n_sounds, len(corpus_labels))
    image_jobs = [
        {"seed": seed, "scale": scale, "items": items} for items in _chunks(image_labels, 200)
    ]
    n_sound_samples = int(round(cfg.sound_seconds * SAMPLE_RATE))
    sound_jobs = [
        {"seed": seed, "n_samples": n_sound_samples, "soundtracks": soundtracks, "items": items}
        for items in _chunks(corpus_sound_labels, 50)
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
        labels=corpus_sound_labels,
        label_names=np.array(corpus_labels),
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
        info_file=out / INFO_FILE,
        seed=seed,
        scale=scale,
        soundtracks=soundtracks,
        classes=classes,
        class_audio={c: audio_of[c] for c in classes},
        related_audio_classes=related,
        unrelated_audio_classes=[c for c in classes if c not in related],
        image_label_names=list(KINDS),
        sound_label_names=list(corpus_labels),
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
    # written last, atomically: marks a complete output
    write_text_atomic(info.info_file, json.dumps(payload, indent=1))
    info.seconds = time.perf_counter() - t0
    return info
