"""Where the paper's reference data is read from (the only place that knows).

The data of the paper's public reference implementation (its safe sets, archived learning
curves, wall-clock figures, the energy system's profiles) lives next to the repository in
``<repository>/../shared/reference``; it is read at run time and never copied into the
repository.  ``SAFEGBPO_REFERENCE_DIR`` names another directory (e.g. for an installed,
non-editable package).  Callers get ``None`` when a file is absent and decide what that means
(tests skip with the reason, reports say "not present").
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["REFERENCE_ENV_VAR", "reference_dir", "reference_path", "repository_root"]

#: Environment variable overriding the reference-data directory.
REFERENCE_ENV_VAR = "SAFEGBPO_REFERENCE_DIR"


def repository_root() -> Path:
    """The directory holding the ``safegbpo`` package (the repository in a source checkout)."""
    return Path(__file__).resolve().parents[1]


def _candidate() -> Path:
    override = os.environ.get(REFERENCE_ENV_VAR)
    if override:
        return Path(override).expanduser()
    return repository_root() / ".." / "shared" / "reference"


def reference_dir() -> Path | None:
    """The reference-data directory if it exists (resolved), else ``None``."""
    path = _candidate().resolve()
    return path if path.is_dir() else None


def reference_path(*parts: str) -> Path | None:
    """``<reference dir>/<parts...>`` if that file or directory exists, else ``None``.

    Example: ``reference_path("safe_sets", "pendulum.json")``.
    """
    root = reference_dir()
    if root is None:
        return None
    path = root.joinpath(*parts)
    return path if path.exists() else None
