"""Exact H-representations of zonotopes and Pontryagin differences (SPEC §11).

The H-polytope must *equal* the zonotope: its support function equals Eq 4 in every direction
(an LP over the rows vs ``l^T c + ||G^T l||_1``) and points are classified like the Eq 5 LP —
also for degenerate generator sets (parallel, duplicated, zero columns), where a lost facet
would make the H-polytope too large.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from scipy.optimize import linprog

from safegbpo.sets import HRep, box_hrep, zonotope_hrep
from safegbpo.sets.containment import gauge_lp
from safegbpo.sets.hrep import zonotope_facet_normals

SETTINGS = settings(max_examples=40, deadline=None)
HIGHS = {"primal_feasibility_tolerance": 1e-10, "dual_feasibility_tolerance": 1e-10}


def lp_support(hrep: HRep, direction: np.ndarray) -> float:
    A, b = hrep.halfspaces()
    res = linprog(-direction, A_ub=A, b_ub=b, bounds=[(None, None)] * hrep.dim,
                  method="highs", options=HIGHS)
    assert res.status == 0, res.message
    return -res.fun


def zonotope_support(c: np.ndarray, G: np.ndarray, direction: np.ndarray) -> float:
    return float(direction @ c + np.abs(G.T @ direction).sum())  # Eq 4


@st.composite
def zonotopes(draw):
    """Random full-dimensional zonotopes, often with degenerate generator sets."""
    n = draw(st.integers(1, 4))
    m = draw(st.integers(n, n + 4))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    G = rng.normal(size=(n, m))
    kind = draw(st.sampled_from(["generic", "parallel", "duplicate", "zero", "axis"]))
    if kind == "parallel" and m > 1:
        G[:, 1] = -2.5 * G[:, 0]
    elif kind == "duplicate" and m > 1:
        G[:, -1] = G[:, 0]
    elif kind == "zero":
        G = np.concatenate([G, np.zeros((n, 1))], axis=1)
    elif kind == "axis":
        G[:, : min(n, m)] = np.diag(rng.uniform(0.5, 2.0, size=n))[:, : min(n, m)]
    assume(np.linalg.matrix_rank(G) == n)
    return rng.normal(size=n) * 3.0, G, rng


@pytest.mark.property
@SETTINGS
@given(zonotopes())
def test_support_function_equals_eq4(case):
    c, G, rng = case
    hrep = zonotope_hrep(c, G)
    assert np.allclose(np.linalg.norm(hrep.normals, axis=1), 1.0)
    for _ in range(6):
        direction = rng.normal(size=c.size)
        expected = zonotope_support(c, G, direction)
        got = lp_support(hrep, direction)
        assert got == pytest.approx(expected, abs=1e-9 * (1.0 + abs(expected)))


@pytest.mark.property
@SETTINGS
@given(zonotopes())
def test_points_are_classified_like_the_eq5_lp(case):
    c, G, rng = case
    hrep = zonotope_hrep(c, G)
    points = c + (rng.uniform(-1.3, 1.3, size=(40, G.shape[1])) @ G.T)
    gauges = np.array([gauge_lp(G, p - c) for p in points])
    clear = np.abs(gauges - 1.0) > 1e-6
    inside = hrep.contains(points)
    assert np.array_equal(inside[clear], (gauges <= 1.0)[clear])
    np.testing.assert_allclose(hrep.gauge(points, c)[clear], gauges[clear], rtol=1e-7,
                               atol=1e-9)


@pytest.mark.property
@SETTINGS
@given(zonotopes(), st.integers(0, 2**32 - 1))
def test_pontryagin_difference_is_exact(case, seed):
    """``y in Z ⊖ W`` iff ``y + w in Z`` for every vertex ``w`` of ``W`` (both convex)."""
    c, G, _ = case
    rng = np.random.default_rng(seed)
    n = c.size
    W = 0.1 * rng.normal(size=(n, 2)) * np.abs(G).sum(axis=1, keepdims=True) / G.shape[1]
    diff = zonotope_hrep(c, G).pontryagin_difference(W)
    points = c + (rng.uniform(-1.1, 1.1, size=(25, G.shape[1])) @ G.T)
    vertices = np.array(list(itertools.product((-1.0, 1.0), repeat=W.shape[1]))) @ W.T
    truth = np.array([max(gauge_lp(G, p + v - c) for v in vertices) for p in points])
    clear = np.abs(truth - 1.0) > 1e-6
    assert np.array_equal(diff.contains(points)[clear], (truth <= 1.0)[clear])


def test_no_facet_is_lost_for_parallel_and_duplicate_generators():
    """3-D: two parallel generators span no facet (rank 1); their facets come from the other
    pairs; a zero generator changes nothing."""
    g = np.array([[1.0, 0.2, -0.3], [2.0, 0.4, -0.6], [0.0, 1.0, 0.5], [0.3, -0.2, 1.0],
                  [0.0, 0.0, 0.0], [0.0, 1.0, 0.5]]).T
    c = np.array([0.5, -1.0, 2.0])
    hrep = zonotope_hrep(c, g)
    rng = np.random.default_rng(0)
    for direction in rng.normal(size=(50, 3)):
        assert lp_support(hrep, direction) == pytest.approx(
            zonotope_support(c, g, direction), abs=1e-9)
    # facet count: unique directions of the 2-subsets of {g1 || g2, g3 == g6, g4}: 3 slabs
    assert hrep.num_slabs == 3


def test_counts_of_the_paper_sizes():
    """A generic zonotope in n dimensions with m generators has C(m, n-1) facet slabs."""
    rng = np.random.default_rng(1)
    G = rng.normal(size=(6, 9))
    assert zonotope_facet_normals(G).shape == (126, 6)  # C(9, 5)
    assert zonotope_facet_normals(rng.normal(size=(2, 7))).shape == (7, 2)
    assert zonotope_facet_normals(rng.normal(size=(1, 3))).shape == (1, 1)


def test_box_and_intersection_and_errors():
    box = box_hrep([-1.0, -2.0], [1.0, 2.0])
    assert box.num_slabs == 2 and box.num_halfspaces == 4
    assert box.contains(np.array([[0.5, 1.9], [1.1, 0.0]])).tolist() == [True, False]
    z = zonotope_hrep(np.zeros(2), np.array([[1.0, 1.0], [0.0, 1.0]]))
    both = z.intersect(box)
    assert both.num_slabs == z.num_slabs + 2
    assert both.violation(np.array([[1.9, 1.0]]))[0] > 0
    with pytest.raises(ValueError, match="rank"):
        zonotope_hrep(np.zeros(3), np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]))
    with pytest.raises(ValueError, match="NaN"):
        zonotope_hrep(np.zeros(2), np.array([[np.nan, 0.0], [0.0, 1.0]]))
    with pytest.raises(ValueError, match="unit"):
        HRep(np.array([[2.0, 0.0]]), np.zeros(1), np.ones(1))
    with pytest.raises(ValueError, match="interior"):
        z.gauge(np.zeros((1, 2)), np.array([5.0, 5.0]))


def test_safe_set_hrep_is_memoised_and_exact():
    from safegbpo.safesets import get_safe_set

    safe_set = get_safe_set("quadrotor")
    assert safe_set.hrep is safe_set.hrep
    c, G = (x[0] for x in safe_set.state.numpy())
    rng = np.random.default_rng(2)
    points = torch.as_tensor(c + rng.uniform(-1.05, 1.05, size=(30, G.shape[1])) @ G.T)
    np.testing.assert_allclose(safe_set.hrep_gauge(points), safe_set.gauge(points).numpy(),
                               rtol=1e-6, atol=1e-8)
    assert safe_set.action_hrep is not None and safe_set.action_hrep.dim == 2
