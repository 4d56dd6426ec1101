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
