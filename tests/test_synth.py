"""``ccl.synth``: layout, decodable videos with sound, determinism, audio relation, corpora."""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import re
from pathlib import Path

import av
import numpy as np
import pytest

from ccl.commands.synth import register as register_synth
from ccl.demo import synth, synth_audio
from ccl.demo.synth import SAMPLE_RATE, SCALES, SynthInfo, generate
from ccl.demo.synth_audio import corpus_sound, sound_labels, soundtrack

_NAME = re.compile(r"^v_([A-Za-z]+)_g(\d\d)_c(\d\d)\.avi$")


@pytest.fixture(scope="module")
def quick(tmp_path_factory: pytest.TempPathFactory) -> SynthInfo:
    return generate(tmp_path_factory.mktemp("synth_a"), seed=0, scale="quick", workers=0)


@pytest.fixture(scope="module")
def quick_again(tmp_path_factory: pytest.TempPathFactory) -> SynthInfo:
    """Same seed, written by two worker processes: must give the same content."""
    return generate(tmp_path_factory.mktemp("synth_b"), seed=0, scale="quick", workers=2)


@pytest.fixture(scope="module")
def quick_other(tmp_path_factory: pytest.TempPathFactory) -> SynthInfo:
    return generate(tmp_path_factory.mktemp("synth_c"), seed=1, scale="quick", workers=0)


@pytest.fixture
def tiny_scale(monkeypatch: pytest.MonkeyPatch) -> str:
    """A seconds-fast scale (in-process only: spawned workers would not see it)."""
    monkeypatch.setitem(SCALES, "tiny", _tiny(SCALES["quick"]))
    return "tiny"


def _tiny(cfg: synth.ScaleConfig) -> synth.ScaleConfig:
    """``cfg`` (its look and nuisances) at a seconds-fast size: one kind, 2 groups, 1 clip."""
    return dataclasses.replace(
        cfg,
        video_kinds=("disc",),
        n_groups=2,
        test_groups=1,
        clips_per_group=(1, 1),
        seconds=(2.0, 2.0),
        fps_choices=(10,),
        portrait_prob=0.0,
        n_images=16,
        n_sounds=12,
        sound_seconds=0.5,
    )


def _decode(path: Path) -> tuple[np.ndarray, np.ndarray, int, int]:
    """(frames (T,H,W,3) uint8, mono audio float32, audio rate, audio channels)."""
    with av.open(str(path)) as c:
        assert c.streams.video and c.streams.audio, f"{path}: missing stream"
        frames = np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)])
    with av.open(str(path)) as c:
        stream = c.streams.audio[0]
        rate, channels = stream.codec_context.sample_rate, stream.codec_context.channels
        parts = [f.to_ndarray().reshape(-1) for f in c.decode(stream)]
    audio = np.concatenate(parts).astype(np.float32)
    return frames, audio, rate, channels


def _split_lines(info: SynthInfo, name: str) -> list[str]:
    return (info.splits_dir / name).read_text().splitlines()


# --------------------------------------------------------------------------- layout


def test_layout_and_split_files(quick: SynthInfo) -> None:
    classes = _split_lines(quick, "classInd.txt")
    assert classes == [f"{i} {c}" for i, c in enumerate(quick.classes, start=1)]
    assert quick.classes == sorted(quick.classes) and len(quick.classes) == 6
    assert all(re.fullmatch(r"(?:[A-Z][a-z]+){2}", c) for c in quick.classes)
    index = {c: i for i, c in enumerate(quick.classes, start=1)}

    train, test = {}, {}
    for line in _split_lines(quick, "trainlist01.txt"):
        rel, idx = line.split(" ")
        folder, fname = rel.split("/")
        m = _NAME.match(fname)
        assert m and m.group(1) == folder and index[folder] == int(idx)
        train[rel] = (folder, int(m.group(2)))
    for line in _split_lines(quick, "testlist01.txt"):
        assert " " not in line
        folder, fname = line.split("/")
        m = _NAME.match(fname)
        assert m and m.group(1) == folder
        test[line] = (folder, int(m.group(2)))

    on_disk = {str(p.relative_to(quick.videos_dir)) for p in quick.videos_dir.rglob("*.avi")}
    assert on_disk == set(train) | set(test)
    assert not set(train) & set(test)
    assert len(on_disk) == quick.n_videos == quick.n_train + quick.n_test
    assert (len(train), len(test)) == (quick.n_train, quick.n_test)
    cfg = SCALES["quick"]
    for c in quick.classes:
        train_groups = {g for folder, g in train.values() if folder == c}
        test_groups = {g for folder, g in test.values() if folder == c}
        assert test_groups == set(range(1, cfg.test_groups + 1))
        assert train_groups == set(range(cfg.test_groups + 1, cfg.n_groups + 1))
    assert not list(quick.root.rglob("*.tmp"))


def test_videos_decode_with_sound(quick: SynthInfo) -> None:
    assert {v["fps"] for v in quick.videos} <= set(SCALES["quick"].fps_choices)
    lengths = set()
    for v in quick.videos:
        path = quick.videos_dir / v["file"]
        frames, audio, rate, channels = _decode(path)
        assert frames.shape == (v["n_frames"], v["height"], v["width"], 3)
        w, h = SCALES["quick"].frame_size
        assert {(v["width"], v["height"])} <= {(w, h), (h, w)}
        assert 2.0 <= v["n_frames"] / v["fps"] <= 3.0 + 1e-6
        assert rate == SAMPLE_RATE and channels == 1
        # MP2 pads the last 1152-sample frame
        assert v["n_audio_samples"] <= len(audio) <= v["n_audio_samples"] + 2 * 1152
        assert float(np.sqrt(np.mean(audio**2))) > 1e-3  # not silent
        assert frames.std() > 5  # not blank
        with av.open(str(path)) as c:
            assert c.streams.video[0].codec_context.name == "mpeg4"
            assert c.streams.video[0].codec_context.pix_fmt == "yuv420p"
        lengths.add(v["n_frames"])
    assert len(lengths) > 1  # lengths vary per video


def test_moving_object_and_nuisances_vary(quick: SynthInfo) -> None:
    colours = {tuple(v["colour"]) for v in quick.videos}
    assert len(colours) == len(quick.videos)  # colour is drawn per video, not per class
    frames, *_ = _decode(quick.videos_dir / quick.videos[0]["file"])
    assert np.abs(frames[-1].astype(int) - frames[0].astype(int)).mean() > 1  # things move


# --------------------------------------------------------------------------- determinism


def test_same_seed_same_content(quick: SynthInfo, quick_again: SynthInfo) -> None:
    for name in ("classInd.txt", "trainlist01.txt", "testlist01.txt"):
        assert (quick.splits_dir / name).read_bytes() == (
            quick_again.splits_dir / name
        ).read_bytes()
    assert quick.info_file.read_bytes() == quick_again.info_file.read_bytes()
    for a, b in (
        (quick.images_file, quick_again.images_file),
        (quick.sounds_file, quick_again.sounds_file),
    ):
        with np.load(a) as x, np.load(b) as y:
            assert sorted(x.files) == sorted(y.files)
            for key in x.files:
                np.testing.assert_array_equal(x[key], y[key])
    for v in quick.videos:
        fa, aa, *_ = _decode(quick.videos_dir / v["file"])
        fb, ab, *_ = _decode(quick_again.videos_dir / v["file"])
        np.testing.assert_array_equal(fa, fb)
        np.testing.assert_array_equal(aa, ab)


def test_different_seeds_differ(quick: SynthInfo, quick_other: SynthInfo) -> None:
    assert quick.classes == quick_other.classes
    v = quick.videos[0]["file"]
    fa, aa, *_ = _decode(quick.videos_dir / v)
    fb, ab, *_ = _decode(quick_other.videos_dir / v)
    assert fa.shape != fb.shape or not np.array_equal(fa, fb)
    assert aa.shape != ab.shape or not np.array_equal(aa, ab)
    with np.load(quick.images_file) as x, np.load(quick_other.images_file) as y:
        assert not np.array_equal(x["images"], y["images"])
    with np.load(quick.sounds_file) as x, np.load(quick_other.sounds_file) as y:
        assert not np.array_equal(x["waveforms"], y["waveforms"])


# --------------------------------------------------------------------------- audio relation


def test_related_and_unrelated_audio(quick: SynthInfo) -> None:
    assert 0.3 <= quick.unrelated_fraction <= 0.5
    assert set(quick.related_audio_classes) | set(quick.unrelated_audio_classes) == set(
        quick.classes
    )
    assert not set(quick.related_audio_classes) & set(quick.unrelated_audio_classes)
    for c in quick.classes:
        assert (quick.class_audio[c] is None) == (c in quick.unrelated_audio_classes)
    for v in quick.videos:
        event = quick.class_audio[v["label"]]
        if event is None:
            assert v["audio"] == "music"
        else:
            assert v["audio"] in ("event", "missing_event")
            if v["audio"] == "event":
                assert v["event"] == event
    saved = json.loads(quick.info_file.read_text())
    assert saved["seed"] == 0 and saved["scale"] == "quick"
    assert saved["unrelated_audio_classes"] == quick.unrelated_audio_classes
    assert saved["parameters"]["n_groups"] == SCALES["quick"].n_groups
    assert saved["videos_dir"] == "videos"


def test_demo_design() -> None:
    demo = synth.class_names("demo")
    events = synth.class_audio("demo", "events")
    assert len(demo) == 12 and set(demo) == set(events)
    unrelated = [c for c in demo if events[c] is None]
    assert len(unrelated) == 5  # about 40 %, as the 21 of 51 UCF51 classes
    used = {e for e in events.values() if e is not None}
    assert used < set(synth.EVENTS)  # the sound corpus knows events the videos never use
    related_events = [e for e in events.values() if e is not None]
    assert len(set(related_events)) < len(related_events)  # two classes share an event
    assert set(synth.class_names("quick")) < set(demo)
    for soundtracks in synth.SOUNDTRACKS:
        audio, quick_audio = (synth.class_audio(s, soundtracks) for s in ("demo", "quick"))
        assert all(quick_audio[c] == audio[c] for c in quick_audio)  # the same relation


def test_families_follow_the_motion() -> None:
    """``families``: the classes related to their audio are the same as with ``events``;
    each sounds the family of its motion, every family is shared by two or three classes
    (the attribute a teacher can relate them by), and the corpus knows every family and
    events the videos never carry."""
    families = synth.class_audio("demo")
    events = synth.class_audio("demo", "events")
    assert {c for c, f in families.items() if f is None} == {
        c for c, e in events.items() if e is None
    }
    for c, family in families.items():
        if family is not None:
            assert family == synth.MOTION_FAMILY[_motion(c)]
    shared = [list(families.values()).count(f) for f in set(families.values()) - {None}]
    assert sorted(shared) == [2, 2, 3]
    labels = sound_labels("families")
    assert set(synth.MOTION_FAMILY.values()) < set(labels) and {"music", "ambient"} < set(labels)
    assert sound_labels("events") == synth.SOUND_LABELS
    with pytest.raises(ValueError, match="unknown soundtracks"):
        synth.class_audio("demo", "speech")


def _motion(name: str) -> str:
    return next(m for m in synth.MOTIONS if name.endswith(m.capitalize()))


def test_family_register_follows_the_kind() -> None:
    """A family sounds higher for a kind of higher register: the spectral centroid of the
    same family's sound rises with the register, whatever the draw."""

    def centroid(x: np.ndarray) -> float:
        power = np.abs(np.fft.rfft(x)) ** 2
        f = np.fft.rfftfreq(len(x), 1 / SAMPLE_RATE)
        return float((power * f).sum() / power.sum())

    for family in ("impact", "scrape", "whirr"):
        low, high = (
            centroid(synth_audio._family(np.random.default_rng(4), family, 16000, r))
            for r in (0.0, 24.0)
        )
        assert high > 2.0 * low, (family, low, high)


def test_events_soundtracks_are_unchanged() -> None:
    """``events`` draws exactly as it always did, so benchmarks written with it stay
    reproducible: digests of a soundtrack and a corpus clip for fixed generators."""

    def digest(x: np.ndarray) -> str:
        return hashlib.sha256(np.round(x, 4).tobytes()).hexdigest()[:16]

    chirp, info = soundtrack(np.random.default_rng(5), "chirp_up", 8000)
    assert info == {"audio": "event", "event": "chirp_up", "snr_db": 14.54}
    assert digest(chirp) == "867a5a9a78dbe25b"
    assert digest(soundtrack(np.random.default_rng(5), None, 8000)[0]) == "0eb327923496d473"
    assert digest(corpus_sound(np.random.default_rng(7), "hiss", 8000)) == "e9407f1649fb2ca5"


def test_soundtracks_change_the_sound_not_the_pictures(tmp_path: Path, tiny_scale: str) -> None:
    families = generate(tmp_path / "f", seed=2, scale=tiny_scale)
    events = generate(tmp_path / "e", seed=2, scale=tiny_scale, soundtracks="events")
    assert (families.soundtracks, events.soundtracks) == ("families", "events")
    assert json.loads(events.info_file.read_text())["soundtracks"] == "events"
    assert events.sound_label_names == list(synth.SOUND_LABELS)
    assert families.sound_label_names == list(sound_labels("families"))
    for v in families.videos:
        fa, aa, *_ = _decode(families.videos_dir / v["file"])
        fb, ab, *_ = _decode(events.videos_dir / v["file"])
        np.testing.assert_array_equal(fa, fb)
        assert aa.shape == ab.shape and not np.array_equal(aa, ab)
        if v["audio"] == "event":  # the kind's register, jittered by at most a semitone
            assert abs(v["register"] - synth.KIND_REGISTER["disc"]) <= 1.0
    cfg = SCALES["demo"]
    assert set(cfg.video_kinds) < set(synth.KINDS)
    # enough videos to decide and to separate methods (UCF split 1: 7 of 25 groups test)
    assert cfg.n_groups == 25 and cfg.test_groups == 7
    assert 12 * cfg.test_groups * cfg.clips_per_group[0] >= 250
    # corpus objects are larger than the videos' (object-centric images: a domain gap)
    assert cfg.image_object_radius[0] > cfg.object_radius[0]


def test_scenes_are_shared_by_every_class_of_a_group(quick: SynthInfo) -> None:
    """A background never identifies a class: group g's scene is the same for every class,
    so in training each scene appears with every class."""
    first_frames: dict[int, list[np.ndarray]] = {}
    by_group: dict[int, list[dict]] = {}
    for v in quick.videos:
        by_group.setdefault(v["group"], []).append(v)
    for g, videos in by_group.items():
        assert {v["label"] for v in videos} == set(quick.classes)
        landscape = [v for v in videos if v["width"] > v["height"]]
        assert len(landscape) >= 2
        first_frames[g] = [_decode(quick.videos_dir / v["file"])[0][0] for v in landscape]
    # every video of a group looks like its group's median frame (the shared background)
    # more than like another group's
    medians = {g: np.median(np.stack(f), axis=0) for g, f in first_frames.items()}

    def distance(x: np.ndarray, y: np.ndarray) -> float:
        return float(np.abs(x.astype(float) - y.astype(float)).mean())

    groups = sorted(medians)
    closer = [
        distance(f, medians[g]) < min(distance(f, medians[h]) for h in groups if h != g)
        for g, frames in first_frames.items()
        for f in frames
    ]
    assert np.mean(closer) >= 0.9, closer


# --------------------------------------------------------------------------- corpora


def test_corpora(quick: SynthInfo) -> None:
    cfg = SCALES["quick"]
    with np.load(quick.images_file) as d:
        images, labels, names = d["images"], d["labels"], d["label_names"]
    assert images.shape == (cfg.n_images, cfg.image_size, cfg.image_size, 3)
    assert images.dtype == np.uint8 and labels.dtype == np.int64
    assert list(names) == list(synth.KINDS) == quick.image_label_names
    assert len(names) > len(cfg.video_kinds)  # more kinds than the videos show
    assert set(np.unique(labels)) == set(range(len(names)))
    assert np.bincount(labels).max() - np.bincount(labels).min() <= 1

    with np.load(quick.sounds_file) as d:
        waves, labels, names, rate = d["waveforms"], d["labels"], d["label_names"], d["sample_rate"]
    assert int(rate) == SAMPLE_RATE == quick.sample_rate
    assert waves.shape == (cfg.n_sounds, int(cfg.sound_seconds * SAMPLE_RATE))
    assert waves.dtype == np.float32 and np.abs(waves).max() <= 1.0
    assert labels.dtype == np.int64
    assert list(names) == list(sound_labels("families")) == quick.sound_label_names
    assert set(np.unique(labels)) == set(range(len(names)))
    assert (np.sqrt((waves**2).mean(axis=1)) > 1e-3).all()
    assert quick.n_images == cfg.n_images and quick.n_sounds == cfg.n_sounds


# --------------------------------------------------------------------------- reruns and CLI


def test_rerun_replaces_and_foreign_folder_is_refused(tmp_path: Path, tiny_scale: str) -> None:
    a = generate(tmp_path / "out", seed=3, scale=tiny_scale)
    stale = a.videos_dir / "Stale" / "v_Stale_g01_c01.avi"
    stale.parent.mkdir()
    stale.write_bytes(b"")
    b = generate(tmp_path / "out", seed=3, scale=tiny_scale)
    assert not stale.exists() and b.n_videos == a.n_videos == 4

    foreign = tmp_path / "foreign"
    (foreign / "videos").mkdir(parents=True)
    with pytest.raises(FileExistsError):
        generate(foreign, seed=0, scale=tiny_scale)
    with pytest.raises(ValueError):
        generate(tmp_path / "x", scale="huge")


def test_cli(tmp_path: Path, tiny_scale: str, capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser(prog="ccl")
    register_synth(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["synth", "--out", str(tmp_path), "--seed", "2"])
    assert (args.scale, args.seed) == ("demo", 2)
    args = parser.parse_args(["synth", "--out", str(tmp_path), "--scale", tiny_scale])
    assert args.func(args) == 0
    assert "4 videos" in capsys.readouterr().out
    assert (tmp_path / "splits" / "testlist01.txt").is_file()
    with pytest.raises(SystemExit):
        parser.parse_args(["synth", "--out", str(tmp_path), "--scale", "nope"])


def test_prepare_and_ucf101_annotations_read_the_output(quick: SynthInfo, tmp_path: Path) -> None:
    """The output goes through ``ccl prepare videos`` and the UCF101 annotation builder."""
    prepare = pytest.importorskip("ccl.data.prepare")
    splits = pytest.importorskip("ccl.data.splits")
    report = prepare.prepare_videos(
        quick.videos_dir, tmp_path / "stores", short_side=None, audio=True, progress=False
    )
    assert report.ok, report.summary()
    ann = splits.build_ucf101(quick.splits_dir, tmp_path / "stores")
    assert ann.labels == quick.classes
    subsets = [row["subset"] for row in ann.database.values()]
    assert subsets.count("testing") == quick.n_test
    assert len(subsets) == quick.n_videos


def test_gpu_scale_is_the_demo_with_nuisances_and_is_deterministic(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gpu, demo = SCALES["gpu"], SCALES["demo"]
    # the same classes and audio relation as the CPU demo, more clips, the nuisances on
    assert synth.class_names("gpu") == synth.class_names("demo")
    assert synth.class_audio("gpu") == synth.class_audio("demo")
    assert gpu.clips_per_group[0] > demo.clips_per_group[0]
    assert "texture" in gpu.scene_styles and gpu.distractors >= 1
    assert gpu.jitter > 0 and gpu.flicker > 0
    monkeypatch.setitem(SCALES, "tiny_gpu", _tiny(gpu))
    a = generate(tmp_path / "a", seed=3, scale="tiny_gpu", workers=0)
    b = generate(tmp_path / "b", seed=3, scale="tiny_gpu", workers=0)
    assert a.info_file.read_bytes() == b.info_file.read_bytes()
    assert len(a.videos) == 6
    for v in a.videos:
        fa, aa, *_ = _decode(a.videos_dir / v["file"])
        fb, ab, *_ = _decode(b.videos_dir / v["file"])
        np.testing.assert_array_equal(fa, fb)
        np.testing.assert_array_equal(aa, ab)
