"""Weights & Biases mirror of a run's ``metrics.jsonl`` (``train.wandb=true``).

Every numeric field of every record is logged under the name TensorBoard gets
(:mod:`ccl.tblog`: ``train/ce``, ``val/top1``, ``lr/student``, ...) at the record's global
step, and the resolved config is the W&B run's config. W&B holds one value per name and step:
where an epoch record shares a name with its epoch's last step record (``clips_per_s``,
``lr/student``), W&B keeps the epoch record's, logged last (TensorBoard keeps both).

The W&B run id is kept in the run folder (:data:`RUN_ID_FILE`), so a resumed run (``--resume
auto``) continues the same W&B run (``wandb.init(id=..., resume="allow")``). W&B never
rewrites a step it already holds: the steps a killed run logged after its last checkpoint
keep their first values there, while ``metrics.jsonl`` and TensorBoard hold the resumed
run's.

W&B's own settings come from its environment variables: ``WANDB_PROJECT`` (default
``ccl``), ``WANDB_ENTITY``, ``WANDB_MODE=offline`` (no network; ``wandb sync`` uploads
later), ``WANDB_DIR`` (default: the run folder, so its files sit in ``runs/<name>/wandb/``).
``wandb`` is an optional dependency (``pip install 'ccl[wandb]'``), imported only when asked
for.
"""

from __future__ import annotations

import os
import secrets
import string
from pathlib import Path
from types import ModuleType
from typing import Any

from ccl.atomic import write_text_atomic
from ccl.runs import metric_scalars

INSTALL_HINT = (
    "train.wandb=true needs the wandb package, which is not installed: "
    "pip install 'ccl[wandb]' (or pip install wandb), or leave train.wandb=false"
)
RUN_ID_FILE = "wandb_run_id"
"""File of the run folder holding the W&B run id its resumes continue."""
DEFAULT_PROJECT = "ccl"


def require_wandb() -> ModuleType:
    """The ``wandb`` module, or a RuntimeError saying how to install it (checked before
    training starts, on every rank, so no rank waits on a failed one)."""
    try:
        import wandb
    except ImportError as err:
        raise RuntimeError(INSTALL_HINT) from err
    return wandb


def run_id_for(run_dir: Path) -> str:
    """The W&B run id of the run in ``run_dir``: the one it recorded, else a new one (8
    lower-case letters and digits, as W&B draws them), recorded before W&B starts so a run
    killed at once still resumes into the same id."""
    path = run_dir / RUN_ID_FILE
    if path.is_file():
        recorded = path.read_text(encoding="utf-8").strip()
        if recorded:
            return recorded
    alphabet = string.ascii_lowercase + string.digits
    new_id = "".join(secrets.choice(alphabet) for _ in range(8))
    write_text_atomic(path, new_id + "\n")
    return new_id


class WandbLog:
    """Logs every numeric field of a metrics record to a W&B run at ``record["step"]``.

    ``config``: the run's resolved config (``Config.to_dict()``), the W&B run's config;
    ``name``: the W&B run's display name (``train.name``)."""

    def __init__(self, run_dir: str | Path, config: dict[str, Any], name: str) -> None:
        wandb = require_wandb()
        run_dir = Path(run_dir)
        self.run = wandb.init(
            project=os.environ.get("WANDB_PROJECT", DEFAULT_PROJECT),
            # W&B reads its environment once per process: passed on, WANDB_DIR holds for
            # each run a process trains
            dir=os.environ.get("WANDB_DIR") or str(run_dir),
            id=run_id_for(run_dir),
            resume="allow",
            name=name,
            config=config,
            # another run of this process (a notebook's earlier, failed one) is finished,
            # never continued with this run's metrics
            reinit="finish_previous",
        )

    def write(self, record: dict[str, Any]) -> None:
        scalars = metric_scalars(record)
        if scalars:
            self.run.log(scalars, step=int(record["step"]))

    def close(self) -> None:
        self.run.finish()
