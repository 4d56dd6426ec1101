import math

import pytest
import torch

from ccl.losses import MultiClassNCELoss, SymmetricKLLoss
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
