"""What a safeguard returns when no certified safe action exists (the recovery contract).

P1 (SPEC §3) can only be met where ``A ∩ A_s(s)`` is non-empty.  At a state outside the safe
state set ``S_s`` (a user's arbitrary state, a state the environment clamped, a set that is
not invariant), or when the safe set sticks out of the feasible state box ``S`` so far that
no action keeps every successor in ``S_s ∩ S``, there is **no** safe action.  The contract of
:class:`~safegbpo.safeguards.protocol.Safeguard` for such a row:

1. it returns the **best-effort recovery action** (:func:`recovery_actions`): the action of
   ``A ∩ U_s`` minimising the largest *normalised* violation of the exact containment rows
   (``S_s ⊖ W_s`` and, where the set sticks out of ``S``, ``S ⊖ W_s``; SPEC §11), i.e. the
   action whose worst-case successor is deepest inside (or least outside) the safe state set,
   measured like the gauge of :meth:`~safegbpo.safeguards.polytope.ExactActionSet.violation`;
2. it **flags** the row (``last_uncertified``), **counts** it in ``uncertified`` (separate from
   ``fallbacks``, which count every row that did not return the safeguard's own map), and
3. **warns on every call** that has such rows with :class:`UncertifiedActionWarning` (a
   dedicated category: ``warnings.simplefilter("error", UncertifiedActionWarning)`` turns it
   into an error, ``"ignore"`` silences it); with ``strict=True`` it raises
   :class:`UncertifiedActionError` instead (after updating the counters).

The recovery program is a small LP on the H-representation (``d + 1`` unknowns ``(x, t)``):

``min t  s.t.  x in A ∩ U_s,  (H_k x - h_k) / scale_k <= t  for every containment row k``

solved with HiGHS (:func:`scipy.optimize.linprog`) for the affected rows only (rare by
design).  Its optimum ``t* <= tol`` means a safe action exists after all: the recovery action
is then certified (e.g. a safe set without an action part, whose backup comes from this
program).  Recovery actions are constants w.r.t. the action (like the backup action of SPEC §7):
the gradient through such a row is zero in the action.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import linprog

from safegbpo.safeguards.action_set import ActionSetData
from safegbpo.safeguards.polytope import ExactActionSet

__all__ = ["UncertifiedActionError", "UncertifiedActionWarning", "recovery_actions"]


class UncertifiedActionWarning(RuntimeWarning):
    """A safeguard returned an action it could not certify safe (no certified safe action
    exists at that state); the row holds the best-effort recovery action (module docstring)."""


class UncertifiedActionError(RuntimeError):
    """Raised instead of :class:`UncertifiedActionWarning` by a safeguard built with
    ``strict=True``.  ``rows`` lists the offending batch rows, ``violation`` their normalised
    containment violation after recovery."""

    def __init__(self, message: str, rows: list[int] | None = None,
                 violation: list[float] | None = None) -> None:
        super().__init__(message)
        self.rows = list(rows or [])
        self.violation = list(violation or [])


def _slab_rows(exact: ExactActionSet, data: ActionSetData,
               i: int) -> tuple[np.ndarray, np.ndarray]:
    """Normalised containment rows ``(H (K', d), h (K',))`` of batch row ``i``: ``(H x - h)``
    is the normalised violation of the (untightened) slabs of ``S_s ⊖ W_s`` / ``S ⊖ W_s``."""
    s = exact.structure
    F = exact.slabs
    f0_t, B_t, _, _ = data.linearisation
    f0 = f0_t[i].detach().cpu().numpy().astype(np.float64)
    B = B_t[i].detach().cpu().numpy().astype(np.float64)
    r, varies = exact._noise_reduction_np(data)
    r = r[i] if varies else r
    q = f0 - B @ s.box_center
    FB, Fq = F @ B, F @ q
    scale = exact.cert_state_scale
    upper = exact.cert_upper - r - Fq
    lower = exact.cert_lower + r - Fq
    H = np.concatenate([FB, -FB]) / np.concatenate([scale, scale])[:, None]
    h = np.concatenate([upper, -lower]) / np.concatenate([scale, scale])
    return H, h


def recovery_actions(exact: ExactActionSet, data: ActionSetData,
                     rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Best-effort recovery actions of the batch ``rows`` (module docstring).

    Args:
        exact: the exact safe action set of the safeguard (its certification rows).
        data: the linearisation of the whole batch.
        rows: indices of the batch rows to recover.

    Returns:
        ``(actions (len(rows), d), solved (len(rows),) bool)``; unsolved rows (the LP failed:
        ``A ∩ U_s`` empty or a numerical failure) hold NaN.
    """
    d = exact.structure.action_dim
    out = np.full((len(rows), d), np.nan)
    solved = np.zeros(len(rows), dtype=bool)
    # hard part: A ∩ U_s (untightened certification rows, normalised like the violation)
    A_fix = exact.cert_A / exact.cert_scale[:, None]
    b_fix = exact.cert_b / exact.cert_scale
    cost = np.zeros(d + 1)
    cost[-1] = 1.0
    bounds: list[tuple[float | None, float | None]] = [(None, None)] * (d + 1)
    for j, i in enumerate(np.asarray(rows, dtype=np.int64)):
        A_ub = np.concatenate([A_fix, np.zeros((A_fix.shape[0], 1))], axis=1)
        b_ub = b_fix
        if exact.structure.has_induced:
            H, h = _slab_rows(exact, data, int(i))
            # exact pruning: t* >= L = max_k min_{x in A} (H_k x - h_k); a row whose largest
            # value over A stays below L can never be binding (the quadrotor has ~34k rows)
            mid = H @ exact._a0 - h
            spread = np.abs(H) @ exact._radius
            lower = float((mid - spread).max())
            keep = mid + spread >= lower - 1e-9 * (1.0 + abs(lower))
            H, h = H[keep], h[keep]
            A_ub = np.concatenate([A_ub, np.concatenate([H, -np.ones((H.shape[0], 1))], 1)])
            b_ub = np.concatenate([b_ub, h])
        else:  # explicit only: nothing to trade off, any point of A ∩ U_s (t bounded below)
            bounds = [(None, None)] * d + [(0.0, None)]
        res = linprog(cost, A_ub=A_ub, b_ub=b_ub, bounds=bounds, method="highs")
        if res.status == 0 and res.x is not None and np.all(np.isfinite(res.x)):
            out[j] = res.x[:d]
            solved[j] = True
    return out, solved
