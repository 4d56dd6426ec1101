"""TensorBoard mirror of a run's ``metrics.jsonl`` (``train.tensorboard=true``).

Researchers used to the reference's ``--tensorboard`` switch get the same scalars as the
JSON-lines log, under the same names (``train/ce``, ``val/top1``, ``lr/student``, ...), at the
record's global step, in ``runs/<name>/tensorboard/``. ``tensorboard`` is an optional
dependency (``pip install 'ccl[tb]'``); JSON-lines stays the log every tool here reads.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ccl.runs import metric_scalars

INSTALL_HINT = (
    "train.tensorboard=true needs the tensorboard package, which is not installed: "
    "pip install 'ccl[tb]' (or pip install tensorboard), or leave train.tensorboard=false"
)


def require_tensorboard() -> type:
    """``torch.utils.tensorboard.SummaryWriter``, or a RuntimeError saying how to install
    it (checked before training starts, on every rank, so no rank waits on a failed one)."""
    try:
        import tensorboard  # noqa: F401 - torch's writer needs it; fail with our message
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as err:
        raise RuntimeError(INSTALL_HINT) from err
    return SummaryWriter


class TensorBoardLog:
    """Writes every numeric field of a metrics record as a scalar at ``record["step"]``.

    ``resumed_step``: the step of the checkpoint a resumed run starts from; events logged
    after it by the killed run are purged, as ``metrics.jsonl`` drops its lines after it.
    """

    def __init__(self, log_dir: str | Path, resumed_step: int | None = None) -> None:
        writer_cls = require_tensorboard()
        purge = resumed_step + 1 if resumed_step is not None else None
        self.writer = writer_cls(log_dir=str(log_dir), purge_step=purge)

    def write(self, record: dict[str, Any]) -> None:
        step = int(record["step"])
        walltime = record.get("time")
        for key, value in metric_scalars(record).items():
            self.writer.add_scalar(key, value, global_step=step, walltime=walltime)
        self.writer.flush()  # a killed run keeps what it logged, as the JSON-lines file does

    def close(self) -> None:
        self.writer.close()
