"""How much larger is the exact safe action set than the Eq 6 one? (SPEC §11)

Eq 6 is only a *sufficient* containment test, so the safe action set of the paper's
formulation (``A ∩ U_s ∩ {a : <f0 + B (a - a0), E G_W> ⊆ S_s by Eq 6}``) is a subset of the
exact set (``y(a) ∈ S_s ⊖ W_s``, :mod:`~safegbpo.safeguards.polytope`).
:func:`compare_safe_action_sets` measures both on states sampled uniformly from the safe state
set (∩ ``S``):

* exact set: its polytope (``d = 1``: the interval; ``d = 2``: the polygon by qhull's
  half-space intersection from the Chebyshev centre) — its length / area exactly;
* Eq 6 set: its support points in ``directions`` unit directions (one LP each, HiGHS through
  cvxpy, the Eq 5 / Eq 6 constraints of :mod:`safegbpo.sets.containment`); the length / area of
  their convex hull (an inner approximation in 2-D, exact for ``d = 1``);
* containment: every Eq 6 support point (all vertices of the hull) must lie in the exact set
  (normalised violation ``<= 1e-7``, the accuracy of the LPs); both sets are convex, so this
  proves ``Eq 6 set ⊆ exact set`` up to the hull's accuracy.

Where the safe state set sticks out of ``S`` the exact set also keeps the next state in
``S ⊖ W_s``; the Eq 6 LPs get the same rows, so both sets are measured on equal terms.
"""

from __future__ import annotations

from typing import Any

import cvxpy as cp
import numpy as np
import torch

from safegbpo.safeguards import exact
from safegbpo.safeguards.action_set import ActionSetData, ActionSetStructure
from safegbpo.safeguards.polytope import ExactActionSet
from safegbpo.sets.containment import (
    point_containment_constraints,
    zonotope_containment_constraints,
)

__all__ = ["compare_safe_action_sets", "polygon_area"]


def polygon_area(points: np.ndarray) -> float:
    """Area of the convex hull of 2-D ``points (M, 2)`` (0 for fewer than 3 distinct points)."""
    pts = np.unique(np.round(points, 12), axis=0)
    if pts.shape[0] < 3:
        return 0.0
    centre = pts.mean(axis=0)
    order = np.argsort(np.arctan2(pts[:, 1] - centre[1], pts[:, 0] - centre[0]))
    hull = _hull(pts[order])
    x, y = hull[:, 0], hull[:, 1]
    return float(0.5 * abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))


def _hull(points: np.ndarray) -> np.ndarray:
    """Andrew's monotone chain on ``points`` (any order) -> hull vertices (counter-clockwise)."""
    pts = points[np.lexsort((points[:, 1], points[:, 0]))]

    def cross(o: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
        return float((a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0]))

    def half(seq: np.ndarray) -> list[np.ndarray]:
        out: list[np.ndarray] = []
        for p in seq:
            while len(out) >= 2 and cross(out[-2], out[-1], p) <= 0:
                out.pop()
            out.append(p)
        return out

    lower, upper = half(pts), half(pts[::-1])
    return np.array(lower[:-1] + upper[:-1])


def _exact_size(poly: Any) -> tuple[np.ndarray, list[np.ndarray]]:
    """Length (``d = 1``) or area (``d = 2``) of every state's exact polytope, and the vertices."""
    N, d = poly.batch, poly.dim
    if d == 1:
        lo, hi, _, _, nonempty = exact._interval(poly)
        size = np.where(nonempty, np.maximum(hi - lo, 0.0), 0.0)
        return size, [np.array([[lo[i]], [hi[i]]]) for i in range(N)]
    sizes, vertices = np.zeros(N), []
    for i in range(N):
        pts = _polygon(poly.A[i][poly.valid[i]], poly.b[i][poly.valid[i]])
        vertices.append(pts)
        sizes[i] = polygon_area(pts) if pts.shape[0] >= 3 else 0.0
    return sizes, vertices


def _polygon(A: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Vertices of ``{x : A x <= b}`` in 2-D (bounded): the Chebyshev centre (LP) as interior
    point, then qhull's half-space intersection; empty array if there is no interior."""
    from scipy.optimize import linprog
    from scipy.spatial import HalfspaceIntersection

    norms = np.linalg.norm(A, axis=1)
    res = linprog(np.array([0.0, 0.0, -1.0]), A_ub=np.column_stack([A, norms]), b_ub=b,
                  bounds=[(None, None), (None, None), (0.0, None)], method="highs")
    if res.status != 0 or res.x[2] <= 1e-12:
        return np.zeros((0, 2))
    halfspaces = np.column_stack([A, -b])
    return HalfspaceIntersection(halfspaces, res.x[:2]).intersections


class _Eq6Support:
    """``argmax_a l^T a`` over the Eq 6 safe action set (LP with parameters ``q0, B, l``)."""

    def __init__(self, structure: ActionSetStructure, action_set: ExactActionSet) -> None:
        s = structure
        c_S, G_S, G_W = s.induced_set
        n, d = G_S.shape[0], s.action_dim
        self.q0 = cp.Parameter(n)
        self.B = cp.Parameter((n, d))
        self.W = cp.Parameter((n, G_W.shape[1]))
        self.direction = cp.Parameter(d)
        self.x = cp.Variable(d)
        constraints = [self.x >= s.box_low, self.x <= s.box_high]
        if s.has_explicit:
            cons, _ = point_containment_constraints(self.x, *s.explicit_set)
            constraints += cons
        centre = self.q0 + self.B @ self.x
        cons, _, _ = zonotope_containment_constraints(centre, self.W, c_S, G_S)
        constraints += cons
        rows = action_set.state_box_rows
        if rows:  # S ⊖ W_s where S_s sticks out of S (as in the exact set)
            F = action_set.slabs[-rows:]
            self.r = cp.Parameter(rows)
            constraints += [F @ centre <= action_set.cert_upper[-rows:] - self.r,
                            F @ centre >= action_set.cert_lower[-rows:] + self.r]
        self.problem = cp.Problem(cp.Maximize(self.direction @ self.x), constraints)
        self.rows = rows
        self.action_set = action_set

    def points(self, q0: np.ndarray, B: np.ndarray, W: np.ndarray,
               directions: np.ndarray) -> np.ndarray | None:
        self.q0.value, self.B.value, self.W.value = q0, B, W
        if self.rows:
            F = self.action_set.slabs[-self.rows:]
            self.r.value = np.abs(F @ W).sum(axis=1)
        out = []
        for v in directions:
            self.direction.value = v
            self.problem.solve(solver=cp.HIGHS)
            if self.problem.status != cp.OPTIMAL:
                return None
            out.append(np.array(self.x.value, dtype=np.float64))
        return np.array(out)


def compare_safe_action_sets(env: Any, num_states: int = 64, seed: int = 0,
                             directions: int = 64) -> dict[str, Any]:
    """Exact vs Eq 6 safe action sets on ``num_states`` states drawn uniformly (seeded) from
    ``env``'s safe state set ∩ ``S`` (module docstring).

    Returns:
        ``{"states", "dimension", "measure" ('length'|'area'), "mean_ratio", "median_ratio",
        "min_ratio", "max_ratio", "mean_exact", "mean_eq6", "eq6_empty_states",
        "containment_violations", "worst_containment_violation", "directions"}``; ratios are
        exact size / Eq 6 size over the states where the Eq 6 set is not empty.
    """
    if isinstance(num_states, bool) or not isinstance(num_states, int) or num_states < 1:
        raise ValueError(f"num_states must be a positive integer, got {num_states!r}")
    base = getattr(env, "unwrapped", env)
    structure = ActionSetStructure.from_env(base, margin=0.0)
    if not structure.has_induced:
        raise ValueError("the comparison needs an induced safe set (Eq 7)")
    action_set = ExactActionSet.from_env(base, structure)
    states = _sample_states(base, num_states, seed)
    f0, B, E = base.linearise(states)
    data = ActionSetData.from_linearisation(structure, f0.detach(), B.detach(), E.detach())
    poly = action_set.polytope(data)
    exact_size, _ = _exact_size(poly)
    d = structure.action_dim
    if d == 1:
        dirs = np.array([[1.0], [-1.0]])
    else:
        angles = 2 * np.pi * np.arange(directions) / directions
        dirs = np.stack([np.cos(angles), np.sin(angles)], axis=1)
    support = _Eq6Support(structure, action_set)
    f0n, Bn = f0.detach().numpy(), B.detach().numpy()
    Wn = data.linearisation[3].detach().numpy()
    q0 = f0n - Bn @ structure.box_center
    eq6_size = np.zeros(num_states)
    empty = np.zeros(num_states, dtype=bool)
    violations, worst = 0, -np.inf
    for i in range(num_states):
        pts = support.points(q0[i], Bn[i], Wn[i], dirs)
        if pts is None:
            empty[i] = True
            continue
        eq6_size[i] = (pts.max() - pts.min()) if d == 1 else polygon_area(pts)
        sub = ActionSetData.from_linearisation(
            structure, f0[i:i + 1].detach().expand(len(pts), -1),
            B[i:i + 1].detach().expand(len(pts), -1, -1),
            E[i:i + 1].detach().expand(len(pts), -1, -1))
        v = action_set.violation(torch.as_tensor(pts), sub)
        violations += int((v > 1e-7).sum())
        worst = max(worst, float(v.max()))
    ok = ~empty & (eq6_size > 0)
    ratio = exact_size[ok] / eq6_size[ok]
    return {
        "states": num_states,
        "dimension": d,
        "measure": "length" if d == 1 else "area",
        "mean_ratio": float(ratio.mean()) if ratio.size else float("nan"),
        "median_ratio": float(np.median(ratio)) if ratio.size else float("nan"),
        "min_ratio": float(ratio.min()) if ratio.size else float("nan"),
        "max_ratio": float(ratio.max()) if ratio.size else float("nan"),
        "mean_exact": float(exact_size.mean()),
        "mean_eq6": float(eq6_size.mean()),
        "eq6_empty_states": int(empty.sum()),
        "containment_violations": violations,
        "worst_containment_violation": worst,
        "directions": int(dirs.shape[0]),
        "seed": seed,
    }


def _sample_states(env: Any, num: int, seed: int) -> torch.Tensor:
    """``num`` states uniform in ``S_s ∩ S`` (rejection from the interval hull ∩ ``S``, exact
    membership by the safe set's H-representation), seeded."""
    safe_set = env.safe_set
    gen = torch.Generator().manual_seed(int(seed))
    c = safe_set.state.center[0].detach().to(torch.float64)
    hull = safe_set.state.generators[0].detach().to(torch.float64).abs().sum(-1)
    low_S, high_S = (t.to(torch.float64) for t in env.model.state_bounds())
    low, high = torch.maximum(c - hull, low_S), torch.minimum(c + hull, high_S)
    out: list[torch.Tensor] = []
    count = 0
    while count < num:
        cand = low + (high - low) * torch.rand(4 * num, c.shape[0], generator=gen,
                                               dtype=torch.float64)
        keep = cand[torch.as_tensor(safe_set.hrep.contains(cand.numpy()))]
        out.append(keep)
        count += keep.shape[0]
    return torch.cat(out)[:num]
