"""Module boundaries: the commands that only run a trained network do not load the training
loop, so editing the loop cannot break ``ccl evaluate``, ``ccl predict`` or the teachers'
pretraining."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

import ccl

SRC = Path(ccl.__file__).resolve().parents[1]  # the checkout under test, not an install


@pytest.mark.parametrize("module", ["ccl.evaluation", "ccl.predict", "ccl.demo.pretrain"])
def test_module_does_not_import_the_training_loop(module):
    code = f"import sys, {module}; assert 'ccl.engine' not in sys.modules"
    env = {**os.environ, "PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]


@pytest.mark.parametrize(
    "module", ["ccl.cli", "ccl.objectives.registry", "ccl.data.cli", "ccl.report", "ccl.atomic"]
)
def test_command_line_and_registry_load_without_torch(module):
    """The parser reads its method choices from the registry; neither may pull in torch
    (``ccl --help`` and ``ccl prepare`` stay light)."""
    code = f"import sys, {module}; assert 'torch' not in sys.modules, 'torch'"
    env = {**os.environ, "PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
