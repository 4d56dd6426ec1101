"""One writer per run folder: an exclusive lock on ``<run>/.lock``.

Every process that writes a run folder (``ccl train``, resumed or started over, and
``ccl evaluate`` writing its results there) holds ``fcntl.flock`` on the folder's lock file
for as long as it writes. The file holds the holder's PID and command, so a second writer is
refused with one line naming them; the OS releases the lock when the holder dies, however it
dies (a lock file a killed process left behind is simply taken over). A holder that ends
normally removes the file. Torch-free.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from types import TracebackType

from ccl.errors import RunInUseError

LOCK_FILE = ".lock"
"""The lock file's name inside a run folder."""


def lock_holder(run_dir: str | Path) -> str:
    """What the lock file of ``run_dir`` says of its holder: ``"process PID (COMMAND)"``,
    or ``"another process"`` when it cannot be read."""
    try:
        text = (Path(run_dir) / LOCK_FILE).read_text(encoding="utf-8").strip()
    except OSError:
        text = ""
    pid, _, command = text.partition(" ")
    if not pid.isdigit():
        return "another process"
    return f"process {pid}" + (f" ({command})" if command else "")


class RunLock:
    """The exclusive lock of one run folder (:func:`lock_run_folder` takes it).

    A context manager: leaving the block releases it. ``release`` removes the lock file
    before unlocking it; a taker checks that the file it locked is still the one at the path,
    so two processes never both believe they hold the folder."""

    def __init__(self, run_dir: Path, fd: int, *, made_folder: bool = False) -> None:
        self.run_dir, self.fd, self.made_folder = run_dir, fd, made_folder

    @property
    def held(self) -> bool:
        """Whether this lock is still held (not released)."""
        return self.fd >= 0

    def release(self, *, remove: bool = True) -> None:
        """Remove the lock file (``remove``, when it is still ours) and unlock it; a folder
        the lock made and nothing else filled is removed too (a refused start leaves no
        trace)."""
        if self.fd < 0:
            return
        try:
            if remove:
                path = self.run_dir / LOCK_FILE
                try:
                    if os.stat(path).st_ino == os.fstat(self.fd).st_ino:
                        path.unlink()
                    if self.made_folder:
                        self.run_dir.rmdir()
                except OSError:
                    pass  # moved, gone, or a folder that holds something: kept
        finally:
            os.close(self.fd)  # closing the last descriptor releases the flock
            self.fd = -1

    def take_over(self, moved_to: Path, new: RunLock) -> None:
        """After the locked folder was renamed to ``moved_to`` (``--overwrite``): release
        the old folder's lock (removing its lock file) and hold ``new`` (the lock of the
        fresh folder at the old path) instead."""
        self.run_dir, self.made_folder = Path(moved_to), False
        self.release()
        self.run_dir, self.fd, self.made_folder = new.run_dir, new.fd, new.made_folder
        new.fd = -1

    def __enter__(self) -> RunLock:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()

    def __del__(self) -> None:
        if self.fd >= 0:
            self.release()


def lock_run_folder(run_dir: str | Path, command: str, hint: str = "") -> RunLock:
    """Take the exclusive lock of ``run_dir`` (made if missing) for ``command`` (e.g.
    ``"ccl train"``), or raise :class:`ccl.errors.RunInUseError`: ``"<run_dir> is in use by
    process PID (COMMAND); wait for it<hint>"``. Never waits."""
    run_dir = Path(run_dir)
    made_folder = not run_dir.is_dir()
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / LOCK_FILE
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise RunInUseError(
                f"{run_dir} is in use by {lock_holder(run_dir)}; wait for it{hint}"
            ) from None
        except BaseException:
            os.close(fd)
            raise
        try:
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)  # the holder removed the file as we opened it: lock the new one
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()} {command}\n".encode())
    return RunLock(run_dir, fd, made_folder=made_folder)
