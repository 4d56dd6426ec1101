"""The single-backward CCL objective gives every parameter the gradient the reference's
training step applies to it (docs/METHOD.md §4)."""

import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call

from ccl.losses import symmetric_contrastive
from ccl.models import CompositionHead, ImageTeacher, build_student
from ccl.models.r2plus1d import StudentOutput
from ccl.objectives import BaselineObjective, Batch, CCLObjective, registry
from reference_impl import ccl_reference_step, tiny_image_teacher

FEAT = 32  # the tiny student's width (r2plus1d-10 at 1/16); the test teacher matches it


def _setup(teachers, seed=0, b=6, classes=3, missing_audio=(1, 4)):
    torch.manual_seed(seed)
    student = build_student("r2plus1d-10", classes, width=1 / 16).double()
    image = tiny_image_teacher(FEAT).double() if "image" in teachers else None
    objective = CCLObjective(classes, FEAT, teachers, image_teacher=image).double()
    clip = torch.randn(b, 3, 4, 16, 16, dtype=torch.float64)
    label = torch.tensor([0, 1, 2, 0, 1, 2][:b])
    audio = torch.rand(b, FEAT, dtype=torch.float64)
    available = torch.ones(b, dtype=torch.bool)
    for i in missing_audio:
        audio[i] = 0
        available[i] = False
    return student, objective, Batch(clip, label, audio, available)


def _our_grads(student, objective, batch):
    for p in [*student.parameters(), *objective.parameters()]:
        p.grad = None
    out = objective(student(batch.clip), batch)
    out.loss.backward()
    return {
        n: p.grad.clone()
        for n, p in [*student.named_parameters(), *objective.heads.named_parameters()]
    }


TEACHER_SETS = [("audio",), ("image",), ("audio", "image")]
MISSING = {"none": (), "some": (1, 4), "all": tuple(range(6))}


def _assert_grads_equal(ours, ref):
    assert ours.keys() == ref.keys()
    for name in ref:
        torch.testing.assert_close(ours[name], ref[name], rtol=1e-7, atol=1e-10, msg=name)


@pytest.mark.parametrize("missing", ["none", "some"])
@pytest.mark.parametrize("teachers", TEACHER_SETS)
def test_single_backward_gives_the_gradients_the_reference_steps_with(teachers, missing):
    """Student: grad L_v (through m too); each head: grad L_head alone, recorded where the
    reference steps the head, before L_v's backward."""
    student, objective, batch = _setup(teachers, missing_audio=MISSING[missing])
    applied, _ = ccl_reference_step(student, objective, batch, teachers)
    _assert_grads_equal(_our_grads(student, objective, batch), applied)


@pytest.mark.parametrize("teachers", TEACHER_SETS)
def test_heads_do_not_learn_from_the_students_loss(teachers):
    """What L_v's backward leaves on the heads (grad L_head + grad L_v: the ``joint`` rule, how
    the reference's current release steps them) differs from what the reference rule (its
    first release, heads from L_head only) gives."""
    student, objective, batch = _setup(teachers)
    applied, left = ccl_reference_step(student, objective, batch, teachers)
    reference = _our_grads(student, objective, batch)
    objective.head_update = "joint"
    joint = _our_grads(student, objective, batch)
    for name, grad in left.items():
        torch.testing.assert_close(joint[name], grad, rtol=1e-7, atol=1e-10, msg=name)
        assert (joint[name] - reference[name]).abs().max() > 1e-6, name
    # the student's gradient is grad L_v under both rules
    for name, _ in student.named_parameters():
        torch.testing.assert_close(joint[name], applied[name], rtol=1e-7, atol=1e-10)


def test_heads_stepped_first_change_the_students_gradient_to_first_order_in_the_lr():
    """The one difference left (docs/METHOD.md §4.1): on PyTorch < 1.5 the reference's L_v
    backward went through the already-stepped head weights. Emulated by stepping through
    ``.data``: the student's gradient departs from ours linearly in the head's lr, and the
    heads' gradients (taken before their step) do not change."""
    teachers = ("audio", "image")
    student, objective, batch = _setup(teachers)
    ours = _our_grads(student, objective, batch)
    diffs = {}
    for lr in (1e-3, 1e-4):
        student, objective, batch = _setup(teachers)
        stepped, _ = ccl_reference_step(student, objective, batch, teachers, head_lr=lr)
        diffs[lr] = max(
            (stepped[n] - ours[n]).abs().max().item() for n, _ in student.named_parameters()
        )
        for name in ours.keys() - dict(student.named_parameters()).keys():
            torch.testing.assert_close(stepped[name], ours[name], rtol=1e-7, atol=1e-10)
    assert diffs[1e-4] > 0
    assert diffs[1e-3] / diffs[1e-4] == pytest.approx(10, rel=0.05)


def test_paper_rule_trains_heads_with_ce_only():
    student, objective, batch = _setup(("audio",), missing_audio=())
    objective.head_update = "paper"
    ours = _our_grads(student, objective, batch)
    # heads: grad of CE(head(x_t, v)) alone
    head = objective.heads["audio"]
    for p in head.parameters():
        p.grad = None
    with torch.no_grad():
        v = student(batch.clip).feature
    F.cross_entropy(head(batch.audio, v)[0], batch.label).backward()
    for n, p in head.named_parameters():
        torch.testing.assert_close(ours[f"audio.{n}"], p.grad, rtol=1e-6, atol=1e-9)
    # student: grad of L_v, which still includes the contrastive and divergence terms
    student_only = _our_grads(
        student, CCLObjective(3, FEAT, ["audio"], head_update="paper").double(), batch
    )
    assert all(torch.isfinite(g).all() for g in student_only.values())


def _nce_by_hand(f, g, y, tau):
    """The paper's Eq. 3 written out (docs/METHOD.md §3.1), exact form (no 1e-10)."""
    p = torch.softmax(F.normalize(f, dim=1) @ F.normalize(g, dim=1).T / tau, dim=1)
    same = y[:, None] == y[None, :]
    pos = -(p.log() * same).sum(1) / same.sum(1)
    neg = -((1 - p).log() * ~same).sum(1) / (~same).sum(1)
    return (pos + neg).mean()


@pytest.mark.parametrize("lam", [0.5, 0.2, 1.0, None])
def test_paper_rule_weights_the_students_contrastive_terms_by_lambda(lam):
    """Algorithm A of the paper: the student's loss is CE + lambda * S(v, x_t) +
    (1 - lambda) * S(v, m) + J, computed here by hand from the equations; None: the
    unweighted sum of the reference."""
    torch.manual_seed(3)
    v = torch.randn(4, 5, dtype=torch.float64, requires_grad=True)
    z_v = torch.randn(4, 2, dtype=torch.float64, requires_grad=True)
    x = torch.rand(4, 5, dtype=torch.float64)
    y = torch.tensor([0, 1, 0, 1])
    objective = CCLObjective(2, 5, ["audio"], head_update="paper", paper_lambda=lam, nce_eps=0)
    objective = objective.double()
    batch = Batch(torch.zeros(4, 3, 1, 2, 2), y, x, torch.ones(4, dtype=torch.bool))
    out = objective(StudentOutput(z_v, v), batch)

    z_m, m = objective.heads["audio"](x, v)
    s_vx = _nce_by_hand(v, x, y, 0.5) + _nce_by_hand(x, v, y, 0.5)
    s_vm = _nce_by_hand(v, m, y, 0.5) + _nce_by_hand(m, v, y, 0.5)
    p, q = torch.softmax(z_v, 1), torch.softmax(z_m, 1)
    jsd = 0.5 * ((p * (p / q).log()).sum(1) + (q * (q / p).log()).sum(1)).mean()
    weighted = s_vx + s_vm if lam is None else lam * s_vx + (1 - lam) * s_vm
    expected = F.cross_entropy(z_v, y) + weighted + jsd
    torch.testing.assert_close(out.terms["loss_v"], expected.detach(), rtol=1e-10, atol=0)
    # the logged pair terms stay unweighted; the student's gradient is that of the formula
    torch.testing.assert_close(out.terms["audio/contrast_vt"], s_vx.detach())
    torch.testing.assert_close(out.terms["audio/contrast_vm"], s_vm.detach())
    ours = torch.autograd.grad(out.loss, (v, z_v))
    by_hand = torch.autograd.grad(expected, (v, z_v))
    for a, b in zip(ours, by_hand):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)


def test_paper_lambda_outside_the_unit_interval_is_refused():
    from ccl.config import Config, apply_overrides

    with pytest.raises(ValueError, match=r"objective.paper_lambda must be in \[0, 1\] or none"):
        apply_overrides(Config(), ["objective.paper_lambda=1.5"])
    assert apply_overrides(Config(), ["objective.paper_lambda=none"]).objective.paper_lambda is None
    assert Config().objective.paper_lambda == 0.5


def test_samples_without_audio_only_leave_audio_terms():
    student, objective, batch = _setup(("audio",), missing_audio=range(6))
    out = objective(student(batch.clip), batch)
    out.loss.backward()
    assert out.terms["audio/available"] == 0
    # the audio terms contribute nothing; they are logged as 0 (not left out)
    for name in ("contrast_vm", "contrast_vt", "contrast_mt", "jsd", "head_ce", "head_acc"):
        assert out.terms[f"audio/{name}"] == 0, name
    assert torch.isclose(out.loss, out.terms["ce"])
    # the heads stay in the graph (no data-dependent skip) with exactly zero gradients
    assert all(p.grad is not None and (p.grad == 0).all() for p in objective.heads.parameters())
    assert all(torch.isfinite(p.grad).all() for p in student.parameters() if p.grad is not None)


def _selection_forward(objective, student_out, batch):
    """The previous implementation, kept as the slow obvious version: samples without audio
    are selected out of the batch (boolean indexing), a teacher without any sample is
    skipped with Python control flow, and every S(a, b) is its own pair of loss calls."""
    v, v_logits, y = student_out.feature, student_out.logits, batch.label
    ce = F.cross_entropy(v_logits, y)
    terms = {"ce": ce.detach()}
    distill, heads_loss = v.new_zeros(()), v.new_zeros(())
    for t in objective.teachers:
        x_t, available = objective.teacher_features(t, batch)
        tv, t_logits, ty = v, v_logits, y
        if available is not None:
            terms[f"{t}/available"] = available.float().mean()
            if not bool(available.any()):
                continue
            tv, t_logits, ty, x_t = v[available], v_logits[available], y[available], x_t[available]
        head, contrast = objective.heads[t], objective.contrast[t]
        if objective.head_update == "joint":
            m_logits, m = head(x_t, tv)
        else:
            frozen = {k: p.detach() for k, p in head.named_parameters()}
            m_logits, m = functional_call(head, frozen, (x_t, tv))
        s_vm = symmetric_contrastive(contrast, tv, m, ty)
        s_vt = symmetric_contrastive(contrast, tv, x_t, ty)
        jsd = objective.jsd(t_logits, m_logits)
        v_d, v_logits_d = tv.detach(), t_logits.detach()
        h_logits, h = head(x_t, v_d)
        head_ce = F.cross_entropy(h_logits, ty)
        head_loss = head_ce
        if objective.head_update != "paper":
            s_mt = symmetric_contrastive(contrast, h, x_t, ty)
            head_loss = (
                head_ce
                + symmetric_contrastive(contrast, v_d, h, ty)
                + s_mt
                + objective.jsd(v_logits_d, h_logits)
            )
            terms[f"{t}/contrast_mt"] = s_mt.detach()
        terms[f"{t}/contrast_vm"] = s_vm.detach()
        terms[f"{t}/contrast_vt"] = s_vt.detach()
        terms[f"{t}/jsd"] = jsd.detach()
        terms[f"{t}/head_ce"] = head_ce.detach()
        terms[f"{t}/head_acc"] = (h_logits.argmax(1) == ty).float().mean()
        if objective.head_update == "paper":  # Algorithm A's weighting (objective.paper_lambda)
            lam = objective.paper_lambda
            s_vm, s_vt = (1 - lam) * s_vm, lam * s_vt
        distill = distill + s_vm + s_vt + jsd
        heads_loss = heads_loss + head_loss
    loss_v = ce + objective.loss_weight * distill
    terms["loss_v"] = loss_v.detach()
    terms["loss_heads"] = heads_loss.detach()
    return loss_v + heads_loss, terms


def _grads_of(student, objective, loss):
    params = [*student.named_parameters(), *objective.heads.named_parameters()]
    for _, p in params:
        p.grad = None
    loss.backward()
    # a parameter the selection version skips has no gradient: the masked one gives 0
    return {n: torch.zeros_like(p) if p.grad is None else p.grad.clone() for n, p in params}


@pytest.mark.parametrize("missing", MISSING)
@pytest.mark.parametrize("head_update", ["reference", "paper", "joint"])
@pytest.mark.parametrize("teachers", TEACHER_SETS)
def test_masked_objective_equals_selection_version(teachers, head_update, missing):
    student, objective, batch = _setup(teachers, seed=1, missing_audio=MISSING[missing])
    objective.head_update = head_update
    out = objective(student(batch.clip), batch)
    ours = _grads_of(student, objective, out.loss)
    ref_loss, ref_terms = _selection_forward(objective, student(batch.clip), batch)
    ref = _grads_of(student, objective, ref_loss)
    torch.testing.assert_close(out.loss.detach(), ref_loss.detach(), rtol=1e-6, atol=1e-9)
    for name, value in ref_terms.items():
        torch.testing.assert_close(out.terms[name], value, rtol=1e-6, atol=1e-9, msg=name)
    # terms the selection version leaves out (a teacher without any sample) are 0 here
    assert all(out.terms[k] == 0 for k in out.terms.keys() - ref_terms.keys())
    assert ref.keys() == ours.keys()
    for name in ref:
        torch.testing.assert_close(ours[name], ref[name], rtol=1e-6, atol=1e-9, msg=name)
    if teachers[-1] == "image" or missing != "all":  # the last teacher has samples
        assert any(ours[n].abs().sum() > 0 for n in ours if n.startswith(teachers[-1]))


def test_objective_step_has_no_data_dependent_control_flow():
    """fullgraph capture of forward and backward fails on any host sync (bool(tensor),
    .item(), boolean indexing, nonzero); aot_eager traces the backward without compiling."""
    student, objective, batch = _setup(("audio", "image"), seed=2)
    with torch.no_grad():
        out = student(batch.clip)

    def step(logits, feature, clip, label, audio, available):
        res = objective(StudentOutput(logits, feature), Batch(clip, label, audio, available))
        return res.loss, res.terms

    def run(fn):
        logits = out.logits.clone().requires_grad_()
        feature = out.feature.clone().requires_grad_()
        loss, terms = fn(
            logits, feature, batch.clip, batch.label, batch.audio, batch.audio_available
        )
        loss.backward()
        return loss.detach(), terms, logits.grad, feature.grad

    eager = run(step)
    compiled = run(torch.compile(step, fullgraph=True, backend="aot_eager"))
    for a, b in zip(eager, compiled):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)


def test_baseline_is_cross_entropy():
    student, _, batch = _setup(("audio",))
    out = student(batch.clip)
    res = BaselineObjective()(out, batch)
    assert res.loss.item() == pytest.approx(F.cross_entropy(out.logits, batch.label).item())


def test_objective_validates_dims_and_teachers():
    with pytest.raises(ValueError, match="teachers"):
        CCLObjective(3, 32, ["video"])
    with pytest.raises(ValueError, match="head_update must be one of"):
        CCLObjective(3, 32, ["audio"], head_update="sometimes")
    with pytest.raises(ValueError, match="image teacher"):
        CCLObjective(3, 32, ["image"])
    with pytest.raises(ValueError, match="student.feature_dim=512"):
        CCLObjective(3, 32, ["image"], image_teacher=ImageTeacher("resnet18"))
    obj = CCLObjective(3, 32, ["audio"])
    student = build_student("r2plus1d-10", 3, width=1 / 16, feature_dim=32)
    clip = torch.randn(2, 3, 4, 16, 16)
    with pytest.raises(ValueError, match="no audio"):
        obj(student(clip), Batch(clip, torch.tensor([0, 1])))
    with pytest.raises(ValueError, match="16-d"):
        obj(
            student(clip),
            Batch(clip, torch.tensor([0, 1]), torch.rand(2, 16), torch.ones(2, dtype=torch.bool)),
        )


def test_composition_head_formula():
    head = CompositionHead(8, 5)
    xt, xv = torch.randn(3, 4), torch.randn(3, 4)
    logits, composed = head(xt, xv)
    r = head.mlp(torch.cat([F.normalize(xt, dim=1), F.normalize(xv, dim=1)], 1))
    torch.testing.assert_close(composed, xt + r)
    torch.testing.assert_close(logits, head.fc(xt + r))
    assert head.mlp.weight.shape == (4, 8) and head.fc.weight.shape == (5, 4)


@pytest.mark.parametrize("method", registry.METHOD_NAMES)
def test_every_registered_method_builds_and_runs(method):
    """build_objective makes each method of the table with each teacher setting it accepts,
    and one step of it gives a finite loss with a term per teacher."""
    from ccl.config import apply_overrides, preset
    from ccl.objectives import build_objective
    from ccl.objectives.kd import DistillationObjective

    spec = registry.METHODS[method]
    for teachers in spec.teacher_sets:
        cfg = apply_overrides(
            preset("smoke-baseline"),
            [f"objective.method={method}", "objective.teachers=" + ",".join(teachers)],
        )
        assert cfg.image_teacher.allow_random and cfg.image_teacher.arch == "resnet18"
        torch.manual_seed(0)
        objective = build_objective(
            cfg.objective,
            cfg.image_teacher,
            cfg.data,
            num_classes=3,
            feature_dim=512,
            seed=cfg.train.seed,
            num_samples=8,
        )
        kind = {"baseline": BaselineObjective, "ccl": CCLObjective, "kd": DistillationObjective}
        assert type(objective) is kind[spec.kind]
        assert getattr(objective, "teachers", ()) == teachers
        b = 4
        batch = Batch(
            torch.randn(b, 3, 2, 16, 16),
            torch.tensor([0, 1, 2, 0]),
            torch.randn(b, 512),
            torch.ones(b, dtype=torch.bool),
            torch.arange(b),
        )
        out = objective(StudentOutput(torch.randn(b, 3), torch.randn(b, 512)), batch)
        assert torch.isfinite(out.loss)
        for t in teachers:
            assert any(k.startswith(f"{t}/") for k in out.terms), (teachers, out.terms)
