"""Certified robust control invariant (RCI) state zonotopes with paired backup actions (SPEC §7).

One convex program per candidate, no external reachability tool.  The result is a
:class:`~safegbpo.safesets.SafeSet` ``S_s = <c, G>`` with a generator-paired action zonotope
``U_s = <u_c, K>`` such that for every factor ``b`` (``||b||_inf <= 1``), every noise ``w`` in
``W`` and the *nonlinear* dynamics ``f`` of the task,

``f(c + G b, u_c + K b, w) in S_s``   (robust control invariance with backup action ``u_c + K b``).

Linear difference inclusion (how the nonlinearity is bounded)
--------------------------------------------------------------
SPEC §7 bounds the linearisation remainder by a box ``R = <0, diag(rho)>`` (e.g. a Taylor bound
``|sin(theta) - theta| <= |theta|^3 / 6``).  A box remainder is very conservative for the
pendulum: on ``|theta| <= 2.6`` the remainder ``(3g/2l)(sin theta - theta)`` reaches
``30 rad/s^2`` of the ``90 rad/s^2`` of control authority, and the Taylor bound is worse still.
We therefore write every nonlinear term as a *sector* (a bounded, state-dependent gain times a
state or action coordinate), which gives a polytopic linear difference inclusion (LDI), and keep
a box remainder only for what is not a sector.  :class:`LinearEnclosure` states the resulting
guarantee: for every state whose *bounded coordinate* ``j`` satisfies ``|x_j - x_e,j| <= nu``,
every ``u`` in ``A`` and every ``w`` in ``W``,

``f(x, u, w) in x_e + conv_k { A_k (x - x_e) + B_k (u - u_e) } + E (w + r)``,
``r in <r_c, diag(r_rad)>``,

where ``E = df/dw`` and all nonlinear terms of both tasks are accelerations, so their remainders
enter the next state through the noise channels ``E`` (semi-implicit Euler: ``dt^2`` in the
position, ``dt`` in the velocity).  The vertices are the Jacobian linearisation ``A, B, E``
(``torch.func.jacrev`` of the raw dynamics at the equilibrium) plus rank-one sector deviations
in those channels.  Each task model provides its enclosure
(:meth:`safegbpo.tasks.TaskModel.linear_enclosure`, derived in the model's module); the paper's
two tasks:

* **Pendulum** (``theta_ddot = k sin(theta) + b_a a + w``, ``k = 3g/(2l)``): with
  ``sigma = sin(theta)/theta`` (``= 1`` at 0), ``sin(theta) = theta + (sigma - 1) theta`` and
  ``sigma in [sin(nu)/nu, 1]`` for ``|theta| <= nu <= pi`` (``sin(x)/x`` decreases on
  ``[0, pi]``).  Vertices ``A_k = A + k (sigma_k - 1) E e_theta^T``, ``sigma_k in {sin(nu)/nu, 1}``;
  no box remainder.
* **Quadrotor** (``T = g + c a_T``, ``c = 6/7``): ``x_ddot = T sin(phi) = g phi + (beta - g) phi``
  with ``beta = T sin(phi)/phi in [(g - c) sin(nu)/nu, g + c]`` (``T in [g - c, g + c]``, both
  factors positive); ``z_ddot = T cos(phi) - g = c a_T + c (gamma - 1) a_T + g (cos(phi) - 1)``
  with ``gamma = cos(phi) in [cos(nu), 1]`` and the box remainder
  ``g (cos(phi) - 1) in [-g (1 - cos(nu)), 0]`` for ``|phi| <= nu <= pi/12``.  Vertices
  ``A_k = A + (beta_k - g) E_x e_phi^T``, ``B_k = B + c (gamma_k - 1) E_z e_{a_T}^T`` (4 of them).

Because the true next state is, for each ``(x, u, w)``, a convex combination (over the sector
gains, which enter affinely) of the vertex maps at the same ``(x, u, w)`` plus ``E r``, the
containment of every vertex image of the lifted zonotope ``<(c, u_c), [G; K]>`` in ``S_s`` proves
the invariance of ``S_s`` under the nonlinear dynamics (``S_s`` is convex).

The convex program (SPEC §7, per candidate bound ``nu``)
--------------------------------------------------------
In scaled coordinates ``x~ = D^{-1} (x - x_e)`` (``D`` the half-widths of ``S``, for conditioning):
template directions ``T`` (``n x m``: identity plus closed-loop iterates ``(A_cl^p)^i e_j`` of a
discrete LQR gain, unit columns), unknowns ``s >= 0`` (``G~ = T diag(s)``), ``K`` (``d x m``),
the centres ``c~``, ``u~`` and per vertex ``Gamma'_k``, ``Omega'_k``, ``beta'_k``:

* invariance (Eq 6 with ``Gamma' = diag(s) Gamma``, linear in all unknowns):
  ``A~_k T diag(s) + B~_k K = T Gamma'_k``, ``E~ diag(w + r_rad) = T Omega'_k``,
  ``A~_k c~ + B~_k u~ + E~ r_c - c~ = T beta'_k``, and for every row ``i``
  ``sum_j |Gamma'_k,ij| + sum_j |Omega'_k,ij| + |beta'_k,i| <= (1 - slack) s_i``;
* ``u_e + u~ +- |K| 1`` in ``A`` (paired actions feasible), ``x_e + D (c~ +- |T| s)`` in ``S``
  (states feasible), and ``|c~_j| + (|T| s)_j <= nu / D_j`` (the LDI is valid on the set);
* maximise ``sum_i omega_i log(s_i + eps)``.

"Re-bound and repeat" is done rigorously: the remainder bound depends on the scalar ``nu`` only,
and ``nu`` is imposed as a constraint, so every candidate is a valid certificate; an outer
golden-section search over ``nu`` keeps the largest volume.  The weights ``omega`` start uniform
(``sum log s``, SPEC §7 step 5) and are then refined by minorise-maximise iterations on the exact
volume ``V(s) = 2^n sum_{|S|=n} |det T_S| prod_{i in S} s_i``: by Jensen,
``log V(s) >= sum_i omega_i log s_i + const`` with ``omega_i = sum_{S ni i} w_S``,
``w_S = |det T_S| prod s_S / V`` at the current iterate (tight there), so each iteration does not
decrease the volume (up to ``eps``).

Solver handling.  Each candidate is first tested for feasibility by a HiGHS LP (interior-point
conic solvers detect infeasibility of these problems slowly and unreliably), then solved with
CLARABEL (SCS if the whole search fails with CLARABEL, or the solver the caller names).  Every
candidate is re-certified with independent HiGHS LPs in the original coordinates
(:func:`certificate_margins`: Eq 6 margin of every vertex image, which must be ``<= 1``); a
candidate that fails (e.g. an ``optimal_inaccurate`` solve) is projected onto the feasible set by
an LP (:meth:`_Program.polish`) and re-certified, else discarded.  The returned set therefore
never depends on the conic solver's accuracy, and an infeasible or failed search raises
:class:`RCIInfeasibleError`.  The a-posteriori check on sampled states of the nonlinear dynamics
is :func:`safegbpo.safesets.verify.verify_safe_set`.

Results and limits (defaults: the tasks' registry entries, :func:`default_config`). Pendulum:
``m = 5``, volume ``~88`` of the ``~100.5`` of ``S`` (the reference set: ``~66.9``, and it
partly lies outside ``S``); the sector gain range ``[0, 1]`` needed at ``|theta| = pi`` is the
main conservatism. Quadrotor: ``m = 18``, volume ``~170`` (reference ``~0.46``); the template
size limits it (``m = 24`` gives ``~215`` at three times the computing time), and a box template
alone is infeasible because of the integrator chain ``x <- x_dot <- phi <- phi_dot``. Energy
system (SPEC §10): the dynamics are linear, so the enclosure is exact (one vertex, no remainder,
linearised at the centre ``t_out = 15`` of ``W``, :func:`safegbpo.tasks.affine_enclosure`) and a
certificate proves robust control invariance of the set itself; ``m = 5``, volume ``~1714`` of
the ``5400`` of ``S`` (``t_ret`` up to ``~43.6``).  The maximal RCI set is far larger (a grid
estimate: ``~4800``, nearly ``S`` minus the wedges near ``t_in = 24`` with a hot floor and
``t_in = 18`` with a cold one) but strongly asymmetric; a centrally symmetric zonotope with a
linear paired backup action cannot follow it (exact containment instead of Eq 6 gives the same
volume for the same template).  The state box ``S`` itself -- the reference's safe set -- is not
invariant: ``t_in'`` does not depend on the action.  All three compute in seconds.

The bound ``nu`` of the enclosure is measured from the equilibrium ``x_e`` (the energy task's
``S`` is not centred at 0): its widest value is :meth:`TaskModel.enclosure_bound_limit`.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import time
import warnings
from dataclasses import dataclass
from typing import Any

import cvxpy as cp
import numpy as np
import scipy.linalg
import torch

from safegbpo.safesets.safe_set import CERTIFIED, SAMPLED, SafeSet
from safegbpo.sets import Zonotope, containment_margin_lp
from safegbpo.tasks import LinearEnclosure, TaskModel, get_model, get_task
from safegbpo.tasks.base import linearise

__all__ = [
    "ALGORITHM_VERSION",
    "RCIConfig",
    "RCIInfeasibleError",
    "LinearEnclosure",
    "certificate_margins",
    "compute_rci",
    "default_config",
    "linear_enclosure",
    "linearise",
    "template_directions",
]

#: Bumped whenever the algorithm or its defaults change (part of the cache key).
ALGORITHM_VERSION = "rci-ldi-zonotope/1"


class RCIInfeasibleError(ValueError):
    """The RCI program has no solution (or the solver failed) for every candidate."""


# ------------------------------------------------------------------------------------------
# configuration
# ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RCIConfig:
    """Tuning constants of :func:`compute_rci` (all part of the cache key).

    Attributes:
        num_directions: template size ``m`` (columns of ``T``).
        template_powers: candidate spacings ``p`` of the closed-loop iterates ``(A_cl^p)^i``;
            the one giving the largest volume at the widest bound is kept.
        lqr_control_weight: ``R = r I`` of the LQR in scaled coordinates (``Q = I``).
        bound_fraction_range: the search interval of ``nu`` as fractions of the half-width of
            ``S`` in the bounded coordinate.
        bound_evaluations: number of golden-section evaluations of ``nu``.
        volume_iterations: minorise-maximise reweighting iterations on the volume.
        log_eps: ``eps`` of ``log(s + eps)`` (scaled units; lets useless directions vanish).
        slack: relative slack of the row-sum constraint (robustness to solver tolerances).
        prune_tol: generators with ``s_i < prune_tol * max(s)`` are dropped before the
            certificate is checked.
    """

    num_directions: int
    template_powers: tuple[int, ...] = (1, 3, 10)
    lqr_control_weight: float = 0.1
    bound_fraction_range: tuple[float, float] = (0.2, 1.0)
    bound_evaluations: int = 7
    volume_iterations: int = 4
    log_eps: float = 1e-5
    slack: float = 1e-5
    prune_tol: float = 1e-6

    def __post_init__(self) -> None:
        if self.num_directions < 1:
            raise ValueError(f"num_directions must be >= 1, got {self.num_directions}")
        if not self.template_powers or min(self.template_powers) < 1:
            raise ValueError(f"template_powers must be positive integers, got "
                             f"{self.template_powers}")
        lo, hi = self.bound_fraction_range
        if not 0.0 < lo <= hi <= 1.0:
            raise ValueError(f"bound_fraction_range must satisfy 0 < lo <= hi <= 1, got "
                             f"{self.bound_fraction_range}")
        if self.bound_evaluations < 1 or self.volume_iterations < 0:
            raise ValueError("bound_evaluations must be >= 1 and volume_iterations >= 0")
        if not 0.0 <= self.slack < 0.1 or self.log_eps <= 0 or self.lqr_control_weight <= 0:
            raise ValueError("need 0 <= slack < 0.1, log_eps > 0, lqr_control_weight > 0")

    def to_dict(self) -> dict:
        return {
            "num_directions": self.num_directions,
            "template_powers": list(self.template_powers),
            "lqr_control_weight": self.lqr_control_weight,
            "bound_fraction_range": list(self.bound_fraction_range),
            "bound_evaluations": self.bound_evaluations,
            "volume_iterations": self.volume_iterations,
            "log_eps": self.log_eps,
            "slack": self.slack,
            "prune_tol": self.prune_tol,
        }


def default_config(task: str) -> RCIConfig:
    """The RCI tuning of ``task``: its registry entry's ``rci`` fields (tuned for volume; see
    the module docstring)."""
    return RCIConfig(**get_task(task).rci)


def linear_enclosure(task: str, bound: float) -> LinearEnclosure:
    """The LDI enclosure of ``task``'s dynamics for the bound ``nu = bound``: the model's
    :meth:`~safegbpo.tasks.TaskModel.linear_enclosure` (derivations in the model modules)."""
    return get_model(task).linear_enclosure(bound)


# ------------------------------------------------------------------------------------------
# template
# ------------------------------------------------------------------------------------------
def template_directions(
    A: np.ndarray, B: np.ndarray, num_directions: int, power: int, control_weight: float
) -> np.ndarray:
    """Template ``T`` ``(n, m)``: identity, then closed-loop iterates ``(A_cl^p)^i e_j``.

    ``A_cl = A + B K_lqr`` with the discrete LQR gain for ``Q = I``, ``R = control_weight I``
    (``scipy.linalg.solve_discrete_are``); all in the caller's (scaled) coordinates.  Columns
    are normalised to unit length; near-duplicates (``|cos| > 0.999``) are skipped.
    """
    n, d = B.shape
    if num_directions < n:
        raise ValueError(f"num_directions must be >= the state dimension {n}, got "
                         f"{num_directions}")
    R = control_weight * np.eye(d)
    P = scipy.linalg.solve_discrete_are(A, B, np.eye(n), R)
    K = -np.linalg.solve(B.T @ P @ B + R, B.T @ P @ A)
    step = np.linalg.matrix_power(A + B @ K, power)
    cols: list[np.ndarray] = list(np.eye(n))
    X = np.eye(n)
    for _ in range(4 * num_directions):
        if len(cols) >= num_directions:
            break
        X = step @ X
        for j in range(n):
            v = X[:, j]
            norm = np.linalg.norm(v)
            if norm < 1e-12 or len(cols) >= num_directions:
                continue
            v = v / norm
            if max(abs(float(v @ u)) for u in cols) > 0.999:
                continue
            cols.append(v)
    if len(cols) < num_directions:  # the iterates collapsed: complete with fixed directions
        rng = np.random.default_rng(0)
        while len(cols) < num_directions:
            w = np.asarray(rng.normal(size=n), dtype=np.float64)
            cols.append(w / np.linalg.norm(w))
    return np.stack(cols, axis=1)


def _volume_terms(T: np.ndarray, s: np.ndarray) -> tuple[float, np.ndarray]:
    """Volume ``2^n sum_S |det T_S| prod s_S`` and MM weights ``omega`` (module docstring);
    the ``C(m, n)`` determinants are evaluated in chunks."""
    n, m = T.shape
    G = T * s[None, :]
    total = 0.0
    omega = np.zeros(m)
    combos = itertools.combinations(range(m), n)
    while True:
        chunk = np.fromiter(itertools.chain.from_iterable(itertools.islice(combos, 20_000)),
                            dtype=np.int64)
        if chunk.size == 0:
            break
        subsets = chunk.reshape(-1, n)
        dets = np.abs(np.linalg.det(np.moveaxis(G[:, subsets], 1, 0)))  # (chunk,)
        total += float(dets.sum())
        np.add.at(omega, subsets.ravel(), np.repeat(dets, n))
    if total <= 0:
        return 0.0, np.full(m, n / m)
    return total * 2.0**n, omega / total


# ------------------------------------------------------------------------------------------
# the convex program
# ------------------------------------------------------------------------------------------
@dataclass
class _Solution:
    """A certified candidate: scaled solution (``s``, template ``T``) and the set in original
    coordinates (``center``, ``G``, ``u_c``, ``K``) with its certificate ``margins``."""

    volume: float
    s: np.ndarray
    T: np.ndarray
    center: np.ndarray
    G: np.ndarray
    u_c: np.ndarray
    K: np.ndarray
    margins: np.ndarray
    enclosure: LinearEnclosure
    power: int
    solver: str


class _Program:
    """The RCI program of one task in scaled coordinates ``x~ = D^{-1} (x - x_e)``."""

    def __init__(self, model: TaskModel, config: RCIConfig, solver: str) -> None:
        self.model = model
        self.config = config
        self.solver = solver
        low, high = (t.numpy() for t in model.state_bounds())
        self.low, self.high = low, high
        self.D = (high - low) / 2.0

    def _constraints(self, enc: LinearEnclosure, T: np.ndarray, s, row_scale):
        """Constraints of the program (module docstring) for scales ``s`` (variable or fixed
        array) and row-sum bound ``row_scale * s``; returns ``(constraints, K, c, u)``."""
        n, m = T.shape
        d = enc.B.shape[2]
        D, Dinv = self.D, 1.0 / self.D
        W = Dinv[:, None] * enc.disturbance_generators()
        offset = Dinv * enc.disturbance_offset()
        K = cp.Variable((d, m), name="K")
        c = cp.Variable(n, name="c")
        u = cp.Variable(d, name="u")
        cons = []
        for A_k, B_k in zip(enc.A, enc.B, strict=True):
            As = Dinv[:, None] * A_k * D[None, :]
            Bs = Dinv[:, None] * B_k
            gam = cp.Variable((m, m), name="Gamma")
            beta = cp.Variable(m, name="beta")
            rows = cp.sum(cp.abs(gam), axis=1) + cp.abs(beta)
            image = (cp.multiply(As @ T, s[None, :]) if isinstance(s, cp.Expression)
                     else (As @ T) * s[None, :])
            cons += [image + Bs @ K == T @ gam, As @ c + Bs @ u + offset - c == T @ beta]
            if W.shape[1]:
                omg = cp.Variable((m, W.shape[1]), name="Omega")
                cons.append(W == T @ omg)
                rows = rows + cp.sum(cp.abs(omg), axis=1)
            cons.append(rows <= cp.multiply(row_scale, s))
        hull = np.abs(T) @ s
        lo = (self.low - enc.x_e) / D
        hi = (self.high - enc.x_e) / D
        k_rows = cp.sum(cp.abs(K), axis=1)
        j = enc.bounded_index
        cons += [c + hull <= hi, c - hull >= lo,
                 enc.u_e + u + k_rows <= 1.0, enc.u_e + u - k_rows >= -1.0,
                 cp.abs(c[j]) + hull[j] <= enc.bound / D[j]]
        return cons, K, c, u

    def solve(self, enc: LinearEnclosure, T: np.ndarray, weights: np.ndarray,
              power: int) -> _Solution | None:
        """Solve, certify (and if needed polish) one candidate; ``None`` if the program is
        infeasible or no certified solution was found.

        1. HiGHS LP feasibility test of the constraints (interior-point solvers are slow and
           unreliable at detecting infeasibility of these problems);
        2. the conic program (``self.solver``); an ``optimal_inaccurate`` status is accepted
           as a *candidate* only;
        3. negligible generators are pruned and the candidate is certified independently
           (:func:`certificate_margins`, HiGHS).  If a margin exceeds 1 (solver tolerance),
           :meth:`polish` projects it onto the feasible set by an LP and the certificate is
           checked again; uncertifiable candidates are discarded.
        """
        cfg = self.config
        m = T.shape[1]
        s = cp.Variable(m, nonneg=True, name="s")
        cons, K, c, u = self._constraints(enc, T, s, 1.0 - cfg.slack)
        if "HIGHS" in cp.installed_solvers():
            feas = cp.Problem(cp.Minimize(0), cons)
            try:
                feas.solve(solver="HIGHS")
            except (cp.error.SolverError, ValueError):
                pass
            if feas.status in (cp.INFEASIBLE, cp.INFEASIBLE_INACCURATE):
                return None
        problem = cp.Problem(cp.Maximize(weights @ cp.log(s + cfg.log_eps)), cons)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                problem.solve(solver=self.solver)
        except (cp.error.SolverError, ValueError):
            return None
        if problem.status not in (cp.OPTIMAL, cp.OPTIMAL_INACCURATE) or s.value is None:
            return None
        s_val = np.maximum(np.asarray(s.value, float), 0.0)
        if s_val.max() <= 0:
            return None
        keep = s_val >= cfg.prune_tol * float(s_val.max())
        T, s_val, weights = T[:, keep], s_val[keep], weights[keep]
        sol = self._to_solution(enc, T, s_val, K.value[:, keep], c.value, u.value, power,
                                self.solver)
        if np.all(sol.margins <= 1.0):
            return sol
        polished = self.polish(enc, T, s_val, weights)
        if polished is None:
            return None
        sol = self._to_solution(enc, T, *polished, power, f"{self.solver}+HIGHS-polish")
        return sol if np.all(sol.margins <= 1.0) else None

    def polish(self, enc: LinearEnclosure, T: np.ndarray, s_ref: np.ndarray,
               weights: np.ndarray
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None:
        """LP projection of an inaccurate candidate onto the feasible set: maximise
        ``sum_i omega_i s_i / s_ref_i`` subject to all constraints and ``s <= s_ref``.

        Returns ``(s, K, c, u)`` or ``None``.  Solved by HiGHS (exact feasibility up to its
        ``1e-7`` tolerance, covered by the row-sum slack).
        """
        s = cp.Variable(T.shape[1], nonneg=True, name="s")
        cons, K, c, u = self._constraints(enc, T, s, 1.0 - self.config.slack)
        cons.append(s <= s_ref)
        problem = cp.Problem(cp.Maximize((weights / s_ref) @ s), cons)
        try:
            problem.solve(solver="HIGHS" if "HIGHS" in cp.installed_solvers() else None)
        except (cp.error.SolverError, ValueError):
            return None
        if problem.status != cp.OPTIMAL or s.value is None:
            return None
        return np.maximum(np.asarray(s.value, float), 0.0), K.value, c.value, u.value

    def _to_solution(self, enc, T, s, K, c, u, power, solver) -> _Solution:
        D = self.D
        G = D[:, None] * T * s[None, :]
        center = enc.x_e + D * np.asarray(c, float)
        u_c = enc.u_e + np.asarray(u, float)
        K = np.asarray(K, float)
        margins = certificate_margins(enc, center, G, u_c, K)
        volume = _volume_terms(T, s)[0] * float(np.prod(D))
        return _Solution(volume, s, T, center, G, u_c, K, margins, enc, power, solver)


def certificate_margins(
    enc: LinearEnclosure, center: np.ndarray, generators: np.ndarray,
    action_center: np.ndarray, action_generators: np.ndarray,
) -> np.ndarray:
    """Eq 6 margins (HiGHS LPs) of the vertex images of the lifted set, one per LDI vertex.

    Vertex ``k`` maps ``<(c, u_c), [G; K]>`` (plus noise and remainder) to
    ``< x_e + A_k (c - x_e) + B_k (u_c - u_e) + E r_c, [A_k G + B_k K, E diag(w + r_rad)] >``;
    all margins ``<= 1`` certify robust control invariance of ``<c, G>`` with the paired backup
    actions (module docstring).  Feasibility (``<c, G>`` in ``S``, ``<u_c, K>`` in ``A``, the
    bounded coordinate within the enclosure's bound) is checked by :class:`SafeSet` and
    :func:`_check_feasibility`.
    """
    margins = []
    W = enc.disturbance_generators()
    for A_k, B_k in zip(enc.A, enc.B, strict=True):
        inner_c = (enc.x_e + A_k @ (center - enc.x_e) + B_k @ (action_center - enc.u_e)
                   + enc.disturbance_offset())
        inner_G = np.hstack([A_k @ generators + B_k @ action_generators, W])
        margins.append(containment_margin_lp(inner_c, inner_G, center, generators))
    return np.asarray(margins)


def _check_feasibility(task: str, sol: _Solution, low: np.ndarray, high: np.ndarray) -> None:
    """The set lies in ``S`` and within the enclosure bound, the actions in ``A`` (tol 1e-7)."""
    radius = np.abs(sol.G).sum(axis=1)
    j, enc = sol.enclosure.bounded_index, sol.enclosure
    problems = []
    if np.any(sol.center + radius > high + 1e-7) or np.any(sol.center - radius < low - 1e-7):
        problems.append("state set leaves S")
    if abs(sol.center[j] - enc.x_e[j]) + radius[j] > enc.bound + 1e-7:
        problems.append("state set leaves the enclosure's bound")
    a_rad = np.abs(sol.K).sum(axis=1)
    if np.any(np.abs(sol.u_c) + a_rad > 1.0 + 1e-7):
        problems.append("paired actions leave A")
    if problems:
        raise RCIInfeasibleError(f"{task}: solver returned an infeasible candidate: "
                                 + "; ".join(problems))


def _to_safe_set(sol: _Solution, task: str, model: TaskModel, config: RCIConfig,
                 extra: dict) -> SafeSet:
    low, high = (t.numpy() for t in model.state_bounds())
    _check_feasibility(task, sol, low, high)
    enc = sol.enclosure
    metadata = {
        "algorithm": ALGORITHM_VERSION,
        "config": config.to_dict(),
        "bounded_coordinate": model.state_names[enc.bounded_index],
        "bound": enc.bound,
        "template_power": sol.power,
        "solver": sol.solver,
        "certificate_margins": sol.margins.tolist(),
        "volume": sol.volume,
        **extra,
    }
    metadata["enclosure"] = enc.basis or "LDI sector enclosure derived by the task model"
    return SafeSet(
        task=task,
        state=Zonotope(torch.as_tensor(sol.center), torch.as_tensor(sol.G)),
        action=Zonotope(torch.as_tensor(sol.u_c), torch.as_tensor(sol.K)),
        source=f"safegbpo.safesets.rci ({ALGORITHM_VERSION}): SPEC §7 convex program with an "
               f"LDI {'enclosure' if enc.certified else 'enclosure ESTIMATED FROM SAMPLES'}",
        metadata=metadata,
        # the certificate is a proof only if the enclosure is (SafeSet module docstring)
        certification=CERTIFIED if enc.certified else SAMPLED,
    )


def compute_rci(
    task: str,
    *,
    num_directions: int | None = None,
    iterations: int | None = None,
    solver: str | None = None,
    config: RCIConfig | None = None,
    verbose: bool = False,
) -> SafeSet:
    """Compute a certified RCI state zonotope with paired backup actions for ``task``.

    Args:
        task: a registered task (:func:`safegbpo.tasks.get_task`).
        num_directions: template size ``m`` (default: :func:`default_config`).
        iterations: volume (minorise-maximise) reweighting iterations (default: config).
        solver: a cvxpy conic solver (exponential cone) name; default CLARABEL, and if the
            whole search fails with it, SCS.
        config: full :class:`RCIConfig` (overridden by the two arguments above).
        verbose: print the progress of the search.

    Returns:
        The :class:`SafeSet`; ``metadata`` records the bound ``nu``, the template, the solver
        and the independent certificate margins (all ``<= 1``).

    Raises:
        ValueError: unknown task, bad configuration or solver not installed.
        RCIInfeasibleError: no candidate was feasible / certified with any solver.
    """
    model = get_model(task)
    cfg = config or default_config(task)
    overrides: dict[str, Any] = {}
    if num_directions is not None:
        overrides["num_directions"] = num_directions
    if iterations is not None:
        overrides["volume_iterations"] = iterations
    if overrides:
        cfg = dataclasses.replace(cfg, **overrides)
    if solver is not None:
        if solver not in cp.installed_solvers():
            raise ValueError(f"solver {solver!r} is not installed; installed: "
                             f"{cp.installed_solvers()}")
        solvers = [solver]
    else:
        solvers = [s for s in ("CLARABEL", "SCS") if s in cp.installed_solvers()]
        if not solvers:
            raise ValueError("neither CLARABEL nor SCS is installed (cvxpy conic solvers)")
    start = time.perf_counter()
    errors = []
    for name in solvers:
        try:
            best = _search(task, model, cfg, _Program(model, cfg, name), verbose, start)
        except RCIInfeasibleError as err:
            errors.append(f"{name}: {err}")
            continue
        return _to_safe_set(best, task, model, cfg,
                            {"compute_seconds": round(time.perf_counter() - start, 2)})
    raise RCIInfeasibleError("; ".join(errors))


def _search(task: str, model: TaskModel, cfg: RCIConfig, program: _Program, verbose: bool,
            start: float) -> _Solution:
    """Template choice, golden-section search of the bound ``nu``, volume reweighting."""
    D = program.D

    def log(msg: str) -> None:
        if verbose:
            print(f"[rci {task} {program.solver} {time.perf_counter() - start:6.1f}s] {msg}")

    def describe(sol: _Solution | None) -> str:
        return "infeasible/uncertified" if sol is None else f"volume {sol.volume:.4g}"

    j = model.enclosure_index
    full = model.enclosure_bound_limit()  # widest bound around x_e that the box allows
    lo_f, hi_f = cfg.bound_fraction_range
    uniform = np.full(cfg.num_directions, model.state_dim / cfg.num_directions)

    # 1. template: the spacing p with the largest volume at the widest bound
    _, _, A_jac, B_jac, _ = model.equilibrium_jacobians()
    As = A_jac * (1.0 / D)[:, None] * D[None, :]
    Bs = B_jac * (1.0 / D)[:, None]
    templates = {p: template_directions(As, Bs, cfg.num_directions, p, cfg.lqr_control_weight)
                 for p in cfg.template_powers}
    enc_hi = model.linear_enclosure(hi_f * full)
    best_p, best_volume = cfg.template_powers[0], -1.0
    for p, T in templates.items():
        sol = program.solve(enc_hi, T, uniform, p)
        log(f"template p={p}: {describe(sol)}")
        if sol is not None and sol.volume > best_volume:
            best_p, best_volume = p, sol.volume
    T = templates[best_p]

    # 2. golden-section search of the bound nu (every candidate is a valid certificate)
    cache: dict[float, _Solution | None] = {}

    def evaluate(frac: float) -> float:
        frac = round(frac, 12)
        if frac not in cache:
            cache[frac] = program.solve(model.linear_enclosure(frac * full), T, uniform,
                                        best_p)
            log(f"bound {frac * full:.4f}: {describe(cache[frac])}")
        sol = cache[frac]
        return -1.0 if sol is None else sol.volume

    a, b = lo_f, hi_f
    evaluate(b)
    if cfg.bound_evaluations > 1 and a < b:
        evaluate(a)
        invphi = (math.sqrt(5.0) - 1.0) / 2.0
        x1, x2 = b - invphi * (b - a), a + invphi * (b - a)
        f1, f2 = evaluate(x1), evaluate(x2)
        for _ in range(max(0, cfg.bound_evaluations - 4)):
            if f1 >= f2:
                b, x2, f2 = x2, x1, f1
                x1 = b - invphi * (b - a)
                f1 = evaluate(x1)
            else:
                a, x1, f1 = x1, x2, f2
                x2 = a + invphi * (b - a)
                f2 = evaluate(x2)
    feasible = [sol for sol in cache.values() if sol is not None]
    if not feasible:
        raise RCIInfeasibleError(
            f"{task}: the RCI program is infeasible (or no solution could be certified) for "
            f"every bound nu in [{lo_f * full:.4g}, {hi_f * full:.4g}] on "
            f"{model.state_names[j]} with template m={cfg.num_directions}, p={best_p}")
    best = max(feasible, key=lambda sol: sol.volume)

    # 3. volume reweighting (minorise-maximise) at the best bound
    for it in range(cfg.volume_iterations):
        _, omega = _volume_terms(best.T, best.s)
        sol = program.solve(best.enclosure, best.T, omega, best_p)
        log(f"volume iteration {it + 1}: {describe(sol)}")
        if sol is None:
            break
        improved = sol.volume > best.volume * (1.0 + 1e-4)
        if sol.volume > best.volume:
            best = sol
        if not improved:
            break
    log(f"done: volume {best.volume:.4g} ({best.solver}), bound {best.enclosure.bound:.4f}, "
        f"certificate margins {np.round(best.margins, 6).tolist()}")
    return best
