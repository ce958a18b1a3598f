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
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import torch
from torch import Tensor

from safegbpo.safeguards import exact
from safegbpo.safeguards.action_set import ActionSetData
from safegbpo.safeguards.certify import Certificate
from safegbpo.safeguards.problems import (
    SNAP_DISTANCE,
    ExplicitProjectionProblem,
    ProjectionProblem,
)
from safegbpo.safeguards.protocol import Safeguard

__all__ = ["BoundaryProjection", "boundary_projection"]


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

    def _map(self, action: Tensor,
             data: ActionSetData) -> tuple[Tensor, Tensor, Certificate | None]:
        if self.exact is None:
            assert self.problem is not None  # built for the cvxpylayers backend
            return self.problem(action, data)
        x, solved, _ = exact.project(action, self.exact.polytope(data))
        return x, solved, None


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
                     generators: Tensor) -> Tensor:
    """Exact closed form of Lemma 1 on the active set the solver identified: with the
    saturated factors ``s_A = sign(b_A)`` (``|b_j| > 1 - 1e-5``) and the free generators
    ``G_F``, ``x = c + G_A s_A + P_F (a - c - G_A s_A)``, ``P_F`` the orthogonal projector onto
    ``span(G_F)``.  Used for the rows where it verifies the KKT conditions of the projection
    in factor space (free factors ``|G_F^+ r| <= 1``, multipliers ``s_A * G_A^T (a - x) >= 0``;
    sufficient, the problem is convex); the second-order-cone solution is only accurate to
    ``~1e-6`` (worse far from the set).  Differentiable."""
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
    return torch.where(use.unsqueeze(-1), polished, x)


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
        ValueError: bad shapes, NaN/inf input, or a failed solve (the rows are named).
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
    x = _polish_explicit(x, factors, action, center, generators)
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
    return torch.where(inside.unsqueeze(-1), action.expand_as(x), x)
