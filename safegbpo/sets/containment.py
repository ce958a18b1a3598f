"""Containment of points and zonotopes: cvxpy constraint builders and independent numpy LPs.

Two families live here (SPEC §1):

* **cvxpy builders** — :func:`point_containment_constraints` (Eq 5) and
  :func:`zonotope_containment_constraints` (Eq 6).  They return constraints plus the auxiliary
  variables they introduce, so that the safeguards (cvxpylayers problems) and the RCI program can
  add them to their own problems.  Every constraint is linear in the variables (the absolute
  values of Eq 6 are LP-representable), parameters only ever multiply parameter-free
  expressions, so problems built from them are DPP whenever the caller's own expressions are
  (checked in the tests with ``problem.is_dpp()``).

* **numpy LPs** — :func:`gauge_lp`, :func:`gauge_factors_lp`, :func:`point_in_zonotope`,
  :func:`point_in_intersection`, :func:`containment_margin_lp` and
  :func:`induced_containment_margin`.  They are solved with
  :func:`scipy.optimize.linprog` (HiGHS), independently of any cvxpy/cvxpylayers problem, and are
  what audits and tests use to check safety property P1 on the outputs of a safeguard.

Tolerances.  HiGHS solves the LPs to its default primal/dual feasibility tolerance (about
``1e-7`` absolute on the equality residuals ``G b - v``).  Consequently a vector whose distance
to ``range(G)`` is below that tolerance counts as *in* the range; a value reported as ``+inf``
(infeasible LP) is reliable, a finite value carries an absolute error of that order.  The
membership tests accept ``gauge <= 1 + tol`` with a caller-chosen ``tol`` (default ``1e-9``,
i.e. exact up to the LP's own accuracy).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import cvxpy as cp
import numpy as np
import scipy.sparse as sp
from scipy.optimize import linprog

__all__ = [
    "point_containment_constraints",
    "zonotope_containment_constraints",
    "gauge_lp",
    "gauge_factors_lp",
    "min_inf_norm_factors",
    "point_in_zonotope",
    "point_in_intersection",
    "containment_margin_lp",
    "induced_containment_margin",
]


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------
def _shape(x: Any) -> tuple[int, ...]:
    """Shape of a numpy array, a cvxpy expression or anything :func:`numpy.shape` accepts."""
    if isinstance(x, cp.Expression):
        return tuple(x.shape)
    return tuple(np.shape(x))


def _expr(x: Any) -> cp.Expression:
    """``x`` as a cvxpy expression (so that comparisons of constants give constraints)."""
    return x if isinstance(x, cp.Expression) else cp.Constant(np.asarray(x, dtype=np.float64))


def _as_numpy(x: Any, name: str, ndim: int) -> np.ndarray:
    """Convert ``x`` (numpy, list, torch tensor) to a finite float64 array with ``ndim`` dims."""
    if hasattr(x, "detach") and hasattr(x, "cpu"):  # torch.Tensor without importing torch here
        x = x.detach().cpu().numpy()
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim != ndim:
        raise ValueError(f"{name}: expected an array with {ndim} dimension(s), "
                         f"got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN/inf")
    return arr


def _check_status(res: Any, what: str) -> bool:
    """Return True when the LP was solved, False when it is infeasible; raise otherwise."""
    if res.status == 0:
        return True
    if res.status == 2:
        return False
    raise RuntimeError(f"{what}: HiGHS did not solve the LP (status {res.status}: {res.message})")


# --------------------------------------------------------------------------------------------
# cvxpy builders
# --------------------------------------------------------------------------------------------
def point_containment_constraints(
    point: Any, center: Any, generators: Any
) -> tuple[list[cp.Constraint], cp.Variable | None]:
    """Constraints ``point in <center, generators>`` (Eq 5, exact).

    Introduces ``b = cp.Variable(m)`` with ``generators @ b == point - center`` and
    ``-1 <= b <= 1``.

    Args:
        point: ``(n,)`` numpy array or cvxpy expression (e.g. a variable, or ``c_s + t * v``
            with ``v`` a parameter and ``t`` a variable).
        center: ``(n,)`` numpy array or cvxpy parameter/expression.
        generators: ``(n, m)`` numpy array or cvxpy parameter.

    Returns:
        ``(constraints, b)``; ``b`` is ``None`` when ``m == 0`` (then the constraint is
        ``point == center``).

    DPP: ``generators @ b`` is a parameter times a variable, ``point - center`` is whatever the
    caller passed; the problem is DPP if the caller's expressions are.
    """
    g_shape = _shape(generators)
    if len(g_shape) != 2:
        raise ValueError(f"generators: expected shape (n, m), got {g_shape}")
    n, m = g_shape
    for name, x in (("point", point), ("center", center)):
        if _shape(x) != (n,):
            raise ValueError(f"{name}: expected shape ({n},) to match generators {g_shape}, "
                             f"got {_shape(x)}")
    if m == 0:
        return [_expr(point) == center], None
    b = cp.Variable(m, name="b")
    constraints = [generators @ b == point - center, b <= 1, b >= -1]
    return constraints, b


def zonotope_containment_constraints(
    inner_center: Any,
    inner_generators: Any,
    outer_center: Any,
    outer_generators: Any,
    bound: Any = 1.0,
) -> tuple[list[cp.Constraint], cp.Variable | None, cp.Variable | None]:
    """Sufficient constraints for ``<c1, G1> ⊆ <c2, G2>`` (Eq 6).

    Introduces ``Gamma (m2, m1)`` and ``beta (m2,)`` with

    * ``G2 @ Gamma == G1``,
    * ``G2 @ beta == c2 - c1``,
    * ``sum_j |Gamma_ij| + |beta_i| <= bound`` for every row ``i`` (the matrix infinity norm of
      ``[Gamma, beta]``; the absolute values are canonicalised by cvxpy into an LP).

    Args:
        inner_center: ``c1`` ``(n,)``: constant, parameter or affine expression such as
            ``f0 + B @ (a - a0)`` (``f0``, ``B`` parameters, ``a`` a variable) — Eq 13–14.
        inner_generators: ``G1`` ``(n, m1)``: constant, parameter or affine expression.
        outer_center: ``c2`` ``(n,)``: constant (or parameter).
        outer_generators: ``G2`` ``(n, m2)``: constant (or parameter, as long as nothing it
            multiplies contains a parameter).
        bound: right-hand side of the row-sum constraint; ``1`` gives Eq 6.  A scalar, or an
            ``(m2,)`` expression — e.g. the scales ``s`` of the RCI program of SPEC §7, where
            ``Gamma' = diag(s) Gamma``.

    Returns:
        ``(constraints, Gamma, beta)``; ``Gamma`` is ``None`` if ``m1 == 0``, both are ``None``
        if ``m2 == 0`` (then the constraints are ``G1 == 0``, ``c1 == c2`` and
        ``bound >= 0``).
    """
    g1_shape, g2_shape = _shape(inner_generators), _shape(outer_generators)
    if len(g1_shape) != 2 or len(g2_shape) != 2:
        raise ValueError(f"generators must be matrices (n, m); got inner {g1_shape}, "
                         f"outer {g2_shape}")
    n, m1 = g1_shape
    if g2_shape[0] != n:
        raise ValueError(f"dimension mismatch: inner generators {g1_shape}, outer generators "
                         f"{g2_shape}")
    m2 = g2_shape[1]
    for name, x in (("inner_center", inner_center), ("outer_center", outer_center)):
        if _shape(x) != (n,):
            raise ValueError(f"{name}: expected shape ({n},), got {_shape(x)}")

    if m2 == 0:
        constraints = [_expr(inner_center) == outer_center]
        if m1 > 0:
            constraints.append(_expr(inner_generators) == 0)
        if isinstance(bound, cp.Expression):  # the empty [Gamma, beta] has norm 0 <= bound
            constraints.append(bound >= 0)
        return constraints, None, None

    beta = cp.Variable(m2, name="beta")
    constraints = [outer_generators @ beta == outer_center - inner_center]
    row_sums = cp.abs(beta)
    gamma = None
    if m1 > 0:
        gamma = cp.Variable((m2, m1), name="Gamma")
        constraints.append(outer_generators @ gamma == inner_generators)
        row_sums = row_sums + cp.sum(cp.abs(gamma), axis=1)
    constraints.append(row_sums <= bound)
    return constraints, gamma, beta


# --------------------------------------------------------------------------------------------
# numpy / scipy LPs (independent of any safeguard solver)
# --------------------------------------------------------------------------------------------
def gauge_lp(generators: Any, v: Any) -> float:
    """Gauge ``min { ||b||_inf : G b = v }`` of ``v`` w.r.t. ``<0, G>`` (SPEC §1), as an LP.

    Variables ``x = [b (m), t]``: minimise ``t`` s.t. ``G b = v``, ``-t <= b_j <= t``.

    Args:
        generators: ``G`` ``(n, m)``.
        v: ``(n,)``.

    Returns:
        The gauge (``>= 0``); ``+inf`` when ``v`` is not in ``range(G)`` (infeasible LP).
        ``p in <c, G>  <=>  gauge_lp(G, p - c) <= 1``.
    """
    return gauge_factors_lp(generators, v)[0]


def gauge_factors_lp(generators: Any, v: Any) -> tuple[float, np.ndarray | None]:
    """The gauge of :func:`gauge_lp` together with a minimising factor ``b`` ``(m,)``.

    ``b`` satisfies ``G b = v`` (to the LP tolerance) with ``||b||_inf = gauge``; it is one
    minimiser (not unique in general).  ``(inf, None)`` when ``v`` is not in ``range(G)``.
    """
    G = _as_numpy(generators, "generators", 2)
    v = _as_numpy(v, "v", 1)
    n, m = G.shape
    if v.shape != (n,):
        raise ValueError(f"v: expected shape ({n},) to match generators {G.shape}, got {v.shape}")
    if m == 0:
        return (0.0, np.zeros(0)) if not np.any(v) else (float("inf"), None)
    cost = np.zeros(m + 1)
    cost[-1] = 1.0
    eye = np.eye(m)
    ones = np.ones((m, 1))
    a_ub = np.block([[eye, -ones], [-eye, -ones]])
    a_eq = np.hstack([G, np.zeros((n, 1))])
    bounds = [(None, None)] * m + [(0.0, None)]
    res = linprog(cost, A_ub=a_ub, b_ub=np.zeros(2 * m), A_eq=a_eq, b_eq=v, bounds=bounds,
                  method="highs")
    if not _check_status(res, "gauge_lp"):
        return float("inf"), None
    return float(max(res.fun, 0.0)), np.asarray(res.x[:m], dtype=np.float64)


#: Vectors per HiGHS LP in :func:`min_inf_norm_factors`.
_LP_CHUNK = 256
#: Square generator matrices with a condition number below this use the closed-form factor
#: ``G^{-1} v`` instead of an LP.
_MAX_COND_CLOSED_FORM = 1e8


def min_inf_norm_factors(generators: np.ndarray, vectors: np.ndarray) -> np.ndarray:
    """Minimum-infinity-norm factors ``b_k = argmin { ||b||_inf : G b = v_k }``.

    Args:
        generators: ``G`` ``(n, m)``.
        vectors: ``V`` ``(B, n)`` (e.g. ``states - c``).

    Returns:
        ``(B, m)``; rows whose vector is not in ``range(G)`` are ``+inf``.  ``||b_k||_inf`` is
        the gauge of ``v_k`` (SPEC §1), so ``c + v_k in <c, G>`` iff it is ``<= 1``.

    A square, well-conditioned ``G`` uses the closed form ``G^{-1} v``; otherwise one
    block-diagonal HiGHS LP per chunk of states (variables ``[b_k, t_k]``, minimise
    ``sum_k t_k`` s.t. ``G b_k = v_k``, ``-t_k <= b_k <= t_k``).
    """
    G = np.asarray(generators, dtype=np.float64)
    V = np.asarray(vectors, dtype=np.float64)
    if G.ndim != 2 or V.ndim != 2 or V.shape[1] != G.shape[0]:
        raise ValueError(f"min_inf_norm_factors: need G (n, m) and V (B, n), got {G.shape} and "
                         f"{V.shape}")
    n, m = G.shape
    out = np.full((V.shape[0], m), np.inf)
    if V.shape[0] == 0:
        return out
    if m == 0:
        raise ValueError("min_inf_norm_factors: G has no generators (the set is a point)")
    if n == m and np.linalg.cond(G) < _MAX_COND_CLOSED_FORM:
        return np.linalg.solve(G, V.T).T
    # vectors outside range(G) (only possible for rank-deficient G) are +inf
    coef, *_ = np.linalg.lstsq(G, V.T, rcond=None)
    residual = np.abs(G @ coef - V.T).max(axis=0)
    scale = 1.0 + np.abs(V).max(axis=1)
    in_range = np.flatnonzero(residual <= 1e-9 * scale)
    for start in range(0, in_range.size, _LP_CHUNK):
        idx = in_range[start:start + _LP_CHUNK]
        out[idx] = _factor_lp(G, V[idx])
    return out


def _factor_lp(G: np.ndarray, V: np.ndarray) -> np.ndarray:
    n, m = G.shape
    k = V.shape[0]
    eye_k = sp.identity(k, format="csr")
    # variable layout: [b_1 .. b_k (k*m), t (k)]
    a_eq = sp.hstack([sp.kron(eye_k, sp.csr_matrix(G)), sp.csr_matrix((k * n, k))], format="csr")
    ones = sp.csr_matrix(np.ones((m, 1)))
    eye_m = sp.identity(m, format="csr")
    upper = sp.hstack([sp.kron(eye_k, eye_m), -sp.kron(eye_k, ones)])
    lower = sp.hstack([-sp.kron(eye_k, eye_m), -sp.kron(eye_k, ones)])
    a_ub = sp.vstack([upper, lower], format="csr")
    cost = np.concatenate([np.zeros(k * m), np.ones(k)])
    bounds = [(None, None)] * (k * m) + [(0.0, None)] * k
    res = linprog(cost, A_ub=a_ub, b_ub=np.zeros(2 * k * m), A_eq=a_eq, b_eq=V.reshape(-1),
                  bounds=bounds, method="highs")
    if res.status != 0:
        raise RuntimeError(f"factor LP failed (HiGHS status {res.status}: {res.message})")
    return res.x[: k * m].reshape(k, m)


def point_in_zonotope(point: Any, center: Any, generators: Any, tol: float = 1e-9) -> bool:
    """Exact point containment (Eq 5): ``gauge(point - center) <= 1 + tol``."""
    p = _as_numpy(point, "point", 1)
    c = _as_numpy(center, "center", 1)
    if p.shape != c.shape:
        raise ValueError(f"point: expected shape {c.shape}, got {p.shape}")
    return gauge_lp(generators, p - c) <= 1.0 + tol


def point_in_intersection(
    point: Any, zonotopes: Sequence[tuple[Any, Any]], tol: float = 1e-9
) -> bool:
    """``point`` lies in every zonotope ``<c_k, G_k>`` of ``zonotopes`` (pairs ``(c_k, G_k)``)."""
    if len(zonotopes) == 0:
        raise ValueError("point_in_intersection: empty list of zonotopes")
    return all(point_in_zonotope(point, c, G, tol) for c, G in zonotopes)


def containment_margin_lp(
    inner_center: Any, inner_generators: Any, outer_center: Any, outer_generators: Any
) -> float:
    """Containment margin ``min ||[Gamma, beta]||_inf`` of Eq 6 for ``<c1,G1> ⊆? <c2,G2>``.

    LP over ``X = [Gamma, beta] = X+ - X-`` (``m2 x (m1+1)``, ``X± >= 0``) and ``t``:
    minimise ``t`` s.t. ``G2 X = [G1, c2 - c1]`` and every row sum of ``X+ + X-`` is ``<= t``
    (at the optimum ``X+ + X- = |X|`` row-wise where it matters, so this is exactly the matrix
    infinity norm).

    Returns:
        The margin; ``<= 1`` certifies ``<c1,G1> ⊆ <c2,G2>`` (sufficient only); ``+inf`` when the
        equality constraints are infeasible (e.g. ``G1`` has a direction outside ``range(G2)``).
    """
    c1 = _as_numpy(inner_center, "inner_center", 1)
    G1 = _as_numpy(inner_generators, "inner_generators", 2)
    c2 = _as_numpy(outer_center, "outer_center", 1)
    G2 = _as_numpy(outer_generators, "outer_generators", 2)
    n = c1.shape[0]
    if G1.shape[0] != n or c2.shape != (n,) or G2.shape[0] != n:
        raise ValueError(f"dimension mismatch: inner ({c1.shape}, {G1.shape}), outer "
                         f"({c2.shape}, {G2.shape})")
    m1, m2 = G1.shape[1], G2.shape[1]
    rhs = np.hstack([G1, (c2 - c1)[:, None]])  # (n, m1 + 1)
    if m2 == 0:
        return 0.0 if not np.any(rhs) else float("inf")
    k = m1 + 1
    nx = m2 * k  # entries of X, column-major: X[i, j] -> j * m2 + i
    # G2 X = rhs  <=>  (I_k ⊗ G2) vec(X) = vec(rhs)
    kron_eq = sp.kron(sp.identity(k, format="csr"), sp.csr_matrix(G2), format="csr")
    a_eq = sp.hstack([kron_eq, -kron_eq, sp.csr_matrix((n * k, 1))], format="csr")
    b_eq = rhs.reshape(-1, order="F")
    # row sums: (1_k^T ⊗ I_m2) vec(X+ + X-) - t <= 0
    row_sum = sp.kron(sp.csr_matrix(np.ones((1, k))), sp.identity(m2, format="csr"), format="csr")
    a_ub = sp.hstack([row_sum, row_sum, -sp.csr_matrix(np.ones((m2, 1)))], format="csr")
    cost = np.zeros(2 * nx + 1)
    cost[-1] = 1.0
    res = linprog(cost, A_ub=a_ub, b_ub=np.zeros(m2), A_eq=a_eq, b_eq=b_eq,
                  bounds=(0.0, None), method="highs")
    if not _check_status(res, "containment_margin_lp"):
        return float("inf")
    return float(max(res.fun, 0.0))


def induced_containment_margin(
    f0: Any,
    B: Any,
    E: Any,
    W_G: Any,
    a: Any,
    S_c: Any,
    S_G: Any,
    a0: Any | None = None,
) -> float | np.ndarray:
    """Eq-6 margin of the next-state set ``<f0 + B (a - a0), E W_G>`` in ``S_s = <S_c, S_G>``.

    Under the control/noise-affine dynamics of Eq 12 the set of successor states of action ``a``
    is exactly ``S'(a) = <f(s,a0,w0) + B (a - a0), E G_W>`` (Eq 13–14); a margin ``<= 1``
    certifies ``S'(a) ⊆ S_s``, i.e. ``a`` lies in the induced safe action set (Eq 7).  This is
    the independent check of property P1 used by the safeguard tests and audits.

    Args:
        f0: ``(n,)`` or batched ``(N, n)`` — ``f(s, a0, w0)``.
        B: ``(n, d)`` or ``(N, n, d)`` — ``df/da``.
        E: ``(n, n_w)`` or ``(N, n, n_w)`` — ``df/dw``.
        W_G: ``(n_w, p)`` noise generators (noise coordinates), shared.
        a: ``(d,)`` or ``(N, d)`` actions.
        S_c, S_G: ``(n,)``, ``(n, m)`` safe state zonotope, shared.
        a0: ``(d,)`` centre of the action box ``A`` (default ``0``: ``A = [-1, 1]^d``).

    Returns:
        A float for unbatched input, an ``(N,)`` array for batched input.
    """
    batched = _as_numpy_any(f0).ndim == 2
    f0 = _as_numpy(f0, "f0", 2 if batched else 1)
    B = _as_numpy(B, "B", 3 if batched else 2)
    E = _as_numpy(E, "E", 3 if batched else 2)
    a = _as_numpy(a, "a", 2 if batched else 1)
    W_G = _as_numpy(W_G, "W_G", 2)
    S_c = _as_numpy(S_c, "S_c", 1)
    S_G = _as_numpy(S_G, "S_G", 2)
    d = a.shape[-1]
    a0 = np.zeros(d) if a0 is None else _as_numpy(a0, "a0", 1)
    if a0.shape != (d,):
        raise ValueError(f"a0: expected shape ({d},), got {a0.shape}")
    if not batched:
        f0, B, E, a = f0[None], B[None], E[None], a[None]
    N, n = f0.shape
    if B.shape[:2] != (N, n) or E.shape[:2] != (N, n) or a.shape[0] != N or B.shape[2] != d:
        raise ValueError(f"inconsistent shapes: f0 {f0.shape}, B {B.shape}, E {E.shape}, "
                         f"a {a.shape}")
    if E.shape[2] != W_G.shape[0]:
        raise ValueError(f"E {E.shape} and W_G {W_G.shape} do not compose")
    margins = np.empty(N)
    for i in range(N):
        center = f0[i] + B[i] @ (a[i] - a0)
        margins[i] = containment_margin_lp(center, E[i] @ W_G, S_c, S_G)
    return margins if batched else float(margins[0])


def _as_numpy_any(x: Any) -> np.ndarray:
    if hasattr(x, "detach") and hasattr(x, "cpu"):
        x = x.detach().cpu().numpy()
    return np.asarray(x)
