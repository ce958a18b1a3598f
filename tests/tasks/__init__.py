"""Tests of :mod:`safegbpo.tasks` (the energy system, SPEC §10) and shared helpers."""

from __future__ import annotations

import pytest

from safegbpo.safesets import CACHE_ENV_VAR, SafeSet, get_safe_set
from tests.safesets import session_cache_dir

_SETS: dict[str, SafeSet] = {}


def energy_safe_set(tmp_path_factory: pytest.TempPathFactory) -> SafeSet:
    """The project's certified energy set, computed once per session into the session cache
    (shared with :func:`tests.safesets.project_sets`)."""
    if "energy" not in _SETS:
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv(CACHE_ENV_VAR, str(session_cache_dir(tmp_path_factory)))
            _SETS["energy"] = get_safe_set("energy")
    return _SETS["energy"]
