"""Class structure of a teacher's embeddings (ccl.demo.structure): exact mean cosines by
class pair, checked by hand and against a double loop; groups by attribute; the readers of
a demo folder, an annotated feature folder and UCF101-named files; the benchmark script."""

import json
import math
from pathlib import Path

import numpy as np
import pytest
from benchmark_scripts import load_script

from ccl.demo.structure import (
    DIFFERENT,
    SAME,
    UNRELATED,
    annotated_embeddings,
    attribute_pair_groups,
    class_similarity,
    demo_structure,
    format_summary,
    summarize,
    ucf_named_embeddings,
)

R2 = math.sqrt(2.0)

# A: (1,0), (0,1)   B: (2,2), (3,0), (0,5)   C: (-1,0) -- lengths differ on purpose
HAND_X = np.array([[1, 0], [0, 1], [2, 2], [3, 0], [0, 5], [-1, 0]], dtype=np.float32)
HAND_Y = [0, 0, 1, 1, 1, 2]
# cosines: A-A 0; B-B (1/R2 + 1/R2 + 0) / 3; A-B (1/R2 + 1 + 0 + 1/R2 + 0 + 1) / 6;
# A-C (-1 + 0) / 2; B-C (-1/R2 - 1 + 0) / 3; C-C has no distinct pair
AA, BB, AB, AC, BC = 0.0, R2 / 3, (2 + R2) / 6, -0.5, -(1 + 1 / R2) / 3


def test_class_similarity_by_hand():
    sim = class_similarity(HAND_X, HAND_Y)
    expected = np.array([[AA, AB, AC], [AB, BB, BC], [AC, BC, np.nan]])
    np.testing.assert_allclose(sim, expected, rtol=0, atol=1e-12)
    assert np.isnan(sim[2, 2])  # one video: no within-class value


def _slow(x: np.ndarray, y: np.ndarray, n_classes: int) -> np.ndarray:
    out = np.full((n_classes, n_classes), np.nan)
    for a in range(n_classes):
        for b in range(n_classes):
            total, pairs = 0.0, 0
            for i in range(len(y)):
                for j in range(len(y)):
                    if y[i] != a or y[j] != b or i == j:
                        continue
                    total += float(x[i] @ x[j]) / float(np.linalg.norm(x[i]) * np.linalg.norm(x[j]))
                    pairs += 1
            if pairs:
                out[a, b] = total / pairs
    return out


def test_class_similarity_matches_the_double_loop():
    rng = np.random.default_rng(3)
    y = np.concatenate([rng.integers(0, 4, 37), [4]])  # class 4 has one video, class 5 none
    x = rng.normal(size=(len(y), 6)) + rng.normal(size=(5, 6))[y]  # class-dependent means
    fast = class_similarity(x, y, num_classes=6)
    np.testing.assert_allclose(fast, _slow(x, y, 6), rtol=0, atol=1e-12)
    assert np.isnan(fast[5]).all() and np.isnan(fast[:, 5]).all() and np.isnan(fast[4, 4])
    np.testing.assert_array_equal(fast, fast.T)


@pytest.mark.parametrize(
    "x, y, match",
    [
        (HAND_X, HAND_Y[:-1], "one label per row"),
        (HAND_X, [0, 0, 1, 1, 1, -1], "labels range"),
        (HAND_X, [0.0] * 6, "integers"),
        (np.zeros((2, 3)), [0, 1], "all zero"),
        (np.array([[1.0, np.nan]]), [0], "non-finite"),
        (np.ones(3), [0, 0, 0], r"\(N, D\)"),
    ],
)
def test_class_similarity_refuses_bad_input(x, y, match):
    with pytest.raises(ValueError, match=match):
        class_similarity(x, y)
    with pytest.raises(ValueError, match="labels range"):
        class_similarity(HAND_X, HAND_Y, num_classes=2)


def test_summary_by_hand():
    sim = class_similarity(HAND_X, HAND_Y)
    groups = {"near": [("B", "A")], "far": [("A", "C"), ("C", "B")], "none": []}
    s = summarize(sim, ["A", "B", "C"], groups, k=2, videos=6)
    # within: A and B only (C has one video)
    assert (s.within.n, s.no_within) == (2, ["C"])
    assert s.within.mean == pytest.approx(BB / 2, abs=1e-12)
    assert s.within.sd == pytest.approx(BB / 2, abs=1e-12)  # two values: half their gap
    assert (s.within.min, s.within.max) == pytest.approx((0.0, BB), abs=1e-12)
    between = np.array([AB, AC, BC])
    assert s.between.n == 3
    assert s.between.mean == pytest.approx(between.mean(), abs=1e-12)
    assert s.between.sd == pytest.approx(between.std(), abs=1e-12)
    assert (s.between.min, s.between.max) == pytest.approx((BC, AB), abs=1e-12)
    near, far, none = s.groups
    assert (near.name, near.n, near.sd) == ("near", 1, 0.0)
    assert near.mean == pytest.approx(AB, abs=1e-12)
    assert far.mean == pytest.approx((AC + BC) / 2, abs=1e-12)
    assert none.n == 0 and math.isnan(none.mean)
    assert [(p.a, p.b, p.group) for p in s.closest] == [("A", "B", "near"), ("A", "C", "far")]
    assert s.closest[0].similarity == pytest.approx(AB, abs=1e-12)
    text = format_summary(s, title="hand")
    assert "| within a class | 2 classes | 0.236 | 0.236 | 0.000 - 0.471 |" in text
    assert "| none | 0 class pairs | - | - | - |" in text
    assert "1. A - B: 0.569 (near)" in text and "fewer than two videos): C." in text
    json.dumps(s.to_dict())  # JSON-ready
    with pytest.raises(ValueError, match="not a pair"):
        summarize(sim, ["A", "B", "C"], {"bad": [("A", "A")]})
    with pytest.raises(ValueError, match="shape"):
        summarize(sim, ["A", "B"])


def test_attribute_pair_groups():
    attribute = {"A": "x", "B": "x", "C": "y", "D": None, "E": None}
    groups = attribute_pair_groups(["A", "B", "C", "D", "E"], attribute)
    assert groups[SAME] == [("A", "B")]
    assert groups[DIFFERENT] == [("A", "C"), ("B", "C")]
    # two unrelated classes are not "the same sound" even though both are None
    assert groups[UNRELATED] == [
        ("A", "D"),
        ("A", "E"),
        ("B", "D"),
        ("B", "E"),
        ("C", "D"),
        ("C", "E"),
        ("D", "E"),
    ]
    with pytest.raises(ValueError, match="Z"):
        attribute_pair_groups(["A", "Z"], attribute)


# ----------------------------------------------------------------------------- folders


def _write(root: Path, vectors: dict[str, tuple[str, list[float]]]) -> Path:
    for video_id, (cls, v) in vectors.items():
        (root / cls).mkdir(parents=True, exist_ok=True)
        np.save(root / cls / f"{video_id}.npy", np.asarray(v, np.float32))
    return root


def _demo(tmp_path: Path) -> Path:
    """A demo folder: 3 classes, A and B with the same sound, C unrelated; C's training
    video has a (T, D) embedding whose mean is used; one testing video per class."""
    demo = tmp_path / "demo"
    vectors = {
        "v_A_g08_c01": ("A", [1, 0]),
        "v_A_g09_c01": ("A", [0, 1]),
        "v_B_g08_c01": ("B", [2, 2]),
        "v_B_g09_c01": ("B", [3, 0]),
        "v_B_g10_c01": ("B", [0, 5]),
        "v_C_g08_c01": ("C", [[-1, 0], [-3, 0]]),
        "v_A_g01_c01": ("A", [5, 5]),
        "v_B_g01_c01": ("B", [5, 5]),
        "v_C_g01_c01": ("C", [5, 5]),
    }
    _write(demo / "audio_features", vectors)
    database = {
        vid: {
            "subset": "testing" if "_g01_" in vid else "training",
            "annotations": {"label": cls, "segment": [1, 8]},
        }
        for vid, (cls, _) in vectors.items()
    }
    database["v_C_g09_c01"] = {
        "subset": "training",
        "annotations": {"label": "C", "segment": [1, 8]},
    }
    (demo / "annotations.json").write_text(
        json.dumps({"labels": ["A", "B", "C"], "database": database})
    )
    (demo / "synth").mkdir()
    info = {"class_audio": {"A": "impact", "B": "impact", "C": None}}
    (demo / "synth" / "synth_info.json").write_text(json.dumps(info))
    return demo


def test_demo_structure_reads_the_training_videos(tmp_path):
    demo = _demo(tmp_path)
    s = demo_structure(demo)
    assert s.videos == 6 and s.no_within == ["C"]  # the test videos left out
    same, different, unrelated = s.groups
    assert (same.name, same.n, different.n, unrelated.n) == (SAME, 1, 0, 2)
    assert same.mean == pytest.approx(AB, abs=1e-6)
    assert unrelated.mean == pytest.approx((AC + BC) / 2, abs=1e-6)
    assert s.attribute == {"A": "impact", "B": "impact", "C": None}
    # another generator's attribute plugs in: A and B now differ
    s = demo_structure(demo, attribute={"A": "scrape", "B": "whirr", "C": None})
    assert [g.n for g in s.groups] == [0, 1, 2]
    labelled = annotated_embeddings(demo / "annotations.json", demo / "audio_features")
    assert labelled.missing == ["v_C_g09_c01"]
    test = annotated_embeddings(demo / "annotations.json", demo / "audio_features", "testing")
    assert test.video_ids == ["v_A_g01_c01", "v_B_g01_c01", "v_C_g01_c01"]


def test_ucf_named_embeddings_split_by_group(tmp_path):
    root = _write(
        tmp_path / "feats",
        {
            "v_HandStandPushups_g08_c01": ("HandstandPushups", [1, 0]),  # UCF101's own case
            "v_HandStandPushups_g07_c02": ("HandstandPushups", [0, 1]),
            "v_Archery_g25_c01": ("Archery", [1, 1]),
            "v_Archery_g01_c01": ("Archery", [2, 1]),
        },
    )
    train = ucf_named_embeddings(root, "train")
    assert train.classes == ["Archery", "HandStandPushups"]
    assert sorted(train.video_ids) == ["v_Archery_g25_c01", "v_HandStandPushups_g08_c01"]
    test = ucf_named_embeddings(root, "test")
    assert sorted(test.video_ids) == ["v_Archery_g01_c01", "v_HandStandPushups_g07_c02"]
    assert test.classes == train.classes
    assert len(ucf_named_embeddings(root, "all").y) == 4
    np.save(root / "Archery" / "clip3.npy", np.ones(2, np.float32))
    with pytest.raises(ValueError, match="clip3"):
        ucf_named_embeddings(root)


def test_benchmark_script(tmp_path, capsys):
    script = load_script("teacher_structure")
    rng = np.random.default_rng(0)
    vectors = {
        f"v_{cls}_g{g:02d}_c01": (cls, list(rng.normal(size=4) + 3 * np.eye(4)[i]))
        for i, cls in enumerate(["Ab", "Cd", "Ef"])
        for g in (1, 2, 8, 9, 10)
    }
    root = _write(tmp_path / "feats", vectors)
    script.main(["--features", str(root), "--ucf-names", "--k", "2"])
    out = capsys.readouterr().out
    assert "9 videos, 3 classes" in out and "linear probe" in out and "6 test videos" in out
    script.main(["--demo", str(_demo(tmp_path))])
    out = capsys.readouterr().out
    assert f"| {SAME} | 1 class pairs |" in out and "linear probe" in out
    script.main(["--features", str(root), "--ucf-names", "--subset", "all", "--no-probe"])
    out = capsys.readouterr().out
    assert "15 videos, 3 classes" in out and "linear probe" not in out
    with pytest.raises(SystemExit):
        script.main(["--features", str(root)])  # labels from nowhere
