"""Import of the audio-teacher embeddings released with the reference code.

:func:`import_audio_archive` imports ``audiocnn14embed512_features.tar.gz`` (UCF51: 51
class folders of ``v_<Class>_gNN_cMM.npy``, PANNs ``Cnn14_emb512`` embeddings of the whole
soundtrack) unchanged, after validating every entry, into the embedding folder layout of
:mod:`ccl.data.audio` (``<out>/<Class>/<video_id>.npy`` and ``<out>/manifest.json``).
macOS ``._`` junk is ignored and reported. All-zero vectors (the reference's marker for a
missing soundtrack) are kept as files and listed under ``all_zero`` in the manifest.
"""

from __future__ import annotations

import io
import tarfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from ccl.atomic import sha256_file
from ccl.data.audio import (
    MANIFEST_KIND,
    MANIFEST_NAME,
    read_manifest,
    save_embedding,
    write_manifest,
)

ARCHIVE_EMBEDDING_DIM = 512
_MAX_MEMBER_BYTES = 1 << 24  # a (512,) float32 .npy is 2176 bytes; refuse anything absurd


@dataclass
class ImportReport:
    """Outcome of :func:`import_audio_archive`."""

    archive: str
    out: str
    written: list[str] = field(default_factory=list)
    junk: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)
    bad: list[dict[str, str]] = field(default_factory=list)
    all_zero: list[str] = field(default_factory=list)
    classes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """True when every embedding entry was valid and at least one was written."""
        return not self.bad and bool(self.written)

    def summary(self) -> str:
        """One line of counts."""
        line = (
            f"import-audio-features: {len(self.written)} embeddings in {len(self.classes)} "
            f"classes written, {len(self.all_zero)} all-zero (no sound in the reference), "
            f"{len(self.junk)} junk entries ignored, {len(self.ignored)} other files ignored, "
            f"{len(self.bad)} bad entries"
        )
        for item in self.bad[:5]:
            line += f"\n  bad: {item['member']}: {item['reason']}"
        if len(self.bad) > 5:
            line += f"\n  ... see {Path(self.out) / MANIFEST_NAME}"
        return line

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _is_junk(parts: Sequence[str]) -> bool:
    """macOS resource forks and Finder files: ``._*``, ``__MACOSX/``, ``.DS_Store``."""
    return any(p.startswith("._") or p in ("__MACOSX", ".DS_Store") for p in parts)


def _check_embedding(data: bytes) -> tuple[np.ndarray | None, str | None]:
    try:
        array = np.load(io.BytesIO(data), allow_pickle=False)
    except Exception as err:  # noqa: BLE001 - reported with the member name
        return None, f"not a readable .npy array ({type(err).__name__}: {err})"
    if not isinstance(array, np.ndarray):
        return None, "not a single .npy array"
    if array.shape != (ARCHIVE_EMBEDDING_DIM,):
        return None, f"shape {array.shape}, want ({ARCHIVE_EMBEDDING_DIM},)"
    if array.dtype != np.float32:
        return None, f"dtype {array.dtype.str}, want float32"
    if not np.isfinite(array).all():
        return None, "non-finite values"
    return array, None


def import_audio_archive(archive: str | Path, out: str | Path) -> ImportReport:
    """Import the reference's ``audiocnn14embed512_features.tar.gz`` into ``out``.

    Every ``<...>/<Class>/<video_id>.npy`` member is validated (shape (512,), dtype float32,
    finite) and written unchanged to ``<out>/<Class>/<video_id>.npy``; invalid members are
    reported with their name and not written. Junk (``._*``, ``__MACOSX``, ``.DS_Store``)
    and non-``.npy`` files are ignored and reported. Nothing is extracted with tarfile's own
    extraction: target paths are built from validated class and file names, so members
    cannot write outside ``out`` (absolute names, ``..``, links are rejected). Re-running
    overwrites the same files with the same values. ``<out>/manifest.json`` records the
    archive's SHA-256 and the outcome.
    """
    t0 = time.perf_counter()
    archive, out = Path(archive), Path(out)
    if not archive.is_file():
        raise FileNotFoundError(
            f"audio feature archive not found: {archive}. The reference's UCF51 features are "
            "datasets/UCF101/audiocnn14embed512_features.tar.gz in github.com/yanbeic/CCL."
        )
    manifest_path = out / MANIFEST_NAME
    previous = read_manifest(manifest_path)
    if previous is not None and previous.get("source") != "archive":
        raise ValueError(
            f"{manifest_path} describes extracted embeddings; import into another --out folder"
        )
    out.mkdir(parents=True, exist_ok=True)
    out_root = out.resolve()
    report = ImportReport(archive=str(archive), out=str(out))
    videos: dict[str, Any] = {}
    try:
        tar = tarfile.open(archive, mode="r:*")
    except (tarfile.TarError, OSError) as err:
        raise ValueError(f"cannot open {archive} as a tar archive: {err}") from err
    with tar:
        for member in tar:
            name = member.name
            parts = [p for p in PurePosixPath(name).parts if p not in ("", ".")]
            if member.isdir():
                continue
            if _is_junk(parts):
                report.junk.append(name)
                continue
            if not name.endswith(".npy"):
                report.ignored.append(name)
                continue

            def bad(reason: str, member_name: str = name) -> None:
                report.bad.append({"member": member_name, "reason": reason})

            if not member.isfile():
                bad("not a regular file (link or device)")
                continue
            if name.startswith("/") or ".." in parts or any("\\" in p for p in parts):
                bad("unsafe path")
                continue
            if len(parts) < 2:
                bad("not inside a class folder")
                continue
            cls, fname = parts[-2], parts[-1]
            video_id = fname[: -len(".npy")]
            if not video_id or cls.startswith(".") or video_id.startswith("."):
                bad("unexpected name")
                continue
            key = f"{cls}/{video_id}"
            if key in videos:
                bad(f"duplicate of an earlier entry for {key}")
                continue
            target = out / cls / fname
            if out_root not in target.resolve().parents:
                bad("unsafe path")
                continue
            if member.size > _MAX_MEMBER_BYTES:
                bad(f"too large for a (512,) embedding ({member.size} bytes)")
                continue
            handle = tar.extractfile(member)
            if handle is None:
                bad("unreadable member")
                continue
            array, reason = _check_embedding(handle.read())
            if array is None:
                bad(reason or "invalid")
                continue
            save_embedding(target, array)
            videos[key] = {"file": f"{cls}/{fname}", "shape": [ARCHIVE_EMBEDDING_DIM]}
            report.written.append(key)
            if not array.any():
                report.all_zero.append(key)
    report.classes = sorted({k.split("/", 1)[0] for k in videos})
    report.seconds = time.perf_counter() - t0
    manifest = {
        "kind": MANIFEST_KIND,
        "source": "archive",
        "model": "cnn14_emb512",
        "embedding_dim": ARCHIVE_EMBEDDING_DIM,
        "archive": str(archive),
        "archive_sha256": sha256_file(archive),
        "n_classes": len(report.classes),
        "videos": videos,
        "unavailable": {},
        "all_zero": report.all_zero,
        "failed": {},
        "junk": report.junk,
        "ignored": report.ignored,
        "bad": report.bad,
        "note": "values copied unchanged from the reference's release; all-zero vectors are "
        "the reference's marker for a video without sound",
        "updated": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    write_manifest(manifest_path, manifest)
    return report


__all__ = ["ARCHIVE_EMBEDDING_DIM", "ImportReport", "import_audio_archive"]
