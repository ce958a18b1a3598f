"""Boundary projection (SPEC §4, paper Section 5.2, Eq 11).

``g_BP(a, s) = argmin_x ||a - x||^2  s.t.  x in A ∩ A_s(s)`` — one QP per action.

* backend ``'exact'`` (default): the exact polytope of each state
  (:mod:`~safegbpo.safeguards.polytope`) and the batched cutting-plane projection of
  :func:`~safegbpo.safeguards.exact.project`; the output is the closed form on its active rows
  ``x = a - H_I^T (H_I H_I^T)^{-1} (H_I a - h_I)``, so autograd gives the KKT derivative;
* backend ``'cvxpylayers'``: a cvxpylayers layer built once per safeguard
  (:class:`~safegbpo.safeguards.problems.ProjectionProblem`, Eq 6); the Jacobian comes from
  implicit differentiation of the KKT conditions.
Safe actions in the interior are returned unchanged (``J = I``); unsafe actions land on the
boundary with a rank-deficient Jacobian (Lemma 1, gradient loss of Eq 15–16), which the
regularisation of Eq 45 (:func:`~safegbpo.safeguards.regularisation.regularisation_loss`)
compensates.

* :class:`BoundaryProjection` — the safeguard for an environment (explicit ``U_s``, induced by
  ``S_s`` through Eq 12–14 and Eq 6, or their intersection, always within the box ``A``).
* :func:`boundary_projection` — the standalone map onto an explicit zonotope ``<c, G>`` (Eq 5;
  no box, no tightening), used to check Lemma 1.

**Optimality, not only feasibility** (issue 10).  diffcp never checks Clarabel's status, and
for large actions (``|a| >~ 300``) the second-order-cone form returns feasible points that are
*not* the projection (error ``9e-3`` at ``|a| = 1e3``, points deep inside the set at ``1e6``);
the certification proves feasibility only.  The cvxpylayers backend therefore checks every
row that moved (:meth:`BoundaryProjection._check_optimality`, ``d <= 2``):

1. against the exact projection ``x_e`` onto the exact polytope (SPEC §11, exact for any finite
   input): where ``x_e`` also satisfies Eq 6 (the two sets agree there), the Eq 6 projection
   *is* ``x_e`` up to the margin, so ``||x - x_e|| <= OPTIMALITY_TOL`` is required;
2. elsewhere (Eq 6 strictly more conservative near ``x``) the Eq 47 ray LP from ``x``
   towards the action must find no room: ``t* <= OPTIMALITY_TOL`` (a projection lies on the
   boundary and every point towards the action is outside; catches interior answers).

A row failing check 1 gets ``x_e`` (the optimum; counted in
:attr:`BoundaryProjection.inaccurate`); a row failing check 2 is treated like a failed solve:
it falls back (counted in ``fallbacks`` and ``inaccurate``, warned).  For ``d = 1`` the action
is first clipped to ``A`` (exact: the set is an interval inside ``A``, ``P(a) = P(clip(a))``),
which keeps the conic program well scaled.  :func:`boundary_projection` raises ``ValueError``
for rows whose KKT conditions it cannot verify (instead of returning an unverified point).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import torch
from torch import Tensor

from safegbpo.safeguards import exact
from safegbpo.safeguards.action_set import ActionSetData
from safegbpo.safeguards.certify import Certificate, certify_actions
from safegbpo.safeguards.geometry import box_distance, unit_direction
from safegbpo.safeguards.problems import (
    SNAP_DISTANCE,
    ExplicitProjectionProblem,
    ProjectionProblem,
    RayProblem,
)
from safegbpo.safeguards.protocol import Safeguard

__all__ = ["OPTIMALITY_TOL", "BoundaryProjection", "boundary_projection"]

#: Largest accepted distance of a cvxpylayers projection from the optimum (module docstring);
#: the programs are accurate to ``~1e-6`` and tightened by ``margin = 1e-6``.
OPTIMALITY_TOL = 1e-5


class BoundaryProjection(Safeguard):
    """Boundary projection safeguard (Eq 11) for an environment; see the module docstring.

    Options (keyword-only): ``backend``, ``passthrough``, ``margin``, ``tol``,
    ``solver_args``, ``certification`` — see :class:`~safegbpo.safeguards.protocol.Safeguard`.
    """

    name = "bp"

    def __init__(self, env: Any, **options: Any) -> None:
        super().__init__(env, **options)
        self.problem = (ProjectionProblem(self.structure, self.solver_args)
                        if self.exact is None else None)
        self._ray: RayProblem | None = None
        #: cvxpylayers rows rejected by the optimality check so far (module docstring).
        self.inaccurate = 0

    def _map(self, action: Tensor,
             data: ActionSetData) -> tuple[Tensor, Tensor, Certificate | None]:
        if self.exact is None:
            assert self.problem is not None  # built for the cvxpylayers backend
            if self.structure.action_dim == 1:
                # d = 1: the set is an interval inside A, so P(a) = P(clip(a, A)) exactly;
                # clipping keeps the conic program well scaled for any finite action
                low = self.structure.tensor("box_low", action)
                high = self.structure.tensor("box_high", action)
                action = torch.clamp(action, low, high)
            x, ok, certificate = self.problem(action, data)
            if self.recovery_set is not None:
                x, good = self._check_optimality(action, x, ok, data)
                ok = ok & good
            return x, ok, certificate
        x, solved, _ = exact.project(action, self.exact.polytope(data))
        return x, solved, None

    def _check_optimality(self, action: Tensor, x: Tensor, ok: Tensor,
                          data: ActionSetData) -> tuple[Tensor, Tensor]:
        """Optimality check of the cvxpylayers projections ``x`` (module docstring).

        Returns ``(x', good (N,))``: rows that did not move or did not solve pass through;
        a row that is not optimal but whose exact projection satisfies Eq 6 gets that exact
        projection (the optimum, with its closed-form gradient); other non-optimal rows are
        ``good = False`` (they fall back).
        """
        assert self.recovery_set is not None
        good = torch.ones_like(ok)
        with torch.no_grad():
            moved = ok & ((x.detach() - action.detach()).norm(dim=-1) > 0.0)
        if not bool(moved.any()):
            return x, good
        rows = torch.nonzero(moved).flatten()
        sub = data.subset(rows)
        xe, solved, _ = exact.project(action[rows], self.recovery_set.polytope(sub))
        with torch.no_grad():
            a, xd = action.detach()[rows], x.detach()[rows]
            agree = solved & certify_actions(xe.detach(), self.structure, sub, self.tol,
                                             method="lp")
            close = (xd - xe.detach()).norm(dim=-1) <= OPTIMALITY_TOL
            verdict = torch.ones_like(close)
            other = ~agree
            if bool(other.any()):
                if self._ray is None:
                    self._ray = RayProblem(self.structure, self.solver_args)
                idx = torch.nonzero(other).flatten()
                origin = xd[idx]
                direction, _ = unit_direction(a[idx] - origin)
                low = self.structure.tensor("box_low", origin)
                high = self.structure.tensor("box_high", origin)
                t_max = box_distance(origin, direction, low, high).clamp(0.0, 1.0)
                t, t_ok, _ = self._ray(origin, direction, t_max, sub.subset(idx))
                verdict[idx] = t_ok & (t.detach() <= OPTIMALITY_TOL)
            replace = agree & ~close
            bad = int((~verdict).sum()) + int(replace.sum())
        if bad:
            self.inaccurate += bad
            self._failure = (f"inaccurate projection: {bad} row(s) not optimal "
                             f"(issue 10 optimality check)")
        if bool(replace.any()):
            full = torch.zeros_like(ok)
            full[rows[replace]] = True
            patched = x.clone()
            patched[rows[replace]] = xe[replace].to(x.dtype)
            x = torch.where(full.unsqueeze(-1), patched, x)
        good[rows] = verdict
        return x, good


def _as_batch(x: Tensor, name: str, ndim: int) -> Tensor:
    if not isinstance(x, Tensor):
        x = torch.as_tensor(x, dtype=torch.float64)
    if x.ndim == ndim - 1:
        x = x.unsqueeze(0)
    if x.ndim != ndim:
        raise ValueError(f"{name}: expected {ndim - 1} or {ndim} dimensions, got {tuple(x.shape)}")
    if not bool(torch.isfinite(x.detach()).all()):
        raise ValueError(f"{name} contains NaN/inf")
    return x.to(torch.float64)


@lru_cache(maxsize=32)
def _explicit_problem(dim: int, num_generators: int) -> ExplicitProjectionProblem:
    return ExplicitProjectionProblem(dim, num_generators)


def _polish_explicit(x: Tensor, factors: Tensor, action: Tensor, center: Tensor,
                     generators: Tensor) -> tuple[Tensor, Tensor]:
    """Exact closed form of Lemma 1 on the active set the solver identified: with the
    saturated factors ``s_A = sign(b_A)`` (``|b_j| > 1 - 1e-5``) and the free generators
    ``G_F``, ``x = c + G_A s_A + P_F (a - c - G_A s_A)``, ``P_F`` the orthogonal projector onto
    ``span(G_F)``.  Used for the rows where it verifies the KKT conditions of the projection
    in factor space (free factors ``|G_F^+ r| <= 1``, multipliers ``s_A * G_A^T (a - x) >= 0``;
    sufficient, the problem is convex); the second-order-cone solution is only accurate to
    ``~1e-6`` (worse far from the set).  Differentiable.  Returns ``(x, verified (N,))``."""
    batch, d = x.shape
    G = generators.expand(batch, -1, -1)
    c = center.expand(batch, -1)
    a = action.expand(batch, -1)
    with torch.no_grad():
        b = factors.detach()
        active = b.abs() > 1.0 - 1e-5
        sign = torch.where(active, torch.sign(b), torch.zeros_like(b))
    G_F = G * (~active).unsqueeze(-2)
    base = c + (G @ sign.unsqueeze(-1)).squeeze(-1)
    r = a - base
    coef = torch.linalg.pinv(G_F, rcond=1e-10) @ r.unsqueeze(-1)
    polished = base + (G_F @ coef).squeeze(-1)
    with torch.no_grad():
        free_ok = (coef.squeeze(-1).abs() <= 1.0 + 1e-9).where(~active, True).all(-1)
        mult = sign * (G.transpose(1, 2) @ (a - polished).unsqueeze(-1)).squeeze(-1)
        mult_ok = (mult >= -1e-9).where(active, True).all(-1)
        use = free_ok & mult_ok
    return torch.where(use.unsqueeze(-1), polished, x), use


def boundary_projection(action: Tensor, center: Tensor, generators: Tensor) -> Tensor:
    """Euclidean projection of ``action`` onto the zonotope ``<center, generators>`` (Eq 11, 5).

    Differentiable (implicit differentiation of the KKT system): inside the zonotope the
    Jacobian is ``I``; on the boundary it is ``G_I (G_I^T G_I)^+ G_I^T`` with ``G_I`` the
    generators whose optimal factors are not at their bounds (Lemma 1).  The problem is built
    once per ``(d, m)`` and cached.

    Args:
        action: ``(B, d)`` (or ``(d,)``).
        center: ``(B, d)`` or ``(d,)`` (broadcast).
        generators: ``(B, d, m)`` or ``(d, m)`` (broadcast).

    Returns:
        ``(B, d)`` projections.

    Raises:
        ValueError: bad shapes, NaN/inf input, or a failed or inaccurate solve (the rows are
            named; every returned row is verified: inside, or KKT conditions of the polished
            active set).
    """
    action = _as_batch(action, "action", 2)
    center = _as_batch(center, "center", 2)
    generators = _as_batch(generators, "generators", 3)
    d, m = generators.shape[1], generators.shape[2]
    if action.shape[1] != d or center.shape[1] != d:
        raise ValueError(f"dimension mismatch: action {tuple(action.shape)}, center "
                         f"{tuple(center.shape)}, generators {tuple(generators.shape)}")
    batches = {action.shape[0], center.shape[0], generators.shape[0]} - {1}
    if len(batches) > 1:
        raise ValueError(f"batch sizes {sorted(batches)} cannot be broadcast")
    x, factors, ok = _explicit_problem(d, m)(action, center, generators)
    if not bool(ok.all()):
        rows = torch.nonzero(~ok).flatten().tolist()
        raise ValueError(f"boundary_projection: the projection QP failed for rows {rows}")
    x, verified = _polish_explicit(x, factors, action, center, generators)
    # return actions inside the zonotope exactly (see ProjectionProblem.__call__): the factors
    # of the solution, corrected exactly to the action, prove membership
    with torch.no_grad():
        batch = x.shape[0]
        G = generators.detach().expand(batch, d, m)
        offset = (action.detach() - center.detach()).expand(batch, d)
        residual = offset - (G @ factors.unsqueeze(-1)).squeeze(-1)
        corrected = factors + (torch.linalg.pinv(G) @ residual.unsqueeze(-1)).squeeze(-1)
        exact = (G @ corrected.unsqueeze(-1)).squeeze(-1) - offset
        inside = ((x.detach() - action.detach()).norm(dim=-1) <= SNAP_DISTANCE) \
            & (corrected.abs().amax(-1) <= 1.0) & (exact.abs().amax(-1) <= 1e-12)
    unverified = ~(verified | inside)
    if bool(unverified.any()):
        rows = torch.nonzero(unverified).flatten().tolist()
        raise ValueError(f"boundary_projection: the projection QP is inaccurate for rows {rows} "
                         "(its KKT conditions could not be verified; e.g. a huge action)")
    return torch.where(inside.unsqueeze(-1), action.expand_as(x), x)
