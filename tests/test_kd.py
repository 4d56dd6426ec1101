"""Feature-distillation baselines: each loss against its paper's equation written out here,
CRD's memory bank and sampler, and the DistillationObjective end to end."""

from __future__ import annotations

import copy
import inspect
import io
import math
import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from ccl.models import build_student
from ccl.objectives import Batch, registry
from ccl.objectives.kd import (
    KD_LOSSES,
    KD_METHODS,
    CMCLoss,
    CorrelationCongruenceLoss,
    CRDLoss,
    DistillationObjective,
    FitNetLoss,
    KDLoss,
    PKTLoss,
    RKDLoss,
    build_kd_objective,
)
from reference_impl import tiny_image_teacher

FEAT = 32  # the tiny student's width (r2plus1d-10 at 1/16)
DT = torch.float64


def _feats(b=5, ds=6, dt=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    s = torch.randn(b, ds, generator=g, dtype=DT, requires_grad=True)
    t = torch.randn(b, dt, generator=g, dtype=DT)
    return s, t


def _huber(x: float) -> float:
    return 0.5 * x * x if abs(x) <= 1 else abs(x) - 0.5


def _norm(v: torch.Tensor) -> torch.Tensor:
    return v / torch.sqrt(v @ v)


# --- each loss against its equation ------------------------------------------------------


@pytest.mark.parametrize("reduction", ["half_sum", "mean"])
def test_fitnet_hint_loss_eq3(reduction):
    s, t = _feats()
    loss_fn = FitNetLoss(6, 4, weight=2.0, reduction=reduction).double()
    w, bias = loss_fn.regressor.weight, loss_fn.regressor.bias
    total = 0.0
    for i in range(len(s)):
        r = w @ s[i] + bias  # the regressor r(v_g)
        sq = float(((t[i] - r) ** 2).sum().detach())
        total += 0.5 * sq if reduction == "half_sum" else sq / t.shape[1]
    expected = 2.0 * total / len(s)
    torch.testing.assert_close(loss_fn(s, t).item(), expected)


@pytest.mark.parametrize("include_self", [True, False])
def test_pkt_kl_of_cosine_conditionals(include_self):
    s, t = _feats()
    eps, b = 1e-7, len(s)

    def conditionals(x):
        k = [[0.5 * (float(_norm(x[i]) @ _norm(x[j])) + 1) for j in range(b)] for i in range(b)]
        if not include_self:
            for i in range(b):
                k[i][i] = 0.0
        return [[k[i][j] / sum(k[i]) for j in range(b)] for i in range(b)]

    p, q = conditionals(t.detach()), conditionals(s.detach())
    kl = sum(
        p[i][j] * math.log((p[i][j] + eps) / (q[i][j] + eps)) for i in range(b) for j in range(b)
    )
    loss = PKTLoss(weight=3.0, include_self=include_self)(s, t)
    torch.testing.assert_close(loss.item(), 3.0 * kl / b**2, rtol=1e-6, atol=1e-12)


def test_cc_taylor_rbf_correlation_eq10():
    s, t = _feats()
    gamma, order, b = 0.4, 2, len(s)

    def psi(x):
        out = torch.zeros(b, b, dtype=DT)
        for i in range(b):
            for j in range(b):
                c = float(_norm(x[i]) @ _norm(x[j]))
                out[i, j] = sum(
                    math.exp(-2 * gamma) * (2 * gamma) ** p / math.factorial(p) * c**p
                    for p in range(order + 1)
                )
        return out

    expected = float(((psi(t) - psi(s.detach())) ** 2).sum()) / b**2
    loss = CorrelationCongruenceLoss(6, 4, weight=1.5)(s, t)
    torch.testing.assert_close(loss.item(), 1.5 * expected)
    # a high order recovers the Gaussian RBF exp(-gamma |x - y|^2) on unit vectors
    from ccl.objectives.kd.cc import taylor_rbf_correlation

    x = torch.nn.functional.normalize(t, dim=1)
    rbf = torch.exp(-gamma * torch.cdist(x, x).pow(2))
    torch.testing.assert_close(taylor_rbf_correlation(t, gamma, 12), rbf, rtol=1e-8, atol=1e-8)


def test_rkd_distance_and_angle_eqs():
    s, t = _feats()
    b = len(s)

    def potentials(x):
        d = [[float((x[i] - x[j]).norm()) for j in range(b)] for i in range(b)]
        mu = sum(d[i][j] for i in range(b) for j in range(b) if i != j) / (b * (b - 1))
        dist = [[d[i][j] / mu for j in range(b)] for i in range(b)]
        angle = {}
        for i in range(b):
            for j in range(b):
                for k in range(b):
                    eji, eki = x[j] - x[i], x[k] - x[i]
                    if float(eji.norm()) == 0 or float(eki.norm()) == 0:
                        angle[i, j, k] = 0.0  # degenerate triplet (the code's normalize(0) = 0)
                    else:
                        angle[i, j, k] = float(_norm(eji) @ _norm(eki))
        return dist, angle

    (ds, as_), (dt, at) = potentials(s.detach()), potentials(t)
    l_d = sum(_huber(ds[i][j] - dt[i][j]) for i in range(b) for j in range(b)) / b**2
    l_a = sum(_huber(as_[key] - at[key]) for key in as_) / b**3
    loss = RKDLoss()(s, t)
    torch.testing.assert_close(loss.item(), 25 * l_d + 50 * l_a, rtol=1e-6, atol=1e-10)


def test_cmc_symmetric_infonce():
    s, t = _feats()
    loss_fn = CMCLoss(6, 4, feat_dim=3, temperature=0.07).double()
    with torch.no_grad():
        zs = [_norm(loss_fn.embed_s.linear(s[i])) for i in range(len(s))]
        zt = [_norm(loss_fn.embed_t.linear(t[i])) for i in range(len(s))]

    def one_way(a, c):
        total = 0.0
        for i in range(len(a)):
            h = [math.exp(float(a[i] @ c[j]) / 0.07) for j in range(len(c))]
            total += -math.log(h[i] / sum(h))
        return total / len(a)

    expected = one_way(zs, zt) + one_way(zt, zs)
    torch.testing.assert_close(loss_fn(s, t).item(), expected)


# --- CRD: memory bank, sampler, NCE loss --------------------------------------------------


def _crd(n=7, k=5, **kw):
    return CRDLoss(6, 4, n, feat_dim=3, num_negatives=k, **kw).double()


def test_crd_sampler_positive_first_then_uniform_negatives():
    crd = _crd(n=5, k=400, seed=3)
    index = torch.tensor([0, 3, 3])
    # the sampler's stream: the generator seeded, after the two bank initialisations
    g = torch.Generator().manual_seed(3)
    torch.rand(5, 3, generator=g), torch.rand(5, 3, generator=g)
    rows = crd.memory.sample(index)
    assert rows.shape == (3, 401)
    assert torch.equal(rows[:, 0], index)
    assert torch.equal(rows[:, 1:], torch.randint(0, 5, (3, 400), generator=g))
    # as the original's sampler: the positive may also be drawn among the negatives
    assert bool((rows[:, 1:] == index[:, None]).any(dim=1).all())
    # the stored state advanced: the next draw differs and resumes from the buffer
    assert not torch.equal(crd.memory.sample(index), rows)


def test_crd_sampler_excluding_the_positive():
    crd = _crd(n=5, k=400, negatives="exclude-positive")
    index = torch.tensor([0, 2, 4])
    rows = crd.memory.sample(index)
    assert torch.equal(rows[:, 0], index)
    neg = rows[:, 1:]
    assert not bool((neg == index[:, None]).any())
    for i, pos in enumerate(index.tolist()):
        assert set(neg[i].tolist()) == set(range(5)) - {pos}


@pytest.mark.parametrize("loss_type", ["nce", "softmax"])
def test_crd_loss_and_memory_update(loss_type):
    n, k, tau, momentum = 7, 5, 0.07, 0.5
    crd = _crd(n=n, k=k, loss=loss_type, weight=0.8)
    s, t = _feats(b=3)
    index = torch.tensor([4, 1, 6])
    twin = copy.deepcopy(crd)
    rows = twin.memory.sample(index)  # the same draw the module will make
    mem_s, mem_t = crd.memory.memory_s.clone(), crd.memory.memory_t.clone()
    with torch.no_grad():
        zs = torch.stack([_norm(crd.embed_s.linear(x)) for x in s])
        zt = torch.stack([_norm(crd.embed_t.linear(x)) for x in t])

    def scores(anchor, bank):  # exp(a.m / T) over [positive, negatives]
        return [[math.exp(float(anchor[i] @ bank[r]) / tau) for r in rows[i]] for i in range(3)]

    out_s, out_t = scores(zs, mem_t), scores(zt, mem_s)
    if loss_type == "nce":
        expected = 0.0
        for out in (out_s, out_t):
            z_norm = sum(map(sum, out)) / (3 * (k + 1)) * n  # Z fixed on the first call
            pn = k / n
            for row in out:
                h = [x / z_norm for x in row]
                expected -= math.log(h[0] / (h[0] + pn + 1e-7)) / 3
                expected -= sum(math.log(pn / (x + pn + 1e-7)) for x in h[1:]) / 3
    else:
        expected = sum(-math.log(row[0] / sum(row)) / 3 for out in (out_s, out_t) for row in out)
    loss = crd(s, t, index)
    torch.testing.assert_close(loss.item(), 0.8 * expected, rtol=1e-9, atol=1e-9)
    # bank update at the batch's rows: momentum mix, then re-normalisation; others untouched
    for bank_before, bank_after, z in (
        (mem_s, crd.memory.memory_s, zs),
        (mem_t, crd.memory.memory_t, zt),
    ):
        for row in range(n):
            if row in index.tolist():
                i = index.tolist().index(row)
                want = _norm(momentum * bank_before[row] + (1 - momentum) * z[i])
            else:
                want = bank_before[row]
            torch.testing.assert_close(bank_after[row], want)
    if loss_type == "nce":  # Z is kept after the first call
        z_first = crd.memory.z.clone()
        assert bool((z_first > 0).all())
        crd(s, t, index)
        assert torch.equal(crd.memory.z, z_first)


@pytest.mark.parametrize("method", KD_METHODS)
def test_losses_have_finite_gradients(method):
    s, t = _feats(b=6)
    cls = {
        "fitnet": FitNetLoss,
        "pkt": PKTLoss,
        "cc": CorrelationCongruenceLoss,
        "rkd": RKDLoss,
        "cmc": CMCLoss,
    }
    if method == "crd":
        loss_fn = _crd(n=10)
        loss = loss_fn(s, t, torch.arange(6))
    else:
        kw = {"student_embed": True} if method == "cc" else {}
        loss_fn = cls[method](6, 4, **kw).double()
        loss = loss_fn(s, t)
    loss.backward()
    assert torch.isfinite(loss)
    assert torch.isfinite(s.grad).all() and s.grad.abs().sum() > 0
    for p in loss_fn.parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all()


# --- the objective ------------------------------------------------------------------------


def _batch(b=6, classes=3, missing=(1, 4), seed=0, n=12) -> Batch:
    g = torch.Generator().manual_seed(seed)
    clip = torch.randn(b, 3, 4, 16, 16, generator=g, dtype=DT)
    audio = torch.rand(b, FEAT, generator=g, dtype=DT)
    available = torch.ones(b, dtype=torch.bool)
    for i in missing:
        audio[i] = 0
        available[i] = False
    label = torch.arange(b) % classes
    index = torch.randperm(n, generator=g)[:b]
    return Batch(clip, label, audio, available, index)


def _setup(method, teachers=("audio", "image"), seed=0, **kw):
    torch.manual_seed(seed)
    student = build_student("r2plus1d-10", 3, width=1 / 16).double()
    image = tiny_image_teacher(FEAT).double() if "image" in teachers else None
    objective = build_kd_objective(
        method,
        num_classes=3,
        feature_dim=FEAT,
        teachers=teachers,
        image_teacher=image,
        num_samples=12,
        **kw,
    ).double()
    return student, objective


@pytest.mark.parametrize("method", KD_METHODS)
def test_objective_trains(method):
    student, objective = _setup(method)
    assert set(objective.heads) == {"audio", "image"} and objective.loss_weight == 0.5
    params = [*student.parameters(), *objective.heads.parameters()]
    before = [p.detach().clone() for p in params]
    opt = torch.optim.SGD(params, lr=0.05)
    for step in range(3):
        out = objective(student(_batch(seed=step).clip), _batch(seed=step))
        assert torch.isfinite(out.loss)
        assert {f"audio/{method}", f"image/{method}", "ce"} <= set(out.terms)
        opt.zero_grad()
        out.loss.backward()
        opt.step()
    assert all(torch.isfinite(p).all() for p in params)
    changed = [not torch.equal(b, p) for b, p in zip(before, params)]
    assert any(changed[: len(list(student.parameters()))])
    if list(objective.heads.parameters()):
        assert any(changed[len(list(student.parameters())) :])
    if method in ("fitnet", "crd", "cmc"):  # methods with trainable heads
        assert list(objective.heads.parameters())
    # the image teacher is frozen
    assert not any(p.requires_grad for p in objective.image_teacher.parameters())


def test_samples_without_audio_are_dropped_from_the_audio_term_only():
    student, objective = _setup("fitnet")
    batch = _batch(missing=(1, 4))
    out = student(batch.clip)
    res = objective(out, batch)
    keep = batch.audio_available
    v = out.feature
    audio_term = objective.heads["audio"](v[keep], batch.audio[keep])
    image_term = objective.heads["image"](v, objective.image_teacher(batch.clip))
    torch.testing.assert_close(res.terms["audio/fitnet"], audio_term.detach())
    torch.testing.assert_close(res.terms["image/fitnet"], image_term.detach())
    ce = torch.nn.functional.cross_entropy(out.logits, batch.label)
    torch.testing.assert_close(res.loss, ce + 0.5 * (audio_term + image_term))
    # a batch with no audio at all: the audio term is absent, the rest still trains
    res = objective(student(batch.clip), _batch(missing=range(6)))
    assert "audio/fitnet" not in res.terms and torch.isfinite(res.loss)


def test_crd_bank_rows_of_samples_without_audio_stay_put():
    student, objective = _setup("crd", teachers=("audio",))
    batch = _batch(missing=(1, 4))
    bank = objective.heads["audio"].memory.memory_s.clone()
    objective(student(batch.clip), batch)
    after = objective.heads["audio"].memory.memory_s
    for i, row in enumerate(batch.index.tolist()):
        assert torch.equal(after[row], bank[row]) != bool(batch.audio_available[i])


def test_crd_checkpoint_round_trip_resumes_exactly():
    student, objective = _setup("crd")
    opt = torch.optim.SGD([*student.parameters(), *objective.heads.parameters()], lr=0.05)
    out = objective(student(_batch(seed=0).clip), _batch(seed=0))
    opt.zero_grad()
    out.loss.backward()
    opt.step()
    buf = io.BytesIO()
    torch.save(objective.heads.state_dict(), buf)
    buf.seek(0)
    state = torch.load(buf, weights_only=True)
    assert any(k.endswith("memory.rng_state") for k in state)
    assert any(k.endswith("memory.memory_t") for k in state)
    # a fresh objective (other weights, other sampler seed) restored from the checkpoint
    _, restored = _setup("crd", seed=123, options={"seed": 99})
    restored.image_teacher = objective.image_teacher  # frozen teachers load from their own files
    twin = copy.deepcopy(student)
    batch = _batch(seed=1)
    fresh = copy.deepcopy(restored)(twin(batch.clip), batch).loss
    assert not torch.equal(fresh, copy.deepcopy(objective)(student(batch.clip), batch).loss)
    restored.heads.load_state_dict(state)
    for step in (1, 2):
        a = objective(student(_batch(seed=step).clip), _batch(seed=step))
        b = restored(twin(_batch(seed=step).clip), _batch(seed=step))
        assert torch.equal(a.loss, b.loss)
    for (ka, va), (kb, vb) in zip(
        objective.heads.state_dict().items(), restored.heads.state_dict().items()
    ):
        assert ka == kb and torch.equal(va, vb)


def test_single_teacher_weight_and_options():
    _, objective = _setup("rkd", teachers=("image",))
    assert objective.loss_weight == 1.0
    _, objective = _setup("pkt", teachers=("audio",), loss_weight=0.3, options={"weight": 2.0})
    assert objective.loss_weight == 0.3 and objective.heads["audio"].weight == 2.0
    _, objective = _setup("fitnet", teachers=("audio",), options={"audio_dim": 20})
    assert objective.heads["audio"].regressor.out_features == 20


def test_clear_errors():
    with pytest.raises(ValueError, match="unknown distillation method"):
        _setup("kd")
    with pytest.raises(ValueError, match="unknown fitnet options"):
        _setup("fitnet", options={"temperature": 0.1})
    with pytest.raises(ValueError, match="num_samples"):
        build_kd_objective("crd", num_classes=3, feature_dim=FEAT, teachers=["audio"])
    with pytest.raises(ValueError, match="image teacher"):
        build_kd_objective("pkt", num_classes=3, feature_dim=FEAT, teachers=["image"])
    with pytest.raises(ValueError, match="teachers"):
        build_kd_objective("pkt", num_classes=3, feature_dim=FEAT, teachers=["video"])
    student, objective = _setup("fitnet", teachers=("audio",), options={"audio_dim": 20})
    batch = _batch()
    with pytest.raises(ValueError, match="audio embeddings are 32-d"):
        objective(student(batch.clip), batch)
    student, objective = _setup("crd", teachers=("audio",))
    batch.index = None
    with pytest.raises(ValueError, match="dataset indices"):
        objective(student(batch.clip), batch)
    _, objective = _setup("cmc", teachers=("audio",))
    out = student(_batch().clip)
    with pytest.raises(ValueError, match="student features"):
        objective(type(out)(out.logits, out.feature[:, :5]), _batch())


# --- the KDLoss interface ----------------------------------------------------------------


@pytest.mark.parametrize("method", KD_METHODS)
def test_every_loss_declares_the_interface(method):
    """Each loss of the table is a KDLoss: typed class attributes, the constructor
    ``(student_dim, teacher_dim[, num_samples], *, weight, ...)`` and
    ``forward(student, teacher, index=None)`` giving a scalar for ``min_batch`` samples."""
    assert tuple(KD_LOSSES) == registry.KD_METHODS
    cls = KD_LOSSES[method]
    assert issubclass(cls, KDLoss)
    assert isinstance(cls.needs_index, bool) and isinstance(cls.needs_num_samples, bool)
    assert isinstance(cls.min_batch, int) and cls.min_batch >= 1
    params = list(inspect.signature(cls.__init__).parameters.values())[1:]
    positional = ["student_dim", "teacher_dim"] + (["num_samples"] if cls.needs_num_samples else [])
    assert [p.name for p in params[: len(positional)]] == positional
    assert all(p.kind is p.POSITIONAL_OR_KEYWORD for p in params[: len(positional)])
    rest = params[len(positional) :]
    assert rest and all(p.kind is p.KEYWORD_ONLY for p in rest)
    assert "weight" in [p.name for p in rest]
    forward = list(inspect.signature(cls.forward).parameters.values())[1:]
    assert [p.name for p in forward] == ["student", "teacher", "index"]
    assert forward[2].default is None

    torch.manual_seed(0)
    n = 4
    loss = cls(6, 5, n) if cls.needs_num_samples else cls(6, 5)
    s, t = torch.randn(cls.min_batch, 6), torch.randn(cls.min_batch, 5)
    index = torch.arange(cls.min_batch) if cls.needs_index else None
    value = loss(s, t, index)
    assert value.shape == () and torch.isfinite(value)


class _NeedsThree(KDLoss):
    """A stand-in loss: defined for 3 samples or more, wants the dataset indices."""

    needs_index = True
    min_batch = 3

    def forward(self, student, teacher, index=None):
        assert index is not None
        return student.sum() * 0 + 1.0


def test_the_objective_reads_the_interface():
    """DistillationObjective takes what the loss declares: no term below ``min_batch``,
    an error without indices when ``needs_index``; a plain module is refused."""
    student = build_student("r2plus1d-10", 3, width=1 / 16).double()
    objective = DistillationObjective(
        "three", 3, FEAT, {"audio": _NeedsThree()}, audio_dim=FEAT
    ).double()
    batch = _batch(b=4, missing=(1, 2))
    out = objective(student(batch.clip), batch)
    assert "audio/three" not in out.terms  # only 2 of 4 samples have audio
    out = objective(student(batch.clip), _batch(b=4, missing=(1,)))
    assert out.terms["audio/three"] == 1.0
    batch.index = None
    with pytest.raises(ValueError, match="dataset indices"):
        objective(student(batch.clip), batch)
    with pytest.raises(TypeError, match="the audio loss is a Linear, not a KDLoss"):
        DistillationObjective("x", 3, FEAT, {"audio": torch.nn.Linear(2, 2)})


# --- DDP: every rank sees the global batch and applies the same bank update ---------------


def _crd_steps(rank=0, world=1):
    """Two steps of a CRD-AI objective (heads trained, student frozen in eval mode) on a
    global batch of 6 split over the ranks; returns the terms and the heads' state."""
    student, objective = _setup("crd")
    student.eval()
    opt = torch.optim.SGD(objective.heads.parameters(), lr=0.1)
    history = []
    for step in range(2):
        g = _batch(seed=step, missing=(1, 2))
        part = slice(rank * 6 // world, (rank + 1) * 6 // world)
        mine = Batch(
            g.clip[part], g.label[part], g.audio[part], g.audio_available[part], g.index[part]
        )
        out = objective(student(mine.clip), mine)
        opt.zero_grad()
        out.loss.backward()
        opt.step()
        history.append({k: v.item() for k, v in out.terms.items() if "/" in k})
    return history, {k: v.clone() for k, v in objective.heads.state_dict().items()}


def _ddp_worker(rank, world, port, out):
    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world)
    )
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        history, state = _crd_steps(rank, world)
        torch.save({"history": history, "state": state}, f"{out}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_crd_under_two_processes_matches_one(tmp_path):
    single_history, single_state = _crd_steps()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_ddp_worker, args=(2, port, str(tmp_path)), nprocs=2, join=True)
    for r in range(2):
        got = torch.load(tmp_path / f"rank{r}.pt", weights_only=True)
        for step, terms in enumerate(single_history):
            assert got["history"][step].keys() == terms.keys()
            for key, value in terms.items():
                assert got["history"][step][key] == pytest.approx(value, rel=1e-9), (step, key)
        for key, value in single_state.items():  # banks, Z, sampler state and heads
            torch.testing.assert_close(got["state"][key], value, rtol=1e-9, atol=1e-12, msg=key)


def test_crd_scores_stay_finite_under_low_precision_autocast():
    crd = CRDLoss(6, 4, 50, feat_dim=8)
    s, t = torch.randn(4, 6), torch.randn(4, 4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = crd(s, t, torch.arange(4)) + crd(s, t, torch.arange(4))
    assert loss.dtype == torch.float32 and torch.isfinite(loss)


@pytest.mark.parametrize("options", [None, {"seed": 5}])
def test_crd_teachers_draw_their_own_negatives(options):
    """With two teachers each CRD loss has its own stream, also when the run's seed is given
    (it once overrode the per-teacher seeds, so both teachers drew the same negatives)."""
    _, objective = _setup("crd", options=options)
    audio, image = (objective.heads[t].memory.generator for t in ("audio", "image"))
    draws = [torch.randint(0, 1000, (8,), generator=g) for g in (audio, image)]
    assert not torch.equal(*draws)
    _, again = _setup("crd", options=options)  # and each stream is reproducible
    assert torch.equal(
        torch.randint(0, 1000, (8,), generator=again.heads["audio"].memory.generator), draws[0]
    )
