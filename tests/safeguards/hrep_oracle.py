"""Test oracle of the exact backend: the *same* H-representation in cvxpy/cvxpylayers programs.

The rows are rebuilt here independently of :mod:`safegbpo.safeguards.polytope`: from the safe
set's H-representation (``SafeSet.hrep`` / ``action_hrep``, checked against the zonotopes by the
hypothesis tests of ``tests/sets/test_hrep.py``), the env's ``jacrev`` linearisation
(``method='jacrev'``) and the noise box, in torch (differentiable in the state).  Rows that no
point of ``A`` can violate by less than ``0.5`` (normalised) are dropped to keep the conic
programs well conditioned (a looser rule than the backend's pruning, so the pruning is tested).

Programs: the projection (Eq 11) as a QP solved with Clarabel through cvxpy (accurate values) and
as a cvxpylayers layer (Jacobians), the ray LP (Eq 47) and the zonotopic centre (Eq 52-53,
``max geo_mean(l)`` s.t. ``H c + |H G_dir| l <= h``) as layers.  Clarabel reaches ``~1e-7`` on
the geometric-mean cone: the centre is compared at that accuracy, and the exact solution is
additionally certified by its own KKT conditions (:func:`kkt_residual`).
"""

from __future__ import annotations

import warnings
from functools import cache

import cvxpy as cp
import numpy as np
import torch
from cvxpylayers.torch import CvxpyLayer
from scipy.optimize import nnls

F64 = torch.float64
LAYER_ARGS = {"solve_method": "Clarabel", "tol_gap_abs": 1e-12, "tol_gap_rel": 1e-12,
              "tol_feas": 1e-12, "tol_ktratio": 1e-10, "max_iter": 400, "n_jobs_forward": 1}


def oracle_rows(env, states: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(H (N, R, d), h (N, R))``: normalised rows of ``A ∩ U_s ∩ {y(x) in S_s ⊖ W_s}``,
    differentiable in ``states``; padding rows ``0 x <= 1``."""
    safe_set = env.safe_set
    low, high = (t.to(F64) for t in env.model.action_bounds())
    d = low.shape[0]
    a0, radius = 0.5 * (low + high), 0.5 * (high - low)
    eye = torch.eye(d, dtype=F64)
    fixed_H, fixed_h = [eye, -eye], [high, -low]
    if safe_set.action_hrep is not None:
        hrep = safe_set.action_hrep
        F_U = torch.as_tensor(np.array(hrep.normals))
        fixed_H += [F_U, -F_U]
        fixed_h += [torch.as_tensor(np.array(hrep.upper)), -torch.as_tensor(np.array(hrep.lower))]
    H_fix, h_fix = torch.cat(fixed_H), torch.cat(fixed_h)
    hrep = safe_set.hrep
    F = torch.as_tensor(np.array(hrep.normals))
    upper, lower = (torch.as_tensor(np.array(x)) for x in (hrep.upper, hrep.lower))
    f0, B, E = env.linearise(states, method="jacrev")
    G_W = env.noise_box.generators[0].to(F64)
    r = torch.abs(F @ (E @ G_W)).sum(-1)  # (N, K)
    q = f0 - B @ a0
    HB = F @ B
    Fq = q @ F.T
    H_ind = torch.cat([HB, -HB], dim=1)
    h_ind = torch.cat([upper - r - Fq, -(lower + r) + Fq], dim=1)
    N = states.shape[0]
    H = torch.cat([H_fix.expand(N, -1, -1), H_ind], dim=1)
    h = torch.cat([h_fix.expand(N, -1), h_ind], dim=1)
    norm = torch.linalg.vector_norm(H, dim=-1)
    H, h = H / norm.clamp_min(1e-300).unsqueeze(-1), h / norm.clamp_min(1e-300)
    with torch.no_grad():
        slack = h - H @ a0 - H.abs() @ radius  # min over A of the slack
        keep = (slack < 0.5) & (norm > 1e-12)
        keep[:, : H_fix.shape[0]] = True
        assert bool(((norm > 1e-12) | (h > 0)).all()), "a row without action part is violated"
        R = int(keep.sum(1).max())
        order = torch.argsort((~keep).to(torch.int8), dim=1, stable=True)[:, :R]
        valid = torch.gather(keep, 1, order)
    H = torch.gather(H, 1, order.unsqueeze(-1).expand(-1, -1, d))
    h = torch.gather(h, 1, order)
    H = torch.where(valid.unsqueeze(-1), H, torch.zeros_like(H))
    h = torch.where(valid, h, torch.ones_like(h))
    return H, h


def _pad(H: torch.Tensor, h: torch.Tensor, R: int) -> tuple[torch.Tensor, torch.Tensor]:
    N, r, d = H.shape
    if r == R:
        return H, h
    return (torch.cat([H, torch.zeros(N, R - r, d, dtype=F64)], 1),
            torch.cat([h, torch.ones(N, R - r, dtype=F64)], 1))


def _size(r: int) -> int:
    return max(8, 1 << (r - 1).bit_length())


@cache
def _projection_layer(R: int, d: int) -> CvxpyLayer:
    H, h, a = cp.Parameter((R, d)), cp.Parameter(R), cp.Parameter(d)
    x = cp.Variable(d)
    problem = cp.Problem(cp.Minimize(cp.sum_squares(x - a)), [H @ x <= h])
    return CvxpyLayer(problem, parameters=[H, h, a], variables=[x])


@cache
def _ray_layer(R: int, d: int) -> CvxpyLayer:
    Hp, hp, Hv = cp.Parameter(R), cp.Parameter(R), cp.Parameter(R)
    t = cp.Variable()
    # H (p + t v) <= h  with  H p, H v computed in torch (DPP)
    problem = cp.Problem(cp.Maximize(t), [Hp + t * Hv <= hp, t >= 0])
    return CvxpyLayer(problem, parameters=[Hp, hp, Hv], variables=[t])


@cache
def _centre_layer(R: int, d: int, K: int) -> CvxpyLayer:
    H, HD, h = cp.Parameter((R, d)), cp.Parameter((R, K)), cp.Parameter(R)
    c, l = cp.Variable(d), cp.Variable(K, nonneg=True)
    problem = cp.Problem(cp.Maximize(cp.geo_mean(l)), [H @ c + HD @ l <= h])
    return CvxpyLayer(problem, parameters=[H, HD, h], variables=[c, l])


def _layer(layer, *params):
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore")
        args = dict(LAYER_ARGS)
        if torch.is_grad_enabled() and any(p.requires_grad for p in params):
            args["n_jobs_backward"] = 1
        return layer(*params, solver_args=args)


def project_layer(H, h, action):
    R = _size(H.shape[1])
    H, h = _pad(H, h, R)
    (x,) = _layer(_projection_layer(R, H.shape[2]), H, h, action)
    return x


def project_qp(H, h, action) -> np.ndarray:
    """Accurate projection values: the QP with Clarabel's quadratic objective (cvxpy)."""
    out = []
    for Hi, hi, ai in zip(H.detach().numpy(), h.detach().numpy(), action.detach().numpy(),
                          strict=True):
        x = cp.Variable(Hi.shape[1])
        problem = cp.Problem(cp.Minimize(cp.sum_squares(x - ai)), [Hi @ x <= hi])
        problem.solve(solver=cp.CLARABEL, tol_gap_abs=1e-11, tol_gap_rel=1e-11, tol_feas=1e-11,
                      max_iter=500)
        assert problem.status in (cp.OPTIMAL, cp.OPTIMAL_INACCURATE), problem.status
        out.append(x.value)
    return np.array(out)


def ray_layer(H, h, origin, direction):
    R = _size(H.shape[1])
    H, h = _pad(H, h, R)
    Hp = (H @ origin.unsqueeze(-1)).squeeze(-1)
    Hv = (H @ direction.unsqueeze(-1)).squeeze(-1)
    (t,) = _layer(_ray_layer(R, H.shape[2]), Hp, h, Hv)
    return t


def centre_layer(H, h, directions):
    R = _size(H.shape[1])
    H, h = _pad(H, h, R)
    HD = torch.abs(H @ directions)
    c, l = _layer(_centre_layer(R, H.shape[2], directions.shape[1]), H, HD, h)
    return c, l


def centre_is_unique(H: np.ndarray, h: np.ndarray, directions: np.ndarray, c: np.ndarray,
                     l: np.ndarray, tol: float = 1e-7) -> bool:
    """Whether the optimal centres form a single point: with ``l`` fixed, the feasible centres
    ``{c : H c <= h - |H G_dir| l}`` (slightly relaxed) have a small extent."""
    from scipy.optimize import linprog

    b = h - np.abs(H @ directions) @ l + 1e-10
    extent = 0.0
    for k in range(H.shape[1]):
        e = np.zeros(H.shape[1])
        e[k] = 1.0
        lo = linprog(e, A_ub=H, b_ub=b, bounds=[(None, None)] * H.shape[1], method="highs")
        hi = linprog(-e, A_ub=H, b_ub=b, bounds=[(None, None)] * H.shape[1], method="highs")
        extent = max(extent, hi.x[k] - lo.x[k])
    return extent <= tol


def optimal_centre_segment(H: np.ndarray, h: np.ndarray, directions: np.ndarray,
                           c: np.ndarray, l: np.ndarray) -> tuple[float, float]:
    """``(t_plus, t_minus)``: how far ``c`` can move either way along the segment of optimal
    centres ``{c : H c <= h - |H G_dir| l}`` (``d = 2``; equal at its midpoint).  The
    direction ``u`` of the segment is the one of largest extent of the set relaxed by
    ``1e-10`` (HiGHS LPs); the ends are the ratio tests over the rows not parallel to ``u``
    (``|H_k u| > 1e-6``: rows parallel to the segment within that angle do not end it)."""
    from scipy.optimize import linprog

    b = h - np.abs(H @ directions) @ l
    best = None
    for k in range(H.shape[1]):
        e = np.zeros(H.shape[1])
        e[k] = 1.0
        lo, hi = (linprog(sign * e, A_ub=H, b_ub=b + 1e-10, bounds=[(None, None)] * 2,
                          method="highs").x for sign in (1.0, -1.0))
        if best is None or np.linalg.norm(hi - lo) > np.linalg.norm(best):
            best = hi - lo
    assert best is not None
    u = best / np.linalg.norm(best)
    slack = np.maximum(b - H @ c, 0.0)
    den = H @ u
    t_plus = np.min(np.where(den > 1e-6, slack / np.where(den > 1e-6, den, 1.0), np.inf))
    t_minus = np.min(np.where(den < -1e-6, slack / np.where(den < -1e-6, -den, 1.0), np.inf))
    return float(t_plus), float(t_minus)


def kkt_residual(H: np.ndarray, h: np.ndarray, directions: np.ndarray, c: np.ndarray,
                 l: np.ndarray) -> tuple[float, float]:
    """KKT certificate of ``(c, l)`` for ``max sum log l`` s.t. ``H c + |H G_dir| l <= h``:
    ``(primal violation, stationarity residual)`` with nonnegative multipliers on the active
    rows from NNLS (``-grad f = A_I^T lam``, ``lam >= 0``)."""
    A = np.concatenate([H, np.abs(H @ directions)], axis=1)
    z = np.concatenate([c, l])
    slack = h - A @ z
    active = slack <= 1e-9 * (1.0 + np.abs(h))
    target = np.concatenate([np.zeros(c.size), 1.0 / l])
    lam, residual = nnls(A[active].T, target)
    del lam
    return float(max(-slack.min(), 0.0)), float(residual / np.linalg.norm(target))
