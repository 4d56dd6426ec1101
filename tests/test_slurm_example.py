"""examples/slurm/train.sbatch: valid bash, and the command it builds from SLURM's environment
(a fake ``scontrol`` stands in for the cluster's)."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "examples" / "slurm" / "train.sbatch"
BASH = shutil.which("bash")

pytestmark = pytest.mark.skipif(BASH is None, reason="needs bash")


def run_script(tmp_path: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    scontrol = bin_dir / "scontrol"  # `scontrol show hostnames gpu[07-08]`
    scontrol.write_text("#!/bin/sh\nprintf 'gpu07\\ngpu08\\n'\n")
    scontrol.chmod(0o755)
    clean = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    full_env = {**clean, "PATH": f"{bin_dir}:{clean.get('PATH', '')}", **env}
    return subprocess.run(
        [BASH, str(SCRIPT), *args], env=full_env, capture_output=True, text=True, timeout=30
    )


def test_the_script_is_valid_bash():
    out = subprocess.run([BASH, "-n", str(SCRIPT)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


def test_dry_run_prints_the_torchrun_command_built_from_slurms_environment(tmp_path):
    slurm = {
        "SLURM_JOB_NODELIST": "gpu[07-08]",
        "SLURM_NNODES": "2",
        "SLURM_JOB_ID": "4242",
        "SLURM_GPUS_ON_NODE": "8",
        "PRESET": "ucf51-baseline",
        "DRY_RUN": "1",
    }
    out = run_script(tmp_path, slurm, "data.annotations=my data.json", "data.batch_size=64")
    assert out.returncode == 0, out.stderr
    assert shlex.split(out.stdout) == [
        "srun", "--nodes=2", "--ntasks-per-node=1", "--kill-on-bad-exit=1",
        "torchrun", "--nnodes", "2", "--nproc_per_node", "8",
        "--rdzv_backend", "c10d", "--rdzv_endpoint", "gpu07:29500", "--rdzv_id", "4242",
        "-m", "ccl.cli", "train", "--preset", "ucf51-baseline", "--resume", "auto",
        "data.annotations=my data.json", "data.batch_size=64",
    ]  # fmt: skip
    out = run_script(tmp_path, {**slurm, "GPUS_PER_NODE": "2", "MASTER_PORT": "1234"})
    command = shlex.split(out.stdout)
    assert command[command.index("--nproc_per_node") + 1] == "2"
    assert command[command.index("--rdzv_endpoint") + 1] == "gpu07:1234"


def test_outside_a_slurm_job_it_refuses_in_one_line(tmp_path):
    out = run_script(tmp_path, {"DRY_RUN": "1"})
    assert out.returncode == 2 and out.stdout == ""
    assert out.stderr.strip().splitlines() == [
        "train.sbatch: not in a SLURM job (no SLURM_JOB_NODELIST): submit it with sbatch"
    ]
