"""Atomic file writes: a crash (even SIGKILL) never leaves a partially written result.

Every writer puts the content in a temporary file *in the destination's directory* (same file
system), flushes and ``fsync``s it, then ``os.replace``s it over the destination (atomic on
POSIX) and ``fsync``s the directory so the rename itself is durable.  Readers therefore see
either the previous complete file or the new complete file.  Temporary files left behind by a
killed writer are named ``.<name>.<random>.tmp`` and removed by :func:`remove_stale_temporaries`.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import torch

__all__ = [
    "atomic_write",
    "atomic_write_bytes",
    "atomic_write_text",
    "atomic_write_json",
    "atomic_torch_save",
    "read_json",
    "torch_load",
    "remove_stale_temporaries",
]

_TMP_SUFFIX = ".tmp"


def _file_mode() -> int:
    """Permissions of a normally created file (``0o666`` minus the process umask)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


#: ``mkstemp`` creates private (0600) files; written files get the usual permissions instead.
_FILE_MODE = _file_mode()


def _fsync_directory(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def atomic_write(path: str | os.PathLike, write: Callable[[IO[bytes]], object]) -> Path:
    """Atomically create/replace ``path`` with what ``write(binary_file)`` writes."""
    path = Path(path)
    directory = path.parent if str(path.parent) else Path(".")
    directory.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=_TMP_SUFFIX, dir=directory)
    try:
        os.fchmod(fd, _FILE_MODE)
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        try:
            os.unlink(tmp_name)
        except FileNotFoundError:
            pass
        raise
    _fsync_directory(directory)
    return path


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Atomically write ``data`` to ``path``."""
    return atomic_write(path, lambda handle: handle.write(data))


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Atomically write UTF-8 ``text`` to ``path``."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Atomically write ``obj`` as indented JSON (keys in insertion order, trailing newline)."""
    return atomic_write_text(path, json.dumps(obj, indent=2) + "\n")


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> Path:
    """Atomically ``torch.save`` ``obj`` to ``path`` (serialised in memory first)."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return atomic_write_bytes(path, buffer.getvalue())


def read_json(path: str | os.PathLike) -> Any:
    """Load a JSON file; a corrupt file raises ``ValueError`` naming it."""
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON: {err}") from None


def torch_load(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> Any:
    """Load a file written by :func:`atomic_torch_save` (a trusted, project-written file: full
    unpickling is allowed because checkpoints hold the environment object)."""
    return torch.load(Path(path), map_location=map_location, weights_only=False)


def remove_stale_temporaries(directory: str | os.PathLike) -> list[Path]:
    """Delete temporary files of interrupted atomic writes in ``directory``; returns them."""
    directory = Path(directory)
    removed = []
    if directory.is_dir():
        for candidate in directory.glob(f".*{_TMP_SUFFIX}"):
            if candidate.is_file():
                candidate.unlink(missing_ok=True)
                removed.append(candidate)
    return removed
