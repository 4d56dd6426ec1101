"""A training run's ``metrics.jsonl``: one JSON object per logged step and per epoch.

:class:`JsonlLog` appends the records (and mirrors them to TensorBoard when asked);
:func:`reset_log_after` trims a log back to a checkpoint when a run resumes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ccl.atomic import write_text_atomic
from ccl.tblog import TensorBoardLog


class JsonlLog:
    """Append-only JSON-lines metrics log (one object per step or epoch); main rank only.
    ``tensorboard``: a :class:`~ccl.tblog.TensorBoardLog` given every record too."""

    def __init__(
        self, path: Path, enabled: bool = True, tensorboard: TensorBoardLog | None = None
    ) -> None:
        self.path, self.enabled, self.tensorboard = path, enabled, tensorboard

    def write(self, record: dict[str, Any]) -> None:
        if self.enabled:
            try:
                with self.path.open("a") as f:
                    f.write(json.dumps(record) + "\n")
            except OSError as err:  # a write error (full disk) would not name the file
                raise OSError(err.errno, err.strerror, str(self.path)) from err
            if self.tensorboard is not None:
                self.tensorboard.write(record)

    def close(self) -> None:
        if self.tensorboard is not None:
            self.tensorboard.close()


def reset_log_after(path: Path, epoch: int, step: int) -> None:
    """On resume, drop log records written after the checkpoint at (``epoch``, ``step``) (a
    killed run may have logged steps it never saved), so the log reads as one uninterrupted
    run. Lines cut by the kill are dropped too."""
    if not path.exists():
        return
    kept = []
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut by the kill
        if record.get("step", 0) <= step and (record["type"] == "step" or record["epoch"] <= epoch):
            kept.append(line)
    # atomically: a crash while rewriting must not cost the run its whole log
    write_text_atomic(path, "".join(k + "\n" for k in kept))
