import math

import pytest
import torch

from ccl.losses import MultiClassNCELoss, SymmetricKLLoss, symmetric_contrastive
from ccl.losses.contrastive import log1mexp
from reference_impl import jsd_reference, nce_loops, nce_reference


def _features(b=8, d=16, classes=3, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    f1 = torch.randn(b, d, generator=g, dtype=dtype)
    f2 = torch.randn(b, d, generator=g, dtype=dtype)
    y = torch.randint(classes, (b,), generator=g)
    return f1, f2, y


@pytest.mark.parametrize("tau", [0.1, 0.5, 1.0])
@pytest.mark.parametrize("seed", range(4))
def test_nce_matches_reference_and_loops(tau, seed):
    f1, f2, y = _features(seed=seed)
    y[0], y[1] = 0, 1  # at least two classes, so every row has negatives
    ours = MultiClassNCELoss(tau)(f1, f2, y)
    ref = nce_reference(f1, f2, y, tau)
    assert torch.isfinite(ref)
    assert ours.item() == pytest.approx(ref.item(), rel=1e-5)
    assert ours.item() == pytest.approx(nce_loops(f1, f2, y, tau), rel=1e-5)


@pytest.mark.parametrize("seed", range(3))
def test_nce_float32_matches_reference(seed):
    f1, f2, y = _features(b=16, d=512, classes=5, seed=seed, dtype=torch.float32)
    for tau in (0.1, 0.5):
        ours = MultiClassNCELoss(tau)(f1, f2, y)
        ref = nce_reference(f1.double(), f2.double(), y, tau)
        assert ours.dtype == torch.float32
        assert ours.item() == pytest.approx(ref.item(), rel=1e-5)


def test_nce_golden_value():
    # Hand-computable: two orthogonal pairs, distinct labels, tau = 1.
    f1 = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    y = torch.tensor([0, 1])
    # p_ii = e / (e + 1), p_ij = 1 / (e + 1): L = -log(p_ii) - log(1 - p_ij) = 2 log(1 + 1/e)
    expected = 2 * math.log(1 + math.exp(-1))
    assert MultiClassNCELoss(1.0, eps=0.0)(f1, f1, y).item() == pytest.approx(expected, rel=1e-12)
    torch.manual_seed(123)
    a, b = torch.randn(6, 4), torch.randn(6, 4)
    labels = torch.tensor([0, 0, 1, 2, 1, 0])
    # Golden value: the reference formula on these inputs, in float64.
    assert MultiClassNCELoss(0.5)(a, b, labels).item() == pytest.approx(2.9329875, rel=1e-6)


def test_nce_row_without_negatives_is_finite_and_defined_as_zero():
    f1, f2, _ = _features(b=4)
    y = torch.zeros(4, dtype=torch.long)
    assert torch.isnan(nce_reference(f1, f2, y, 0.5))  # the reference's behaviour
    ours = MultiClassNCELoss(0.5)(f1, f2, y)
    assert torch.isfinite(ours)
    # all candidates are positives: the term is the mean positive log-likelihood only
    p = torch.softmax(
        torch.nn.functional.normalize(f1, dim=1)
        @ torch.nn.functional.normalize(f2, dim=1).t()
        / 0.5,
        1,
    )
    assert ours.item() == pytest.approx((-torch.log(p + 1e-10)).mean(1).mean().item(), rel=1e-6)
    single = MultiClassNCELoss(0.1)(f1[:1], f2[:1], y[:1])
    assert single.item() == pytest.approx(0.0, abs=1e-8)


def test_nce_gradient_finite_at_saturation():
    # tau = 0.01: a negative aligned with the anchor gets p == 1 in float32.
    f1 = torch.tensor([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0]], requires_grad=True)
    f2 = torch.tensor([[-1.0, 0.0], [1.0, 0.0], [0.0, -1.0]], requires_grad=True)
    y = torch.tensor([0, 1, 2])
    loss = MultiClassNCELoss(0.01)(f1, f2, y)
    loss.backward()
    assert torch.isfinite(loss)
    assert torch.isfinite(f1.grad).all() and torch.isfinite(f2.grad).all()


def test_nce_gradient_matches_reference():
    f1, f2, y = _features(seed=5)
    y[:2] = torch.tensor([0, 1])
    a, b = f1.clone().requires_grad_(), f2.clone().requires_grad_()
    MultiClassNCELoss(0.1)(a, b, y).backward()
    ra, rb = f1.clone().requires_grad_(), f2.clone().requires_grad_()
    nce_reference(ra, rb, y, 0.1).backward()
    torch.testing.assert_close(a.grad, ra.grad, rtol=1e-5, atol=1e-9)
    torch.testing.assert_close(b.grad, rb.grad, rtol=1e-5, atol=1e-9)


def test_nce_bad_input():
    with pytest.raises(ValueError, match="temperature"):
        MultiClassNCELoss(0.0)
    with pytest.raises(ValueError, match=r"\(B, D\)"):
        MultiClassNCELoss(0.5)(
            torch.randn(3, 4), torch.randn(3, 5), torch.zeros(3, dtype=torch.long)
        )
    with pytest.raises(ValueError, match="targets"):
        MultiClassNCELoss(0.5)(
            torch.randn(3, 4), torch.randn(3, 4), torch.zeros(2, dtype=torch.long)
        )


def test_log1mexp_accuracy():
    x = torch.tensor([-1e-12, -1e-6, -0.1, -0.69, -0.7, -5.0, -50.0], dtype=torch.float64)
    expected = torch.log(-torch.expm1(x))
    torch.testing.assert_close(log1mexp(x), expected, rtol=1e-12, atol=1e-20)


@pytest.mark.parametrize("seed", range(4))
def test_symmetric_kl_matches_reference(seed):
    g = torch.Generator().manual_seed(seed)
    p, q = (
        torch.randn(6, 10, generator=g, dtype=torch.float64),
        torch.randn(6, 10, generator=g, dtype=torch.float64),
    )
    assert SymmetricKLLoss()(p, q).item() == pytest.approx(jsd_reference(p, q).item(), rel=1e-6)
    # gradients flow into both sides
    pp, qq = p.clone().requires_grad_(), q.clone().requires_grad_()
    SymmetricKLLoss()(pp, qq).backward()
    assert pp.grad.abs().sum() > 0 and qq.grad.abs().sum() > 0


def test_symmetric_kl_golden_and_js_option():
    p = torch.tensor([[0.0, 0.0]], dtype=torch.float64)  # uniform
    q = torch.tensor([[math.log(3.0), 0.0]], dtype=torch.float64)  # (3/4, 1/4)
    kl_pq = 0.5 * math.log(0.5 / 0.75) + 0.5 * math.log(0.5 / 0.25)
    kl_qp = 0.75 * math.log(0.75 / 0.5) + 0.25 * math.log(0.25 / 0.5)
    assert SymmetricKLLoss(0.5)(p, q).item() == pytest.approx(0.5 * (kl_pq + kl_qp), rel=1e-12)
    m = (0.625, 0.375)
    js = 0.5 * (0.5 * math.log(0.5 / m[0]) + 0.5 * math.log(0.5 / m[1])) + 0.5 * (
        0.75 * math.log(0.75 / m[0]) + 0.25 * math.log(0.25 / m[1])
    )
    assert SymmetricKLLoss(0.5, "js")(p, q).item() == pytest.approx(js, rel=1e-12)
    assert SymmetricKLLoss()(q, q).item() == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(ValueError, match="divergence"):
        SymmetricKLLoss(0.5, "kl")


# --- masks and batched pairs: the same values and gradients as selecting the subset -------

VALID_PATTERNS = {
    "all": [True] * 8,
    "some": [True, False, True, True, False, True, True, False],
    "none": [False] * 8,
}


def _grads(fn, *inputs):
    leaves = [x.clone().requires_grad_() for x in inputs]
    value = fn(*leaves)
    value.sum().backward()
    return value.detach(), [x.grad for x in leaves]


@pytest.mark.parametrize("pattern", VALID_PATTERNS)
@pytest.mark.parametrize("eps", [1e-10, 0.0])
@pytest.mark.parametrize("seed", range(3))
def test_masked_nce_equals_loss_on_selected_subset(pattern, eps, seed):
    f1, f2, y = _features(seed=seed)
    valid = torch.tensor(VALID_PATTERNS[pattern])
    loss = MultiClassNCELoss(0.1, eps=eps)
    masked, masked_grads = _grads(lambda a, b: loss(a, b, y, valid), f1, f2)
    assert torch.isfinite(masked) and all(torch.isfinite(g).all() for g in masked_grads)
    if pattern == "none":
        assert masked.item() == 0.0
        assert all((g == 0).all() for g in masked_grads)
        return
    subset, subset_grads = _grads(lambda a, b: loss(a[valid], b[valid], y[valid]), f1, f2)
    torch.testing.assert_close(masked, subset, rtol=1e-12, atol=1e-12)
    for g, ref in zip(masked_grads, subset_grads):
        torch.testing.assert_close(g, ref, rtol=1e-10, atol=1e-12)
        assert (g[~valid] == 0).all()  # left-out samples get exactly no gradient
    # and the subset is the reference's loss on those samples
    assert subset.item() == pytest.approx(
        nce_loops(f1[valid], f2[valid], y[valid], 0.1, eps), rel=1e-9
    )


def test_masked_nce_single_valid_sample_has_no_negatives():
    f1, f2, y = _features(b=4)
    valid = torch.tensor([False, False, True, False])
    value = MultiClassNCELoss(0.1)(f1, f2, y, valid)
    assert value.item() == pytest.approx(0.0, abs=1e-8)  # p = 1: only -log(1 + eps) is left


@pytest.mark.parametrize("pattern", VALID_PATTERNS)
def test_masked_symmetric_contrastive_equals_subset(pattern):
    f1, f2, y = _features(seed=3)
    valid = torch.tensor(VALID_PATTERNS[pattern])
    loss = MultiClassNCELoss(0.5)
    masked, masked_grads = _grads(lambda a, b: symmetric_contrastive(loss, a, b, y, valid), f1, f2)
    if pattern == "none":
        assert masked.item() == 0.0 and all((g == 0).all() for g in masked_grads)
        return
    subset, subset_grads = _grads(
        lambda a, b: symmetric_contrastive(loss, a[valid], b[valid], y[valid]), f1, f2
    )
    torch.testing.assert_close(masked, subset, rtol=1e-12, atol=1e-12)
    for g, ref in zip(masked_grads, subset_grads):
        torch.testing.assert_close(g, ref, rtol=1e-10, atol=1e-12)


def _pairs_inputs(seed=0):
    g = torch.Generator().manual_seed(seed)
    v, m, x = (torch.randn(8, 16, generator=g, dtype=torch.float64) for _ in range(3))
    y = torch.randint(3, (8,), generator=g)
    return v, m, x, y


def _four_terms(v, m, x):
    # the reference rule's four terms, shared inputs and a detached copy included
    h = 2 * m + 1
    return (v, v, v.detach(), h), (m, x, h, x)


@pytest.mark.parametrize("pattern", [None, *VALID_PATTERNS])
def test_symmetric_pairs_equal_separate_calls(pattern):
    v, m, x, y = _pairs_inputs()
    valid = None if pattern is None else torch.tensor(VALID_PATTERNS[pattern])
    loss = MultiClassNCELoss(0.1)

    def batched(v, m, x):
        return loss.symmetric_pairs(*_four_terms(v, m, x), y, valid)

    def separate(v, m, x):
        a, b = _four_terms(v, m, x)
        return torch.stack([symmetric_contrastive(loss, ai, bi, y, valid) for ai, bi in zip(a, b)])

    values, grads = _grads(batched, v, m, x)
    ref_values, ref_grads = _grads(separate, v, m, x)
    assert values.shape == (4,)
    torch.testing.assert_close(values, ref_values, rtol=1e-12, atol=1e-12)
    for g, ref in zip(grads, ref_grads):
        torch.testing.assert_close(g, ref, rtol=1e-10, atol=1e-12)
    if pattern == "none":
        assert (values == 0).all() and all((g == 0).all() for g in grads)
    # a (K, B, D) stack works as well as a sequence
    a, b = _four_terms(v, m, x)
    torch.testing.assert_close(
        loss.symmetric_pairs(torch.stack(a), torch.stack(b), y, valid), values.detach()
    )


def test_symmetric_pairs_float32_at_least_and_bad_input():
    v, m, x, y = _pairs_inputs()
    loss = MultiClassNCELoss(0.5)
    out = loss.symmetric_pairs([v.half()], [m.half()], y)
    assert out.dtype == torch.float32
    torch.testing.assert_close(
        out[0], symmetric_contrastive(loss, v.half(), m.half(), y), rtol=1e-6, atol=1e-6
    )
    with pytest.raises(ValueError, match="K"):
        loss.symmetric_pairs([v], [m[:, :4]], y)
    with pytest.raises(ValueError, match="targets"):
        loss.symmetric_pairs([v], [m], y[:3])
    with pytest.raises(ValueError, match="valid"):
        loss.symmetric_pairs([v], [m], y, torch.ones(8))
    with pytest.raises(ValueError, match="valid"):
        loss(v, m, y, torch.ones(3, dtype=torch.bool))


@pytest.mark.parametrize("divergence", ["symmetric-kl", "js"])
@pytest.mark.parametrize("pattern", VALID_PATTERNS)
def test_masked_divergence_equals_subset(divergence, pattern):
    g = torch.Generator().manual_seed(1)
    p, q = (torch.randn(8, 5, generator=g, dtype=torch.float64) for _ in range(2))
    valid = torch.tensor(VALID_PATTERNS[pattern])
    div = SymmetricKLLoss(0.5, divergence)
    masked, masked_grads = _grads(lambda a, b: div(a, b, valid), p, q)
    if pattern == "none":
        assert masked.item() == 0.0 and all((g == 0).all() for g in masked_grads)
        return
    subset, subset_grads = _grads(lambda a, b: div(a[valid], b[valid]), p, q)
    torch.testing.assert_close(masked, subset, rtol=1e-12, atol=1e-12)
    for gr, ref in zip(masked_grads, subset_grads):
        torch.testing.assert_close(gr, ref, rtol=1e-10, atol=1e-12)
    # stacked pairs: one value per pair, each equal to its separate call
    stacked = div(torch.stack([p, q]), torch.stack([q, p * 2]), valid)
    torch.testing.assert_close(stacked, torch.stack([div(p, q, valid), div(q, p * 2, valid)]))
    with pytest.raises(ValueError, match="valid"):
        div(p, q, torch.ones(5, dtype=torch.bool))
