"""The training loop: every method trains, resumes exactly, and fails loudly."""

import json
import subprocess
import sys

import pytest
import torch

from ccl.checkpoint import CheckpointError, load_checkpoint
from ccl.config import Config, apply_overrides, preset
from ccl.engine import build_optimizer, train
from ccl.errors import NonFiniteLossError
from ccl.models import build_model
from ccl.objectives import build_objective

TINY = [
    "data.synthetic_train=16",
    "data.synthetic_val=8",
    "data.synthetic_classes=4",
    "data.batch_size=4",
    "data.clip_frames=4",
    "data.size=16",
    "train.progress=false",
    "train.log_every=1",
]


def _cfg(method, tmp_path, *extra):
    cfg = preset(f"smoke-{method}")
    return apply_overrides(cfg, [*TINY, f"train.out_dir={tmp_path}", *extra])


def _networks(cfg, num_samples=None):
    """The student and objective of ``cfg`` for the tiny data's 4 classes."""
    student = build_model(cfg.student, 4)
    objective = build_objective(
        cfg.objective,
        cfg.image_teacher,
        cfg.data,
        num_classes=4,
        feature_dim=student.feature_dim,
        seed=cfg.train.seed,
        num_samples=num_samples,
    )
    return student, objective


@pytest.mark.parametrize("method", ["baseline", "ccl-a", "ccl-i", "ccl-ai"])
def test_each_method_trains_and_logs(method, tmp_path):
    cfg = _cfg(method, tmp_path, "train.epochs=1")
    torch.manual_seed(0)
    before = build_model(cfg.student, 4).state_dict()
    result = train(cfg)
    state = load_checkpoint(result.run_dir / "checkpoints" / "last.pt")
    after = state["student"]
    changed = [
        k
        for k in before
        if before[k].dtype.is_floating_point and not torch.equal(before[k], after[k])
    ]
    assert len(changed) > 0.5 * len(before)
    records = [
        json.loads(line) for line in (result.run_dir / "metrics.jsonl").read_text().splitlines()
    ]
    steps = [r for r in records if r["type"] == "step"]
    epoch = [r for r in records if r["type"] == "epoch"][-1]
    assert len(steps) == 4
    for r in steps:
        assert all(v == v and abs(v) != float("inf") for v in r.values() if isinstance(v, float))
        assert r["clips_per_s"] > 0 and "lr/student" in r
    if method != "baseline":
        teacher = "audio" if "a" in method.split("-")[1] else "image"
        assert f"train/{teacher}/contrast_vm" in epoch and f"train/{teacher}/jsd" in epoch
        assert "lr/heads" in epoch and state["heads"]
    assert 0.0 <= epoch["val/top1"] <= epoch["val/top5"] <= 1.0
    saved = json.loads((result.run_dir / "config.json").read_text())
    assert Config.from_dict(saved) == cfg == Config.from_dict(state["config"])


def test_resume_reproduces_uninterrupted_run(tmp_path):
    full = train(_cfg("ccl-ai", tmp_path / "a", "train.epochs=2", "train.name=r"))
    first = train(_cfg("ccl-ai", tmp_path / "b", "train.epochs=1", "train.name=r"))
    resumed = train(
        _cfg("ccl-ai", tmp_path / "b", "train.epochs=2", "train.name=r", "train.resume=auto")
    )
    a = load_checkpoint(full.run_dir / "checkpoints" / "last.pt")
    b = load_checkpoint(resumed.run_dir / "checkpoints" / "last.pt")
    assert first.run_dir == resumed.run_dir and b["epoch"] == 2 and b["batch_in_epoch"] == 0
    for part in ("student", "heads"):
        for k in a[part]:
            torch.testing.assert_close(b[part][k], a[part][k], rtol=0, atol=0, msg=k)
    la = [json.loads(x) for x in (full.run_dir / "metrics.jsonl").read_text().splitlines()]
    lb = [json.loads(x) for x in (resumed.run_dir / "metrics.jsonl").read_text().splitlines()]

    def timeless(records):
        return [
            {
                k: v
                for k, v in r.items()
                if "per_s" not in k and not k.endswith("_s") and k != "time"
            }
            for r in records
        ]

    assert timeless(la) == timeless(lb)


def test_killed_run_resumes_from_last_good_checkpoint(tmp_path):
    """SIGKILL a training process after its first checkpoint, then resume to the end."""
    args = [*TINY, f"train.out_dir={tmp_path}", "train.name=k", "train.epochs=30"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "ccl.cli", "train", "--preset", "smoke-baseline", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    last = tmp_path / "k" / "checkpoints" / "last.pt"
    for line in proc.stdout:
        if line.startswith("epoch 2/"):
            break
    proc.kill()
    proc.wait()
    epochs_done = load_checkpoint(last)["epoch"]
    assert 1 <= epochs_done < 30
    result = train(
        apply_overrides(
            preset("smoke-baseline"),
            [*args, "train.epochs=" + str(epochs_done + 1), "train.resume=auto"],
        )
    )
    assert load_checkpoint(result.run_dir / "checkpoints" / "last.pt")["epoch"] == epochs_done + 1


def test_truncated_checkpoint_is_reported_and_skipped(tmp_path, capsys):
    result = train(_cfg("baseline", tmp_path, "train.epochs=2", "train.save_every=1"))
    last = result.run_dir / "checkpoints" / "last.pt"
    last.write_bytes(last.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="last.pt"):
        load_checkpoint(last)
    from ccl.checkpoint import find_resume_checkpoint

    capsys.readouterr()
    assert find_resume_checkpoint(result.run_dir).name == "epoch_0002.pt"
    captured = capsys.readouterr()
    assert captured.out == ""  # a warning goes to stderr, once
    assert captured.err.count("\n") == 1
    warning = f"warning: skipping unusable checkpoint: cannot read checkpoint {last}"
    assert captured.err.startswith(warning)


def test_pickled_object_checkpoint_is_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    path = tmp_path / "evil.pt"
    torch.save({"student": Evil()}, path)
    with pytest.raises(CheckpointError, match="evil.pt"):
        load_checkpoint(path)


def test_non_finite_loss_stops_with_clear_message(tmp_path):
    cfg = _cfg("baseline", tmp_path, "train.epochs=1", "optim.lr=1e30", "optim.momentum=0")
    with pytest.raises(NonFiniteLossError, match=r"non-finite loss at epoch 1, step \d+: ce=") as e:
        train(cfg)
    assert "No checkpoint was saved yet" in str(e.value)  # none before the first epoch ends


def test_optimizer_groups_and_schedules(tmp_path):
    cfg = _cfg("ccl-a", tmp_path, "optim.milestones=2,4", "optim.lr=0.1", "optim.head_lr=0.01")
    student, objective = _networks(cfg)
    opt, sched = build_optimizer(cfg, student, objective)
    assert [g["name"] for g in opt.param_groups] == ["student", "heads"]
    lrs = []
    for _ in range(5):
        lrs.append(tuple(round(g["lr"], 6) for g in opt.param_groups))
        opt.step()
        sched.step()
    assert lrs == [(0.1, 0.01), (0.1, 0.01), (0.01, 0.01), (0.01, 0.01), (0.001, 0.01)]
    g = opt.param_groups[0]
    assert (g["momentum"], g["weight_decay"], g["dampening"]) == (0.9, 5e-4, 0.0)


def test_image_teacher_without_weights_is_an_error(tmp_path):
    cfg = apply_overrides(preset("ucf51-ccl-i"), ["data.source=synthetic"])
    with pytest.raises(ValueError, match="image_teacher.weights"):
        build_objective(
            cfg.objective, cfg.image_teacher, cfg.data, num_classes=51, feature_dim=512, seed=1
        )


def test_sigkill_mid_epoch_then_resume_matches_uninterrupted(tmp_path):
    args = [
        *TINY,
        "data.synthetic_train=32",
        "train.epochs=2",
        "train.checkpoint_every_steps=1",
        "train.deterministic=true",
    ]
    full = train(
        apply_overrides(preset("smoke-ccl-ai"), [*args, f"train.out_dir={tmp_path / 'a'}"])
    )
    out = tmp_path / "b"
    cmd = [
        sys.executable,
        "-m",
        "ccl.cli",
        "train",
        "--preset",
        "smoke-ccl-ai",
        *args,
        f"train.out_dir={out}",
    ]
    env = {**__import__("os").environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    last = out / "smoke-ccl-ai" / "checkpoints" / "last.pt"
    killed_at = None
    while proc.poll() is None:
        if last.is_file():
            try:
                state = load_checkpoint(last)
            except CheckpointError:
                continue
            if state["batch_in_epoch"] >= 3:
                proc.kill()
                killed_at = (state["epoch"], state["batch_in_epoch"])
                break
    proc.wait()
    assert killed_at is not None, "the run ended before it could be killed"
    state = load_checkpoint(last)
    assert state["batch_in_epoch"] > 0, "the kill should land mid-epoch"
    resumed = train(
        apply_overrides(
            preset("smoke-ccl-ai"), [*args, f"train.out_dir={out}", "train.resume=auto"]
        )
    )
    a = load_checkpoint(full.run_dir / "checkpoints" / "last.pt")
    b = load_checkpoint(resumed.run_dir / "checkpoints" / "last.pt")
    for part in ("student", "heads"):
        for k in a[part]:
            torch.testing.assert_close(b[part][k], a[part][k], rtol=1e-6, atol=1e-7, msg=k)
    records = [
        [json.loads(x) for x in (r.run_dir / "metrics.jsonl").read_text().splitlines()]
        for r in (full, resumed)
    ]
    epochs = [[r for r in recs if r["type"] == "epoch"] for recs in records]
    assert len(epochs[0]) == len(epochs[1]) == 2
    for ea, eb in zip(*epochs):
        assert eb["train/ce"] == pytest.approx(ea["train/ce"], rel=1e-5)
        assert eb["val/top1"] == ea["val/top1"]
    steps = [[r["step"] for r in recs if r["type"] == "step"] for recs in records]
    assert steps[0] == steps[1]  # no step logged twice or lost


@pytest.mark.parametrize("method", ["fitnet", "pkt", "cc", "rkd", "crd", "cmc"])
def test_compared_distillation_methods_train_through_the_same_loop(method, tmp_path):
    cfg = _cfg("ccl-ai", tmp_path, "train.epochs=1", f"objective.method={method}")
    result = train(cfg)
    state = load_checkpoint(result.run_dir / "checkpoints" / "last.pt")
    # regressors, embeddings and memory banks are checkpointed; PKT, CC and RKD have none
    assert bool(state["heads"]) == (method in ("fitnet", "crd", "cmc"))
    if method == "crd":
        assert any("memory" in k or "bank" in k for k in state["heads"])
    epoch = [json.loads(x) for x in (result.run_dir / "metrics.jsonl").read_text().splitlines()][-1]
    assert f"train/audio/{method}" in epoch and f"train/image/{method}" in epoch


def test_cli_method_and_teachers(capsys):
    from ccl.cli import main

    assert main(["train", "--method", "crd", "--teachers", "both", "--print-config"]) == 0
    cfg = json.loads(capsys.readouterr().out)
    assert cfg["objective"]["method"] == "crd" and cfg["objective"]["teachers"] == [
        "audio",
        "image",
    ]
    assert cfg["train"]["name"] == "ucf51-crd-both"
    assert preset("ucf51-pkt-ai").objective.teachers == ("audio", "image")


def _run_cli(*args):
    """``ccl`` in a subprocess: (exit code, stdout + stderr)."""
    env = {**__import__("os").environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run(
        [sys.executable, "-m", "ccl.cli", *args], capture_output=True, text=True, env=env
    )
    return out.returncode, out.stdout + out.stderr


def test_rerun_of_a_run_name_is_refused_and_overwrite_moves_the_run_aside(tmp_path, tree_hashes):
    """Presets fix the run name: a second run must not replace the first's checkpoints."""
    train(_cfg("baseline", tmp_path, "train.name=X", "train.epochs=2"))
    before = tree_hashes(tmp_path)
    code, out = _run_cli(
        "train",
        "--preset",
        "smoke-baseline",
        *TINY,
        f"train.out_dir={tmp_path}",
        "train.name=X",
        "train.epochs=1",
    )
    assert code == 1 and "Traceback" not in out
    assert str(tmp_path / "X") in out
    assert "--resume auto" in out and "train.name" in out and "--overwrite" in out
    assert tree_hashes(tmp_path) == before

    result = train(_cfg("baseline", tmp_path, "train.name=X", "train.epochs=1"), overwrite=True)
    moved = tmp_path / "X.old-1"
    assert tree_hashes(moved) == {k.split("/", 1)[1]: v for k, v in before.items()}
    assert load_checkpoint(result.run_dir / "checkpoints" / "last.pt")["epoch"] == 1
    assert len((result.run_dir / "metrics.jsonl").read_text().splitlines()) == 5  # one run
    with pytest.raises(ValueError, match="--overwrite"):
        train(_cfg("baseline", tmp_path, "train.name=X", "train.resume=auto"), overwrite=True)


@pytest.mark.parametrize("damage", ["truncated", "pickled code"])
def test_resume_auto_without_a_usable_checkpoint_stops_and_keeps_best(
    damage, tmp_path, tree_hashes, capsys
):
    from ccl.cli import main

    train(_cfg("baseline", tmp_path, "train.name=X", "train.epochs=1"))
    last = tmp_path / "X" / "checkpoints" / "last.pt"
    if damage == "truncated":
        last.write_bytes(last.read_bytes()[:1000])
    else:

        class Evil:
            def __reduce__(self):
                return (print, ("pwned",))

        torch.save({"student": Evil()}, last)
    before = tree_hashes(tmp_path)
    args = [*TINY, f"train.out_dir={tmp_path}", "train.name=X", "train.epochs=2"]
    assert main(["train", "--preset", "smoke-baseline", "--resume", "auto", *args]) == 1
    err = capsys.readouterr().err
    assert f"cannot resume {tmp_path / 'X'}" in err and str(last) in err
    assert "intact: best.pt (epoch 1)" in err and "pwned" not in err
    assert tree_hashes(tmp_path) == before


def test_resume_refuses_data_with_other_classes(tmp_path, tree_hashes):
    """Other data settings are refused by name; data of other classes under the same
    settings (annotations moved, then replaced) by the class check."""
    from ccl.checkpoint import ClassMismatchError, save_checkpoint

    train(_cfg("baseline", tmp_path, "train.name=X", "train.epochs=1"))
    before = tree_hashes(tmp_path)
    cfg = _cfg(
        "baseline",
        tmp_path,
        "train.name=X",
        "train.epochs=2",
        "train.resume=auto",
        "data.synthetic_classes=3",
    )
    with pytest.raises(ValueError, match=r"data.synthetic_classes 4 -> 3 \(these cannot change"):
        train(cfg)
    assert tree_hashes(tmp_path) == before
    last = tmp_path / "X" / "checkpoints" / "last.pt"
    state = load_checkpoint(last)
    state["config"]["data"]["synthetic_classes"] = 3  # same settings, a checkpoint of 4 classes
    save_checkpoint(state, last)
    before = tree_hashes(tmp_path)
    with pytest.raises(ClassMismatchError, match=r"class 3 \('class_03'\) is only in checkpoint"):
        train(cfg)
    assert tree_hashes(tmp_path) == before


def test_stale_checkpoint_temporaries_are_removed_at_start(tmp_path, capsys):
    """A SIGKILL during a save leaves ``.last.pt.*.tmp``; the run's next start removes it."""
    ckpt_dir = tmp_path / "X" / "checkpoints"
    ckpt_dir.mkdir(parents=True)
    stale = ckpt_dir / ".last.pt.k1ll3d.tmp"
    stale.write_bytes(b"half a checkpoint")
    other = tmp_path / "X" / "notes.tmp"  # not a checkpoint temporary: kept
    other.write_text("mine")
    train(_cfg("baseline", tmp_path, "train.name=X", "train.epochs=1"))  # not a run yet
    assert not stale.exists() and other.exists()
    assert "removed a temporary file left by an interrupted save" in capsys.readouterr().out
    stale.write_bytes(b"half a checkpoint")
    train(_cfg("baseline", tmp_path, "train.name=X", "train.epochs=2", "train.resume=auto"))
    assert sorted(p.name for p in ckpt_dir.iterdir()) == ["best.pt", "last.pt"]


def test_full_disk_during_a_checkpoint_save_names_the_file_and_enospc(tmp_path, monkeypatch):
    """torch's zip writer reports a failed write as "unexpected pos"; the error must name the
    checkpoint and the cause, and leave no temporary behind."""
    import errno
    import os

    import ccl.atomic
    import ccl.checkpoint as ckpt

    real_fdopen = os.fdopen

    class FullDisk:
        def __init__(self, f):
            self.f, self.room = f, 600

        def write(self, data):  # as a file on a full disk: a short write, then ENOSPC
            data = memoryview(data).cast("B")
            if not self.room:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            n = min(len(data), self.room)
            self.room -= n
            return self.f.write(data[:n])

        def __getattr__(self, name):
            return getattr(self.f, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

    monkeypatch.setattr(ccl.atomic.os, "fdopen", lambda fd, mode: FullDisk(real_fdopen(fd, mode)))
    path = tmp_path / "checkpoints" / "last.pt"
    with pytest.raises(OSError) as e:
        ckpt.save_checkpoint({"student": torch.zeros(100_000)}, path)
    assert e.value.errno == errno.ENOSPC and e.value.filename == str(path)
    assert "ENOSPC" in str(e.value) and "unexpected pos" not in str(e.value)
    assert list(path.parent.iterdir()) == []


def test_resume_auto_before_any_checkpoint_starts_over_with_one_log(tmp_path):
    """A run killed in its first epoch left a config and a log, no checkpoint: a fresh start
    refuses the folder, ``--resume auto`` starts over and keeps only the new log (as
    ``ccl demo`` does with the runs of an interrupted demo)."""
    from ccl.runs import RunExistsError

    run_dir = tmp_path / "X"
    run_dir.mkdir()
    (run_dir / "config.json").write_text("{}")
    (run_dir / "metrics.jsonl").write_text('{"type": "step", "epoch": 1, "step": 1}\n{"ty')
    with pytest.raises(RunExistsError, match="config.json, metrics.jsonl"):
        train(_cfg("baseline", tmp_path, "train.name=X", "train.epochs=1"))
    result = train(
        _cfg("baseline", tmp_path, "train.name=X", "train.epochs=1", "train.resume=auto")
    )
    records = [json.loads(x) for x in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["type"] for r in records] == ["step"] * 4 + ["epoch"]


def test_adamw_optimizer_keeps_the_groups_and_schedules(tmp_path):
    cfg = _cfg("ccl-a", tmp_path, "optim.name=adamw", "optim.lr=0.002", "optim.milestones=1")
    cfg.optim.weight_decay = 0.01
    student, objective = _networks(cfg)
    opt, sched = build_optimizer(cfg, student, objective)
    assert isinstance(opt, torch.optim.AdamW)
    assert [g["name"] for g in opt.param_groups] == ["student", "heads"]
    assert all(g["weight_decay"] == 0.01 for g in opt.param_groups)
    opt.step()
    sched.step()
    assert [round(g["lr"], 6) for g in opt.param_groups] == [0.0002, 0.05]  # heads constant


def test_grad_norms_of_the_student_loss_parts(tmp_path):
    """The logged grad/<part> equals the norm of that part's gradient on the student's
    parameters computed by its own backward pass, and the parts add up to L_v."""
    from ccl.engine import TrainModule, build_datasets, grad_norms
    from ccl.objectives import Batch
    from ccl.runtime import to_batch

    cfg = _cfg("ccl-ai", tmp_path)
    torch.manual_seed(0)
    train_set, _, _ = build_datasets(cfg)
    student, objective = _networks(cfg, len(train_set))
    module = TrainModule(student, objective)
    raw = torch.utils.data.default_collate([train_set[i] for i in range(4)])
    mean = torch.tensor(cfg.data.mean).view(1, 3, 1, 1, 1)
    std = torch.tensor(cfg.data.std).view(1, 3, 1, 1, 1)
    batch: Batch = to_batch(raw, torch.device("cpu"), mean, std)
    _, result = module(batch)
    parts = result.student_terms
    assert set(parts) == {"ce", "contrast", "divergence"}
    assert torch.allclose(sum(parts.values()), result.terms["loss_v"], atol=1e-6)
    params = [p for p in student.parameters() if p.requires_grad]
    logged = grad_norms(parts, params)
    for name, part in parts.items():
        module.zero_grad(set_to_none=True)
        part.backward(retain_graph=True)
        expected = torch.sqrt(sum(p.grad.pow(2).sum() for p in params if p.grad is not None))
        assert torch.allclose(logged[f"grad/{name}"], expected, rtol=1e-5), name
        assert float(expected) > 0


def test_grad_norm_every_logs_the_parts(tmp_path):
    cfg = _cfg("ccl-a", tmp_path, "train.epochs=1", "train.grad_norm_every=2")
    result = train(cfg)
    records = [json.loads(x) for x in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in records if r["type"] == "step"]
    with_norms = [r["step"] for r in steps if "grad/ce" in r]
    assert with_norms == [2, 4]
    assert all(r["grad/contrast"] > 0 and "grad/divergence" in r for r in steps if "grad/ce" in r)
    epoch = [r for r in records if r["type"] == "epoch"][-1]
    assert epoch["train/grad/ce"] > 0


@pytest.mark.parametrize("method", ["baseline", "ccl-ai"])
def test_compiled_step_gives_the_eager_losses_and_gradients(method, tmp_path):
    """``train.compile`` compiles student, image teacher and objective as one graph
    (``fullgraph=True`` fails on any graph break), and one training step through it gives
    the eager step's losses and gradients, the teacher's random frame included. The
    ``aot_eager`` backend captures the same forward and backward graphs as inductor without
    generating code (inductor takes minutes here; its kernels are PyTorch's to test)."""
    import random

    from ccl.engine import TrainModule, build_datasets, compile_step, train_step
    from ccl.runtime import to_batch

    cfg = _cfg(method, tmp_path)
    train_set, _, _ = build_datasets(cfg)
    raw = torch.utils.data.default_collate([train_set[i] for i in range(4)])
    mean = torch.tensor(cfg.data.mean).view(1, 3, 1, 1, 1)
    std = torch.tensor(cfg.data.std).view(1, 3, 1, 1, 1)
    batch = to_batch(raw, torch.device("cpu"), mean, std)

    def one_step(compiled: bool):
        torch.manual_seed(0)
        student, objective = _networks(cfg, len(train_set))
        optimizer, _ = build_optimizer(cfg, student, objective)
        plain = TrainModule(student, objective)
        module = compile_step(plain, backend="aot_eager", fullgraph=True) if compiled else plain
        random.seed(1)  # the image teacher's frame
        scaler = torch.amp.GradScaler("cpu", enabled=False)
        terms, _ = train_step(module, batch, optimizer, scaler, "fp32")
        grads = {n: p.grad for n, p in plain.named_parameters() if p.grad is not None}
        return terms, grads

    eager_terms, eager_grads = one_step(False)
    terms, grads = one_step(True)
    assert terms.keys() == eager_terms.keys()
    for name, value in eager_terms.items():
        assert terms[name] == pytest.approx(value, rel=1e-5, abs=1e-7), name
    assert grads.keys() == eager_grads.keys() and len(grads) > 10
    if method != "baseline":
        assert any(n.startswith("objective.heads") for n in grads)
    for name, g in eager_grads.items():
        torch.testing.assert_close(grads[name], g, rtol=1e-5, atol=1e-7, msg=name)


@pytest.mark.parametrize("name", ["adamw", "sgd"])
def test_fused_optimizer_step_equals_the_loop(name, tmp_path):
    """optim.fused (torch's fused kernels, the default) makes the update of the loop of small
    ops, up to floating-point order."""
    from ccl.engine import build_optimizer

    steps = {}
    for fused in (False, True):
        cfg = _cfg("ccl-ai", tmp_path, f"optim.name={name}", f"optim.fused={str(fused).lower()}")
        torch.manual_seed(0)
        student, objective = _networks(cfg)
        optimizer, _ = build_optimizer(cfg, student, objective)
        assert all(bool(g.get("fused")) == fused for g in optimizer.param_groups)
        params = [p for g in optimizer.param_groups for p in g["params"]]
        torch.manual_seed(1)
        for _ in range(3):
            for p in params:
                p.grad = torch.randn_like(p)
            optimizer.step()
        steps[fused] = [p.detach().clone() for p in params]
    for loop, fused in zip(steps[False], steps[True]):
        torch.testing.assert_close(fused, loop, rtol=1e-5, atol=1e-6)


def test_a_resume_may_switch_the_optimizer_kernels(tmp_path):
    """A run saved with the loop of small ops resumes with the fused kernels (and back):
    the kernel choice is the resuming run's, recorded in its config."""
    first = train(_cfg("baseline", tmp_path, "train.epochs=1", "train.name=k", "optim.fused=false"))
    resumed = train(
        _cfg("baseline", tmp_path, "train.epochs=2", "train.name=k", "train.resume=auto")
    )
    assert resumed.run_dir == first.run_dir
    state = load_checkpoint(resumed.run_dir / "checkpoints" / "last.pt")
    assert state["epoch"] == 2 and state["config"]["optim"]["fused"] is True
    assert all(g["fused"] for g in state["optimizer"]["param_groups"])
    assert json.loads((resumed.run_dir / "config.json").read_text())["optim"]["fused"] is True
