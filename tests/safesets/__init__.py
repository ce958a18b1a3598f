"""Tests of :mod:`safegbpo.safesets` and shared helpers.

The project's certified sets are computed once per test session into a temporary cache
directory (``SAFEGBPO_CACHE_DIR``); under pytest-xdist all workers of a session share that
directory and the cache's file lock makes sure only one of them computes.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from safegbpo.safesets import CACHE_ENV_VAR, SafeSet, get_safe_set
from safegbpo.tasks import task_names
from tests import helpers

#: The registered tasks (taken at import, before any test registers a fake task).
TASKS = task_names()
#: The tasks the reference implementation ships a safe-set file for (``safe_sets/<task>.json``;
#: its energy system uses the state box instead, SPEC §10).
REFERENCE_SET_TASKS = ("pendulum", "quadrotor")

_SETS: dict[str, SafeSet] = {}


def reference_file(task: str) -> Path:
    """The reference set file of ``task``; skips the test when ``../shared`` is absent."""
    return helpers.reference_file("safe_sets", f"{task}.json")


def session_cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A cache directory shared by all tests (and xdist workers) of this session."""
    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent  # the session's directory, common to all workers
    path = base / "safegbpo-cache"
    path.mkdir(parents=True, exist_ok=True)
    return path


def project_set(tmp_path_factory: pytest.TempPathFactory, task: str) -> SafeSet:
    """The project's certified set of ``task`` (computed once, via the session cache)."""
    if task not in _SETS:
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv(CACHE_ENV_VAR, str(session_cache_dir(tmp_path_factory)))
            _SETS[task] = get_safe_set(task)
    return _SETS[task]


def project_sets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, SafeSet]:
    """The project's certified set of every task (computed once, via the session cache)."""
    return {task: project_set(tmp_path_factory, task) for task in TASKS}
