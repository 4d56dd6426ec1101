"""Layering: data preparation does not depend on the networks in ``ccl.models``, and its
command line is built without torch."""

from __future__ import annotations

import json
import os
import pkgutil
import subprocess
import sys
from pathlib import Path

import ccl
import ccl.data

# Extraction runs the PANNs network, so it may import ccl.models (whose package init loads
# the teachers); every other data module must not.
USES_MODELS = {"audio_features"}

_PROBE = """
import importlib, json, sys
first = {}
for name in sys.argv[1:]:
    importlib.import_module("ccl.data." + name)
    for mod in ("ccl.models", "ccl.models.teachers"):
        if mod in sys.modules:
            first.setdefault(mod, name)
print(json.dumps(first))
"""


def test_data_modules_do_not_import_models() -> None:
    """Importing each ``ccl.data`` module in a fresh interpreter leaves ``ccl.models`` (and
    so ``ccl.models.teachers``) unimported; the output names the first module that pulls
    it in."""
    names = sorted(m.name for m in pkgutil.iter_modules(ccl.data.__path__))
    checked = [n for n in names if n not in USES_MODELS]
    assert {"archive", "audio", "datasets", "annotations", "media", "prepare", "store"} <= set(
        checked
    )
    src = str(Path(ccl.__file__).resolve().parents[1])
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")]),
        "OMP_NUM_THREADS": "1",
    }
    out = subprocess.run(
        [sys.executable, "-c", _PROBE, *checked],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    assert json.loads(out.stdout) == {}


_PARSER_PROBE = """
import argparse, sys
from ccl.commands.prepare import register
parser = argparse.ArgumentParser(prog="ccl")
register(parser.add_subparsers(dest="command"))
parser.parse_args(["prepare", "videos", "SRC", "DST"])
parser.parse_args(["extract-audio", "SRC", "--checkpoint", "c.pth", "--out", "O"])
assert "torch" not in sys.modules, "torch"
"""


def test_prepare_commands_parse_without_torch() -> None:
    """Building and parsing ``ccl prepare``, ``extract-audio`` and ``import-audio-features``
    loads no torch: the library work is imported when a command runs."""
    src = str(Path(ccl.__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": src, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-c", _PARSER_PROBE], capture_output=True, text=True, env=env
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
