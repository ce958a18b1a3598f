"""An independent description of the safe action set ``A ∩ A_s(s)`` (SPEC §2, §3 P1).

The audit must never trust a safeguard's own solver to decide whether its output is safe.
:class:`SafeActionOracle` rebuilds the safe action set of a batch of states from the task's
*definition* only — the env's linearisation of Eq 12 (``f0``, ``B``, ``E`` from
``torch.func.jacrev``), the noise box ``W``, the safe state zonotope ``S_s`` and, when the safe
set has one, the explicit action zonotope ``U_s`` — and answers every question with scipy/HiGHS
linear programs (never cvxpy/cvxpylayers):

* :meth:`margins` — the P1 numbers of actions: box excess ``max_k |a_k| - 1`` (``A``), Eq-6
  containment margin of the next-state set ``<f0 + B (a - a0), E G_W>`` in ``S_s`` (Eq 13–14,
  :func:`safegbpo.sets.containment.induced_containment_margin`; ``<= 1`` certifies safety), and
  the gauge of ``a`` in ``U_s`` (Eq 5; ``<= 1`` inside);
* :meth:`ray_distance` — Eq 47: ``max t s.t. origin + t v in A ∩ A_s(s)``;
* :meth:`support_point` — ``argmax l^T a`` over ``A ∩ A_s(s)`` (a vertex: where set edges meet);
* :meth:`interior_point` — a point of the set away from its boundary (mean of support points);
* :meth:`exact_induced_safe` — membership in the *exact* induced set of Eq 7 (no Eq-6
  relaxation): all ``2^{n_w}`` noise vertices of ``W`` propagated through the task's nonlinear
  model dynamics land in ``S_s`` (valid because the dynamics are affine in ``w`` and ``S_s`` is
  convex).  Used for Lemma 2.

The set ``A ∩ A_s(s)`` in the LPs (one per state ``i``) is the projection onto ``a`` of the
polyhedron in ``(a, Gamma±, beta±, b_U)``::

    G_S (Gamma+ - Gamma-) = E G_W                          (Eq 6, generators)
    G_S (beta+ - beta-) + B a = c_S - f0 + B a0            (Eq 6, centres; Eq 13)
    rowsum(Gamma+ + Gamma-) + beta+ + beta- <= 1           (Eq 6, ||[Gamma, beta]||_inf <= 1)
    a - G_U b_U = c_U,  -1 <= b_U <= 1                     (Eq 5, explicit U_s, if present)
    low <= a <= high                                       (A)
    Gamma±, beta± >= 0

which is exactly the set certified by :func:`~safegbpo.sets.containment.induced_containment_margin`.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from scipy.optimize import linprog
from torch import Tensor

from safegbpo.sets.containment import gauge_lp, induced_containment_margin

__all__ = ["Margins", "SafeActionOracle"]


@dataclass(frozen=True)
class Margins:
    """P1 numbers of a batch of actions ``(K,)`` each (larger = less safe).

    Attributes:
        box: ``max_k |a_k - a0_k| / r_k - 1`` — ``<= 0`` inside ``A``.
        induced: Eq-6 containment margin where it certifies (``<= 1``), else the exact margin
            of Eq 7 (:meth:`SafeActionOracle.exact_induced_margin`) — ``<= 1`` iff
            ``f(s, a, W) ⊆ S_s``.
        explicit: gauge of ``a - c_U`` in ``U_s`` — ``<= 1`` inside (zeros if no ``U_s``).
    """

    box: np.ndarray
    induced: np.ndarray
    explicit: np.ndarray

    def violation(self, tol: float) -> np.ndarray:
        """``(K,)`` bool: the action is not certified safe up to ``tol`` (or is non-finite)."""
        bad = (self.box > tol) | (self.induced > 1.0 + tol) | (self.explicit > 1.0 + tol)
        return bad | ~np.isfinite(self.induced)

    def worst(self) -> np.ndarray:
        """``(K,)`` the largest normalised margin: ``max(1 + box, induced, explicit)``; ``<= 1``
        means certified safe."""
        return np.maximum.reduce([1.0 + self.box, self.induced, self.explicit])


def _numpy(x: Tensor | np.ndarray) -> np.ndarray:
    if isinstance(x, Tensor):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.float64)


class SafeActionOracle:
    """Independent LPs on ``A ∩ A_s(s)`` for the states ``states (K, n)`` of ``env``'s task.

    Args:
        env: a :class:`~safegbpo.envs.SafeVectorEnv` (only its model, boxes, safe set and
            :meth:`linearise` are used; its current state is not touched).
        states: ``(K, n)`` states (any ``K``, independent of ``env.num_envs``).
        use_explicit: intersect with the safe set's explicit action zonotope ``U_s`` when it has
            one (SPEC §6 "Safe sets"); ``False`` audits the induced set alone.
    """

    def __init__(self, env: Any, states: Tensor, use_explicit: bool = True) -> None:
        states = torch.as_tensor(states, dtype=env.dtype, device=env.device).detach()
        if states.ndim != 2 or states.shape[1] != env.model.state_dim:
            raise ValueError(f"states must have shape (K, {env.model.state_dim}), "
                             f"got {tuple(states.shape)}")
        if not bool(torch.isfinite(states).all()):
            raise ValueError("states contain NaN/inf")
        self.env = env
        self.states = states
        lin = env.linearise(states)
        self.f0, self.B, self.E = (_numpy(t) for t in lin)
        self.W_G = _numpy(env.noise_box.generators[0])
        self.S_c = _numpy(env.safe_set.state.center[0])
        self.S_G = _numpy(env.safe_set.state.generators[0])
        action_set = env.safe_set.action if use_explicit else None
        self.U = None if action_set is None else (_numpy(action_set.center[0]),
                                                 _numpy(action_set.generators[0]))
        low, high = env.model.action_bounds(dtype=torch.float64)
        self.low, self.high = low.numpy(), high.numpy()
        self.a0 = 0.5 * (self.low + self.high)
        self.radius = 0.5 * (self.high - self.low)
        self.num_states, self.state_dim = states.shape
        self.action_dim = self.B.shape[2]
        self._lifted_cache: dict[int, tuple[Any, ...]] = {}

    # ------------------------------------------------------------------------------------------
    # P1 numbers
    # ------------------------------------------------------------------------------------------
    def margins(self, actions: Tensor | np.ndarray, index: np.ndarray | None = None) -> Margins:
        """P1 numbers of ``actions (K', d)``; row ``j`` belongs to state ``index[j]`` (default
        ``j``).  Non-finite actions get ``inf`` margins."""
        a = _numpy(actions)
        if a.ndim != 2 or a.shape[1] != self.action_dim:
            raise ValueError(f"actions must have shape (K, {self.action_dim}), got {a.shape}")
        idx = np.arange(a.shape[0]) if index is None else np.asarray(index, dtype=np.int64)
        out_of_range = idx.size and (idx.min() < 0 or idx.max() >= self.num_states)
        if idx.shape != (a.shape[0],) or out_of_range:
            raise ValueError("index must give one valid state index per action")
        finite = np.all(np.isfinite(a), axis=1)
        box = np.full(a.shape[0], np.inf)
        induced = np.full(a.shape[0], np.inf)
        explicit = np.zeros(a.shape[0]) if self.U is None else np.full(a.shape[0], np.inf)
        if finite.any():
            af, ii = a[finite], idx[finite]
            box[finite] = np.max(np.abs(af - self.a0) / self.radius, axis=1) - 1.0
            induced[finite] = induced_containment_margin(
                self.f0[ii], self.B[ii], self.E[ii], self.W_G, af, self.S_c, self.S_G, self.a0)
            # Eq 6 is only sufficient (SPEC §11): where it does not certify, use the exact
            # margin of Eq 7 (largest gauge of the next states at the vertices of W)
            loose = np.flatnonzero(finite)[induced[finite] > 1.0]
            if loose.size:
                induced[loose] = self.exact_induced_margin(a[loose], idx[loose])
            if self.U is not None:
                c_u, g_u = self.U
                explicit[finite] = [gauge_lp(g_u, row - c_u) for row in af]
        return Margins(box=box, induced=induced, explicit=explicit)

    def exact_induced_margin(self, actions: np.ndarray, index: np.ndarray) -> np.ndarray:
        """``(K',)`` exact induced margin (Eq 7): ``max_w gauge_{S_s}(f(s, a, w))`` over the
        vertices ``w`` of ``W`` with the model's dynamics and HiGHS LPs (``<= 1`` iff
        ``f(s, a, W) ⊆ S_s``; exact because ``f`` is affine in ``w`` and ``S_s`` convex)."""
        a = torch.as_tensor(np.asarray(actions, dtype=np.float64))
        states = self.states.to(torch.float64)[torch.as_tensor(np.asarray(index))]
        low_w, high_w = self.env.model.noise_bounds(dtype=torch.float64)
        worst = np.zeros(a.shape[0])
        for signs in itertools.product((0, 1), repeat=self.env.model.noise_dim):
            w = torch.where(torch.tensor(signs, dtype=torch.bool), high_w, low_w)
            nxt = self.env.model.dynamics(states, a, w.expand(a.shape[0], -1)).numpy()
            worst = np.maximum(worst, [gauge_lp(self.S_G, p - self.S_c) for p in nxt])
        return worst

    def is_safe(self, actions: Tensor | np.ndarray, tol: float = 1e-9,
                index: np.ndarray | None = None) -> np.ndarray:
        """``(K',)`` bool: certified safe up to ``tol``."""
        return ~self.margins(actions, index).violation(tol)

    # ------------------------------------------------------------------------------------------
    # the lifted polyhedron and its LPs
    # ------------------------------------------------------------------------------------------
    def _lifted(self, i: int) -> tuple[Any, ...]:
        """``(Aeq_a, Aeq_z, beq, Aub_z, bub, z_bounds)`` of state ``i`` (module docstring);
        the box on ``a`` is added by the callers after substituting ``a``."""
        if i in self._lifted_cache:
            return self._lifted_cache[i]
        n, d = self.state_dim, self.action_dim
        G = self.S_G
        m = G.shape[1]
        EW = self.E[i] @ self.W_G  # (n, k)
        k = EW.shape[1]
        mu = 0 if self.U is None else self.U[1].shape[1]
        nz = 2 * m * k + 2 * m + mu
        # equality rows: n*k (generators) + n (centres) + d (explicit)
        rows_eq = n * k + n + (d if self.U is not None else 0)
        Aeq_a = np.zeros((rows_eq, d))
        Aeq_z = np.zeros((rows_eq, nz))
        beq = np.zeros(rows_eq)
        # Gamma column-major per noise generator j: variables [j*m:(j+1)*m]
        for j in range(k):
            r = slice(j * n, (j + 1) * n)
            Aeq_z[r, j * m:(j + 1) * m] = G
            Aeq_z[r, m * k + j * m:m * k + (j + 1) * m] = -G
            beq[r] = EW[:, j]
        r = slice(n * k, n * k + n)
        off = 2 * m * k
        Aeq_z[r, off:off + m] = G
        Aeq_z[r, off + m:off + 2 * m] = -G
        Aeq_a[r] = self.B[i]
        beq[r] = self.S_c - self.f0[i] + self.B[i] @ self.a0
        if self.U is not None:
            c_u, g_u = self.U
            r = slice(n * k + n, rows_eq)
            Aeq_a[r] = np.eye(d)
            Aeq_z[r, 2 * m * k + 2 * m:] = -g_u
            beq[r] = c_u
        # row sums of |[Gamma, beta]| <= 1
        Aub_z = np.zeros((m, nz))
        for j in range(k):
            Aub_z[:, j * m:(j + 1) * m] += np.eye(m)
            Aub_z[:, m * k + j * m:m * k + (j + 1) * m] += np.eye(m)
        Aub_z[:, off:off + m] += np.eye(m)
        Aub_z[:, off + m:off + 2 * m] += np.eye(m)
        bub = np.ones(m)
        z_bounds = [(0.0, None)] * (2 * m * k + 2 * m) + [(-1.0, 1.0)] * mu
        out = (Aeq_a, Aeq_z, beq, Aub_z, bub, z_bounds)
        self._lifted_cache[i] = out
        return out

    def _solve(self, i: int, offset: np.ndarray, M: np.ndarray, cost_y: np.ndarray,
               y_bounds: list[tuple[float | None, float | None]]) -> np.ndarray | None:
        """Minimise ``cost_y^T y`` over ``a = offset + M y`` in ``A ∩ A_s(s_i)``; returns the
        optimal ``y`` or ``None`` when infeasible."""
        Aeq_a, Aeq_z, beq, Aub_z, bub, z_bounds = self._lifted(i)
        ny = M.shape[1]
        nz = Aeq_z.shape[1]
        d = self.action_dim
        A_eq = np.hstack([Aeq_a @ M, Aeq_z])
        b_eq = beq - Aeq_a @ offset
        box = np.vstack([M, -M])
        A_ub = np.vstack([np.hstack([np.zeros((Aub_z.shape[0], ny)), Aub_z]),
                          np.hstack([box, np.zeros((2 * d, nz))])])
        b_ub = np.concatenate([bub, self.high - offset, offset - self.low])
        cost = np.concatenate([cost_y, np.zeros(nz)])
        res = linprog(cost, A_ub=A_ub, b_ub=b_ub, A_eq=A_eq, b_eq=b_eq,
                      bounds=list(y_bounds) + z_bounds, method="highs")
        if res.status == 2:
            return None
        if res.status != 0:
            raise RuntimeError(f"oracle LP of state {i} failed: {res.message}")
        return res.x[:ny]

    def ray_distance(self, i: int, origin: np.ndarray, direction: np.ndarray) -> float:
        """Eq 47: ``max t >= 0 s.t. origin + t v in A ∩ A_s(s_i)``, ``v`` the unit direction;
        ``nan`` when ``origin`` itself is not in the set."""
        v = np.asarray(direction, dtype=np.float64)
        v = v / np.linalg.norm(v)
        y = self._solve(i, np.asarray(origin, dtype=np.float64), v[:, None], np.array([-1.0]),
                        [(0.0, None)])
        return float("nan") if y is None else float(y[0])

    def support_point(self, i: int, direction: np.ndarray) -> np.ndarray | None:
        """``argmax_a l^T a`` over ``A ∩ A_s(s_i)`` (``None``: empty set)."""
        d = self.action_dim
        y = self._solve(i, np.zeros(d), np.eye(d), -np.asarray(direction, dtype=np.float64),
                        [(None, None)] * d)
        return y

    def interior_point(self, i: int) -> np.ndarray | None:
        """Mean of the support points along ``±e_k``: inside the (convex) set, and strictly
        inside whenever the set has a non-empty interior (``None``: empty set)."""
        points = []
        for k in range(self.action_dim):
            for sign in (1.0, -1.0):
                p = self.support_point(i, sign * np.eye(self.action_dim)[k])
                if p is None:
                    return None
                points.append(p)
        return np.mean(points, axis=0)

    # ------------------------------------------------------------------------------------------
    # exact induced set (Eq 7) for Lemma 2
    # ------------------------------------------------------------------------------------------
    def exact_induced_safe(self, actions: Tensor | np.ndarray, index: np.ndarray,
                           tol: float = 1e-9) -> np.ndarray:
        """``(K',)`` bool: ``a in A``, ``a in U_s`` (if any) and ``f(s, a, w) in S_s`` for all
        ``2^{n_w}`` vertices ``w`` of ``W``, with the task's nonlinear model dynamics (Eq 7,
        exact because ``f`` is affine in ``w`` and ``S_s`` convex)."""
        a = torch.as_tensor(_numpy(actions), dtype=torch.float64)
        idx = torch.as_tensor(np.asarray(index, dtype=np.int64))
        states = self.states.to(torch.float64)[idx]
        model = self.env.model
        low_w, high_w = model.noise_bounds(dtype=torch.float64)
        ok = np.ones(a.shape[0], dtype=bool)
        ok &= np.max(np.abs(a.numpy() - self.a0) / self.radius, axis=1) <= 1.0 + tol
        if self.U is not None:
            c_u, g_u = self.U
            ok &= np.array([gauge_lp(g_u, row - c_u) <= 1.0 + tol for row in a.numpy()])
        for signs in itertools.product((0, 1), repeat=model.noise_dim):
            w = torch.where(torch.tensor(signs, dtype=torch.bool), high_w, low_w)
            nxt = model.dynamics(states, a, w.expand(a.shape[0], -1)).numpy()
            ok &= np.array([gauge_lp(self.S_G, p - self.S_c) <= 1.0 + tol for p in nxt])
        return ok
