"""Hypothesis property tests of zonotope operations and containment LPs (SPEC §1)."""

from __future__ import annotations

import itertools

import cvxpy as cp
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import linprog

from safegbpo.sets import Zonotope
from safegbpo.sets.containment import (
    containment_margin_lp,
    gauge_lp,
    zonotope_containment_constraints,
)

pytestmark = pytest.mark.property
F64 = torch.float64
SETTINGS = settings(max_examples=25, deadline=None)


@st.composite
def zonotopes(draw, n=None, m=None, max_n=4, max_m=6, degenerate=True):
    """Random zonotopes (batch 1), optionally with zero / repeated / parallel generators."""
    n = draw(st.integers(1, max_n)) if n is None else n
    m = draw(st.integers(0, max_m)) if m is None else m
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    c = rng.normal(size=n)
    G = rng.normal(size=(n, m)) * rng.uniform(0.2, 2.0, size=m)
    if degenerate and m >= 2:
        kind = draw(st.sampled_from(["none", "zero", "repeat", "parallel"]))
        if kind == "zero":
            G[:, 0] = 0.0
        elif kind == "repeat":
            G[:, 1] = G[:, 0]
        elif kind == "parallel":
            G[:, 1] = -2.5 * G[:, 0]
    return Zonotope(c, G)


def directions(rng: np.random.Generator, n: int, k: int) -> torch.Tensor:
    return torch.as_tensor(rng.normal(size=(1, k, n)), dtype=F64)


@SETTINGS
@given(zonotopes(), st.integers(0, 2**32 - 1))
def test_support_equals_lp_maximum(Z, seed):
    """Eq 4: rho(l) = max { l^T (c + G b) : ||b||_inf <= 1 } (solved by linprog)."""
    c, G = (a[0] for a in Z.numpy())
    for l in directions(np.random.default_rng(seed), Z.dim, 3)[0]:
        l_np = l.numpy()
        if Z.num_generators:
            res = linprog(-(G.T @ l_np), bounds=[(-1.0, 1.0)] * Z.num_generators,
                          method="highs")
            expected = l_np @ c - res.fun
        else:
            expected = l_np @ c
        assert float(Z.support(l)) == pytest.approx(expected, abs=1e-8, rel=1e-8)


@SETTINGS
@given(zonotopes(max_n=3, max_m=5), st.integers(0, 2**32 - 1),
       st.sampled_from(["uniform-factors", "sign-factors"]))
def test_sampled_points_are_contained_and_inside_the_interval_hull(Z, seed, method):
    points = Z.sample(12, torch.Generator().manual_seed(seed), method=method)
    gauges = Z.gauge(points - Z.center[:, None])
    assert bool((gauges <= 1.0 + 1e-7).all())
    low, high = Z.interval_hull()
    assert bool(((points >= low[:, None] - 1e-12) & (points <= high[:, None] + 1e-12)).all())
    eye = torch.eye(Z.dim, dtype=F64)
    torch.testing.assert_close(Z.support(eye[None]), high)  # tight
    torch.testing.assert_close(-Z.support(-eye[None]), low)


@SETTINGS
@given(zonotopes(n=3), zonotopes(n=3), st.integers(0, 2**32 - 1))
def test_minkowski_sum_commutes_with_factor_maps(Z1, Z2, seed):
    """Eq 2: c1 + c2 + [G1 G2][b1; b2] = (c1 + G1 b1) + (c2 + G2 b2)."""
    g = torch.Generator().manual_seed(seed)
    _, b1 = Z1.sample(8, g, return_factors=True)
    _, b2 = Z2.sample(8, g, return_factors=True)
    Z = Z1 + Z2
    torch.testing.assert_close(Z.points_from_factors(torch.cat([b1, b2], dim=-1)),
                               Z1.points_from_factors(b1) + Z2.points_from_factors(b2))
    L = directions(np.random.default_rng(seed), 3, 4)
    torch.testing.assert_close(Z.support(L), Z1.support(L) + Z2.support(L))


@SETTINGS
@given(zonotopes(), st.integers(1, 4), st.integers(0, 2**32 - 1))
def test_linear_map_commutes_with_sampling(Z, k, seed):
    """Eq 3: samples of M Z with factors b are M times the samples of Z with factors b."""
    rng = np.random.default_rng(seed)
    M = torch.as_tensor(rng.normal(size=(k, Z.dim)), dtype=F64)
    points, b = Z.sample(6, torch.Generator().manual_seed(seed), return_factors=True)
    W = Z.linear_map(M)
    torch.testing.assert_close(W.points_from_factors(b), points @ M.T)
    L = directions(rng, k, 3)
    torch.testing.assert_close(W.support(L), Z.support(L @ M))


@SETTINGS
@given(zonotopes(max_n=3, max_m=5), st.integers(0, 2**32 - 1))
def test_support_points_lie_on_the_boundary(Z, seed):
    """The maximiser c + G sign(G^T l) has gauge exactly 1 (unless G^T l = 0)."""
    L = directions(np.random.default_rng(seed), Z.dim, 3)
    points = Z.support_point(L)
    gauges = Z.gauge(points - Z.center[:, None])[0]
    for l, gauge in zip(L[0], gauges, strict=True):
        if float((Z.generators[0].T @ l).abs().sum()) > 1e-9:
            assert float(gauge) == pytest.approx(1.0, abs=1e-7)
    # the gauge is positively homogeneous
    v = points[0, 0] - Z.center[0]
    assert float(Z.gauge(2.5 * v)) == pytest.approx(2.5 * float(Z.gauge(v)), abs=1e-7)


@SETTINGS
@given(zonotopes(max_n=3, max_m=6), st.floats(0.05, 2.0))
def test_scaled_zonotope_has_margin_equal_to_the_scale(Z, scale):
    """Eq 6: <c, s G> ⊆ <c, G> with optimal margin exactly s (G != 0)."""
    inner = Zonotope(Z.center, scale * Z.generators)
    margin = float(inner.containment_margin(Z))
    if float(Z.generators.abs().sum()) == 0.0:
        assert margin == 0.0
    else:
        assert margin == pytest.approx(scale, abs=1e-7)
    assert bool(inner.is_subset_of(Z)) == (margin <= 1.0 + 1e-9)


@SETTINGS
@given(zonotopes(max_n=3, max_m=5, degenerate=False), st.integers(1, 3),
       st.integers(0, 2**32 - 1), st.floats(0.3, 1.6))
def test_containment_certificate_is_sound(outer, m1, seed, size):
    """A margin <= 1 implies every vertex of the inner zonotope is in the outer one, and the
    margin never exceeds the norm of a feasible [Gamma, beta]."""
    rng = np.random.default_rng(seed)
    c2, G2 = (a[0] for a in outer.numpy())
    X = rng.uniform(-1, 1, size=(outer.num_generators, m1 + 1))
    if outer.num_generators:
        X *= size / np.abs(X).sum(axis=1, keepdims=True)
    c1, G1 = c2 - G2 @ X[:, -1], G2 @ X[:, :-1]
    margin = containment_margin_lp(c1, G1, c2, G2)
    assert margin <= (np.abs(X).sum(axis=1).max(initial=0.0)) + 1e-7
    if margin <= 1.0:
        for b in itertools.product([-1.0, 1.0], repeat=m1):
            assert gauge_lp(G2, c1 + G1 @ np.array(b) - c2) <= 1.0 + 1e-7


@settings(max_examples=10, deadline=None)
@pytest.mark.filterwarnings("ignore:Solution may be inaccurate")
@given(zonotopes(n=2, max_m=4), zonotopes(n=2, max_m=4))
def test_cvxpy_builder_matches_numpy_margin(inner, outer):
    c1, G1 = (a[0] for a in inner.numpy())
    c2, G2 = (a[0] for a in outer.numpy())
    t = cp.Variable()
    constraints, _, _ = zonotope_containment_constraints(c1, G1, c2, G2, bound=t)
    problem = cp.Problem(cp.Minimize(t), constraints)
    problem.solve(solver=cp.CLARABEL)
    expected = containment_margin_lp(c1, G1, c2, G2)
    if np.isinf(expected):  # interior-point solvers may stop at a limit instead of a proof
        assert problem.status != cp.OPTIMAL
    else:
        assert t.value == pytest.approx(expected, rel=1e-5, abs=1e-6)


@SETTINGS
@given(zonotopes(n=2, max_m=6), st.integers(0, 2**32 - 1))
def test_2d_vertices_span_the_zonotope_and_give_its_volume(Z, seed):
    V = Z.vertices_2d()[0]
    L = directions(np.random.default_rng(seed), 2, 5)[0]
    torch.testing.assert_close((L @ V.T).max(dim=1).values, Z.support(L[None])[0])
    x, y = V[:, 0], V[:, 1]
    area = 0.5 * float((x * torch.roll(y, -1) - torch.roll(x, -1) * y).sum())
    assert float(Z.volume()) == pytest.approx(area, rel=1e-9, abs=1e-12)


@SETTINGS
@given(zonotopes(max_n=3, max_m=6), st.integers(0, 2**32 - 1))
def test_volume_scaling_laws(Z, seed):
    vol = Z.volume()
    torch.testing.assert_close((Z + Z).volume(), 2.0**Z.dim * vol)  # Z + Z = 2 Z
    M = torch.as_tensor(np.random.default_rng(seed).normal(size=(Z.dim, Z.dim)), dtype=F64)
    torch.testing.assert_close(Z.linear_map(M).volume(), vol * torch.linalg.det(M).abs(),
                               rtol=1e-9, atol=1e-12)
