"""Batched exact solvers on the per-state action polytopes ``H x <= h`` (SPEC §11, ``d <= 2``).

Every solver has two halves:

1. a **detached numpy solve** on the normalised rows of :class:`~safegbpo.safeguards.polytope.
   ActionPolytope` that identifies the *active set* of each state (exact up to rounding), and
2. a **torch closed form on the active set** that recomputes the solution from the rows with
   autograd, so gradients w.r.t. the action and (through ``H(s)``, ``h(s)``) the state are the
   exact derivatives of the solution wherever the active set is locally constant — the implicit
   (KKT) derivative of the cvxpylayers backend.

Solvers:

* :func:`inside` — the safe-action test (one batched product).
* :func:`project` — Euclidean projection (boundary projection, Eq 11).  Cutting planes: project
  onto a working set of rows by enumerating the candidates (the action, the projections onto
  single rows, and, for ``d = 2``, the vertices of pairs of rows: the projection onto a
  polyhedron in ``d`` dimensions has at most ``d`` linearly independent active rows), add the
  most violated row of the full set, repeat.  A working-set projection that satisfies all rows
  is the projection onto the full set (it is optimal for a relaxation).  Closed form:
  ``x = a - H_I^T (H_I H_I^T)^{-1} (H_I a - h_I)`` (Lemma 1).
* :func:`ray_distance` — ``max { t >= 0 : p + t v in P }`` by the ratio test
  ``min_{k: H_k v > 0} (h_k - H_k p) / (H_k v)`` (Eq 47); closed form: the minimising row's ratio.
* :func:`zonotopic_centre` — Eq 52–53 with the exact containment
  ``Z = <c, G_dir diag(l)> ⊆ P  <=>  H c + |H G_dir| l <= h``:
  ``max sum_j log l_j`` over ``(c, l)``.  ``d = 1``: closed form (``c`` the midpoint, all
  ``l_j`` equal).  ``d = 2``: a batched Mehrotra primal-dual interior-point method, then Newton
  polishing on the identified active set; gradients by one Newton step of the active-set KKT
  system from the (detached) solution, ``z = z* - J^+ R(z*; H, h)`` (``J`` detached), whose
  derivative is the implicit-function derivative ``-J^{-1} dR/dp``.
  **Tie-break** (decision): ``l*`` is unique (strictly concave objective) but ``c*`` is not
  when two antiparallel rows pin ``c`` in one direction only (``Z`` squeezed between two
  parallel edges, e.g. a thin strip of ``A``; frequent on the energy task); then the optimal
  centres form a segment and its *midpoint* is returned.  The rule is a function of the rows
  and ``l*`` alone (:func:`_pinch`), never of the solver's path: a state is *pinched* when
  two rows tight at the solution have antiparallel action normals (within
  :data:`_PINCH_ANGLE` ``= 1e-9``); the segment's ends are the ratio tests of the rows not
  parallel to it within that angle (a nearly parallel row would make the end
  ``slack / sin(angle)`` ill-conditioned: with ``sin ~ 1e-11`` rounding moved the centre by
  ``~1e-6`` between calls, depending on the warm start); rows parallel within the angle
  may then be violated at the midpoint by ``<= 1e-9 * length``, and ``l`` is scaled down by
  the least factor that restores ``Z ⊆ P`` exactly.  Warm starts change the speed only: the
  same states give the same ``(c, l)`` to rounding (``~1e-16``).  Gradient convention
  there: ``l`` by the implicit derivative of the KKT system on *all* tight rows (tilt within
  the angle removed, pseudo-inverse: a tight end row has a zero multiplier), ``c`` by the
  derivative of the midpoint formula with the pinching and end rows held fixed (one
  element of the Clarke generalised derivative; where the pinching or the end rows change,
  the centre is continuous only if the segment shrinks to a point there — the argmax of
  Eq 52–53 is set-valued, no selection is continuous everywhere).  The cvxpylayers backend
  returns an unspecified point of that segment.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from safegbpo.safeguards.polytope import ActionPolytope

__all__ = ["inside", "project", "ray_distance", "zonotopic_centre", "zonotope_ray_distance"]

# normalised-row feasibility tolerance of the solvers (rows have unit norm)
FEAS_TOL = 1e-12
# pairs of rows with |det| below this are parallel (no vertex)
_PARALLEL = 1e-12
# action normals within this angle (|sin|) are parallel for the centre's tie-break (_pinch)
_PINCH_ANGLE = 1e-9
# interior-point method
_IPM_MAX_ITER = 80
_IPM_TOL = 1e-13


def _np(x: Tensor) -> np.ndarray:
    return x.detach().to("cpu", torch.float64).numpy()


def _violations(A: np.ndarray, b: np.ndarray, x: np.ndarray) -> np.ndarray:
    """``(N, R)`` normalised violations ``A x - b`` (rows of ``A`` unit or zero)."""
    return np.einsum("nrd,nd->nr", A, x) - b


def inside(action: Tensor, poly: ActionPolytope) -> np.ndarray:
    """``(N,)`` bool: ``H a <= h`` for every row (no tolerance)."""
    return np.asarray((_violations(poly.A, poly.b, _np(action)) <= 0.0).all(axis=1))


# --------------------------------------------------------------------------------------------
# projection (Eq 11)
# --------------------------------------------------------------------------------------------
def _project_working_set(a: np.ndarray, A: np.ndarray, b: np.ndarray,
                         work: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Projection of ``a (M, d)`` onto ``{x : A_k x <= b_k, k in work}`` by candidate
    enumeration; ``work`` ``(M, w)`` row indices (``-1`` = none).

    Returns ``(x (M, d), active (M, 2) (-1 padded), found (M,))``.
    """
    M, d = a.shape
    w = work.shape[1]
    idx = np.clip(work, 0, None)
    Aw = np.take_along_axis(A, idx[:, :, None], axis=1)  # (M, w, d)
    bw = np.take_along_axis(b, idx, axis=1)
    present = work >= 0
    Aw = np.where(present[:, :, None], Aw, 0.0)
    bw = np.where(present, bw, 1.0)
    cands = [a[:, None, :]]
    act = [np.full((M, 1, 2), -1)]
    # single rows (only violated ones move a)
    viol = np.einsum("mwd,md->mw", Aw, a) - bw
    single = a[:, None, :] - viol[:, :, None] * Aw
    cands.append(single)
    act.append(np.stack([np.where(present & (viol > 0), work, -2), np.full((M, w), -1)], -1))
    if d == 2 and w >= 2:
        i, j = np.triu_indices(w, 1)
        A1, A2 = Aw[:, i], Aw[:, j]  # (M, P, 2)
        det = A1[..., 0] * A2[..., 1] - A1[..., 1] * A2[..., 0]
        ok = present[:, i] & present[:, j] & (np.abs(det) > _PARALLEL)
        safe = np.where(ok, det, 1.0)
        b1, b2 = bw[:, i], bw[:, j]
        vx = (b1 * A2[..., 1] - b2 * A1[..., 1]) / safe
        vy = (A1[..., 0] * b2 - A2[..., 0] * b1) / safe
        cands.append(np.stack([vx, vy], -1))
        act.append(np.stack([np.where(ok, work[:, i], -2), np.where(ok, work[:, j], -2)], -1))
    X = np.concatenate(cands, axis=1)  # (M, C, d)
    ACT = np.concatenate(act, axis=1)  # (M, C, 2)
    usable = (ACT[:, :, 0] != -2) & (ACT[:, :, 1] != -2)
    feas = (np.einsum("mwd,mcd->mcw", Aw, X) - bw[:, None, :]
            <= FEAS_TOL * (1.0 + np.abs(bw[:, None, :]))).all(-1)
    dist = ((X - a[:, None, :]) ** 2).sum(-1)
    n_active = (ACT >= 0).sum(-1)
    # prefer fewer active rows when two candidates coincide (kinks: single row over a vertex)
    score = np.where(usable & feas, dist * (1.0 + 1e-9 * n_active) + 1e-300 * n_active, np.inf)
    best = np.argmin(score, axis=1)
    found = np.isfinite(score[np.arange(M), best])
    x = X[np.arange(M), best]
    active = ACT[np.arange(M), best]
    return x, np.where(active >= 0, active, -1), found


def project_numpy(a: np.ndarray, A: np.ndarray, b: np.ndarray,
                  max_iter: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cutting-plane projection of ``a (N, d)`` onto ``{A x <= b}`` (normalised rows).

    Returns ``(x (N, d), active (N, 2), solved (N,))``.
    """
    N, d = a.shape
    R = A.shape[1]
    max_iter = R + 1 if max_iter is None else max_iter
    x = a.copy()
    active = np.full((N, 2), -1)
    tol = FEAS_TOL * (1.0 + np.abs(b))
    work = np.zeros((N, 0), dtype=np.int64)
    viol = _violations(A, b, x) - tol
    todo = (viol > 0).any(axis=1)
    found = np.ones(N, dtype=bool)
    for _ in range(max_iter):
        if not todo.any():
            break
        rows = np.flatnonzero(todo)
        worst = np.argmax(viol[rows], axis=1)
        column = np.full((N, 1), -1, dtype=np.int64)
        column[rows, 0] = worst
        work = np.concatenate([work, column], axis=1)
        xs, acts, ok = _project_working_set(a[rows], A[rows], b[rows], work[rows])
        x[rows], active[rows] = xs, acts
        found[rows] = ok
        viol_rows = _violations(A[rows], b[rows], xs) - tol[rows]
        viol[rows] = viol_rows
        todo[rows] = ok & (viol_rows > 0).any(axis=1)
    solved = found & ~todo
    return x, active, solved


def projection_formula(action: Tensor, H: Tensor, h: Tensor, count: Tensor) -> Tensor:
    """``a - H_I^T (H_I H_I^T)^{-1} (H_I a - h_I)`` for the active rows ``H (N, 2, d)``,
    ``h (N, 2)`` of which the first ``count (N,)`` are used: the action (none), the projection
    onto one row's hyperplane, or the vertex of two rows (``d = 2``).  Differentiable."""
    N, d = action.shape
    H1, h1 = H[:, 0], h[:, 0]
    norm2 = (H1 * H1).sum(-1)
    one = count == 1
    norm2 = torch.where(one, norm2, torch.ones_like(norm2))
    x1 = action - H1 * (((H1 * action).sum(-1) - h1) / norm2).unsqueeze(-1)
    out = torch.where(one.unsqueeze(-1), x1, action)
    if d == 2 and bool((count == 2).any()):
        two = count == 2
        eye = torch.eye(2, dtype=H.dtype, device=H.device).expand(N, 2, 2)
        M = torch.where(two.view(N, 1, 1), H, eye)
        rhs = torch.where(two.unsqueeze(-1), h, torch.zeros_like(h))
        x2 = torch.linalg.solve(M, rhs)
        out = torch.where(two.unsqueeze(-1), x2, out)
    return out


def _interval(poly: ActionPolytope) -> tuple[np.ndarray, ...]:
    """``d = 1``: ``P = [lo, hi]`` per state: ``(lo, hi, k_lo, k_hi, nonempty)`` (rows of the
    bounds; rows with ``H_k = 0`` only decide emptiness)."""
    a, b, valid = poly.A[..., 0], poly.b, poly.valid
    N = a.shape[0]
    hi_val = np.where(valid & (a > 0.5), b, np.inf)  # normalised rows are +-1 or 0
    lo_val = np.where(valid & (a < -0.5), -b, -np.inf)
    k_hi, k_lo = hi_val.argmin(1), lo_val.argmax(1)
    hi, lo = hi_val[np.arange(N), k_hi], lo_val[np.arange(N), k_lo]
    nonempty = (lo <= hi) & ~(valid & (a == 0.0) & (b < 0.0)).any(1)
    return lo, hi, k_lo, k_hi, nonempty


def _project_interval(a: np.ndarray, poly: ActionPolytope) -> tuple[np.ndarray, np.ndarray]:
    """``d = 1`` projection: ``clip(a, lo, hi)``; returns ``(active (N, 2), solved (N,))``."""
    lo, hi, k_lo, k_hi, nonempty = _interval(poly)
    active = np.full((a.shape[0], 2), -1)
    active[:, 0] = np.where(a > hi, k_hi, np.where(a < lo, k_lo, -1))
    return active, nonempty & np.isfinite(lo) & np.isfinite(hi)


def project(action: Tensor, poly: ActionPolytope) -> tuple[Tensor, Tensor, np.ndarray]:
    """Euclidean projection of ``action (N, d)`` onto the polytopes (Eq 11).

    Returns ``(x (N, d), solved (N,) bool tensor, active (N, 2) numpy)``; unsolved rows (empty
    polytope) hold the action as a placeholder.  Actions inside are returned as they are
    (``J = I``).
    """
    if poly.dim == 1:
        active, solved = _project_interval(_np(action)[:, 0], poly)
    else:
        _, active, solved = project_numpy(_np(action), poly.A, poly.b)
    active = np.where(solved[:, None], active, -1)
    count = (active >= 0).sum(1)
    ok = torch.as_tensor(solved, device=action.device)
    if not count.any():
        return action, ok, active
    H, h = poly.rows(active, action)
    out = projection_formula(action, H, h, torch.as_tensor(count, device=action.device))
    return out, ok, active


# --------------------------------------------------------------------------------------------
# ratio test (Eq 47)
# --------------------------------------------------------------------------------------------
def ray_distance(origin: Tensor, direction: Tensor,
                 poly: ActionPolytope) -> tuple[Tensor, Tensor]:
    """``max { t >= 0 : origin + t v in P }`` for unit ``direction (N, d)`` (Eq 47).

    Returns ``(t (N,), solved (N,))``; ``solved`` is ``False`` where no row bounds the ray
    (impossible with the box rows) or the origin violates a row by more than ``1e-9``.
    """
    A, b = poly.A, poly.b
    p, v = _np(origin), _np(direction)
    den = np.einsum("nrd,nd->nr", A, v)
    num = b - np.einsum("nrd,nd->nr", A, p)
    moving = den > _PARALLEL
    ratio = np.where(moving, num / np.where(moving, den, 1.0), np.inf)
    k = np.argmin(ratio, axis=1)
    best = ratio[np.arange(len(k)), k]
    solved = np.isfinite(best) & (num >= -1e-9 * (1.0 + np.abs(b))).all(axis=1)
    Hk, hk = poly.rows(np.where(solved, k, -1)[:, None], origin)
    Hk, hk = Hk[:, 0], hk[:, 0]
    ok = torch.as_tensor(solved, device=origin.device)
    den_t = (Hk * direction).sum(-1)
    den_t = torch.where(ok, den_t, torch.ones_like(den_t))
    t = ((hk - (Hk * origin).sum(-1)) / den_t).clamp_min(0.0)
    return torch.where(ok, t, torch.zeros_like(t)), ok


def zonotope_ray_distance(centre: Tensor, generators: Tensor, direction: Tensor) -> Tensor:
    """Distance from the centre of ``Z = <c, G>`` (``G`` ``(N, d, K)``, ``d <= 2``) to its
    boundary along unit ``direction (N, d)``: ``1 / gauge_Z(v)`` by the ratio test over the
    facets of ``Z`` (normals perpendicular to the generators), differentiable; ``0`` for a
    flat ``Z``."""
    N, d, K = generators.shape
    if d == 1:
        normals = torch.ones(N, 1, 1, dtype=generators.dtype, device=generators.device)
    else:
        g = generators
        normals = torch.stack([-g[:, 1], g[:, 0]], dim=-1)  # (N, K, 2)
    width = (normals @ generators).abs().sum(-1)  # (N, K'): half-width along each normal
    den = (normals @ direction.unsqueeze(-1)).squeeze(-1).abs()
    with torch.no_grad():
        usable = den > _PARALLEL * (1.0 + torch.linalg.vector_norm(normals, dim=-1))
        ratio = torch.where(usable, width / torch.where(usable, den, torch.ones_like(den)),
                            torch.full_like(den, float("inf")))
        k = ratio.argmin(-1, keepdim=True)
        finite = torch.isfinite(torch.gather(ratio, 1, k))[:, 0]
    w = torch.gather(width, 1, k)[:, 0]
    dk = torch.gather(den, 1, k)[:, 0]
    dk = torch.where(finite, dk, torch.ones_like(dk))
    return torch.where(finite, w / dk, torch.zeros_like(w))


# --------------------------------------------------------------------------------------------
# zonotopic centre (Eq 52-53)
# --------------------------------------------------------------------------------------------
def _max_step(x: np.ndarray, dx: np.ndarray) -> np.ndarray:
    """Largest ``alpha`` (per batch row) with ``x + alpha dx >= 0`` (``inf`` if unbounded)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(dx < 0, x / -dx, np.inf).min(axis=1)


def _centre_ipm(A: np.ndarray, b: np.ndarray, d: int, z0: np.ndarray,
                scale: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Mehrotra primal-dual IPM for ``min -sum log z[d:]`` s.t. ``A z <= b``, batched.

    Infeasible start; the centring parameter is kept at ``>= min(0.5, relative residual)``
    (the objective is nonlinear: driving ``mu`` to 0 before dual feasibility stalls the
    method); the step keeps ``s, lam > 0`` (fraction to the boundary 0.99) and ``l > 0``.

    Returns ``(z (N, nz), lam (N, R), slack (N, R), converged (N,))``.
    """
    N, R, nz = A.shape
    K = nz - d
    z = z0.copy()
    At = np.ascontiguousarray(np.transpose(A, (0, 2, 1)))
    s = np.maximum(b - (A @ z[..., None])[..., 0], 1.0)
    lam = np.ones((N, R))
    converged = np.zeros(N, dtype=bool)
    b_scale = 1.0 + np.abs(b).max(1)
    diag = np.arange(nz)
    ldiag = np.arange(d, nz)
    reg = 1e-14 * scale
    inv_R = 1.0 / R
    for _ in range(_IPM_MAX_ITER):
        l = z[:, d:]
        inv_l = 1.0 / l
        r_d = (At @ lam[..., None])[..., 0]
        r_d[:, d:] -= inv_l
        Az = (A @ z[..., None])[..., 0]
        r_p = Az + s - b
        sl = s * lam
        mu = sl.sum(1) * inv_R
        res_d = np.abs(r_d).max(1) / (1.0 + inv_l.max(1))
        res_p = np.abs(r_p).max(1) / b_scale
        converged |= (mu < _IPM_TOL) & (res_p < 1e-11) & (res_d < 1e-9)
        if converged.all():
            break
        ratio = lam / s
        M = At @ (ratio[..., None] * A)
        M[:, ldiag, ldiag] += inv_l * inv_l
        M[:, diag, diag] += reg
        lam_rp = lam * r_p
        here = np.concatenate([s, lam, l], axis=1)
        # predictor (affine scaling)
        rhs = (At @ ((sl - lam_rp) / s)[..., None])[..., 0] - r_d
        dz = np.linalg.solve(M, rhs[..., None])[..., 0]
        ds = -r_p - (A @ dz[..., None])[..., 0]
        dlam = -lam - ratio * ds
        alpha = np.minimum(_max_step(here, np.concatenate([ds, dlam, dz[:, d:]], axis=1)), 1.0)
        a_ = alpha[:, None]
        mu_aff = ((s + a_ * ds) * (lam + a_ * dlam)).sum(1) * inv_R
        sigma = np.minimum((mu_aff / np.maximum(mu, 1e-300)) ** 3, 1.0)
        sigma = np.maximum(sigma, np.minimum(0.5, np.maximum(res_d, res_p)))
        # corrector
        r_c = sl + ds * dlam - (sigma * mu)[:, None]
        rhs = (At @ ((r_c - lam_rp) / s)[..., None])[..., 0] - r_d
        dz = np.linalg.solve(M, rhs[..., None])[..., 0]
        ds = -r_p - (A @ dz[..., None])[..., 0]
        dlam = (-r_c - lam * ds) / s
        alpha = 0.99 * _max_step(here, np.concatenate([ds, dlam, dz[:, d:]], axis=1))
        a_ = np.where(converged, 0.0, np.minimum(alpha, 1.0))[:, None]
        z = z + a_ * dz
        s = np.maximum(s + a_ * ds, 1e-300)
        lam = np.maximum(lam + a_ * dlam, 1e-300)
    bad = ~np.isfinite(z).all(1)
    if bad.any():
        z[bad] = z0[bad]
        converged &= ~bad
    del K
    return z, lam, s, converged


def _kkt(A: np.ndarray, z: np.ndarray, active: np.ndarray,
         d: int) -> tuple[np.ndarray, np.ndarray]:
    """Active rows ``A_I`` ``(N, r, nz)`` and the Jacobian ``(N, nz + r, nz + r)`` of the
    active-set KKT system ``[g(z) + A_I^T lam_I ; A_I z - b_I] = 0`` (``g = -1/l`` on the
    ``l`` part); ``active (N, r)`` row indices, ``-1`` padding (identity blocks)."""
    N, R, nz = A.shape
    r = active.shape[1]
    present = active >= 0
    AI = A[np.arange(N)[:, None], np.where(present, active, 0)]
    AI = np.where(present[:, :, None], AI, 0.0)
    J = np.zeros((N, nz + r, nz + r))
    l = z[:, d:]
    J[:, np.arange(d, nz), np.arange(d, nz)] = 1.0 / l**2
    J[:, :nz, nz:] = np.transpose(AI, (0, 2, 1))
    J[:, nz:, :nz] = AI
    J[:, nz + np.arange(r), nz + np.arange(r)] = np.where(present, 0.0, 1.0)
    return AI, J


def _solve_kkt(J: np.ndarray, rhs: np.ndarray, degenerate: np.ndarray) -> np.ndarray:
    """``J^{-1} rhs`` (``(N, m)``); the pseudo-inverse for the ``degenerate`` rows (``J``
    singular along the free direction of ``c``: the minimum-norm step leaves it put)."""
    out = np.empty_like(rhs)
    regular = ~degenerate
    if regular.any():
        try:
            out[regular] = np.linalg.solve(J[regular], rhs[regular][..., None])[..., 0]
        except np.linalg.LinAlgError:  # a singular system in the batch: pseudo-inverse all
            degenerate = np.ones_like(degenerate)
    if degenerate.any():
        out[degenerate] = np.einsum("nij,nj->ni", np.linalg.pinv(J[degenerate], rcond=1e-13),
                                    rhs[degenerate])
    return out


def _inverse_kkt(J: np.ndarray, degenerate: np.ndarray) -> np.ndarray:
    """``J^{-1}`` (``J^+`` for the ``degenerate`` rows or singular systems)."""
    out = np.empty_like(J)
    regular = ~degenerate
    if regular.any():
        try:
            out[regular] = np.linalg.inv(J[regular])
        except np.linalg.LinAlgError:
            degenerate = np.ones_like(degenerate)
    if degenerate.any():
        out[degenerate] = np.linalg.pinv(J[degenerate], rcond=1e-13)
    return out


def _polish(A: np.ndarray, b: np.ndarray, z: np.ndarray, lam: np.ndarray,
            active: np.ndarray, d: int, degenerate: np.ndarray,
            iters: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Newton iterations on the active-set KKT system.  Returns ``(z, lam_I (N, r))``."""
    N, R, nz = A.shape
    present = active >= 0
    take = np.arange(N)[:, None]
    idx = np.where(present, active, 0)
    lamI = np.where(present, lam[take, idx], 0.0)
    bI = np.where(present, b[take, idx], 0.0)
    for _ in range(iters):
        AI, J = _kkt(A, z, active, d)
        res_d = (np.transpose(AI, (0, 2, 1)) @ lamI[..., None])[..., 0]
        res_d[:, d:] -= 1.0 / z[:, d:]
        res = np.concatenate([res_d, np.where(present, (AI @ z[..., None])[..., 0] - bI, 0.0)],
                             axis=1)
        step = _solve_kkt(J, res, degenerate)
        z_new = z - step[:, :nz]
        if np.any(z_new[:, d:] <= 0) or not np.all(np.isfinite(z_new)):
            break
        z = z_new
        lamI = lamI - step[:, nz:]
    return z, lamI


def _newton_verified(A: np.ndarray, b: np.ndarray, z: np.ndarray, active: np.ndarray,
                     d: int, iters: int = 8) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Solve the KKT system of a *guessed* active set by Newton's method from ``z`` and verify
    the result: ``(z, lam_I, ok)`` with ``ok`` where the point is primal feasible (all rows,
    ``1e-11`` relative), the multipliers are ``>= 0``, ``l > 0`` and the KKT residual is
    ``<= 1e-10`` — the KKT conditions of the convex problem, hence optimal."""
    N, R, nz = A.shape
    present = active >= 0
    take = np.arange(N)[:, None]
    idx = np.where(present, active, 0)
    bI = np.where(present, b[take, idx], 0.0)
    degenerate, _ = _degenerate(A, active, d)
    AI, J = _kkt(A, z, active, d)
    AIt = np.transpose(AI, (0, 2, 1))
    ldiag = np.arange(d, nz)
    lamI = np.zeros(active.shape)
    ok = present.any(1)
    for _ in range(iters):
        inv_l = 1.0 / z[:, d:]
        res_d = (AIt @ lamI[..., None])[..., 0]
        res_d[:, d:] -= inv_l
        res_p = np.where(present, (AI @ z[..., None])[..., 0] - bI, 0.0)
        if max(np.abs(res_d).max(), np.abs(res_p).max()) <= 1e-14:
            break
        J[:, ldiag, ldiag] = inv_l * inv_l
        step = _solve_kkt(J, np.concatenate([res_d, res_p], axis=1), degenerate)
        z_new = z - step[:, :nz]
        ok &= np.isfinite(z_new).all(1) & (z_new[:, d:] > 0).all(1)
        z = np.where(ok[:, None], z_new, z)
        lamI = np.where(ok[:, None], lamI - step[:, nz:], lamI)
    res_d = (AIt @ lamI[..., None])[..., 0]
    inv_l = 1.0 / z[:, d:]
    res_d[:, d:] -= inv_l
    ok &= np.abs(res_d).max(1) / (1.0 + inv_l.max(1)) <= 1e-10
    ok &= ((A @ z[..., None])[..., 0] - b <= 1e-11 * (1.0 + np.abs(b))).all(1)
    ok &= (np.where(present, lamI, 0.0) >= -1e-12).all(1)
    return z, lamI, ok


def _active_set_refine(A: np.ndarray, b: np.ndarray, z: np.ndarray, active: np.ndarray,
                       d: int, rounds: int = 4) -> tuple[np.ndarray, np.ndarray, np.ndarray,
                                                         np.ndarray]:
    """:func:`_newton_verified` with active-set corrections for the states that fail: add the
    most violated row (if the set is not full), else drop the most negative multiplier, and
    try again (``rounds`` times).  Returns ``(z, lam_I, active, ok)``."""
    N, R, nz = A.shape
    active = np.concatenate([active, np.full((N, rounds), -1)], axis=1)
    z = z.copy()
    lam = np.zeros(active.shape)
    ok_all = np.zeros(N, dtype=bool)
    todo = np.arange(N)
    for rnd in range(rounds + 1):
        zt, lt, ok = _newton_verified(A[todo], b[todo], z[todo], active[todo], d)
        z[todo] = zt
        lam[todo] = lt
        ok_all[todo] = ok
        if rnd == rounds or ok.all():
            break
        fail = todo[~ok]
        act = active[fail]
        excess = (A[fail] @ z[fail][..., None])[..., 0] - b[fail]
        excess = np.where(excess > 1e-11 * (1.0 + np.abs(b[fail])), excess, -np.inf)
        worst = excess.argmax(1)
        violated = np.isfinite(excess[np.arange(fail.size), worst])
        already = (act == worst[:, None]).any(1)
        count = (act >= 0).sum(1)
        add = violated & ~already & (count < nz)
        lam_f = np.where(act >= 0, lam[fail], np.inf)
        neg = lam_f.argmin(1)
        drop = ~violated & (lam_f[np.arange(fail.size), neg] < -1e-12)
        slot = np.argmax(act < 0, axis=1)
        rows_add = np.flatnonzero(add)
        act[rows_add, slot[rows_add]] = worst[rows_add]
        rows_drop = np.flatnonzero(drop)
        act[rows_drop, neg[rows_drop]] = -1
        active[fail] = act
        todo = fail[add | drop]
        if todo.size == 0:
            break
    width = max(int((active >= 0).sum(1).max()) if N else 0, 1)
    order = np.argsort(active < 0, axis=1, kind="stable")[:, :width]
    take = np.arange(N)[:, None]
    return z, lam[take, order], active[take, order], ok_all


def _map_guess(poly: ActionPolytope, guess: dict[str, Any],
               todo: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """Positions in ``poly`` (states ``todo``) of a guessed active set given as row-table
    indices; ``-1`` where a guessed row is absent (then that state's guess fails to verify
    unless the row was not needed), the guessed solution and multipliers; ``None`` if the guess
    does not fit."""
    src, z, lam = guess.get("source"), guess.get("z"), guess.get("lam")
    if src is None or z is None:
        return None
    if lam is None:
        lam = np.zeros_like(src, dtype=np.float64)
    if src.shape[0] == 1:
        src = np.broadcast_to(src, (poly.batch, src.shape[1]))
        z = np.broadcast_to(z, (poly.batch, z.shape[1]))
        lam = np.broadcast_to(lam, (poly.batch, lam.shape[1]))
    if src.shape[0] != poly.batch:
        return None
    src, z, lam = src[todo], z[todo], lam[todo]
    if "solved" in guess:
        usable = np.broadcast_to(guess["solved"], (poly.batch,))[todo]
        src = np.where(usable[:, None], src, -1)
    match = (poly.source[todo][:, None, :] == src[:, :, None]) & (src[:, :, None] >= 0)
    pos = np.where(match.any(-1), match.argmax(-1), -1)
    pos = np.where((src >= 0) & (pos < 0), -2, pos)  # a guessed row that is gone
    pos = np.where((pos == -2).any(1, keepdims=True), -1, pos)
    return pos, np.array(z, dtype=np.float64), np.array(lam, dtype=np.float64)


def _merge(z, lamI, active, rows, z_new, lam_new, act_new):
    """Write the solutions of ``rows`` (widening the active-set arrays as needed)."""
    width = max(active.shape[1], act_new.shape[1])
    if active.shape[1] < width:
        pad = width - active.shape[1]
        active = np.concatenate([active, np.full((active.shape[0], pad), -1)], axis=1)
        lamI = np.concatenate([lamI, np.zeros((lamI.shape[0], pad))], axis=1)
    if act_new.shape[1] < width:
        pad = width - act_new.shape[1]
        act_new = np.concatenate([act_new, np.full((act_new.shape[0], pad), -1)], axis=1)
        lam_new = np.concatenate([lam_new, np.zeros((lam_new.shape[0], pad))], axis=1)
    z[rows], lamI[rows], active[rows] = z_new, lam_new, act_new
    return z, lamI, active


def _independent(A: np.ndarray, active: np.ndarray, lam: np.ndarray) -> np.ndarray:
    """A linearly independent subset of the ``active`` rows (``(N, r)``, ``-1`` padded),
    preferring large multipliers: near-duplicate active rows (e.g. a slab of ``U_s`` that
    coincides with one of ``A``) make the KKT matrix singular.  One batched QR of the active
    rows sorted by ``lam``; a row whose ``|R_jj|`` is below ``1e-8`` of its norm lies in the
    span of the previous ones and is dropped."""
    N, R, nz = A.shape
    take = np.arange(N)[:, None]
    present = active >= 0
    weight = np.where(present, lam[take, np.maximum(active, 0)], -np.inf)
    order = np.argsort(-weight, axis=1, kind="stable")
    active = active[take, order]
    present = active >= 0
    rows = np.where(present[..., None], A[take, np.maximum(active, 0)], 0.0)  # (N, r, nz)
    norms = np.linalg.norm(rows, axis=-1)
    r = rows.shape[1]
    if r > nz:
        pad = np.zeros((N, r - nz, r))
        R_diag = np.abs(np.diagonal(np.linalg.qr(np.concatenate(
            [np.transpose(rows, (0, 2, 1)), pad], axis=1), mode="r"), axis1=1, axis2=2))
    else:
        R_diag = np.abs(np.diagonal(np.linalg.qr(np.transpose(rows, (0, 2, 1)), mode="r"),
                                    axis1=1, axis2=2))
    keep = present & (R_diag > 1e-8 * np.maximum(norms, 1e-300))
    keep &= np.cumsum(keep, axis=1) <= nz
    width = max(int(keep.sum(1).max()) if N else 0, 1)
    pos = np.argsort(~keep, axis=1, kind="stable")[:, :width]
    return np.where(keep[take, pos], active[take, pos], -1)


def _degenerate(A: np.ndarray, active: np.ndarray, d: int) -> tuple[np.ndarray, np.ndarray]:
    """``(degenerate (N,), first (N,))``: states (``d = 2``) whose active rows pin ``c`` in one
    direction only (all active normals parallel to that of ``active[:, first]``)."""
    N = A.shape[0]
    present = active >= 0
    Ac = A[np.arange(N)[:, None], np.where(present, active, 0), :d]
    Ac = np.where(present[:, :, None], Ac, 0.0)
    norms = np.linalg.norm(Ac, axis=-1)
    first = np.argmax(norms, axis=1)
    n = Ac[np.arange(N), first]
    n = n / np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-300)
    cross = np.abs(Ac[..., 0] * n[:, None, 1] - Ac[..., 1] * n[:, None, 0])
    degenerate = (np.where(present, cross, 0.0) <= 1e-9 * np.maximum(norms, 1e-300)).all(1)
    return degenerate & present.any(1), first


def _pinch(A: np.ndarray, b: np.ndarray, z: np.ndarray, valid: np.ndarray,
           d: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Canonical centre on the optimal segment (``d = 2``; module docstring, *Tie-break*).

    Decided from the rows and ``(c, l)`` alone, never from the solver's active set (which
    depends on the warm start): a state is *pinched* when two rows that are tight at ``z``
    (slack ``<= 1e-9 (1 + |b|)``) have antiparallel action normals (``|n_i x n_j| <=``
    :data:`_PINCH_ANGLE`, ``n_i . n_j < 0``).  Then every optimal centre lies on the line
    through ``c`` along ``u = perp(n_p)`` (``p`` the lowest-index pinching row); its ends
    are the ratio tests of the rows *not* parallel to the line (``|n_k . u| >``
    :data:`_PINCH_ANGLE`; a nearly parallel row as an end would make the end ill-conditioned,
    ``slack / (n_k . u)`` with ``n_k . u -> 0``).

    Returns ``(pinched (N,), p (N,), u (N, 2), ends (N, 2), shift (N,))``: ``c + shift u`` is
    the midpoint of the segment between the rows ``ends`` (``-1`` where none bounds it).
    """
    N = A.shape[0]
    Ac = A[:, :, :d]
    slack = b - (A @ z[..., None])[..., 0]
    tight = valid & (np.linalg.norm(Ac, axis=-1) > 0.5) & (slack <= 1e-9 * (1.0 + np.abs(b)))
    # the (few) tight rows of each state, lowest index first
    r = max(int(tight.sum(1).max()) if N else 0, 1)
    take = np.arange(N)[:, None]
    order = np.argsort(~tight, axis=1, kind="stable")[:, :r]
    present = tight[take, order]
    T = np.where(present[..., None], Ac[take, order], 0.0)  # (N, r, 2)
    cross = np.abs(T[:, :, None, 0] * T[:, None, :, 1] - T[:, :, None, 1] * T[:, None, :, 0])
    dot = np.einsum("nid,njd->nij", T, T)
    anti = present[:, :, None] & present[:, None, :] & (cross <= _PINCH_ANGLE) & (dot < 0.0)
    has = anti.any(2)
    pinched = has.any(1)
    p = order[np.arange(N), np.argmax(has, axis=1)]
    n = Ac[np.arange(N), p]
    u = np.stack([-n[:, 1], n[:, 0]], axis=1)
    den = (Ac @ u[..., None])[..., 0]
    with np.errstate(divide="ignore", invalid="ignore"):
        plus = np.where(valid & (den > _PINCH_ANGLE), np.maximum(slack, 0.0) / den, np.inf)
        minus = np.where(valid & (den < -_PINCH_ANGLE), np.maximum(slack, 0.0) / -den, np.inf)
    kp, km = plus.argmin(1), minus.argmin(1)
    tp, tm = plus[np.arange(N), kp], minus[np.arange(N), km]
    pinched &= np.isfinite(tp) & np.isfinite(tm)
    shift = np.where(pinched, 0.5 * (tp - tm), 0.0)
    return pinched, np.where(pinched, p, -1), u, np.stack([kp, km], axis=1), shift


def _pinch_active_set(A: np.ndarray, b: np.ndarray, z: np.ndarray, valid: np.ndarray,
                      active: np.ndarray, lamI: np.ndarray, pinched: np.ndarray,
                      pin: np.ndarray, d: int) -> tuple[np.ndarray, np.ndarray]:
    """Canonical active set of the ``pinched`` states: *all* rows tight at ``z`` (slack
    ``<= 1e-9 (1 + |b|)``; an independent subset, lowest index first) with their
    minimum-norm least-squares multipliers of the stationarity ``A_I^T lam = (0, 1/l)``,
    instead of the solver's active set (which depends on the warm start: a row ending the
    segment is tight or not depending on where the solver landed).  A tight end row with
    zero multiplier changes only ``c`` along the segment, which the midpoint rule sets."""
    N, R, nz = A.shape
    Ac = A[:, :, :d]
    del pin
    slack = b - (A @ z[..., None])[..., 0]
    rows = pinched[:, None] & valid & (np.linalg.norm(Ac, axis=-1) > 0.5) \
        & (slack <= 1e-9 * (1.0 + np.abs(b)))
    width = max(int(rows.sum(1).max()), 1)
    order = np.argsort(~rows, axis=1, kind="stable")[:, :width]
    take = np.arange(N)[:, None]
    cand = np.where(rows[take, order], order, -1)
    cand = _independent(A, cand, np.zeros((N, R)))
    # least-squares multipliers: A_I^T lam = -grad = (0, 1/l)
    present = cand >= 0
    AI = np.where(present[..., None], A[take, np.maximum(cand, 0)], 0.0)  # (N, r, nz)
    target = np.concatenate([np.zeros((N, d)), 1.0 / z[:, d:]], axis=1)
    lam = np.einsum("nij,nj->ni", np.linalg.pinv(np.transpose(AI, (0, 2, 1)), rcond=1e-12),
                    target)
    lam = np.where(present, lam, 0.0)
    # widen the arrays and write the pinched states
    w = max(active.shape[1], cand.shape[1])
    out_a = np.full((N, w), -1)
    out_l = np.zeros((N, w))
    out_a[:, : active.shape[1]], out_l[:, : lamI.shape[1]] = active, lamI
    sel = np.flatnonzero(pinched)
    out_a[sel] = -1
    out_l[sel] = 0.0
    out_a[sel, : cand.shape[1]] = cand[sel]
    out_l[sel, : cand.shape[1]] = lam[sel]
    return out_a, out_l


def _pinch_midpoint(poly: ActionPolytope, D: Tensor, c: Tensor, l: Tensor,
                    pinched: np.ndarray, pin: np.ndarray, ends: np.ndarray,
                    like: Tensor) -> tuple[Tensor, Tensor]:
    """Torch (autograd) half of the tie-break for the ``pinched`` states: move ``c`` to the
    midpoint of the optimal segment along ``u = perp(n_pin)`` between the rows ``ends``, then
    scale ``l`` down by the least factor that keeps ``Z`` exactly inside every row (rows
    parallel to the segment within :data:`_PINCH_ANGLE` are not ends; at the midpoint they
    may be violated by ``<= _PINCH_ANGLE * length``, which the scaling removes)."""
    N = c.shape[0]
    device = like.device
    pin_t = torch.as_tensor(pinched, device=device)
    Hp, _ = poly.rows(np.where(pinched, pin, -1)[:, None], like, normalised=True)
    n_t = Hp[:, 0]
    u_t = torch.stack([-n_t[:, 1], n_t[:, 0]], dim=-1)
    He, be = poly.rows(np.where(pinched[:, None], ends, -1), like, normalised=True)
    slack = be - (He @ c.unsqueeze(-1)).squeeze(-1) \
        - (torch.abs(He @ D) @ l.unsqueeze(-1)).squeeze(-1)
    den = (He @ u_t.unsqueeze(-1)).squeeze(-1)
    den = torch.where(pin_t.unsqueeze(-1), den, torch.ones_like(den))
    t_plus, t_minus = slack[:, 0] / den[:, 0], slack[:, 1] / (-den[:, 1])
    shift = torch.where(pin_t, 0.5 * (t_plus - t_minus), torch.zeros_like(t_plus))
    c = c + shift.unsqueeze(-1) * u_t
    # exact containment: l <- l (1 - kappa), kappa = max_k excess_k / (|H_k G_dir| l)
    with torch.no_grad():
        A, b = poly.A, poly.b
        zc = np.concatenate([c.detach().cpu().numpy(), l.detach().cpu().numpy()], axis=1)
        Afull = np.concatenate([A, np.abs(A @ D.detach().cpu().numpy())], axis=2)
        excess = (Afull @ zc[..., None])[..., 0] - b
        width = (Afull[:, :, A.shape[2]:] @ zc[:, A.shape[2]:, None])[..., 0]
        ratio = np.where(poly.valid & (excess > 1e-14 * (1.0 + np.abs(b))) & (width > 0),
                         excess / np.where(width > 0, width, 1.0), 0.0)
        k = ratio.argmax(1)
        shrink = pinched & (ratio[np.arange(N), k] > 0.0)
    if shrink.any():
        Hk, hk = poly.rows(np.where(shrink, k, -1)[:, None], like, normalised=True)
        Hk, hk = Hk[:, 0], hk[:, 0]
        wk = (torch.abs(Hk @ D) * l).sum(-1)
        sh = torch.as_tensor(shrink, device=device)
        wk = torch.where(sh, wk, torch.ones_like(wk))
        kappa = ((Hk * c).sum(-1) + wk - hk) / wk
        kappa = torch.where(sh, kappa, torch.zeros_like(kappa))
        l = l * (1.0 - kappa).unsqueeze(-1)
    return c, l


def zonotopic_centre(poly: ActionPolytope, directions: Tensor, box_center: np.ndarray,
                     box_radius: np.ndarray, like: Tensor, warm: list | None = None,
                     cache: dict | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """Zonotopic under-approximation ``Z = <c, G_dir diag(l)> ⊆ P`` with maximal geometric
    mean of ``l`` (Eq 52–53, exact containment), per state (module docstring).

    Args:
        poly: the polytopes (``N`` states, ``d <= 2``).
        directions: ``G_dir`` ``(d, K)`` unit columns.
        box_center, box_radius: ``(d,)`` of ``A`` (start point and scaling of the solver).
        like: dtype/device of the outputs.
        warm: guesses ``{"source": (N', r) table rows, "z": (N', d + K)}`` of the active set
            and solution (e.g. the previous call's, or the optimum of the state-independent
            rows, ``N' in {1, N}``); each is used only where the KKT conditions verify it.
        cache: if given, receives this call's active sets and solutions (``source``, ``z``,
            ``solved``) for the next call's ``warm``.

    Returns:
        ``(c (N, d), l (N, K), solved (N,))``, differentiable w.r.t. the linearisation.
    """
    N, d = poly.batch, poly.dim
    K = directions.shape[1]
    device = like.device
    D = directions.to(dtype=like.dtype, device=device)
    D_np = D.detach().cpu().numpy()
    if d == 1:
        return _centre_1d(poly, D, like)
    A_c, b = poly.A, poly.b
    A = np.concatenate([A_c, np.abs(A_c @ D_np)], axis=2)  # (N, R, d + K)
    z = np.zeros((N, d + K))
    lamI = np.zeros((N, 1))
    active = np.full((N, 1), -1)
    solved = np.zeros(N, dtype=bool)
    # 1. guessed active sets (warm start: the previous call's, or the state-independent
    #    rows' optimum), each verified by the KKT conditions
    for guess in (warm or ()):
        todo = np.flatnonzero(~solved)
        if todo.size == 0:
            break
        mapped = _map_guess(poly, guess, todo)
        if mapped is None:
            continue
        g_act, g_z, g_lam = mapped
        usable = (g_act >= 0).any(1)
        if guess.get("relaxation"):
            # the optimum of a subset of the rows that satisfies all rows is optimal
            ok = usable & ((A[todo] @ g_z[..., None])[..., 0] - b[todo]
                           <= 1e-12 * (1.0 + np.abs(b[todo]))).all(1)
            zt, lt = g_z, g_lam
        else:
            todo, g_act, g_z = todo[usable], g_act[usable], g_z[usable]
            if todo.size == 0:
                continue
            zt, lt, g_act, ok = _active_set_refine(A[todo], b[todo], g_z, g_act, d)
        rows = todo[ok]
        if rows.size:
            z, lamI, active = _merge(z, lamI, active, rows, zt[ok], lt[ok], g_act[ok])
            solved[rows] = True
    # 2. the interior-point method for the rest
    todo = np.flatnonzero(~solved)
    if todo.size:
        At_, bt_ = A[todo], b[todo]
        scale = float(np.max(box_radius))
        z0 = np.concatenate([np.broadcast_to(box_center, (todo.size, d)),
                             np.full((todo.size, K), 0.1 * scale)], axis=1)
        zt, lam, s, converged = _centre_ipm(At_, bt_, d, z0, scale)
        act_mask = converged[:, None] & (lam > s) & poly.valid[todo]
        r = max(int(act_mask.sum(1).max()), 1)
        order = np.argsort(~act_mask, axis=1, kind="stable")[:, :r]
        g_act = np.where(np.take_along_axis(act_mask, order, axis=1), order, -1)
        g_act = _independent(At_, g_act, lam)
        zp, lp, g_act, ok = _active_set_refine(At_, bt_, zt, g_act, d, rounds=2)
        # IPM points that the polish could not verify are kept (accurate to ~1e-9)
        lam_ipm = lam[np.arange(todo.size)[:, None], np.maximum(g_act, 0)]
        zt = np.where(ok[:, None], zp, zt)
        lt = np.where(ok[:, None], lp, np.where(g_act >= 0, lam_ipm, 0.0))
        good = converged & (zt[:, d:] > 0).all(1) & \
            ((At_ @ zt[..., None])[..., 0] - bt_ <= 1e-9 * (1 + np.abs(bt_))).all(1)
        rows = todo[good]
        if rows.size:
            z, lamI, active = _merge(z, lamI, active, rows, zt[good], lt[good], g_act[good])
            solved[rows] = True
    if cache is not None:
        take = np.arange(N)[:, None]
        cache["source"] = np.where(active >= 0, poly.source[take, np.maximum(active, 0)], -1)
        cache["z"] = z.copy()
        cache["lam"] = np.where(active >= 0, lamI, 0.0)
        cache["solved"] = solved.copy()
    # unsolved rows: a finite placeholder (masked below); pseudo-inverse for their KKT matrix
    z = np.where(solved[:, None], z, np.concatenate([np.broadcast_to(box_center, (N, d)),
                                                     np.ones((N, K))], axis=1))
    active = np.where(solved[:, None], active, -1)
    # canonical centre (tie-break): decided from (H, h, l) only, never from the warm start
    pinched, pin, u, ends, _ = _pinch(A, b, z, poly.valid, d)
    pinched &= solved
    if pinched.any():
        active, lamI = _pinch_active_set(A, b, z, poly.valid, active, lamI, pinched, pin, d)
    # -- torch: one Newton step of the active-set KKT system (implicit derivative) -------------
    A_kkt = A
    if pinched.any():
        # the position along the segment (direction u) is set by the midpoint rule: remove
        # the <= _PINCH_ANGLE tilt of the rows parallel to it, so J is exactly singular along
        # (u, 0) unless a tight end row pins it, and take J^+
        A_kkt = A.copy()
        Ac = A_kkt[pinched, :, :d]
        uu = u[pinched][:, None, :]
        along = (Ac * uu).sum(-1, keepdims=True)
        A_kkt[pinched, :, :d] = np.where(np.abs(along) <= _PINCH_ANGLE, Ac - along * uu, Ac)
    _, J = _kkt(A_kkt, z, active, d)
    Jinv = _inverse_kkt(J, ~solved | pinched)
    Jp = torch.as_tensor(Jinv, dtype=like.dtype, device=device)
    lam_t = torch.as_tensor(np.where(active >= 0, lamI, 0.0), dtype=like.dtype, device=device)
    z_t = torch.as_tensor(z, dtype=like.dtype, device=device)
    present = torch.as_tensor(active >= 0, device=device)
    HI, bI = poly.rows(active, like, normalised=True)
    AI = torch.cat([HI, torch.abs(HI @ D)], dim=2)
    grad = torch.cat([torch.zeros_like(z_t[:, :d]), -1.0 / z_t[:, d:]], dim=1)
    res = torch.cat([grad + (AI.transpose(1, 2) @ lam_t.unsqueeze(-1)).squeeze(-1),
                     torch.where(present, (AI @ z_t.unsqueeze(-1)).squeeze(-1) - bI,
                                 torch.zeros_like(bI))], dim=1)
    z_new = z_t - (Jp @ res.unsqueeze(-1)).squeeze(-1)[:, : d + K]
    c, l = z_new[:, :d], z_new[:, d:]
    if bool(pinched.any()):
        c, l = _pinch_midpoint(poly, D, c, l, pinched, pin, ends, like)
    ok = torch.as_tensor(solved, device=device)
    c = torch.where(ok.unsqueeze(-1), c,
                    torch.as_tensor(box_center, dtype=like.dtype, device=device).expand_as(c))
    l = torch.where(ok.unsqueeze(-1), l, torch.zeros_like(l))
    return c, l, ok


def _centre_1d(poly: ActionPolytope, D: Tensor,
               like: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """``d = 1``: ``P = [lo, hi]``; ``c = (lo + hi) / 2`` and ``l_j = (hi - lo) / (2 K |g_j|)``
    (the constraints are ``sum_j |g_j| l_j <= (hi - lo) / 2``; the KKT conditions
    ``1 / l_j = (lam_hi + lam_lo) |g_j|`` give the maximal geometric mean)."""
    N = poly.batch
    K = D.shape[1]
    a, b, valid = poly.A[..., 0], poly.b, poly.valid
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(a != 0, b / np.where(a != 0, a, 1.0), 0.0)
    hi_val = np.where(valid & (a > 0), ratio, np.inf)
    lo_val = np.where(valid & (a < 0), ratio, -np.inf)
    k = np.stack([hi_val.argmin(1), lo_val.argmax(1)], axis=1)
    hi_d, lo_d = hi_val[np.arange(N), k[:, 0]], lo_val[np.arange(N), k[:, 1]]
    ok_np = np.isfinite(hi_d) & np.isfinite(lo_d) & (hi_d > lo_d) \
        & ~(valid & (a == 0) & (b < 0)).any(1)
    H, h = poly.rows(np.where(ok_np[:, None], k, -1), like)
    ok = torch.as_tensor(ok_np, device=like.device)
    den = torch.where(ok.unsqueeze(-1), H[..., 0], torch.ones_like(h))
    ends = torch.where(ok.unsqueeze(-1), h / den, torch.zeros_like(h))
    hi, lo = ends[:, 0], ends[:, 1]
    c = (0.5 * (lo + hi)).unsqueeze(-1)
    l = ((hi - lo) / (2.0 * K)).unsqueeze(-1) / D.abs().squeeze(0)
    return c, l, ok
