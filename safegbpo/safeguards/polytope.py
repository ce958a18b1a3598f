"""The exact safe action set as a polytope per state (SPEC §11): :class:`ExactActionSet`.

With additive noise the next-state set of an action ``x`` is ``y(x) + W_s``,
``y(x) = f0 + B (x - a0)``, ``W_s = <0, E G_W>`` (Eq 12–14), and ``y + W_s ⊆ S_s`` holds
**exactly** iff ``y ∈ S_s ⊖ W_s``.  With the H-representation of ``S_s``
(:attr:`safegbpo.safesets.SafeSet.hrep`, slabs ``lower <= F y <= upper``) the induced safe
action set of a state is the polytope

``{ x in A ∩ U_s : lower + r - F q <= F B x <= upper - r - F q }``,  ``r = |F E G_W| 1``,
``q = f0 - B a0``,

plus, where the interval hull of ``S_s`` sticks out of the feasible state box ``S``, the slabs
of ``S ⊖ W_s`` (the environments clamp states to ``S``; SPEC §6 "Safe sets").  ``A`` (the box)
and ``U_s`` (explicit zonotope, its H-representation from single generators for ``d <= 2``) are
state independent.  ``F``, the offsets and ``r`` are computed once per safeguard (``r`` once per
call only if ``E`` changes with the state).

Per call (:meth:`ExactActionSet.polytope`) the rows are **pruned exactly**: a half-space that
every ``x in A`` satisfies (``max_{x in A} H_k x <= h_k``, decided with one batched product
``F [f0, B]``) can never be active for a point of ``A``, and every problem of the safeguards
lives in ``A``; the box rows are always kept.  The kept rows of each state are gathered and
recomputed *with autograd* from ``B(s)`` and ``f0(s)`` — so gradients w.r.t. the state flow
through the few rows that matter — and padded to a common count (padding rows ``0 x <= 1``).

Certification (:meth:`ExactActionSet.certify`) is independent of the pruning and of any
solver: it evaluates **all** slabs at the candidate's next-state centre ``y(x)`` (a point test,
``F y``), the box and ``U_s``.  A row's violation is normalised by its slab's half-width
(``|F G_S| 1`` for ``S_s``, the box radius, ``|F G_U| 1`` for ``U_s``), i.e. measured like a
gauge; an output passes when every normalised violation is ``<= tol``.

Margin and tolerance policy (documented decision).  The exact backend solves on the *exact*
rows (``margin = 0`` by default, :data:`EXACT_MARGIN`); a positive ``margin`` shrinks ``S_s``
and ``U_s`` about their centres by the factor ``1 - margin`` and the box by ``margin`` (the
same meaning as the Eq 6 row sums ``<= 1 - margin`` of the cvxpylayers backend).  Outputs are
computed in closed form on their active rows, so they satisfy the rows up to rounding
(``~1e-15``); the certification accepts ``tol = 1e-9`` (:data:`EXACT_TOL`) normalised
violation against the *untightened* set.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from safegbpo.safeguards.action_set import ActionSetData, ActionSetStructure
from safegbpo.sets.hrep import HRep, zonotope_hrep

__all__ = ["EXACT_MARGIN", "EXACT_TOL", "ActionPolytope", "ExactActionSet"]

#: Default tightening of the exact backend (none: the rows are exact; module docstring).
EXACT_MARGIN = 0.0
#: Default normalised tolerance of the exact certification (module docstring).
EXACT_TOL = 1e-9
# rows within this (relative) distance of cutting A are kept by the pruning (rounding guard)
_PRUNE_SLACK = 1e-9


@dataclass(frozen=True)
class ActionPolytope:
    """The safe action sets of ``N`` states as ``A x <= b`` with ``R`` (padded) rows.

    The solvers work on the detached numpy copy (``A``, ``b``: rows normalised to unit norm);
    :meth:`rows` rebuilds chosen rows in torch *with autograd* from the linearisation.

    Attributes:
        A: ``(N, R, d)`` normalised rows (numpy, rows with ``H_k = 0`` stay zero).
        b: ``(N, R)`` normalised offsets.
        valid: ``(N, R)`` bool; padding rows are ``0 x <= 1`` and not valid.
        coef_state: ``(N, R, n)`` raw row ``H_k = coef_state_k B + coef_action_k`` ...
        coef_action: ``(N, R, d)`` ... and ``h_k = bound_k - coef_state_k q`` with
            ``q = f0 - B a0`` (fixed rows have ``coef_state = 0``).
        bound: ``(N, R)``.
        norm: ``(N, R)`` ``||H_k||`` (1 where zero).
        data: the linearisation (torch, with the state's graph).
        a0: ``(d,)`` centre of ``A``.
        noise_varies: ``E G_W`` differs between states (then ``bound`` excludes the
            reduction ``|coef_state E G_W| 1``, recomputed with autograd in :meth:`rows`).
    """

    A: np.ndarray
    b: np.ndarray
    valid: np.ndarray
    coef_state: np.ndarray | None
    coef_action: np.ndarray
    bound: np.ndarray
    norm: np.ndarray
    data: ActionSetData
    a0: np.ndarray
    noise_varies: bool = False

    @property
    def batch(self) -> int:
        return int(self.A.shape[0])

    @property
    def dim(self) -> int:
        return int(self.A.shape[2])

    def rows(self, index: np.ndarray, like: Tensor,
             normalised: bool = False) -> tuple[Tensor, Tensor]:
        """Rows ``index (N, r)`` (``-1`` gives ``0 x <= 0``) as torch tensors with autograd
        w.r.t. the linearisation: ``(H (N, r, d), h (N, r))``, raw or ``normalised``."""
        N = self.batch
        present = index >= 0
        idx = np.where(present, index, 0)
        take = np.arange(N)[:, None]
        kw = {"dtype": like.dtype, "device": like.device}
        C = np.where(present[..., None], self.coef_action[take, idx], 0.0)
        bnd = np.where(present, self.bound[take, idx], 0.0)
        if normalised:
            scale = np.where(present, self.norm[take, idx], 1.0)
            C, bnd = C / scale[..., None], bnd / scale
        H = torch.as_tensor(C, **kw)
        h = torch.as_tensor(bnd, **kw)
        if self.coef_state is not None:
            G = np.where(present[..., None], self.coef_state[take, idx], 0.0)
            if normalised:
                G = G / scale[..., None]
            G = torch.as_tensor(G, **kw)
            B = self.data.B
            q = self.data.f0 - B @ torch.as_tensor(self.a0, **kw)
            H = H + G @ B
            h = h - (G @ q.unsqueeze(-1)).squeeze(-1)
            if self.noise_varies:
                h = h - torch.abs(G @ self.data.noise_generators).sum(-1)
        return H, h

    def subset(self, rows: np.ndarray) -> ActionPolytope:
        """The polytopes of the states ``rows`` (index array or bool mask)."""
        def pick(x):
            return None if x is None else x[rows]

        rows_t = torch.as_tensor(rows)
        return ActionPolytope(self.A[rows], self.b[rows], self.valid[rows],
                              pick(self.coef_state), self.coef_action[rows],
                              self.bound[rows], self.norm[rows], self.data.subset(rows_t),
                              self.a0, self.noise_varies)


class ExactActionSet:
    """The exact safe action set ``A ∩ U_s ∩ A_s(s)`` of a safeguard (module docstring).

    Args:
        structure: the safeguard's :class:`~safegbpo.safeguards.action_set.ActionSetStructure`
            (box, ``U_s``, ``S_s``, ``G_W``, margin).
        state_hrep: H-representation of ``S_s`` (default: computed from ``structure``).
        action_hrep: H-representation of ``U_s`` (default: computed from ``structure``).
        state_box: ``(low (n,), high (n,))`` of ``S``: slabs of ``S ⊖ W_s`` are added where the
            interval hull of ``S_s`` sticks out of it (``None``: not intersected).

    Raises:
        ValueError: ``d > 2`` (the exact algorithms are for ``d <= 2``), or a safe set without
            interior (no H-representation).
    """

    def __init__(self, structure: ActionSetStructure, state_hrep: HRep | None = None,
                 action_hrep: HRep | None = None,
                 state_box: tuple[np.ndarray, np.ndarray] | None = None) -> None:
        s = self.structure = structure
        d = s.action_dim
        if d > 2:
            raise ValueError(f"the exact backend supports action dimension d <= 2 (SPEC §11), "
                             f"got d = {d}; use backend='cvxpylayers'")
        keep = 1.0 - s.margin
        radius = 0.5 * (s.box_high - s.box_low)
        # -- fixed rows: the box (always) and U_s (those cutting A) ----------------------------
        eye = np.eye(d)
        fixed_A = [eye, -eye]
        fixed_b = [s.box_high - s.margin, -(s.box_low + s.margin)]
        # certification of the fixed part: (A, b, scale) untightened
        cert_A = [eye, -eye]
        cert_b = [s.box_high, -s.box_low]
        cert_scale = [radius, radius]
        if s.has_explicit:
            if action_hrep is None:
                action_hrep = zonotope_hrep(s.explicit_center, s.explicit_generators)
            F_U = action_hrep.normals
            fc = F_U @ s.explicit_center
            width = np.abs(F_U @ s.explicit_generators).sum(axis=1)
            rows = np.concatenate([F_U, -F_U])
            offsets = np.concatenate([fc + keep * width, -fc + keep * width])
            cuts = rows @ s.box_center + np.abs(rows) @ radius > offsets - _PRUNE_SLACK
            fixed_A.append(rows[cuts])
            fixed_b.append(offsets[cuts])
            cert_A.append(rows)
            cert_b.append(np.concatenate([fc + width, -fc + width]))
            cert_scale.append(np.concatenate([width, width]))
        self.fixed_A = np.concatenate(fixed_A)
        self.fixed_b = np.concatenate(fixed_b)
        self.cert_A = np.concatenate(cert_A)
        self.cert_b = np.concatenate(cert_b)
        self.cert_scale = np.concatenate(cert_scale)
        # -- induced slabs: S_s (shrunk by the margin) and, where needed, S ----------------------
        self.state_box_rows = 0
        self.F: np.ndarray | None = None
        if s.has_induced:
            if state_hrep is None:
                state_hrep = zonotope_hrep(s.safe_center, s.safe_generators)
            F = state_hrep.normals
            fc = F @ s.safe_center
            width = np.abs(F @ s.safe_generators).sum(axis=1)
            lower, upper = fc - keep * width, fc + keep * width
            lower_c, upper_c, scale = fc - width, fc + width, width
            if state_box is not None:
                low, high = (np.asarray(x, dtype=np.float64).reshape(-1) for x in state_box)
                hull = np.abs(s.safe_generators).sum(axis=1)
                out = (s.safe_center + hull > high) | (s.safe_center - hull < low)
                if out.any():
                    idx = np.flatnonzero(out)
                    half = 0.5 * (high - low)
                    F = np.concatenate([F, np.eye(s.state_dim)[idx]])
                    lower = np.concatenate([lower, low[idx] + s.margin])
                    upper = np.concatenate([upper, high[idx] - s.margin])
                    lower_c = np.concatenate([lower_c, low[idx]])
                    upper_c = np.concatenate([upper_c, high[idx]])
                    scale = np.concatenate([scale, half[idx]])
                    self.state_box_rows = int(idx.size)
            self.F = F
            self.lower, self.upper = lower, upper
            self.cert_lower, self.cert_upper, self.cert_state_scale = lower_c, upper_c, scale
            self._noise_key: np.ndarray | None = None
            self._noise_reduction: np.ndarray | None = None

    # -- construction ----------------------------------------------------------------------------
    @classmethod
    def from_env(cls, env: Any, structure: ActionSetStructure) -> ExactActionSet:
        """The exact set of a :class:`~safegbpo.envs.SafeVectorEnv` (duck-typed): reuses the
        safe set's memoised H-representations and intersects with ``env.state_box``."""
        safe_set = env.safe_set
        state_hrep = getattr(safe_set, "hrep", None) if structure.has_induced else None
        action_hrep = getattr(safe_set, "action_hrep", None) if structure.has_explicit else None
        state_box = None
        box = getattr(env, "state_box", None)
        if box is not None and structure.has_induced:
            low, high = box.interval_hull()
            state_box = (low[0].detach().cpu().numpy(), high[0].detach().cpu().numpy())
        return cls(structure, state_hrep, action_hrep, state_box)

    # -- helpers ---------------------------------------------------------------------------------
    @property
    def num_slabs(self) -> int:
        """Number of state-space slabs (``S_s`` and ``S``) of the induced part."""
        return 0 if self.F is None else int(self.F.shape[0])

    # -- the polytope ----------------------------------------------------------------------------
    def _noise_reduction_np(self, W: np.ndarray) -> tuple[np.ndarray, bool]:
        """``r = |F E G_W| 1``: ``((K,), False)`` when ``E G_W`` ``(N, n, p)`` is the same for
        every state (cached: additive noise), else ``((N, K), True)``."""
        if W.shape[0] == 0 or np.all(W == W[:1]):
            first = W[0] if W.shape[0] else np.zeros((self.F.shape[1], 0))
            if self._noise_key is None or self._noise_key.shape != first.shape \
                    or not np.array_equal(self._noise_key, first):
                self._noise_key = first.copy()
                self._noise_reduction = np.abs(self.F @ first).sum(axis=1)
            return self._noise_reduction, False
        return np.abs(self.F @ W).sum(axis=2), True

    def polytope(self, data: ActionSetData) -> ActionPolytope:
        """The rows ``H x <= h`` of every state (module docstring), pruned to those that cut
        ``A`` and padded; :meth:`ActionPolytope.rows` differentiates them."""
        s = self.structure
        N, d = data.batch, s.action_dim
        a0 = s.box_center
        radius = 0.5 * (s.box_high - s.box_low)
        R_fix = self.fixed_A.shape[0]
        fixed_norm = np.linalg.norm(self.fixed_A, axis=1)
        if not s.has_induced:
            A = np.broadcast_to(self.fixed_A / fixed_norm[:, None], (N, R_fix, d))
            b = np.broadcast_to(self.fixed_b / fixed_norm, (N, R_fix))
            coef_action = np.broadcast_to(self.fixed_A, (N, R_fix, d))
            return ActionPolytope(A, b, np.ones((N, R_fix), dtype=bool), None, coef_action,
                                  np.broadcast_to(self.fixed_b, (N, R_fix)),
                                  np.broadcast_to(fixed_norm, (N, R_fix)), data, a0)
        F = self.F
        K = F.shape[0]
        f0 = data.f0.detach().cpu().numpy()
        B = data.B.detach().cpu().numpy()
        W = data.noise_generators.detach().cpu().numpy()
        r, varies = self._noise_reduction_np(W)
        q = f0 - B @ a0
        HB = F @ B  # (N, K, d)
        Fq = q @ F.T  # (N, K)
        up_b = self.upper - r - Fq
        lo_b = self.lower + r - Fq
        mid = HB @ a0
        spread = np.abs(HB) @ radius
        cut_up = mid + spread > up_b - _PRUNE_SLACK * (1.0 + np.abs(up_b))
        cut_lo = mid - spread < lo_b + _PRUNE_SLACK * (1.0 + np.abs(lo_b))
        mask = np.concatenate([cut_up, cut_lo], axis=1)  # (N, 2K)
        R_ind = int(mask.sum(1).max()) if N else 0
        order = np.argsort(~mask, axis=1, kind="stable")[:, :R_ind]
        take = np.arange(N)[:, None]
        valid_ind = mask[take, order]
        row = order % K
        sign = np.where(order < K, 1.0, -1.0)
        coef_state_ind = F[row] * sign[..., None]  # (N, R, n)
        if varies:
            bound_full = np.concatenate([self.upper + 0.0 * r, -self.lower + 0.0 * r], axis=1)
        else:
            bound_full = np.concatenate([self.upper - r, -(self.lower + r)])[None]
        bound_ind = np.take_along_axis(np.broadcast_to(bound_full, (N, 2 * K)), order, axis=1)
        H_ind = np.concatenate([HB, -HB], axis=1)[take, order]
        h_full = np.concatenate([up_b, -lo_b], axis=1)
        h_ind = h_full[take, order]
        # padding rows: 0 x <= 1
        pad = ~valid_ind
        coef_state_ind[pad] = 0.0
        H_ind[pad] = 0.0
        h_ind = np.where(pad, 1.0, h_ind)
        bound_ind = np.where(pad, 1.0, bound_ind)
        coef_state = np.concatenate([np.zeros((N, R_fix, F.shape[1])), coef_state_ind], axis=1)
        coef_action = np.concatenate([np.broadcast_to(self.fixed_A, (N, R_fix, d)),
                                      np.zeros((N, R_ind, d))], axis=1)
        bound = np.concatenate([np.broadcast_to(self.fixed_b, (N, R_fix)), bound_ind], axis=1)
        H = np.concatenate([np.broadcast_to(self.fixed_A, (N, R_fix, d)), H_ind], axis=1)
        h = np.concatenate([np.broadcast_to(self.fixed_b, (N, R_fix)), h_ind], axis=1)
        norm = np.linalg.norm(H, axis=2)
        norm = np.where(norm > 0, norm, 1.0)
        valid = np.concatenate([np.ones((N, R_fix), dtype=bool), valid_ind], axis=1)
        return ActionPolytope(H / norm[..., None], h / norm, valid, coef_state, coef_action,
                              bound, norm, data, a0, varies)

    # -- certification -----------------------------------------------------------------------------
    def violation(self, actions: Tensor, data: ActionSetData) -> np.ndarray:
        """``(N,)`` largest normalised violation of ``actions (N, d)`` over **all** rows (box,
        ``U_s``, every slab of ``S_s ⊖ W_s`` and ``S ⊖ W_s``) of the untightened set (numpy,
        no autograd).  ``<= 0`` inside; ``+inf`` for non-finite actions."""
        s = self.structure
        x = actions.detach().cpu().numpy().astype(np.float64, copy=False)
        with np.errstate(all="ignore"):
            worst = ((x @ self.cert_A.T - self.cert_b) / self.cert_scale).max(axis=1)
            if s.has_induced:
                B = data.B.detach().cpu().numpy()
                y = data.f0.detach().cpu().numpy() + (B @ (x - s.box_center)[..., None])[..., 0]
                r, _ = self._noise_reduction_np(data.noise_generators.detach().cpu().numpy())
                v = y @ self.F.T
                excess = np.maximum(v - (self.cert_upper - r), (self.cert_lower + r) - v)
                worst = np.maximum(worst, (excess / self.cert_state_scale).max(axis=1))
        finite = np.isfinite(x).all(axis=1) & ~np.isnan(worst)
        return np.where(finite, worst, np.inf)

    def certify(self, actions: Tensor, data: ActionSetData, tol: float = EXACT_TOL,
                rows: Tensor | None = None) -> Tensor:
        """``(N,)`` bool: the normalised violation of every row is ``<= tol`` (module
        docstring); rows outside the optional mask ``rows`` are ``False``."""
        ok = self.violation(actions, data) <= tol
        if rows is not None:
            ok &= rows.detach().cpu().numpy().astype(bool)
        return torch.as_tensor(ok, device=actions.device)

    def __repr__(self) -> str:
        return (f"ExactActionSet(d={self.structure.action_dim}, fixed_rows="
                f"{self.fixed_A.shape[0]}, state_slabs={self.num_slabs}, "
                f"margin={self.structure.margin})")
