"""ccl.cpu_allocator: glibc keeps freed memory for reuse, training applies it on a CPU, and
the results do not change. Each case runs in a fresh process (malloc settings are global)."""

import json
import os
import subprocess
import sys

import pytest
from test_engine import TINY  # the same seconds-fast smoke config

# One round is a step's working set: blocks of several sizes (up to 96 MiB, over glibc's
# largest mmap threshold of 32 MiB) live together, then all are freed. A single block freed
# and asked for again is not a fair test: torch asks for 64-byte aligned memory, and whether
# a freed block of exactly the same size fits that request depends on where the randomised
# heap starts (seen on CI: some processes kept taking new pages every round).
_FAULTS = """
import json, resource, sys, torch
from ccl.cpu_allocator import configure_cpu_allocator
applied = configure_cpu_allocator()
faults = []
for _ in range(12):
    f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    blocks = [torch.ones(n) for n in (16 << 20, 4 << 20, 24 << 20, 1 << 20)]
    product = blocks[0] * 2
    del blocks, product
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0)
print(json.dumps({"applied": applied, "faults": faults}))
"""

_TRAIN = """
import json, sys
from ccl import cpu_allocator
from ccl.config import apply_overrides, preset
from ccl.engine import train
cfg = apply_overrides(preset("smoke-ccl-ai"), sys.argv[2:] + [f"train.out_dir={sys.argv[1]}"])
run = train(cfg).run_dir
records = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
losses = [r[k] for r in records if r["type"] == "step" for k in ("loss_v", "loss_heads")]
print(json.dumps({"applied": cpu_allocator.is_applied(), "losses": losses}))
"""


def _run(code, *args, opt_out=False):
    env = {k: v for k, v in os.environ.items() if k != "CCL_SYSTEM_MALLOC"}
    if opt_out:
        env["CCL_SYSTEM_MALLOC"] = "1"
    out = subprocess.run(
        [sys.executable, "-c", code, *map(str, args)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_freed_memory_is_reused_without_page_faults():
    pages = (16 + 4 + 24 + 1 + 16) * 4 * (1 << 20) // 4096  # one round's blocks
    ours = _run(_FAULTS)
    system = _run(_FAULTS, opt_out=True)
    assert ours["applied"] is True and system["applied"] is False
    seen = f"faults per round: ours {ours['faults']}, system {system['faults']}"
    # the system's malloc maps (and the kernel zero-fills) the big blocks anew every round
    assert all(f > 0.5 * pages for f in system["faults"]), seen
    # ours reuses the pages freed before once the heap has reached the working set's size
    # (a few rounds, while the small blocks glibc keeps between the big ones find places)
    steady = slice(6, None)
    assert sum(ours["faults"][steady]) < 0.05 * sum(system["faults"][steady]), seen


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_training_on_cpu_applies_it_and_the_losses_do_not_change(tmp_path):
    settings = [
        *TINY,
        "train.device=cpu",
        "train.epochs=1",
        "train.max_steps_per_epoch=3",
        "train.val_every=0",
    ]
    ours = _run(_TRAIN, tmp_path / "ours", *settings)
    system = _run(_TRAIN, tmp_path / "system", *settings, opt_out=True)
    assert ours["applied"] is True and system["applied"] is False
    assert len(ours["losses"]) == 6  # 3 steps
    assert ours["losses"] == pytest.approx(system["losses"], rel=1e-6, abs=1e-6)
