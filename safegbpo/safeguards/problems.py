"""The safeguards' convex programs, built once and solved batched through ``cvxpylayers``.

Every problem is built **once** per safeguard instance from an
:class:`~safegbpo.safeguards.action_set.ActionSetStructure` and is DPP: the fixed safe sets
``S_s``, ``U_s`` and the box are constants, the state-dependent data are parameters

* ``q0 = f0 - B a0`` ``(n,)``, ``B`` ``(n, d)`` and ``E G_W`` ``(n, p)`` (Eq 12–14),
* plus the per-problem quantities (the action, a ray, generator directions ``B G_dir``).

The Eq 5 / Eq 6 constraints come from the builders of :mod:`safegbpo.sets.containment`; every
constraint is tightened by ``structure.margin`` (see :mod:`safegbpo.safeguards.action_set`).

| class | program | paper |
|---|---|---|
| :class:`ProjectionProblem` | ``min ||a - x||^2`` s.t. ``x in A ∩ A_s(s)`` (QP) | Eq 11, 13–14 |
| :class:`ExplicitProjectionProblem` | ``min ||a - x||^2`` s.t. ``x in <c, G>`` (QP) | Eq 11, 5 |
| :class:`RayProblem` | ``max t`` s.t. ``p + t v in A ∩ A_s(s)`` (LP) | Eq 47 |
| :class:`ZonotopeRayProblem` | ``max t`` s.t. ``t v in <0, G>``, ``t <= t_max`` (LP) | Eq 47, 5 |
| :class:`ZonotopicCentreProblem` | ``max geo_mean(l)``, ``<c, G_dir diag(l)> ⊆ A ∩ A_s`` | 52–53 |

Solving (:class:`SolverLayer`).  The layers use diffcp with Clarabel (interior point, accurate
to ``~1e-8``) and implicit differentiation of the KKT conditions.  cvxpylayers does **not**
report the solver status (an infeasible or inaccurate solve returns whatever iterate the solver
stopped at), so nothing is trusted: a layer call never raises for a solver failure but returns a
per-row ``ok`` mask (exceptions and non-finite outputs); failing rows are re-solved one by one
to isolate them, and, when gradients are needed, the good rows are re-solved without them so
no failed problem stays in the autograd graph.  Non-finite gradient entries produced by the
implicit differentiation (degenerate KKT systems) are replaced by zero and counted in
:attr:`SolverLayer.nonfinite_gradients`.  The safety of every output is then certified
independently (:mod:`safegbpo.safeguards.certify`).

All problem data are moved to the CPU (the solvers run there) and the outputs back to the
device of the inputs.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import Any

import cvxpy as cp
import numpy as np
import torch
from cvxpylayers.torch import CvxpyLayer
from torch import Tensor

from safegbpo.safeguards.action_set import ActionSetData, ActionSetStructure
from safegbpo.safeguards.certify import Certificate, ZonotopeCertificate, check_certificate
from safegbpo.sets.containment import (
    point_containment_constraints,
    zonotope_containment_constraints,
)

__all__ = [
    "CENTRE_SOLVER_ARGS",
    "DEFAULT_SOLVER_ARGS",
    "SolverLayer",
    "ProjectionProblem",
    "ExplicitProjectionProblem",
    "RayProblem",
    "ZonotopeRayProblem",
    "ZonotopicCentreProblem",
]

#: diffcp options of every layer: Clarabel, serial (the machines have few cores and the
#: problems are tiny, so thread pools only add overhead), tight tolerances.  cvxpylayers'
#: diffcp backend has no quadratic objective: ``||a - x||^2`` becomes a second-order cone, and
#: an objective gap ``eps`` then leaves an error ``~sqrt(eps)`` in the projection (Clarabel's
#: default ``1e-8`` gives ``~1e-4``); with ``1e-12`` the projections are accurate to ``~1e-6``
#: at no measurable cost (a few more interior-point iterations).
DEFAULT_SOLVER_ARGS: dict[str, Any] = {
    "solve_method": "Clarabel",
    "n_jobs_forward": 1,
    "n_jobs_backward": 1,
    "tol_gap_abs": 1e-12,
    "tol_gap_rel": 1e-12,
    "tol_feas": 1e-12,
    "tol_ktratio": 1e-10,
}
#: The zonotopic centre (Eq 52-53) is a heuristic under-approximation whose every point is
#: certified afterwards, so it does not need the projections' accuracy: Clarabel's default
#: tolerances save ~40% of its interior-point iterations (it dominates the ray mask's cost).
CENTRE_SOLVER_ARGS: dict[str, Any] = {
    "tol_gap_abs": 1e-8,
    "tol_gap_rel": 1e-8,
    "tol_feas": 1e-8,
    "tol_ktratio": 1e-6,
}
#: Projections closer than this to their action are snapped back to the action when the action
#: is proven safe (:meth:`ProjectionProblem.__call__`).
SNAP_DISTANCE = 1e-4
# diffcp's solve-only path forwards unknown options to the solver settings: strip these there.
_DERIVATIVE_ONLY_ARGS = ("n_jobs_backward", "mode", "derivative_kwargs")


class _SanitiseGradient(torch.autograd.Function):
    """Identity whose backward replaces non-finite gradient entries by zero (and counts them)."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, owner: SolverLayer) -> Tensor:
        ctx.owner = owner
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        bad = ~torch.isfinite(grad)
        if bool(bad.any()):
            ctx.owner.nonfinite_gradients += int(bad.sum())
            grad = torch.where(bad, torch.zeros_like(grad), grad)
        return grad, None


class SolverLayer:
    """A :class:`cvxpylayers.torch.CvxpyLayer` that never trusts its solver (module docstring).

    Args:
        problem: a DPP cvxpy problem.
        parameters, variables: as for ``CvxpyLayer``.
        solver_args: diffcp options overriding :data:`DEFAULT_SOLVER_ARGS`.
        name: used in error messages.

    Call with **batched** parameter tensors (leading dimension ``N`` on every parameter);
    returns ``(outputs, ok)`` where ``outputs`` are the variables ``(N, ...)`` (rows with
    ``ok == False`` are zero and carry no gradient) and ``ok`` is ``(N,)`` bool.
    """

    def __init__(
        self,
        problem: cp.Problem,
        parameters: Sequence[cp.Parameter],
        variables: Sequence[cp.Variable],
        solver_args: dict[str, Any] | None = None,
        name: str = "problem",
    ) -> None:
        if not problem.is_dpp():
            raise ValueError(f"{name}: the problem is not DPP; cvxpylayers cannot differentiate it")
        self.name = name
        self.problem = problem
        self.parameters = list(parameters)
        self.variables = list(variables)
        self.layer = CvxpyLayer(problem, parameters=self.parameters, variables=self.variables)
        args = dict(DEFAULT_SOLVER_ARGS)
        args.update(solver_args or {})
        self._grad_args = args
        self._solve_args = {k: v for k, v in args.items() if k not in _DERIVATIVE_ONLY_ARGS}
        self.nonfinite_gradients = 0

    # -- internals ----------------------------------------------------------------------------
    def _solve(self, params: Sequence[Tensor], needs_grad: bool) -> tuple[Tensor, ...]:
        with warnings.catch_warnings():
            # cvxpylayers 1.2 converts tensors with np.array(copy=False) semantics (numpy 2)
            warnings.filterwarnings("ignore", category=DeprecationWarning, module="cvxpylayers")
            if needs_grad:
                params = [_SanitiseGradient.apply(p, self) if p.requires_grad else p
                          for p in params]
                return tuple(self.layer(*params, solver_args=self._grad_args))
            with torch.no_grad():
                return tuple(self.layer(*params, solver_args=self._solve_args))

    @staticmethod
    def _finite_rows(outputs: Sequence[Tensor], batch: int) -> Tensor:
        ok = torch.ones(batch, dtype=torch.bool)
        for out in outputs:
            ok &= torch.isfinite(out.detach()).reshape(batch, -1).all(-1)
        return ok

    def _solve_rows(self, params: Sequence[Tensor], needs_grad: bool,
                    rows: Tensor) -> tuple[list[tuple[Tensor, ...] | None], Tensor]:
        """Solve the rows ``rows`` one by one; returns per-row outputs (or None) and ok mask."""
        results: list[tuple[Tensor, ...] | None] = []
        ok = torch.zeros(rows.numel(), dtype=torch.bool)
        for k, i in enumerate(rows.tolist()):
            try:
                out = self._solve([p[i:i + 1] for p in params], needs_grad)
            except Exception:  # noqa: BLE001 - any solver failure is a failed row
                results.append(None)
                continue
            if bool(self._finite_rows(out, 1)[0]):
                ok[k] = True
                results.append(out)
            else:
                results.append(None)
        return results, ok

    def _assemble(self, batch: int, shapes: Sequence[torch.Size], rows: Tensor,
                  pieces: Sequence[Sequence[Tensor]]) -> tuple[Tensor, ...]:
        """Full ``(batch, ...)`` outputs: ``pieces[j]`` (stacked over ``rows``) scattered into
        zeros (differentiable w.r.t. the pieces)."""
        outs = []
        for j, shape in enumerate(shapes):
            full = torch.zeros((batch, *shape), dtype=torch.float64)
            if rows.numel():
                full = full.index_put((rows,), torch.cat([p[j] for p in pieces]))
            outs.append(full)
        return tuple(outs)

    # -- call ---------------------------------------------------------------------------------
    def __call__(
        self,
        *params: Tensor,
        row_ok: Callable[..., Tensor] | None = None,
    ) -> tuple[tuple[Tensor, ...], Tensor]:
        """Solve the batch; ``row_ok(*outputs) -> (N,) bool`` adds problem-specific checks."""
        if len(params) != len(self.parameters):
            raise ValueError(f"{self.name}: expected {len(self.parameters)} parameters, got "
                             f"{len(params)}")
        device = params[0].device
        params = tuple(p.to(device="cpu", dtype=torch.float64) for p in params)
        batch = params[0].shape[0]
        for p, spec in zip(params, self.parameters, strict=True):
            if p.shape[0] != batch or tuple(p.shape[1:]) != tuple(spec.shape):
                raise ValueError(f"{self.name}: parameter {spec.name()} must have shape "
                                 f"({batch}, {', '.join(map(str, spec.shape))}), got "
                                 f"{tuple(p.shape)}")
            if not bool(torch.isfinite(p.detach()).all()):
                raise ValueError(f"{self.name}: parameter {spec.name()} contains NaN/inf")
        needs_grad = torch.is_grad_enabled() and any(p.requires_grad for p in params)
        shapes = [torch.Size(v.shape) for v in self.variables]
        all_rows = torch.arange(batch)

        try:
            outputs = self._solve(params, needs_grad)
            ok = self._finite_rows(outputs, batch)
        except Exception:  # noqa: BLE001 - isolate the failing rows
            per_row, ok = self._solve_rows(params, needs_grad, all_rows)
            good = all_rows[ok]
            outputs = self._assemble(batch, shapes, good, [per_row[i] for i in good.tolist()])
        if row_ok is not None:
            with torch.no_grad():
                safe_outputs = [torch.nan_to_num(o.detach()) for o in outputs]
                ok &= row_ok(*safe_outputs).to(torch.bool).cpu()
        if not bool(ok.all()):
            good = all_rows[ok]
            if needs_grad and good.numel():
                # re-solve the good rows so that no failed problem remains in the graph
                try:
                    sub = self._solve([p[good] for p in params], needs_grad)
                    sub_ok = self._finite_rows(sub, good.numel())
                except Exception:  # noqa: BLE001
                    sub_ok = torch.zeros(good.numel(), dtype=torch.bool)
                if bool(sub_ok.all()):
                    outputs = self._assemble(batch, shapes, good, [sub])
                else:
                    per_row, row_ok_mask = self._solve_rows(params, needs_grad, good)
                    ok[good[~row_ok_mask]] = False
                    good = all_rows[ok]
                    outputs = self._assemble(batch, shapes, good,
                                             [r for r in per_row if r is not None])
            else:
                mask = ok
                outputs = tuple(
                    torch.where(mask.view(-1, *([1] * (o.ndim - 1))), torch.nan_to_num(o),
                                torch.zeros_like(o))
                    for o in outputs)
        return tuple(o.to(device) for o in outputs), ok.to(device)


# --------------------------------------------------------------------------------------------
# constraint helpers (Eq 5, Eq 6 through safegbpo.sets.containment, tightened by the margin)
# --------------------------------------------------------------------------------------------
def _certificate_variables(*variables: cp.Variable | None) -> list[cp.Variable]:
    """The certificate variables of Eq 5/6 constraints; every zonotope of an
    :class:`ActionSetStructure` has generators, so none is missing (else ``ValueError``)."""
    if any(v is None for v in variables):
        raise ValueError("a containment constraint has no certificate variable (a zonotope "
                         "without generators)")
    return [v for v in variables if v is not None]


def _box_constraints(point: cp.Expression, s: ActionSetStructure) -> list[cp.Constraint]:
    return [point >= s.box_low + s.margin, point <= s.box_high - s.margin]


def _explicit_constraints(point: cp.Expression,
                          s: ActionSetStructure) -> tuple[list[cp.Constraint], list[cp.Variable]]:
    """``point in U_s`` with ``||b||_inf <= 1 - margin`` (Eq 5, tightened); returns the
    constraints and ``[b]`` (the certificate variable of :class:`~safegbpo.safeguards.certify.
    Certificate`, ``point = c_U + G_U b``)."""
    if not s.has_explicit:
        return [], []
    c_U, G_U = s.explicit_set
    constraints, b = point_containment_constraints(point, c_U, (1.0 - s.margin) * G_U)
    # factor of the untightened generators: G_U (b (1 - margin)) = point - c_U
    return constraints, _certificate_variables(b)


def _induced_constraints(center: cp.Expression, generators: cp.Expression,
                         s: ActionSetStructure) -> tuple[list[cp.Constraint], list[cp.Variable]]:
    """``<center, generators> ⊆ S_s`` by Eq 6 with row sums ``<= 1 - margin``; returns the
    constraints and ``[Gamma, beta]``."""
    c_S, G_S, _ = s.induced_set
    constraints, gamma, beta = zonotope_containment_constraints(
        center, generators, c_S, G_S, bound=1.0 - s.margin)
    return constraints, _certificate_variables(gamma, beta)


def _induced_parameters(s: ActionSetStructure) -> tuple[cp.Parameter, cp.Parameter, cp.Parameter]:
    _, G_S, G_W = s.induced_set
    n, d, p = G_S.shape[0], s.action_dim, G_W.shape[1]
    return (cp.Parameter(n, name="q0"), cp.Parameter((n, d), name="B"),
            cp.Parameter((n, p), name="EG_W"))


def _induced_values(s: ActionSetStructure, data: ActionSetData, like: Tensor) -> list[Tensor]:
    """``[q0 = f0 - B a0, B, E G_W]`` for the induced parameters."""
    f0, B, _, EG_W = data.linearisation
    a0 = s.tensor("box_center", like)
    q0 = f0 - (B @ a0.expand(data.batch, -1).unsqueeze(-1)).squeeze(-1)
    return [q0, B, EG_W]


def _expand(x: Tensor, batch: int) -> Tensor:
    return x.expand(batch, *x.shape[1:]) if x.shape[0] == 1 else x


def _certificate(s: ActionSetStructure, outputs: Sequence[Tensor]) -> Certificate:
    """Certificate from the layer outputs ``[b_U]? + [Gamma, beta]?`` (detached)."""
    outputs = [o.detach() for o in outputs]
    explicit = outputs.pop(0) * (1.0 - s.margin) if s.has_explicit else None
    gamma, beta = (outputs[0], outputs[1]) if s.has_induced else (None, None)
    return Certificate(explicit=explicit, gamma=gamma, beta=beta)


# --------------------------------------------------------------------------------------------
# problems
# --------------------------------------------------------------------------------------------
class ProjectionProblem:
    """Boundary projection (Eq 11): ``min ||a - x||^2`` s.t. ``x in A ∩ U_s`` and
    ``<f0 + B (x - a0), E G_W> ⊆ S_s`` (Eq 13–14 with Eq 6) — one QP per action.

    Parameters: the action ``a (d)`` and, for induced sets, ``q0, B, E G_W``.
    """

    def __init__(self, structure: ActionSetStructure, solver_args: dict[str, Any] | None = None):
        s = self.structure = structure
        action = cp.Parameter(s.action_dim, name="action")
        x = cp.Variable(s.action_dim, name="safe_action")
        constraints = _box_constraints(x, s)
        cons, cert_vars = _explicit_constraints(x, s)
        constraints += cons
        params = [action]
        if s.has_induced:
            q0, B, W = _induced_parameters(s)
            cons, induced_vars = _induced_constraints(q0 + B @ x, W, s)
            constraints += cons
            cert_vars += induced_vars
            params += [q0, B, W]
        problem = cp.Problem(cp.Minimize(cp.sum_squares(x - action)), constraints)
        self.layer = SolverLayer(problem, params, [x, *cert_vars], solver_args,
                                 "boundary projection (Eq 11)")

    def __call__(self, action: Tensor,
                 data: ActionSetData) -> tuple[Tensor, Tensor, Certificate]:
        """``action (N, d)`` -> ``(projection (N, d), ok (N,), certificate)``.

        Safe actions are returned exactly (``J = I``, no spurious intervention): the second-order
        cone form of the objective leaves an error ``~sqrt(gap) ~ 1e-6`` even for interior
        actions, so every row whose solution lies within :data:`SNAP_DISTANCE` of its action is
        snapped back to the action when the solver's certificate, corrected exactly to the
        action, proves it safe (stage 1 of :mod:`~safegbpo.safeguards.certify`, ``tol = 0``).
        """
        params = [action]
        if self.structure.has_induced:
            params += _induced_values(self.structure, data, action)
        (x, *cert), ok = self.layer(*params)
        certificate = _certificate(self.structure, cert)
        with torch.no_grad():
            near = ok & ((x - action).norm(dim=-1) <= SNAP_DISTANCE)
        if bool(near.any()):
            proven = torch.as_tensor(
                check_certificate(action, self.structure, data, certificate, tol=0.0),
                device=near.device)
            x = torch.where((near & proven).unsqueeze(-1), action, x)
        return x, ok, certificate


class ExplicitProjectionProblem:
    """Projection onto an explicit zonotope ``<c, G>`` (Eq 11 with Eq 5), ``c``, ``G`` parameters.

    No box and no tightening: this is the exact map of Lemma 1 (used by
    :func:`safegbpo.safeguards.boundary_projection.boundary_projection`).
    """

    def __init__(self, dim: int, num_generators: int,
                 solver_args: dict[str, Any] | None = None) -> None:
        action = cp.Parameter(dim, name="action")
        center = cp.Parameter(dim, name="center")
        generators = cp.Parameter((dim, num_generators), name="generators")
        x = cp.Variable(dim, name="projection")
        constraints, factors = point_containment_constraints(x, center, generators)
        problem = cp.Problem(cp.Minimize(cp.sum_squares(x - action)), constraints)
        self.layer = SolverLayer(problem, [action, center, generators],
                                 [x, *_certificate_variables(factors)], solver_args,
                                 "zonotope projection (Eq 11, Eq 5)")

    def __call__(self, action: Tensor, center: Tensor,
                 generators: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Returns ``(projection (N, d), factors b (N, m), ok (N,))``."""
        batch = max(action.shape[0], center.shape[0], generators.shape[0])
        (x, b), ok = self.layer(_expand(action, batch), _expand(center, batch),
                                _expand(generators, batch))
        return x, b, ok


class RayProblem:
    """Safe boundary along a ray (Eq 47): ``max t`` s.t. ``0 <= t <= t_max``,
    ``p + t v in U_s`` and ``<q0 + t q1, E G_W> ⊆ S_s`` with ``q0 = f0 + B (p - a0)``,
    ``q1 = B v`` (computed in torch so the LP stays DPP).  The box is ``t <= t_max`` (the
    caller passes the closed-form box distance).
    """

    def __init__(self, structure: ActionSetStructure, solver_args: dict[str, Any] | None = None):
        s = self.structure = structure
        t = cp.Variable(name="t")
        t_max = cp.Parameter(1, name="t_max")
        params = [t_max]
        constraints = [t >= 0, t <= t_max[0]]
        cert_vars: list[cp.Variable] = []
        if s.has_explicit:
            origin = cp.Parameter(s.action_dim, name="origin")
            direction = cp.Parameter(s.action_dim, name="direction")
            cons, cert_vars = _explicit_constraints(origin + t * direction, s)
            constraints += cons
            params += [origin, direction]
        if s.has_induced:
            _, G_S, G_W = s.induced_set
            n, p = G_S.shape[0], G_W.shape[1]
            q0 = cp.Parameter(n, name="q0")
            q1 = cp.Parameter(n, name="q1")
            W = cp.Parameter((n, p), name="EG_W")
            cons, induced_vars = _induced_constraints(q0 + t * q1, W, s)
            constraints += cons
            cert_vars += induced_vars
            params += [q0, q1, W]
        problem = cp.Problem(cp.Maximize(t), constraints)
        self.layer = SolverLayer(problem, params, [t, *cert_vars], solver_args,
                                 "safe boundary LP (Eq 47)")

    def __call__(self, origin: Tensor, direction: Tensor, t_max: Tensor,
                 data: ActionSetData) -> tuple[Tensor, Tensor, Certificate]:
        """``origin``, unit ``direction`` ``(N, d)``, ``t_max (N,)`` ->
        ``(t (N,), ok (N,), certificate of origin + t direction)``."""
        s = self.structure
        params = [t_max.unsqueeze(-1)]
        if s.has_explicit:
            params += [origin, direction]
        if s.has_induced:
            _, B, _, EG_W = data.linearisation
            q0 = data.next_state_center(s, origin)
            q1 = (B @ direction.unsqueeze(-1)).squeeze(-1)
            params += [q0, q1, EG_W]
        tol = 1e-6
        t_cap = t_max.detach().cpu()
        (t, *cert), ok = self.layer(
            *params, row_ok=lambda t_, *_: (t_ >= -tol) & (t_ <= t_cap + tol))
        return t, ok, _certificate(s, cert)


class ZonotopeRayProblem:
    """Boundary of an explicit zonotope along a ray (Eq 47 with Eq 5):
    ``max t`` s.t. ``0 <= t <= t_max``, ``t v = G b``, ``||b||_inf <= 1``.

    Measured from the zonotope's centre, ``t* = min(1 / gauge(v), t_max)``.
    """

    def __init__(self, dim: int, num_generators: int,
                 solver_args: dict[str, Any] | None = None) -> None:
        generators = cp.Parameter((dim, num_generators), name="generators")
        direction = cp.Parameter(dim, name="direction")
        t_max = cp.Parameter(1, name="t_max")
        t = cp.Variable(name="t")
        constraints, b = point_containment_constraints(t * direction, np.zeros(dim), generators)
        constraints += [t >= 0, t <= t_max[0]]
        problem = cp.Problem(cp.Maximize(t), constraints)
        self.layer = SolverLayer(problem, [generators, direction, t_max],
                                 [t, *_certificate_variables(b)], solver_args,
                                 "zonotope boundary LP (Eq 47)")

    def __call__(self, generators: Tensor, direction: Tensor,
                 t_max: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``generators (N, d, m)``, unit ``direction (N, d)``, ``t_max (N,)`` ->
        ``(t (N,), factors b (N, m) of t v, ok (N,))``."""
        batch = max(generators.shape[0], direction.shape[0], t_max.shape[0])
        tol = 1e-6
        t_cap = t_max.detach().cpu().reshape(-1)
        (t, b), ok = self.layer(
            _expand(generators, batch), _expand(direction, batch),
            _expand(t_max.reshape(-1, 1), batch),
            row_ok=lambda t_, b_: (t_ >= -tol) & (t_ <= t_cap + tol))
        return t, b.detach(), ok


class ZonotopicCentreProblem:
    """Zonotopic under-approximation of ``A ∩ A_s(s)`` (Eq 52–53):

    ``max geo_mean(l)`` over ``c (d)``, ``l >= 0 (K)`` s.t. ``Z = <c, G_dir diag(l)>`` has its
    interval hull in ``A`` (``|c - a0| + |G_dir| l <= r_A``), ``Z ⊆ U_s`` (Eq 6) and
    ``<f0 + B (c - a0), [B G_dir diag(l), E G_W]> ⊆ S_s`` (Eq 6, Eq 53).

    ``B G_dir`` is a parameter (computed in torch) so ``(B G_dir) diag(l)`` is DPP.  A conic
    program (the geometric mean is canonicalised to second-order cones).  For an explicit-only
    set the problem has no parameter: it is solved once at construction (:attr:`fixed`).

    Besides ``c`` and ``l`` it returns the Eq 6 certificates of ``Z``
    (:class:`ZonotopeCertificate`) from which the certificate of every point of ``Z`` follows.
    """

    def __init__(self, structure: ActionSetStructure, directions: np.ndarray,
                 solver_args: dict[str, Any] | None = None) -> None:
        s = self.structure = structure
        directions = np.asarray(directions, dtype=np.float64)
        d, K = directions.shape
        if d != s.action_dim or K < 1:
            raise ValueError(f"directions must have shape ({s.action_dim}, K>=1), got "
                             f"{directions.shape}")
        self.directions = directions
        c = cp.Variable(d, name="centre")
        lengths = cp.Variable(K, nonneg=True, name="lengths")
        generators = directions @ cp.diag(lengths)
        radius = np.abs(directions) @ lengths
        constraints = [c + radius <= s.box_high - s.margin, c - radius >= s.box_low + s.margin]
        cert_vars: list[cp.Variable] = []
        if s.has_explicit:
            c_U, G_U = s.explicit_set
            cons, gamma_u, beta_u = zonotope_containment_constraints(
                c, generators, c_U, G_U, bound=1.0 - s.margin)
            constraints += cons
            cert_vars += _certificate_variables(gamma_u, beta_u)
        params: list[cp.Parameter] = []
        if s.has_induced:
            q0, B, W = _induced_parameters(s)
            BG = cp.Parameter((q0.shape[0], K), name="BG_dir")
            inner = cp.hstack([BG @ cp.diag(lengths), W])
            cons, induced_vars = _induced_constraints(q0 + B @ c, inner, s)
            constraints += cons
            cert_vars += induced_vars
            params = [q0, B, BG, W]
        problem = cp.Problem(cp.Maximize(cp.geo_mean(lengths)), constraints)
        self.fixed: tuple[np.ndarray, ...] | None = None
        self.layer: SolverLayer | None = None
        if params:
            self.layer = SolverLayer(problem, params, [c, lengths, *cert_vars],
                                     {**CENTRE_SOLVER_ARGS, **(solver_args or {})},
                                     "zonotopic centre (Eq 52-53)")
        else:
            problem.solve(solver=cp.CLARABEL)
            if problem.status != cp.OPTIMAL:
                raise ValueError(f"zonotopic centre of the explicit safe set: solver status "
                                 f"{problem.status} (is U_s ∩ A empty?)")
            self.fixed = tuple(np.asarray(v.value) for v in (c, lengths, *cert_vars))

    def __call__(self, data: ActionSetData,
                 like: Tensor) -> tuple[Tensor, Tensor, Tensor, ZonotopeCertificate]:
        """Returns ``(centre (N, d), lengths (N, K), ok (N,), certificate of Z)``."""
        N = data.batch
        if self.fixed is not None:
            values = [torch.as_tensor(v, dtype=like.dtype, device=like.device) for v in self.fixed]
            values = [v.expand(N, *v.shape) for v in values]
            c, lengths, cert = values[0], values[1], values[2:]
            ok = torch.ones(N, dtype=torch.bool, device=like.device)
        else:
            assert self.layer is not None  # built whenever the problem has parameters
            q0, B, W = _induced_values(self.structure, data, like)
            G_dir = torch.as_tensor(self.directions, dtype=B.dtype, device=B.device)
            (c, lengths, *cert), ok = self.layer(
                q0, B, B @ G_dir, W, row_ok=lambda c_, l_, *_: (l_ >= -1e-6).all(-1))
        return c, lengths.clamp_min(0.0), ok, ZonotopeCertificate.from_outputs(
            self.structure, self.directions.shape[1], [x.detach() for x in cert])
