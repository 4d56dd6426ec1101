"""Atomic file writes: a temporary file in the target's folder, fsynced and renamed over
the target, so a crash leaves the previous file or the new one, never half of one; the
check that an output replaces neither an input nor a file some other program wrote; and the
SHA-256 digest that records which file a result was made from. Torch-free (``ccl report``
and the CLI's light commands use it without importing torch)."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import stat
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

TMP_SUFFIX = ".tmp"
"""Suffix of the temporaries: ``.<name>.<random>.tmp`` next to the target."""


class RecordingWriter:
    """Writes all of every block (a short write is retried, so the OS reports why it fell
    short) and remembers the ``OSError`` of a failed write: torch's zip writer replaces it
    by "unexpected pos ...", which would not name a full disk."""

    def __init__(self, f: BinaryIO) -> None:
        self.f, self.error = f, None

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        done = 0
        try:
            while done < len(view):
                n = self.f.write(view[done:])
                if not n:
                    raise OSError(errno.EIO, "a write wrote nothing")
                done += n
        except OSError as err:
            self.error = err
            raise
        return done

    def flush(self) -> None:
        self.f.flush()

    def __getattr__(self, name: str) -> Any:
        # seek, tell, ... of the file, for writers that need them (zip archives: np.savez)
        return getattr(self.f, name)


@contextlib.contextmanager
def atomic_write(path: str | Path, *, what: str = "file") -> Iterator[BinaryIO]:
    """Open ``path`` for binary writing atomically: a temporary file in the same folder,
    fsynced and renamed over ``path`` when the block succeeds, removed when it fails. A
    crash leaves either the previous file or the new one, never half of one. A failed write
    (full disk, read-only folder) raises ``OSError`` naming ``path`` and the error code
    (e.g. ENOSPC). The file gets the permissions ``open(path, "w")`` would leave
    (:func:`new_file_mode`), not the 0600 of a temporary file."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        mode = new_file_mode(path)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TMP_SUFFIX, dir=path.parent)
    except OSError as err:
        raise _named(err, path, what) from err
    try:
        os.fchmod(fd, mode)
    except OSError:  # a file system without permissions (FAT): its default stands
        pass
    writer = None
    try:
        with os.fdopen(fd, "wb") as f:
            writer = RecordingWriter(f)
            yield writer  # type: ignore[misc]
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        Path(tmp).unlink(missing_ok=True)
        cause = writer.error if writer is not None and writer.error is not None else err
        if isinstance(cause, OSError):
            raise _named(cause, path, what) from err
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def current_umask() -> int:
    """The process's umask (read from ``/proc/self/status`` where Linux has it, which,
    unlike setting and restoring it, changes nothing another thread could see)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def new_file_mode(path: str | Path) -> int:
    """Permission bits for a file written to ``path``: those of the file there now, else
    0666 less the umask, as ``open(path, "w")`` gives them."""
    try:
        return stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        return 0o666 & ~current_umask()


def _named(err: OSError, path: Path, what: str) -> OSError:
    """``err`` again, naming ``path`` and the symbolic error code (ENOSPC, EROFS, ...)."""
    code = errno.errorcode.get(err.errno or 0)
    reason = f"{err.strerror or err} ({code})" if code else str(err.strerror or err)
    return type(err)(err.errno, f"cannot write {what}: {reason}", str(path))


def is_disk_full(err: BaseException) -> bool:
    """Whether ``err``, or an error it was raised from, is a full disk or an exhausted quota
    (``ENOSPC``, ``EDQUOT``; h5py's write errors carry the errno too)."""
    seen: set[int] = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        if isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        err = err.__cause__ or err.__context__  # type: ignore[assignment]
    return False


def write_text_atomic(path: str | Path, text: str) -> None:
    """Write ``text`` (UTF-8) atomically (:func:`atomic_write`): a failure (disk full,
    read-only folder) leaves the previous file as it was, no temporary file, and an
    ``OSError`` that names ``path``."""
    with atomic_write(path) as f:
        f.write(text.encode("utf-8"))


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 digest of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def same_file(a: str | Path, b: str | Path) -> bool:
    """Whether two paths name one file (same real path, or hard links of one file)."""
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    try:
        return os.path.exists(a) and os.path.exists(b) and os.path.samefile(a, b)
    except OSError:
        return False


def check_replaceable_json(
    path: str | Path,
    *,
    inputs: Iterable[str | Path] = (),
    is_own: Callable[[Any], bool],
    kind: str,
    option: str,
) -> None:
    """Refuse (``ValueError`` naming ``path``) to write a command's JSON output ``path``
    over one of the command's ``inputs``, over a folder, or over an existing file that is
    not this command's output: one whose parsed JSON ``is_own`` does not recognise (by keys
    the command always writes). ``kind`` names the output ("an annotation JSON"),
    ``option`` the flag that chose the path ("--out"). Reads only."""
    path = Path(path)
    for src in inputs:
        if same_file(path, src):
            raise ValueError(f"{path} is one of the inputs; choose another {option}")
    if path.is_dir():
        raise ValueError(f"{option} {path} is a folder; give the file to write")
    if not path.exists():
        return
    try:
        ours = bool(is_own(json.loads(path.read_text(encoding="utf-8"))))
    except (OSError, ValueError):
        ours = False
    if not ours:
        raise ValueError(f"{option} {path} exists and is not {kind}; refusing to overwrite it")
