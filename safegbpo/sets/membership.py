"""Membership of realised states in a safe state zonotope ``S_s = <c, G>`` (Eq 5), batched.

:func:`state_membership` is the one membership test of realised states in the project: the
independent safety monitor of the reproduction (:mod:`safegbpo.experiments.monitor`) and the
cost signal of the soft-constraint baseline PCRPO (:mod:`safegbpo.algorithms.pcrpo`, SPEC §12)
both call it, so the states PCRPO is penalised for are exactly the states the monitor counts
as unsafe.  A faster exact test (e.g. the H-representation of SPEC §11) replaces the body of
:func:`state_membership` and changes both at once.

The test: a state ``s`` is inside when a factor ``b`` with ``G b = s - c`` and
``||b||_inf <= 1 + tol`` exists.  First the minimum-2-norm factor ``pinv(G)(s - c)`` is tried as
a certificate (exact when it reproduces ``s - c`` and its inf-norm is ``<= 1 + tol``); every
other state is decided by the exact LP gauge (batched,
:func:`safegbpo.sets.containment.min_inf_norm_factors`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["SAFETY_TOLERANCE", "StateMembership", "state_membership"]

SAFETY_TOLERANCE = 1e-7
"""Slack on the gauge ``||b||_inf <= 1 + tol`` (solver tolerance of the safeguards' programs)."""


class StateMembership:
    """Gauge and membership of states ``(B, n)`` w.r.t. one zonotope (module docstring).

    Attributes:
        tol: membership slack on the gauge.
        lp_checks: states decided by the LP so far (a cost diagnostic).
    """

    def __init__(self, center: np.ndarray, generators: np.ndarray,
                 tol: float = SAFETY_TOLERANCE) -> None:
        c = np.asarray(center, dtype=np.float64).reshape(-1)
        G = np.asarray(generators, dtype=np.float64)
        if G.ndim != 2 or G.shape[0] != c.shape[0] or G.shape[1] == 0:
            raise ValueError(f"state_membership: need a centre (n,) and generators (n, m >= 1), "
                             f"got {c.shape} and {G.shape}")
        if not (np.all(np.isfinite(c)) and np.all(np.isfinite(G))):
            raise ValueError("state_membership: the zonotope has non-finite entries")
        self.center, self.generators = c, G
        self.pinv = np.linalg.pinv(G)
        self.tol = float(tol)
        self.lp_checks = 0

    def gauges(self, states: Any) -> np.ndarray:
        """Gauge ``min {||b||_inf : G b = s - c}`` of each state ``(B, n) -> (B,)`` (``+inf``
        outside the affine hull, ``nan`` for non-finite states); exact where it decides
        membership: the pseudo-inverse factor's inf-norm when it certifies ``<= 1 + tol``,
        else the LP's."""
        from safegbpo.sets.containment import min_inf_norm_factors

        x = _as_states(states, self.center.shape[0])
        out = np.full(x.shape[0], np.nan)
        finite = np.flatnonzero(np.all(np.isfinite(x), axis=1))
        v = x[finite] - self.center
        factors = v @ self.pinv.T
        exact = np.abs(factors @ self.generators.T - v).max(axis=1, initial=0.0) \
            <= 1e-9 * (1.0 + np.abs(v).max(axis=1, initial=0.0))
        gauge = np.abs(factors).max(axis=1, initial=0.0)
        undecided = np.flatnonzero(~exact | (gauge > 1.0 + self.tol))
        if undecided.size:
            self.lp_checks += int(undecided.size)
            gauge[undecided] = np.abs(min_inf_norm_factors(self.generators, v[undecided])
                                      ).max(axis=1)
        out[finite] = gauge
        return out

    def outside(self, states: Any) -> np.ndarray:
        """``(B,)`` bool: the state is not in ``S_s`` (gauge ``> 1 + tol``, or non-finite)."""
        gauges = self.gauges(states)
        return ~(gauges <= 1.0 + self.tol)


def _as_states(states: Any, n: int) -> np.ndarray:
    if hasattr(states, "detach"):
        states = states.detach().cpu().numpy()
    x = np.asarray(states, dtype=np.float64)
    x = x.reshape(x.shape[0], -1) if x.ndim >= 1 else x.reshape(1, -1)
    if x.shape[1] != n:
        raise ValueError(f"state_membership: states of dimension {x.shape[1]} for a set in "
                         f"R^{n}")
    return x


def state_membership(zonotope: Any, tol: float = SAFETY_TOLERANCE) -> StateMembership:
    """The membership test of realised states in ``zonotope`` (a batch-1
    :class:`~safegbpo.sets.Zonotope`, e.g. ``env.safe_set.state``): build once per set, call
    :meth:`StateMembership.gauges` / :meth:`StateMembership.outside` per step."""
    center = zonotope.center.detach().cpu().numpy()[0]
    generators = zonotope.generators.detach().cpu().numpy()[0]
    return StateMembership(center, generators, tol)
