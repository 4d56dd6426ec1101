"""The single-backward CCL objective gives every parameter the reference's gradient."""

import pytest
import torch
import torch.nn.functional as F

from ccl.models import CompositionHead, ImageTeacher, build_student
from ccl.objectives import BaselineObjective, Batch, CCLObjective
from reference_impl import jsd_reference, sym_nce, tiny_image_teacher

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


def _reference_grads(student, objective, batch, teachers):
    """The reference's procedure: per-head losses backward with retain_graph, the heads'
    gradients zeroed before their own loss, the student's before L_v, then L_v."""
    out = student(batch.clip)
    v, logits, y = out.feature, out.logits, batch.label
    w = 1.0 / len(teachers)
    student_terms, head_losses = [], {}
    for t in teachers:
        head, tau = objective.heads[t], {"audio": 0.5, "image": 0.1}[t]
        if t == "audio":
            keep = batch.audio.sum(1) != 0  # the reference's availability rule
            x_t, tv, tl, ty = batch.audio[keep], v[keep], logits[keep], y[keep]
        else:
            with torch.no_grad():
                x_t = objective.image_teacher.net(batch.clip[:, :, batch.clip.shape[2] // 2])
            tv, tl, ty = v, logits, y
        m_logits, m = head(x_t, tv)
        s_vm, s_vt, s_mt = (
            sym_nce(tv, m, ty, tau),
            sym_nce(tv, x_t, ty, tau),
            sym_nce(m, x_t, ty, tau),
        )
        j = jsd_reference(tl, m_logits)
        student_terms.append(s_vm + s_vt + j)
        head_losses[t] = F.cross_entropy(m_logits, ty) + s_vm + s_mt + j
    loss_v = F.cross_entropy(logits, y) + w * sum(student_terms)
    for t in teachers:
        for p in objective.heads[t].parameters():
            p.grad = None
        head_losses[t].backward(retain_graph=True)
    for p in student.parameters():
        p.grad = None
    loss_v.backward()
    return {
        n: p.grad.clone()
        for n, p in [*student.named_parameters(), *objective.heads.named_parameters()]
    }


def _our_grads(student, objective, batch):
    for p in [*student.parameters(), *objective.parameters()]:
        p.grad = None
    out = objective(student(batch.clip), batch)
    out.loss.backward()
    return {
        n: p.grad.clone()
        for n, p in [*student.named_parameters(), *objective.heads.named_parameters()]
    }


@pytest.mark.parametrize("teachers", [("audio",), ("image",), ("audio", "image")])
def test_single_backward_equals_reference_multi_backward(teachers):
    student, objective, batch = _setup(teachers)
    ref = _reference_grads(student, objective, batch, teachers)
    ours = _our_grads(student, objective, batch)
    assert ref.keys() == ours.keys()
    for name in ref:
        torch.testing.assert_close(ours[name], ref[name], rtol=1e-6, atol=1e-9, msg=name)
    # the heads' gradients include L_v: they differ from grad L_head alone
    assert any(ours[n].abs().sum() > 0 for n in ours if n.startswith(teachers[0]))


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


def test_samples_without_audio_only_leave_audio_terms():
    student, objective, batch = _setup(("audio",), missing_audio=range(6))
    out = objective(student(batch.clip), batch)
    out.loss.backward()
    assert "audio/contrast_vm" not in out.terms
    assert out.terms["audio/available"] == 0
    assert torch.isclose(out.loss, out.terms["ce"])
    assert all(p.grad is None for p in objective.heads.parameters())
    assert all(torch.isfinite(p.grad).all() for p in student.parameters() if p.grad is not None)


def test_baseline_is_cross_entropy():
    student, _, batch = _setup(("audio",))
    out = student(batch.clip)
    res = BaselineObjective()(out, batch)
    assert res.loss.item() == pytest.approx(F.cross_entropy(out.logits, batch.label).item())


def test_objective_validates_dims_and_teachers():
    with pytest.raises(ValueError, match="teachers"):
        CCLObjective(3, 32, ["video"])
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
