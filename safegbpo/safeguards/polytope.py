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

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

from safegbpo.safeguards.action_set import ActionSetData, ActionSetStructure
from safegbpo.sets.hrep import HRep, zonotope_hrep


def small_matmul(a: Tensor, b: Tensor) -> Tensor:
    """``a @ b`` for batches of small matrices ``(..., m, k) x (..., k, n)``, as a product and a
    sum over ``k``: every batch row's result (and gradient) is computed by the same elementwise
    and reduction kernels whatever the batch size and the row's position in it, bitwise.  A
    batched BLAS product is not (its kernel choice depends on the sizes and on the memory
    alignment of each row's block), which would make a seed's safe actions depend on the other
    seeds of a population (:mod:`safegbpo.algorithms.population`)."""
    return (a.unsqueeze(-1) * b.unsqueeze(-3)).sum(-2)

__all__ = ["EXACT_MARGIN", "EXACT_TOL", "ActionPolytope", "ExactActionSet"]

#: Default tightening of the exact backend (none: the rows are exact; module docstring).
EXACT_MARGIN = 0.0
#: Default normalised tolerance of the exact certification (module docstring).
EXACT_TOL = 1e-9
# rows within this (relative) distance of cutting A are kept by the pruning (rounding guard)
_PRUNE_SLACK = 1e-9


@dataclass(frozen=True, eq=False)
class ActionPolytope:
    """The safe action sets of ``N`` states as ``A x <= b`` with ``R`` (padded) rows.

    The solvers work on the detached numpy copy (``A``, ``b``: rows normalised to unit norm);
    :meth:`rows` rebuilds chosen rows in torch *with autograd* from the linearisation.

    Attributes:
        A: ``(N, R, d)`` normalised rows (numpy; rows with ``H_k = 0`` stay zero).
        b: ``(N, R)`` normalised offsets.
        valid: ``(N, R)`` bool; padding rows are ``0 x <= 1`` and not valid.
        norm: ``(N, R)`` ``||H_k||`` (1 where zero or padding).
        source: ``(N, R)`` row of the owner's row table (``-1``: padding); row ``k`` of the
            table is ``H_k = C_k + G_k B``, ``h_k = bound_k - G_k q`` with ``q = f0 - B a0``.
        owner: the :class:`ExactActionSet` (row tables).
        data: the linearisation (torch, with the state's graph).
        bound: ``(T,)`` (or ``(N, T)``) offsets of the row table for this call; without the
            noise reduction when ``noise_varies``.
        noise_varies: :meth:`rows` subtracts the noise reduction ``|G_k E G_W| 1`` itself, with
            autograd (:meth:`ExactActionSet.polytope` always sets it when there is noise, so a
            state's rows do not depend on whether ``E G_W`` differs between the states of a
            batch).
    """

    A: np.ndarray
    b: np.ndarray
    valid: np.ndarray
    norm: np.ndarray
    source: np.ndarray
    owner: ExactActionSet
    data: ActionSetData
    bound: np.ndarray
    noise_varies: bool = False
    _cache: dict = field(default_factory=dict, repr=False)

    @property
    def batch(self) -> int:
        return int(self.A.shape[0])

    @property
    def dim(self) -> int:
        return int(self.A.shape[2])

    def _q(self, like: Tensor) -> Tensor:
        if "q" not in self._cache:
            a0 = torch.as_tensor(self.owner.structure.box_center, dtype=like.dtype,
                                 device=like.device)
            f0, B, _, _ = self.data.linearisation
            self._cache["q"] = f0 - (B * a0).sum(-1)
        return self._cache["q"]

    def rows(self, index: np.ndarray, like: Tensor,
             normalised: bool = False) -> tuple[Tensor, Tensor]:
        """Rows ``index (N, r)`` (``-1`` gives ``0 x <= 0``) as torch tensors with autograd
        w.r.t. the linearisation: ``(H (N, r, d), h (N, r))``, raw or ``normalised``."""
        N = self.batch
        present = index >= 0
        take = np.arange(N)[:, None]
        src = np.where(present, self.source[take, np.where(present, index, 0)], -1)
        owner = self.owner
        C = owner.table_C[src]
        bnd = (self.bound[src] if self.bound.ndim == 1 else self.bound[take, src])
        bnd = np.where(src >= 0, bnd, 0.0)
        scale = None
        if normalised:
            scale = np.where(present, self.norm[take, np.where(present, index, 0)], 1.0)
            C, bnd = C / scale[..., None], bnd / scale
        H = torch.as_tensor(C, dtype=like.dtype, device=like.device)
        h = torch.as_tensor(bnd, dtype=like.dtype, device=like.device)
        if owner.F is not None and bool((src >= owner.num_fixed).any()):
            G_np = owner.table_G[src]
            if scale is not None:
                G_np = G_np / scale[..., None]
            G = torch.as_tensor(G_np, dtype=like.dtype, device=like.device)
            _, B, _, EG_W = self.data.linearisation
            H = H + small_matmul(G, B)
            h = h - (G * self._q(like).unsqueeze(-2)).sum(-1)
            if self.noise_varies:
                h = h - torch.abs(small_matmul(G, EG_W)).sum(-1)
        return H, h

    def subset(self, rows: np.ndarray) -> ActionPolytope:
        """The polytopes of the states ``rows`` (index array or bool mask)."""
        bound = self.bound if self.bound.ndim == 1 else self.bound[rows]
        return ActionPolytope(self.A[rows], self.b[rows], self.valid[rows], self.norm[rows],
                              self.source[rows], self.owner,
                              self.data.subset(torch.as_tensor(rows)), bound,
                              self.noise_varies)


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
            c_U, G_U = s.explicit_set
            if action_hrep is None:
                action_hrep = zonotope_hrep(c_U, G_U)
            F_U = action_hrep.normals
            fc = F_U @ c_U
            width = np.abs(F_U @ G_U).sum(axis=1)
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
            c_S, G_S, _ = s.induced_set
            if state_hrep is None:
                state_hrep = zonotope_hrep(c_S, G_S)
            F = state_hrep.normals
            fc = F @ c_S
            width = np.abs(F @ G_S).sum(axis=1)
            lower, upper = fc - keep * width, fc + keep * width
            lower_c, upper_c, scale = fc - width, fc + width, width
            if state_box is not None:
                low, high = (np.asarray(x, dtype=np.float64).reshape(-1) for x in state_box)
                hull = np.abs(G_S).sum(axis=1)
                out = (c_S + hull > high) | (c_S - hull < low)
                if out.any():
                    idx = np.flatnonzero(out)
                    half = 0.5 * (high - low)
                    F = np.concatenate([F, np.eye(c_S.size)[idx]])
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
        self._noise_last: tuple[Any, ...] | None = None
        self._bound_key: np.ndarray | None = None
        self._bound = np.zeros(0)
        self._raw_bound: np.ndarray | None = None
        self._a0 = s.box_center
        self._radius = radius
        # normalised fixed rows
        self.num_fixed = self.fixed_A.shape[0]
        self.fixed_norm = np.linalg.norm(self.fixed_A, axis=1)
        self.fixed_An = self.fixed_A / self.fixed_norm[:, None]
        self.fixed_bn = self.fixed_b / self.fixed_norm
        # the row table: fixed rows, upper sides, lower sides of the slabs, and a zero row
        # (index -1): H_k = table_C[k] + table_G[k] B
        n = s.state_dim or 0
        K = 0 if self.F is None else self.F.shape[0]
        self.table_C = np.concatenate([self.fixed_A, np.zeros((2 * K + 1, d))])
        self.table_G = np.concatenate([np.zeros((self.num_fixed, n)),
                                       *(() if self.F is None else (self.F, -self.F)),
                                       np.zeros((1, n))])

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

    @property
    def slabs(self) -> np.ndarray:
        """``F (K, n)``, the normals of the induced part's slabs; ``ValueError`` without one."""
        if self.F is None:
            raise ValueError("the safe action set has no induced part (no state slabs)")
        return self.F

    # -- the polytope ----------------------------------------------------------------------------
    def _noise_reduction_np(self, data: ActionSetData) -> tuple[np.ndarray, bool]:
        """``r = |F E G_W| 1``: ``((K,), False)`` when ``E G_W`` is the same for every state
        (cached: additive noise), else ``((N, K), True)``.  Memoised for the last ``data``."""
        W_t = data.linearisation[3]
        if self._noise_last is not None and self._noise_last[0] is W_t:
            return self._noise_last[1], self._noise_last[2]
        F = self.slabs
        W = W_t.detach().cpu().numpy()
        out: tuple[np.ndarray, bool]
        if W.shape[0] == 0 or np.all(W == W[:1]):
            first = W[0] if W.shape[0] else np.zeros((F.shape[1], 0))
            if self._noise_reduction is None or self._noise_key is None \
                    or self._noise_key.shape != first.shape \
                    or not np.array_equal(self._noise_key, first):
                self._noise_key = first.copy()
                # the same product as the per-state branch (one slice of a stacked ``F @ W``),
                # so a state's reduction does not depend on the other states of the batch
                self._noise_reduction = np.abs(F @ first[None]).sum(axis=2)[0]
            out = (self._noise_reduction, False)
        else:
            out = (np.abs(F @ W).sum(axis=2), True)
        self._noise_last = (W_t, *out)
        return out

    def polytope(self, data: ActionSetData) -> ActionPolytope:
        """The rows ``H x <= h`` of every state (module docstring), pruned to those that cut
        ``A`` and padded; :meth:`ActionPolytope.rows` differentiates them."""
        N = data.batch
        R_fix = self.num_fixed
        if self.F is None:
            A = np.broadcast_to(self.fixed_An, (N, R_fix, self.structure.action_dim))
            return ActionPolytope(A, np.broadcast_to(self.fixed_bn, (N, R_fix)),
                                  np.ones((N, R_fix), dtype=bool),
                                  np.broadcast_to(self.fixed_norm, (N, R_fix)),
                                  np.broadcast_to(np.arange(R_fix), (N, R_fix)), self, data,
                                  self.fixed_b)
        F, K = self.F, self.F.shape[0]
        a0, radius = self._a0, self._radius
        f0_t, B_t, _, _ = data.linearisation
        f0 = f0_t.detach().cpu().numpy()
        B = B_t.detach().cpu().numpy()
        r, varies = self._noise_reduction_np(data)
        HB = F @ B  # (N, K, d)
        Fq = (F @ (f0 - B @ a0).T).T  # (N, K) (this order: BLAS-friendly for large K)
        if varies:
            up_b = (self.upper - r) - Fq
            lo_b = (self.lower + r) - Fq
            bound = np.concatenate([np.broadcast_to(self.fixed_b, (N, R_fix)),
                                    np.broadcast_to(self.upper, (N, K)),
                                    np.broadcast_to(-self.lower, (N, K)),
                                    np.zeros((N, 1))], axis=1)
        else:
            bound = self._bound_table(r)
            up_b = bound[R_fix:R_fix + K] - Fq
            lo_b = -bound[R_fix + K:R_fix + 2 * K] - Fq
        mid = HB @ a0
        spread = np.abs(HB) @ radius
        cut_up = mid + spread > up_b - _PRUNE_SLACK * (1.0 + np.abs(up_b))
        cut_lo = mid - spread < lo_b + _PRUNE_SLACK * (1.0 + np.abs(lo_b))
        mask = np.concatenate([cut_up, cut_lo], axis=1)  # (N, 2K)
        # compact the kept rows of every state to the front (O(kept), no sort)
        rows_nz, cols_nz = np.nonzero(mask)
        counts = np.bincount(rows_nz, minlength=N)
        R_ind = int(counts.max()) if N else 0
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        position = np.arange(rows_nz.size) - starts[rows_nz]
        order = np.zeros((N, R_ind), dtype=np.int64)
        order[rows_nz, position] = cols_nz
        valid_ind = np.zeros((N, R_ind), dtype=bool)
        valid_ind[rows_nz, position] = True
        take = np.arange(N)[:, None]
        slab = order % K
        upper_side = order < K
        sign = np.where(upper_side, 1.0, -1.0)
        H_ind = HB[take, slab] * sign[..., None]
        h_ind = np.where(upper_side, up_b[take, slab], -lo_b[take, slab])
        norm_ind = np.linalg.norm(H_ind, axis=2)
        scale = np.where(valid_ind & (norm_ind > 0), norm_ind, 1.0)
        A_ind = np.where(valid_ind[..., None], H_ind / scale[..., None], 0.0)
        b_ind = np.where(valid_ind, h_ind / scale, 1.0)
        d = self.structure.action_dim
        A = np.concatenate([np.broadcast_to(self.fixed_An, (N, R_fix, d)), A_ind], axis=1)
        b = np.concatenate([np.broadcast_to(self.fixed_bn, (N, R_fix)), b_ind], axis=1)
        valid = np.concatenate([np.ones((N, R_fix), dtype=bool), valid_ind], axis=1)
        norm = np.concatenate([np.broadcast_to(self.fixed_norm, (N, R_fix)), scale], axis=1)
        source = np.concatenate([np.broadcast_to(np.arange(R_fix), (N, R_fix)),
                                 np.where(valid_ind, R_fix + order, -1)], axis=1)
        # ActionPolytope.rows recomputes h in torch from the offsets without the noise
        # reduction and subtracts |G_k E G_W| 1 itself, whether or not E G_W differs between the
        # states: a state's rows are then computed the same way whatever the other states of the
        # batch are (bitwise: the seeds of a population get their single-seed actions)
        raw = self._raw_bound_table()
        return ActionPolytope(A, b, valid, norm, source, self, data, raw,
                              varies or bool(np.any(r)))

    def fixed_polytope(self) -> ActionPolytope:
        """The state-independent rows alone (box and ``U_s``) as a batch-1 polytope."""
        R_fix, d = self.num_fixed, self.structure.action_dim
        return ActionPolytope(self.fixed_An.reshape(1, R_fix, d), self.fixed_bn.reshape(1, -1),
                              np.ones((1, R_fix), dtype=bool), self.fixed_norm.reshape(1, -1),
                              np.arange(R_fix).reshape(1, -1), self,
                              ActionSetData.explicit_only(1),
                              np.concatenate([self.fixed_b, np.zeros(1)]))

    def _raw_bound_table(self) -> np.ndarray:
        """Offsets of the row table without the noise reduction."""
        if self._raw_bound is None:
            self._raw_bound = np.concatenate([self.fixed_b, self.upper, -self.lower,
                                              np.zeros(1)])
        return self._raw_bound

    def _bound_table(self, r: np.ndarray) -> np.ndarray:
        """Offsets of the row table for the (state-independent) noise reduction ``r``."""
        if self._bound_key is not r:
            self._bound_key = r
            self._bound = np.concatenate([self.fixed_b, self.upper - r, -(self.lower + r),
                                          np.zeros(1)])
        return self._bound

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
                f0_t, B_t, _, _ = data.linearisation
                B = B_t.detach().cpu().numpy()
                y = f0_t.detach().cpu().numpy() + (B @ (x - s.box_center)[..., None])[..., 0]
                r, _ = self._noise_reduction_np(data)
                v = (self.slabs @ y.T).T
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
