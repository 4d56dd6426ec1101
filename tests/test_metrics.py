"""Tests for ccl.metrics: brute-force references, hand-made cases and invariants."""

from __future__ import annotations

import math

import pytest
import torch
from torch.overrides import TorchFunctionMode

from ccl.metrics import (
    aggregate_features,
    aggregate_windows,
    confusion_matrix,
    mean_class_accuracy,
    retrieval_map,
    retrieval_ranks,
    retrieval_recall,
    topk_accuracy,
)

SEEDS = [0, 1, 2, 3]


# --------------------------------------------------------------------------- brute force references


def _ranked(scores: list[float], allowed: list[int]) -> list[int]:
    """Indices in ``allowed`` by descending score, ties to the lower index."""
    return sorted(allowed, key=lambda i: (-scores[i], i))


def bf_topk(logits: torch.Tensor, labels: torch.Tensor, ks) -> dict[int, float]:
    rows, lab = logits.tolist(), labels.tolist()
    out = {}
    for k in ks:
        hits = sum(lab[i] in _ranked(r, list(range(len(r))))[:k] for i, r in enumerate(rows))
        out[k] = hits / len(rows)
    return out


def bf_cosine(a: list[float], b: list[float]) -> float:
    na = math.sqrt(sum(x * x for x in a))
    nb = math.sqrt(sum(x * x for x in b))
    if na == 0 or nb == 0:
        return 0.0
    return sum(x * y for x, y in zip(a, b)) / (na * nb)


def bf_rankings(qf, ql, gf, gl, exclude_self=False) -> list[list[bool]]:
    """Per query: relevance of the gallery items in ranked order."""
    qf, ql, gf, gl = qf.tolist(), ql.tolist(), gf.tolist(), gl.tolist()
    out = []
    for i, q in enumerate(qf):
        scores = [bf_cosine(q, g) for g in gf]
        allowed = [j for j in range(len(gf)) if not (exclude_self and j == i)]
        out.append([gl[j] == ql[i] for j in _ranked(scores, allowed)])
    return out


def bf_recall(qf, ql, gf, gl, ks, exclude_self=False) -> dict[int, float]:
    ranked = bf_rankings(qf, ql, gf, gl, exclude_self)
    return {k: sum(any(r[:k]) for r in ranked) / len(ranked) for k in ks}


def bf_map(qf, ql, gf, gl, exclude_self=False) -> float:
    aps = []
    for rel in bf_rankings(qf, ql, gf, gl, exclude_self):
        hits, precisions = 0, []
        for pos, is_rel in enumerate(rel, start=1):
            if is_rel:
                hits += 1
                precisions.append(hits / pos)
        aps.append(sum(precisions) / len(precisions) if precisions else 0.0)
    return sum(aps) / len(aps)


def bf_confusion(preds, labels, c) -> list[list[int]]:
    cm = [[0] * c for _ in range(c)]
    for p, t in zip(preds.tolist(), labels.tolist()):
        cm[t][p] += 1
    return cm


# --------------------------------------------------------------------------- data helpers


def _axis_feats(gen: torch.Generator, n: int, dim: int) -> torch.Tensor:
    """Signed, scaled one-hot rows: cosine scores are exactly -1, 0 or 1 (many exact ties)."""
    feats = torch.zeros(n, dim, dtype=torch.float64)
    axis = torch.randint(0, dim, (n,), generator=gen)
    sign = torch.randint(0, 2, (n,), generator=gen).double() * 2 - 1
    scale = 2.0 ** torch.randint(-2, 3, (n,), generator=gen).double()
    feats[torch.arange(n), axis] = sign * scale
    return feats


def _retrieval_data(seed: int, ties: bool):
    gen = torch.Generator().manual_seed(seed)
    nq, ng, dim, ncls = 23, 41, 3 if ties else 8, 6
    if ties:
        qf, gf = _axis_feats(gen, nq, dim), _axis_feats(gen, ng, dim)
    else:
        qf = torch.randn(nq, dim, generator=gen, dtype=torch.float64)
        gf = torch.randn(ng, dim, generator=gen, dtype=torch.float64)
    ql = torch.randint(0, ncls + 2, (nq,), generator=gen)  # labels ncls, ncls+1: no gallery item
    gl = torch.randint(0, ncls, (ng,), generator=gen)
    return qf, ql, gf, gl


# --------------------------------------------------------------------------- top-k accuracy


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("ties", [False, True])
def test_topk_matches_brute_force(seed, ties):
    gen = torch.Generator().manual_seed(seed)
    n, c = 57, 9
    if ties:  # few distinct values: many exact ties
        logits = torch.randint(0, 3, (n, c), generator=gen).double()
    else:
        logits = torch.randn(n, c, generator=gen, dtype=torch.float64)
    labels = torch.randint(0, c, (n,), generator=gen)
    ks = (1, 2, 3, 5, 9, 12)
    assert topk_accuracy(logits, labels, ks) == bf_topk(logits, labels, ks)


def test_topk_ties_lower_index_first():
    logits = torch.tensor([[1.0, 3.0, 3.0, 3.0, 0.0]] * 4)
    labels = torch.tensor([1, 2, 3, 0])
    # ranks under the rule: class 1 -> 0, class 2 -> 1, class 3 -> 2, class 0 -> 3
    assert topk_accuracy(logits, labels, ks=(1, 2, 3, 4)) == {1: 0.25, 2: 0.5, 3: 0.75, 4: 1.0}
    # the same result on every call, also with the tied columns far apart
    wide = torch.zeros(2, 1000)
    wide[:, [7, 500, 999]] = 1.0
    for _ in range(3):
        res = topk_accuracy(wide, torch.tensor([500, 999]), ks=(1, 2, 3))
        assert res == {1: 0.0, 2: 0.5, 3: 1.0}


def test_topk_k_larger_than_classes_is_clamped():
    logits = torch.tensor([[0.1, 0.9, 0.0], [0.5, 0.2, 0.3]])
    labels = torch.tensor([2, 1])
    assert topk_accuracy(logits, labels, ks=(1, 3, 5, 100)) == {1: 0.0, 3: 1.0, 5: 1.0, 100: 1.0}


@pytest.mark.parametrize("seed", SEEDS)
def test_topk_invariants(seed):
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn(64, 10, generator=gen)
    labels = torch.randint(0, 10, (64,), generator=gen)
    acc = topk_accuracy(logits, labels, ks=(1, 5))
    assert 0.0 <= acc[1] <= acc[5] <= 1.0
    assert acc[1] < 1.0  # random labels
    assert topk_accuracy(logits, logits.argmax(dim=1)) == {1: 1.0, 5: 1.0}


def test_topk_validation():
    with pytest.raises(ValueError, match="non-empty"):
        topk_accuracy(torch.zeros(0, 5), torch.zeros(0, dtype=torch.long))
    with pytest.raises(ValueError, match="length mismatch"):
        topk_accuracy(torch.zeros(3, 5), torch.zeros(2, dtype=torch.long))
    with pytest.raises(ValueError, match="2-D"):
        topk_accuracy(torch.zeros(5), torch.zeros(5, dtype=torch.long))
    with pytest.raises(ValueError, match="range|lie in"):
        topk_accuracy(torch.zeros(2, 5), torch.tensor([0, 5]))
    with pytest.raises(ValueError, match="positive"):
        topk_accuracy(torch.zeros(2, 5), torch.tensor([0, 1]), ks=(0,))
    with pytest.raises(ValueError, match="integer"):
        topk_accuracy(torch.zeros(2, 5), torch.tensor([0.0, 1.0]))


# --------------------------------------------------------------------------- class accuracy


@pytest.mark.parametrize("seed", SEEDS)
def test_confusion_matrix_matches_brute_force(seed):
    gen = torch.Generator().manual_seed(seed)
    preds = torch.randint(0, 7, (80,), generator=gen)
    labels = torch.randint(0, 7, (80,), generator=gen)
    cm = confusion_matrix(preds, labels, 7)
    assert cm.dtype == torch.long
    assert cm.tolist() == bf_confusion(preds, labels, 7)


def test_confusion_matrix_orientation_and_validation():
    cm = confusion_matrix(torch.tensor([1, 1, 2]), torch.tensor([0, 1, 1]), 3)
    assert cm.tolist() == [[0, 1, 0], [0, 1, 1], [0, 0, 0]]  # rows = true, cols = predicted
    empty = torch.zeros(0, dtype=torch.long)
    assert confusion_matrix(empty, empty, 2).tolist() == [[0, 0], [0, 0]]
    with pytest.raises(ValueError, match="length mismatch"):
        confusion_matrix(torch.tensor([0, 1]), torch.tensor([0]), 2)
    with pytest.raises(ValueError, match="lie in"):
        confusion_matrix(torch.tensor([0, 2]), torch.tensor([0, 1]), 2)


def test_mean_class_accuracy_hand_made():
    labels = torch.tensor([0, 0, 1, 1, 1])
    preds = torch.tensor([0, 1, 1, 1, 0])
    logits = torch.nn.functional.one_hot(preds, 4).float()
    mean, per_class = mean_class_accuracy(logits, labels, 4)
    assert per_class.shape == (4,)
    assert per_class[:2].tolist() == pytest.approx([0.5, 2 / 3])
    assert torch.isnan(per_class[2:]).all()
    assert mean == pytest.approx((0.5 + 2 / 3) / 2)  # not the overall accuracy 3/5


def test_mean_class_accuracy_tie_goes_to_lower_index():
    logits = torch.tensor([[0.0, 2.0, 2.0], [0.0, 2.0, 2.0]])
    mean, per_class = mean_class_accuracy(logits, torch.tensor([1, 2]), 3)
    assert per_class[1].item() == 1.0 and per_class[2].item() == 0.0
    assert mean == 0.5


@pytest.mark.parametrize("seed", SEEDS)
def test_mean_class_accuracy_matches_brute_force(seed):
    gen = torch.Generator().manual_seed(seed)
    c = 8
    logits = torch.randint(0, 4, (60, c), generator=gen).double()  # with ties
    labels = torch.randint(0, c - 2, (60,), generator=gen)  # classes 6, 7 absent
    mean, per_class = mean_class_accuracy(logits, labels, c)
    rows = logits.tolist()
    preds = [_ranked(r, list(range(c)))[0] for r in rows]
    expected = []
    for cls in range(c):
        idx = [i for i, t in enumerate(labels.tolist()) if t == cls]
        expected.append(sum(preds[i] == cls for i in idx) / len(idx) if idx else None)
    for got, exp in zip(per_class.tolist(), expected):
        if exp is None:
            assert math.isnan(got)
        else:
            assert got == pytest.approx(exp, abs=1e-12)
    present = [e for e in expected if e is not None]
    assert mean == pytest.approx(sum(present) / len(present), abs=1e-12)


def test_mean_class_accuracy_validation():
    with pytest.raises(ValueError, match="non-empty"):
        mean_class_accuracy(torch.zeros(0, 3), torch.zeros(0, dtype=torch.long), 3)
    with pytest.raises(ValueError, match="num_classes"):
        mean_class_accuracy(torch.zeros(2, 3), torch.tensor([0, 1]), 4)


# --------------------------------------------------------------------------- window aggregation


def test_aggregate_windows_hand_made():
    log3 = math.log(3.0)
    logits = torch.tensor([[0.0, 0.0], [5.0, 5.0], [log3, 0.0], [0.0, log3]], dtype=torch.float64)
    video_index = torch.tensor([0, 2, 0, 1])  # windows of video 0 are not contiguous
    out = aggregate_windows(logits, video_index, 3)
    assert out.shape == (3, 2)
    # mean of per-window softmaxes ([.5,.5] and [.75,.25]); softmax of the mean would be .634
    expected = torch.tensor([[0.625, 0.375], [0.25, 0.75], [0.5, 0.5]], dtype=torch.float64)
    torch.testing.assert_close(out, expected)


@pytest.mark.parametrize("seed", SEEDS)
def test_aggregate_windows_matches_brute_force(seed):
    gen = torch.Generator().manual_seed(seed)
    nv, c = 5, 4
    video_index = torch.cat([torch.arange(nv), torch.randint(0, nv, (11,), generator=gen)])
    logits = torch.randn(len(video_index), c, generator=gen, dtype=torch.float64) * 3
    out = aggregate_windows(logits, video_index, nv)
    for v in range(nv):
        probs = []
        for row, vid in zip(logits.tolist(), video_index.tolist()):
            if vid == v:
                z = sum(math.exp(x) for x in row)
                probs.append([math.exp(x) / z for x in row])
        mean = [sum(col) / len(probs) for col in zip(*probs)]
        assert out[v].tolist() == pytest.approx(mean, abs=1e-12)


def test_aggregate_features_mean_then_normalise():
    feats = torch.tensor([[2.0, 0.0], [0.0, 1.0], [0.0, -3.0]], dtype=torch.float64)
    out = aggregate_features(feats, torch.tensor([0, 0, 1]), 2)
    # mean [1, .5] normalised; normalising the windows first would give [.707, .707]
    expected = torch.tensor([[2.0, 1.0], [0.0, -1.0]], dtype=torch.float64)
    expected[0] /= math.sqrt(5.0)
    torch.testing.assert_close(out, expected)


@pytest.mark.parametrize("fn", [aggregate_windows, aggregate_features])
def test_aggregate_missing_video_raises(fn):
    x = torch.randn(4, 3)
    with pytest.raises(ValueError, match=r"2 of 5 videos have no window: \[1, 3\]"):
        fn(x, torch.tensor([0, 2, 4, 0]), 5)
    with pytest.raises(ValueError, match="length mismatch"):
        fn(x, torch.tensor([0, 1, 2]), 3)
    with pytest.raises(ValueError, match="lie in"):
        fn(x, torch.tensor([0, 1, 2, 3]), 3)


# --------------------------------------------------------------------------- retrieval


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("exclude_self", [False, True])
def test_retrieval_matches_brute_force(seed, ties, exclude_self):
    qf, ql, gf, gl = _retrieval_data(seed, ties)
    if exclude_self:
        qf, ql = gf, gl.clone()
        ql[::5] = 99  # some queries without a relevant item
    ks = (1, 2, 5, 10, 40, 41, 100)
    expected = bf_recall(qf, ql, gf, gl, ks, exclude_self)
    for chunk in (1, 7, 1024):
        got = retrieval_recall(qf, ql, gf, gl, ks, chunk_size=chunk, exclude_self=exclude_self)
        assert got == expected
        ap = retrieval_map(qf, ql, gf, gl, chunk_size=chunk, exclude_self=exclude_self)
        assert ap == pytest.approx(bf_map(qf, ql, gf, gl, exclude_self), abs=1e-12)


@pytest.mark.parametrize("seed", SEEDS)
def test_retrieval_invariants(seed):
    gen = torch.Generator().manual_seed(seed)
    qf, gf = torch.randn(50, 16, generator=gen), torch.randn(300, 16, generator=gen)
    ql, gl = torch.randint(0, 10, (50,), generator=gen), torch.randint(0, 10, (300,), generator=gen)
    ks = (1, 5, 10, 20, 50)
    rec = retrieval_recall(qf, ql, gf, gl, ks)
    values = [rec[k] for k in ks]
    assert values == sorted(values)
    assert values[0] < 1.0
    assert rec == retrieval_recall(qf, ql, gf, gl, ks, chunk_size=1)
    assert retrieval_map(qf, ql, gf, gl, chunk_size=1) == pytest.approx(
        retrieval_map(qf, ql, gf, gl, chunk_size=10_000), rel=1e-12
    )
    # the scale of a feature does not matter (cosine similarity)
    assert rec == retrieval_recall(qf * 3.0, ql, gf * 0.5, gl, ks)


def test_retrieval_ties_lower_gallery_index_first():
    q = torch.tensor([[1.0, 0.0]])
    gallery = torch.tensor([[2.0, 0.0], [1.0, 0.0], [0.0, 1.0]])  # items 0 and 1 tie at 1.0
    ql = torch.tensor([7])
    assert retrieval_recall(q, ql, gallery, torch.tensor([3, 7, 7]), ks=(1, 2)) == {1: 0.0, 2: 1.0}
    assert retrieval_map(q, ql, gallery, torch.tensor([3, 7, 7])) == pytest.approx(
        (1 / 2 + 2 / 3) / 2
    )
    assert retrieval_recall(q, ql, gallery, torch.tensor([7, 3, 3]), ks=(1,)) == {1: 1.0}
    assert retrieval_map(q, ql, gallery, torch.tensor([7, 3, 3])) == 1.0


def test_retrieval_ranks_per_query():
    q = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    gallery = torch.tensor([[2.0, 0.0], [1.0, 0.0], [0.0, 1.0]])  # items 0 and 1 tie for q0
    ql, gl = torch.tensor([7, 7, 5]), torch.tensor([3, 7, 7])
    # q0: item 1 (relevant) ranks behind item 0 (tie, lower index); q1: item 2 first;
    # q2: no label-5 item in the gallery -> rank G
    assert retrieval_ranks(q, ql, gallery, gl).tolist() == [1, 0, 3]
    assert retrieval_ranks(q, ql, gallery, gl, chunk_size=1).tolist() == [1, 0, 3]
    assert retrieval_recall(q, ql, gallery, gl, ks=(1, 2, 9)) == {1: 1 / 3, 2: 2 / 3, 9: 2 / 3}


def test_retrieval_class_absent_from_gallery():
    gallery = torch.eye(3)
    gl = torch.tensor([0, 1, 2])
    queries = torch.eye(3)[:2]
    ql = torch.tensor([0, 5])  # label 5 is not in the gallery
    assert retrieval_recall(queries, ql, gallery, gl, ks=(1, 3, 50)) == {1: 0.5, 3: 0.5, 50: 0.5}
    assert retrieval_map(queries, ql, gallery, gl) == 0.5  # AP 1 and AP 0, both counted


def test_retrieval_k_larger_than_gallery_is_clamped():
    gallery = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    gl = torch.tensor([0, 1, 2])
    queries = torch.tensor([[1.0, 0.0], [1.0, 0.1]])
    ql = torch.tensor([2, 1])  # the relevant item is ranked last / second
    rec = retrieval_recall(queries, ql, gallery, gl, ks=(1, 2, 3, 4, 50))
    assert rec == {1: 0.0, 2: 0.5, 3: 1.0, 4: 1.0, 50: 1.0}
    self_rec = retrieval_recall(gallery, gl, gallery, gl, ks=(2, 3), exclude_self=True)
    assert self_rec == {2: 0.0, 3: 0.0}  # every label is unique: nothing left to find


def test_retrieval_query_identical_to_gallery_item():
    gen = torch.Generator().manual_seed(5)
    gallery = torch.randn(20, 6, generator=gen, dtype=torch.float64)
    gl = torch.arange(20)
    queries, ql = gallery[[3, 11, 17]].clone(), gl[[3, 11, 17]].clone()
    assert retrieval_recall(queries, ql, gallery, gl, ks=(1,)) == {1: 1.0}
    assert retrieval_map(queries, ql, gallery, gl) == 1.0
    # leave-one-out: the identical item itself is excluded, and it is the only relevant one
    assert retrieval_recall(gallery, gl, gallery, gl, ks=(19,), exclude_self=True) == {19: 0.0}
    assert retrieval_map(gallery, gl, gallery, gl, exclude_self=True) == 0.0


def test_retrieval_validation():
    qf, ql = torch.randn(4, 3), torch.tensor([0, 1, 2, 3])
    gf, gl = torch.randn(5, 3), torch.tensor([0, 1, 2, 3, 4])
    for fn in (retrieval_recall, retrieval_map):
        with pytest.raises(ValueError, match="gallery is empty"):
            fn(qf, ql, torch.zeros(0, 3), torch.zeros(0, dtype=torch.long))
        with pytest.raises(ValueError, match="length mismatch"):
            fn(qf, ql[:3], gf, gl)
        with pytest.raises(ValueError, match="length mismatch"):
            fn(qf, ql, gf, gl[:4])
        with pytest.raises(ValueError, match="2-D"):
            fn(qf[0], ql[:1], gf, gl)
        with pytest.raises(ValueError, match="2-D"):
            fn(qf, ql, gf.unsqueeze(0), gl)
        with pytest.raises(ValueError, match="width mismatch"):
            fn(qf, ql, torch.randn(5, 4), gl)
        with pytest.raises(ValueError, match="exclude_self"):
            fn(qf, ql, gf, gl, exclude_self=True)
        with pytest.raises(ValueError, match="chunk_size"):
            fn(qf, ql, gf, gl, chunk_size=0)


class _ShapeRecorder(TorchFunctionMode):
    """Records the shape of every 2-D tensor produced by a torch call."""

    def __init__(self) -> None:
        super().__init__()
        self.shapes: list[tuple[int, int]] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, tuple) else (out,):
            if isinstance(t, torch.Tensor) and t.dim() == 2:
                self.shapes.append(tuple(t.shape))
        return out


@pytest.mark.parametrize("fn", [retrieval_recall, retrieval_map])
def test_retrieval_never_builds_full_score_matrix(fn):
    gen = torch.Generator().manual_seed(0)
    num_q, num_g, chunk = 40, 37, 6
    qf, gf = torch.randn(num_q, 2, generator=gen), torch.randn(num_g, 2, generator=gen)
    ql, gl = torch.randint(0, 3, (num_q,), generator=gen), torch.randint(0, 3, (num_g,))
    with _ShapeRecorder() as rec:
        fn(qf, ql, gf, gl, chunk_size=chunk)
    per_gallery = [s for s in rec.shapes if s[1] == num_g]
    assert any(s[0] == chunk for s in per_gallery)  # the recorder does see the score blocks
    assert max(s[0] for s in per_gallery) <= chunk
