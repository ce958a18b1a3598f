"""Membership of realised states in the safe state set ``S_s = <c, G>`` (Eq 5) and the feasible
state box ``S``, batched, exact and LP-free (SPEC §11).

:func:`state_membership` is the one membership test of realised states in the project: the
independent safety monitor of the reproduction (:mod:`safegbpo.experiments.monitor`) and the
cost signal of the soft-constraint baseline PCRPO (:mod:`safegbpo.algorithms.pcrpo`, SPEC §12)
both call it, so the states PCRPO is penalised for are exactly the states the monitor counts
as unsafe.

The test: the gauge of a state ``s`` is the larger of

* its gauge w.r.t. ``S_s`` from the set's exact H-representation (:class:`~safegbpo.sets.HRep`,
  slabs ``lower <= F y <= upper``): ``max_k f_k^T (s - c) / (h_k - f_k^T c)`` over both sides
  of every slab (:meth:`safegbpo.sets.HRep.gauge`), which equals the Eq 5 gauge
  ``min {||b||_inf : G b = s - c}`` (the LP oracle of the tests, up to rounding), and
* its gauge w.r.t. the box ``S = [low, high]`` (if given): ``max_i |s_i - mid_i| / half_i``;

the state is inside both when this gauge is ``<= 1 + tol`` (``tol`` = :data:`SAFETY_TOLERANCE`).
A non-finite state has gauge ``nan`` and is outside.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from safegbpo.sets.hrep import HRep, zonotope_hrep

__all__ = ["SAFETY_TOLERANCE", "StateMembership", "state_membership"]

SAFETY_TOLERANCE = 1e-7
"""Slack on the gauge ``<= 1 + tol`` (solver tolerance of the safeguards' programs)."""


def _vector(x: Any, name: str) -> np.ndarray:
    arr = x.detach().cpu().numpy() if hasattr(x, "detach") else x
    arr = np.asarray(arr, dtype=np.float64)
    if arr.ndim == 2 and arr.shape[0] == 1:  # a batch-1 zonotope's centre / bounds
        arr = arr[0]
    if arr.ndim != 1:
        raise ValueError(f"state_membership: {name} must be a vector, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"state_membership: {name} contains NaN/inf")
    return arr


class StateMembership:
    """Gauge and membership of states ``(B, n)`` w.r.t. ``S_s`` (and the box ``S``), see the
    module docstring.

    Args:
        center: ``c`` ``(n,)``, the centre of ``S_s`` (interior: the gauge is taken about it).
        hrep: the exact H-representation of ``S_s``.
        low, high: the box ``S`` ``(n,)`` (both or neither; ``high > low``).
        tol: membership slack on the gauge.
    """

    def __init__(self, center: Any, hrep: HRep, low: Any = None, high: Any = None,
                 tol: float = SAFETY_TOLERANCE) -> None:
        self.center = _vector(center, "center")
        if not isinstance(hrep, HRep) or hrep.dim != self.center.shape[0]:
            raise ValueError(f"state_membership: need an HRep in R^{self.center.shape[0]}, got "
                             f"{hrep!r}")
        self.hrep = hrep
        hrep.gauge(self.center[None], self.center)  # raises if c is not interior
        if (low is None) != (high is None):
            raise ValueError("state_membership: give both box bounds (low, high) or neither")
        self.mid: np.ndarray | None = None
        self.half: np.ndarray | None = None
        if low is not None:
            lo, hi = _vector(low, "low"), _vector(high, "high")
            if lo.shape != self.center.shape or hi.shape != lo.shape or np.any(hi <= lo):
                raise ValueError(f"state_membership: box bounds must be (n,) with high > low, "
                                 f"got {lo} and {hi}")
            self.mid, self.half = 0.5 * (lo + hi), 0.5 * (hi - lo)
        self.tol = float(tol)
        if not (np.isfinite(self.tol) and self.tol >= 0.0):
            raise ValueError(f"state_membership: tol must be finite and >= 0, got {tol!r}")

    @property
    def dim(self) -> int:
        return int(self.center.shape[0])

    def gauges(self, states: Any) -> np.ndarray:
        """Gauge of each state ``(B, n) -> (B,)`` (``<= 1`` iff inside ``S_s`` and ``S``;
        ``nan`` for a non-finite state)."""
        x = _as_states(states, self.dim)
        out = np.full(x.shape[0], np.nan)
        finite = np.all(np.isfinite(x), axis=1)
        points = x if finite.all() else x[finite]
        if points.shape[0]:
            gauge = self.hrep.gauge(points, self.center)
            if self.mid is not None and self.half is not None:
                gauge = np.maximum(gauge, (np.abs(points - self.mid) / self.half).max(axis=1))
            out[finite] = gauge
        return out

    def outside(self, states: Any) -> np.ndarray:
        """``(B,)`` bool: the state is not in ``S_s`` (and ``S``): gauge ``> 1 + tol``, or
        non-finite."""
        return self.outside_gauges(self.gauges(states))

    def outside_gauges(self, gauges: np.ndarray) -> np.ndarray:
        """``(B,)`` bool from :meth:`gauges`' values (``nan`` counts as outside)."""
        return ~(gauges <= 1.0 + self.tol)


def _as_states(states: Any, n: int) -> np.ndarray:
    if hasattr(states, "detach"):
        states = states.detach().cpu().numpy()
    x = np.asarray(states, dtype=np.float64)
    x = x.reshape(1, -1) if x.ndim <= 1 else x.reshape(x.shape[0], int(np.prod(x.shape[1:])))
    if x.shape[1] != n:
        raise ValueError(f"state_membership: states of dimension {x.shape[1]} for a set in "
                         f"R^{n}")
    return x


def state_membership(safe_set: Any, state_bounds: Any = None,
                     tol: float = SAFETY_TOLERANCE) -> StateMembership:
    """The membership test of realised states in a safe set's ``S_s`` and (if
    ``state_bounds = (low, high)`` is given, e.g. ``env.model.state_bounds()``) the box ``S``.

    ``safe_set`` is a :class:`~safegbpo.safesets.SafeSet` (its cached exact
    :attr:`~safegbpo.safesets.SafeSet.hrep` is used) or a batch-1
    :class:`~safegbpo.sets.Zonotope` (its H-representation is computed here).  Build once per
    set, call :meth:`StateMembership.gauges` / :meth:`StateMembership.outside` per step.
    """
    zonotope = getattr(safe_set, "state", safe_set)
    center = zonotope.center
    hrep = getattr(safe_set, "hrep", None)
    if not isinstance(hrep, HRep):
        c, G = (a[0] for a in zonotope.numpy())
        hrep = zonotope_hrep(c, G)
    low, high = (None, None) if state_bounds is None else state_bounds
    return StateMembership(center, hrep, low, high, tol)
