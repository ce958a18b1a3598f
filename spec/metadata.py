"""Environment metadata recorded with every spec run and report (reproducibility)."""

from __future__ import annotations

import datetime as _dt
import importlib.metadata as _md
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

from safegbpo.reference import repository_root

__all__ = ["PACKAGES", "collect_metadata", "git_info"]

PACKAGES = ("safegbpo", "torch", "numpy", "scipy", "cvxpy", "cvxpylayers", "diffcp", "clarabel",
            "gymnasium", "matplotlib")

_REPO = repository_root()


def git_info(repo: Path = _REPO) -> dict[str, Any]:
    """``{"commit", "dirty"}`` of the repository (read-only git commands); ``None`` values when
    git or the repository is unavailable."""
    def run(*args: str) -> str | None:
        try:
            out = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True,
                                 timeout=10, check=True)
        except (OSError, subprocess.SubprocessError):
            return None
        return out.stdout.strip()

    commit = run("rev-parse", "HEAD")
    status = run("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit, "dirty": None if status is None else bool(status)}


def _version(package: str) -> str | None:
    try:
        return _md.version(package)
    except _md.PackageNotFoundError:
        return None


def collect_metadata(seeds: dict[str, Any] | None = None) -> dict[str, Any]:
    """Git commit, package versions, Python, machine and the seeds used."""
    return {
        "timestamp": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "git": git_info(),
        "python": sys.version.split()[0],
        "packages": {p: _version(p) for p in PACKAGES},
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(),
            "torch_threads": _torch_threads(),
        },
        "seeds": dict(seeds or {}),
    }


def _torch_threads() -> int | None:
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        return None
    return torch.get_num_threads()
