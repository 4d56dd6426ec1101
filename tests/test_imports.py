"""Module boundaries: the commands that only run a trained network do not load the training
loop, so editing the loop cannot break ``ccl evaluate``, ``ccl predict`` or the teachers'
pretraining."""

import json
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
    "module",
    [
        "ccl.cli",
        "ccl.commands.train",
        "ccl.commands.evaluate",
        "ccl.commands.presets",
        "ccl.commands.predict",
        "ccl.commands.prepare",
        "ccl.commands.report",
        "ccl.objectives.registry",
        "ccl.report",
        "ccl.runs",
        "ccl.plots",
        "ccl.atomic",
    ],
)
def test_command_line_and_registry_load_without_torch(module):
    """The parser reads its method choices from the registry; neither may pull in torch
    (``ccl --help`` and ``ccl prepare`` stay light)."""
    code = f"import sys, {module}; assert 'torch' not in sys.modules, 'torch'"
    env = {**os.environ, "PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]


# Builds the parser, then asks every command for its help, in one fresh interpreter; prints
# what was loaded of torch after each step and the commands whose help did not answer.
_PARSER_SCRIPT = """
import contextlib, io, json, sys
from ccl.cli import build_parser, main

parser = build_parser()
torch_after_build = "torch" in sys.modules
commands = sorted(parser._subparsers._group_actions[0].choices)
failed = {}
for name in commands:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        try:
            main([name, "--help"])
            failed[name] = "no SystemExit"
        except SystemExit as exc:
            if exc.code != 0 or "usage: ccl " + name not in out.getvalue():
                failed[name] = f"exit {exc.code}: {out.getvalue()[-500:]}"
print(json.dumps({"commands": commands, "failed": failed,
                  "torch_after_build": torch_after_build,
                  "torch_after_help": "torch" in sys.modules}))
"""


def _parser_in_a_fresh_process() -> dict:
    env = {**os.environ, "PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-c", _PARSER_SCRIPT], env=env, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_every_command_answers_help_in_a_fresh_process():
    result = _parser_in_a_fresh_process()
    assert {"train", "evaluate", "presets", "predict", "embed"} <= set(result["commands"])
    assert result["failed"] == {}


def test_building_the_parser_imports_no_torch():
    """``ccl --help`` and every ``ccl CMD --help`` answer without loading torch: command
    modules import the library inside their ``run`` only."""
    result = _parser_in_a_fresh_process()
    assert not result["torch_after_build"], "build_parser() imported torch"
    assert not result["torch_after_help"], "a command's --help imported torch"
