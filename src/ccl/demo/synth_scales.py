"""The benchmark's scales (docs/DEMO.md, "Scales"): sizes and nuisance levels of each one,
read by the generator (:mod:`ccl.demo.synth`) and the scene drawing
(:mod:`ccl.demo.synth_video`)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

__all__ = ["SCALES", "ScaleConfig"]


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
