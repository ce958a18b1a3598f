"""Projections are exact for any finite input (issue 10 finding 2).

* exact backend: the output at ``|a|`` up to ``1e6`` satisfies the KKT conditions of the
  projection onto the *independent* H-representation of :mod:`hrep_oracle` (feasible to
  ``1e-9``; ``a - x`` in the cone of the active rows' normals to an absolute ``1e-8``, which
  bounds the distance to the optimum along the active face) -- a check whose accuracy does
  not degrade with ``|a|`` (comparing distances would: they are ``~|a|``).
* cvxpylayers backend: Clarabel through diffcp returned feasible but *wrong* points for
  ``|a| >~ 300`` (``9e-3`` at ``1e3``; deep inside the set at ``1e6``).  d = 1: the projection
  onto an interval depends on ``clip(a, A)`` only, so the output at ``|a|`` must equal the
  (well-conditioned) output at the clipped action; every task: the output is within
  ``OPTIMALITY_TOL`` of the exact projection wherever the latter satisfies Eq 6 (checked with
  the HiGHS LPs of :mod:`safegbpo.sets.containment`), or the row fell back (flagged).
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from scipy.optimize import nnls

from safegbpo.safeguards import BoundaryProjection, boundary_projection
from safegbpo.safeguards.boundary_projection import OPTIMALITY_TOL
from safegbpo.sets.containment import induced_containment_margin

from .conftest import F64, make_env, random_states
from .hrep_oracle import oracle_rows

MAGNITUDES = (1e2, 1e3, 1e4, 1e6)
NUM = 6


def _far_actions(d: int, magnitude: float, gen: torch.Generator) -> torch.Tensor:
    v = torch.randn(NUM, d, generator=gen, dtype=F64)
    return magnitude * v / v.norm(dim=-1, keepdim=True)


def kkt_defect(H: np.ndarray, h: np.ndarray, a: np.ndarray, x: np.ndarray) -> tuple[float, float]:
    """``(infeasibility, stationarity residual)`` of ``x`` as the projection of ``a`` onto
    ``{H x <= h}`` (rows normalised)."""
    slack = H @ x - h
    active = np.abs(slack) <= 1e-9
    if not active.any():
        return float(slack.max()), float(np.linalg.norm(a - x))
    _, residual = nnls(H[active].T, a - x)
    return float(slack.max()), float(residual)


@pytest.mark.parametrize("magnitude", MAGNITUDES)
def test_exact_projection_is_optimal_for_huge_actions(task, magnitude):
    env = make_env(task, NUM, seed=2)
    gen = torch.Generator().manual_seed(int(np.log10(magnitude)))
    states = random_states(env, NUM, gen)
    actions = _far_actions(env.model.action_dim, magnitude, gen)
    bp = BoundaryProjection(env)
    out = bp(actions, states)
    assert bp.fallbacks == 0
    H, h = (x.detach().numpy() for x in oracle_rows(env, states))
    for i in range(NUM):
        infeasible, residual = kkt_defect(H[i], h[i], actions[i].numpy(), out[i].numpy())
        assert infeasible <= 1e-9 and residual <= 1e-8, (i, infeasible, residual)


@pytest.mark.parametrize("magnitude", (1e3, 1e4, 1e6))
def test_cvxpylayers_projection_1d_equals_projection_of_clipped_action(magnitude):
    env = make_env("pendulum", NUM, seed=2)
    gen = torch.Generator().manual_seed(7)
    states = random_states(env, NUM, gen)
    actions = _far_actions(1, magnitude, gen)
    bp = BoundaryProjection(env, backend="cvxpylayers")
    reference = bp(actions.clamp(-1.0, 1.0), states)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        out = bp(actions, states)
    np.testing.assert_allclose(out.numpy(), reference.numpy(), atol=OPTIMALITY_TOL)


@pytest.mark.parametrize("magnitude", (1e4, 1e6))
def test_cvxpylayers_projection_is_optimal_or_falls_back(task, magnitude):
    if task == "energy":
        pytest.skip("pendulum (d = 1) and quadrotor (d = 2) cover both code paths")
    env = make_env(task, NUM, seed=3)
    gen = torch.Generator().manual_seed(11)
    states = random_states(env, NUM, gen)
    actions = _far_actions(env.model.action_dim, magnitude, gen)
    exact = BoundaryProjection(env)(actions, states)
    bp = BoundaryProjection(env, backend="cvxpylayers")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        out = bp(actions, states)
    c_S, G_S = (x[0] for x in env.safe_set.state.numpy())
    G_W = np.diag(0.5 * np.subtract(*reversed([x.numpy() for x in env.model.noise_bounds()])))
    f0, B, E = (x.detach().numpy() for x in env.linearise(states))
    margin = induced_containment_margin(f0, B, E, G_W, exact.numpy(), c_S, G_S)
    for i in range(NUM):
        if bool(bp.last_fallback[i]):
            continue  # flagged, certified backup
        if margin[i] <= 1.0 + 1e-7:  # Eq 6 and the exact set agree: same projection
            assert float((out[i] - exact[i]).norm()) <= OPTIMALITY_TOL, (i, out[i], exact[i])


def test_standalone_boundary_projection_never_returns_an_unverified_point():
    """``boundary_projection`` returned points deep inside the zonotope for huge actions; now
    every returned row is verified (KKT of its active set) or the call raises."""
    c = torch.zeros(2, dtype=F64)
    G = torch.tensor([[1.0, 0.5, 0.0], [0.0, 0.5, 1.0]], dtype=F64)
    H = np.array([[1, 0], [-1, 0], [0, 1], [0, -1], [1, -1], [-1, 1]], dtype=float)
    H = H / np.linalg.norm(H, axis=1, keepdims=True)
    h = np.abs(H @ G.numpy()).sum(1)
    gen = torch.Generator().manual_seed(5)
    for magnitude in (1e1, 1e3, 1e6):
        a = _far_actions(2, magnitude, gen)
        try:
            x = boundary_projection(a, c, G)
        except ValueError as err:
            assert "inaccurate" in str(err) or "failed" in str(err)
            continue
        for i in range(NUM):
            infeasible, residual = kkt_defect(H, h, a[i].numpy(), x[i].detach().numpy())
            assert infeasible <= 1e-7 and residual <= 1e-6, (magnitude, i, infeasible, residual)
