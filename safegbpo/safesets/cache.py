"""Per-user cache of the project's certified safe sets: :func:`get_safe_set`.

Files live in ``<root>/safe_sets/<task>-<key>.json`` where ``<root>`` is
``platformdirs.user_cache_dir("safegbpo")``, or the directory named by the environment variable
``SAFEGBPO_CACHE_DIR`` (tests point it at a temporary directory).  ``<key>`` hashes everything
the result depends on: :data:`~safegbpo.safesets.rci.ALGORITHM_VERSION`, the task model's
constants and the task's :class:`~safegbpo.safesets.rci.RCIConfig` (its registry entry's
``rci``), so a change of any of them
recomputes instead of loading a stale set.

The first use computes the set (:func:`~safegbpo.safesets.rci.compute_rci`), verifies it on the
nonlinear dynamics (:func:`~safegbpo.safesets.verify.verify_safe_set`; a failure raises) and
saves it atomically (temporary file + ``os.replace``).  Concurrent first uses (e.g. pytest-xdist
workers) serialise on an advisory lock file (``fcntl.flock`` where available), so the set is
computed once and a reader never sees a partial file; without ``fcntl`` the atomic replace alone
still guarantees a complete file (the set may then be computed more than once).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import platformdirs

from safegbpo.safesets.rci import ALGORITHM_VERSION, compute_rci, default_config
from safegbpo.safesets.safe_set import SafeSet
from safegbpo.safesets.verify import verify_safe_set
from safegbpo.tasks import get_task, same_task, task_import_path

__all__ = ["CACHE_ENV_VAR", "VERIFY_SAMPLES", "cache_key", "cache_path", "cache_root",
           "get_safe_set"]

#: Environment variable overriding the cache root directory.
CACHE_ENV_VAR = "SAFEGBPO_CACHE_DIR"
#: Audited states when a freshly computed set is verified before it is cached.
VERIFY_SAMPLES = 500

_MEMO: dict[Path, tuple[int, SafeSet]] = {}


def cache_root() -> Path:
    """``$SAFEGBPO_CACHE_DIR`` if set (and non-empty), else the per-user cache directory."""
    override = os.environ.get(CACHE_ENV_VAR)
    return Path(override) if override else Path(platformdirs.user_cache_dir("safegbpo"))


def cache_key(task: str) -> str:
    """16 hex digits of the SHA-256 of the algorithm version, model constants and config."""
    spec = get_task(task)
    model = spec.model
    payload = {
        "algorithm": ALGORITHM_VERSION,
        "task": spec.key,
        "model": dataclasses.asdict(model),
        "config": default_config(task).to_dict(),
    }
    if task_import_path(task) is not None:  # a user's task: its code is part of the key
        payload["model_class"] = f"{type(model).__module__}.{type(model).__qualname__}"
    blob = json.dumps(payload, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def cache_path(task: str) -> Path:
    """``<root>/safe_sets/<task>-<key>.json``."""
    return cache_root() / "safe_sets" / f"{get_task(task).key}-{cache_key(task)}.json"


@contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """Exclusive advisory lock on ``path`` (created if needed); no-op without ``fcntl``."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - non-POSIX
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def _load(path: Path, task: str) -> SafeSet | None:
    """The cached set, or ``None`` if absent or unreadable (a warning names the problem)."""
    try:
        mtime = path.stat().st_mtime_ns
    except FileNotFoundError:
        return None
    memo = _MEMO.get(path)
    if memo is not None and memo[0] == mtime:
        return memo[1]
    try:
        safe = SafeSet.load(path)
    except (ValueError, OSError) as err:
        warnings.warn(f"ignoring unreadable cached safe set {path}: {err}", stacklevel=3)
        return None
    if not same_task(safe.task, task):
        warnings.warn(f"ignoring cached safe set {path}: it is for task {safe.task!r}",
                      stacklevel=3)
        return None
    _MEMO[path] = (mtime, safe)
    return safe


def get_safe_set(task: str, *, refresh: bool = False, verbose: bool = False) -> SafeSet:
    """The project's certified RCI safe set of ``task`` (computed once, then cached).

    Args:
        task: a registered task (:func:`safegbpo.tasks.get_task`).
        refresh: recompute (and overwrite the cache) even if a cached file exists.
        verbose: print the progress of the computation.

    Raises:
        ValueError: unknown task.
        safegbpo.safesets.rci.RCIInfeasibleError: the computation failed.
        safegbpo.safesets.verify.SafeSetNotInvariantError: the computed set failed verification.
    """
    path = cache_path(task)
    if not refresh:
        cached = _load(path, task)
        if cached is not None:
            return cached
    with _file_lock(path.with_name(path.name + ".lock")):
        if not refresh:  # another process may have computed it while we waited
            cached = _load(path, task)
            if cached is not None:
                return cached
        safe = compute_rci(task, verbose=verbose)
        report = verify_safe_set(safe, num_samples=VERIFY_SAMPLES, seed=0, reference=None)
        report.raise_if_violated()
        metadata = dict(safe.metadata)
        metadata["verification"] = {"num_states": report.num_states,
                                    "worst_margin": report.worst_margin,
                                    "seed": report.seed}
        metadata["cache_key"] = cache_key(task)
        safe = dataclasses.replace(safe, metadata=metadata)
        safe.save(path)
        _MEMO[path] = (path.stat().st_mtime_ns, safe)
        return safe
