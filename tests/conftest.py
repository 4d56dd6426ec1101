import random

import numpy as np
import pytest
import torch


@pytest.fixture(autouse=True)
def _seed_and_threads():
    torch.manual_seed(0)
    random.seed(0)
    np.random.seed(0)
    torch.set_num_threads(1)  # tiny tensors: one thread is faster and steadier
    yield


def _tree_hashes(folder):
    """{relative path: sha256} of every file under ``folder``: equal before and after a
    refused command means it touched nothing."""
    import hashlib
    from pathlib import Path

    folder = Path(folder)
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture
def tree_hashes():
    return _tree_hashes


# A one-epoch baseline on 8 synthetic clips: a real run folder (config, checkpoints, logs) in
# seconds, for the tests of evaluate, predict and the commands' error messages.
TINY_RUN = (
    "data.synthetic_train=8",
    "data.synthetic_val=4",
    "data.batch_size=4",
    "data.clip_frames=4",
    "data.size=16",
    "train.epochs=1",
    "train.progress=false",
)


@pytest.fixture(scope="session")
def tiny_run_overrides():
    """The ``section.key=value`` overrides of the tiny run, for tests that train through the
    command line."""
    return list(TINY_RUN)


@pytest.fixture(scope="session")
def train_tiny_run():
    """``train_tiny_run(out_dir, *overrides)`` trains the tiny run into ``out_dir`` (later
    overrides win) and returns its run folder."""
    from ccl.config import apply_overrides, preset
    from ccl.engine import train

    def _train(out_dir, *overrides):
        cfg = apply_overrides(
            preset("smoke-baseline"), [*TINY_RUN, f"train.out_dir={out_dir}", *overrides]
        )
        return train(cfg).run_dir

    return _train
