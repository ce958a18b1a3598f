"""Certified robust control invariant safe sets (SPEC §6 "Safe sets", §7).

* :class:`SafeSet` — RCI state zonotope ``S_s`` with generator-paired backup actions ``U_s``,
  the ``safegbpo-safe-set/1`` file format, factors and backup actions of states;
* :func:`compute_rci` — the convex program of SPEC §7 (LDI sector enclosure of the nonlinear
  dynamics, independently re-certified);
* :func:`verify_safe_set` — a-posteriori verification on the nonlinear dynamics;
* :func:`get_safe_set` — the project's certified set of a task, computed once and cached per
  user (``SAFEGBPO_CACHE_DIR`` overrides the cache directory).
"""

from safegbpo.safesets.cache import CACHE_ENV_VAR, cache_path, get_safe_set
from safegbpo.safesets.rci import (
    ALGORITHM_VERSION,
    RCIConfig,
    RCIInfeasibleError,
    certificate_margins,
    compute_rci,
    linear_enclosure,
)
from safegbpo.safesets.safe_set import SAFE_SET_FORMAT, SafeSet, resolve_safe_sets
from safegbpo.safesets.verify import (
    SafeSetNotInvariantError,
    VerificationReport,
    default_reference_path,
    verify_safe_set,
)

__all__ = [
    "ALGORITHM_VERSION",
    "CACHE_ENV_VAR",
    "RCIConfig",
    "RCIInfeasibleError",
    "SAFE_SET_FORMAT",
    "SafeSet",
    "SafeSetNotInvariantError",
    "VerificationReport",
    "cache_path",
    "certificate_margins",
    "compute_rci",
    "default_reference_path",
    "get_safe_set",
    "linear_enclosure",
    "resolve_safe_sets",
    "verify_safe_set",
]
