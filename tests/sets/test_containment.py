"""Tests of :mod:`safegbpo.sets.containment`: numpy LPs (Eq 5, Eq 6) and cvxpy builders."""

from __future__ import annotations

import math

import cvxpy as cp
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from safegbpo.sets import Zonotope
from safegbpo.sets.containment import (
    containment_margin_lp,
    gauge_factors_lp,
    gauge_lp,
    induced_containment_margin,
    min_inf_norm_factors,
    point_containment_constraints,
    point_in_intersection,
    point_in_zonotope,
    zonotope_containment_constraints,
)

SOLVER = cp.CLARABEL


def closed_form_margin(c1, G1, c2, G2):
    """Eq-6 margin when G2 is square and invertible (Gamma, beta are unique)."""
    X = np.linalg.solve(G2, np.hstack([G1, (c2 - c1)[:, None]]))
    return np.abs(X).sum(axis=1).max()


# ------------------------------------------------------------------------------------------
# numpy LPs
# ------------------------------------------------------------------------------------------
class TestGaugeLP:
    def test_box_gauge_is_the_scaled_inf_norm(self):
        h = np.array([0.5, 2.0, 1.0])
        v = np.array([0.25, -3.0, 0.5])
        assert gauge_lp(np.diag(h), v) == pytest.approx(np.max(np.abs(v / h)))

    def test_redundant_generators(self):
        # G = [e1, e2, e1 + e2]: v = (1, 1) is reached with b = (1/2, 1/2, 1/2) -> 0.5
        G = np.array([[1.0, 0.0, 1.0], [0.0, 1.0, 1.0]])
        assert gauge_lp(G, np.array([1.0, 1.0])) == pytest.approx(0.5)
        assert gauge_lp(G, np.array([2.0, 0.0])) == pytest.approx(1.0)  # b = (1, -1, 1)

    def test_infeasible_and_empty_generators(self):
        G = np.array([[1.0], [1.0]])
        assert gauge_lp(G, np.array([0.5, 0.5])) == pytest.approx(0.5)
        assert math.isinf(gauge_lp(G, np.array([0.5, 0.4])))
        assert gauge_lp(np.zeros((2, 0)), np.zeros(2)) == 0.0
        assert math.isinf(gauge_lp(np.zeros((2, 0)), np.array([0.0, 1e-9])))

    def test_minimising_factor(self):
        rng = np.random.default_rng(7)
        G = rng.normal(size=(3, 6))
        v = rng.normal(size=3)
        gauge, b = gauge_factors_lp(G, v)
        assert gauge == pytest.approx(gauge_lp(G, v))
        np.testing.assert_allclose(G @ b, v, atol=1e-8)
        assert np.abs(b).max() == pytest.approx(gauge, abs=1e-9)
        assert gauge_factors_lp(G[:, :1], v) == (float("inf"), None)

    def test_input_validation(self):
        with pytest.raises(ValueError, match=r"v: expected shape \(2,\)"):
            gauge_lp(np.eye(2), np.zeros(3))
        with pytest.raises(ValueError, match="generators contains NaN/inf"):
            gauge_lp(np.array([[np.nan, 0.0], [0.0, 1.0]]), np.zeros(2))
        with pytest.raises(ValueError, match="generators: expected an array with 2"):
            gauge_lp(np.zeros(2), np.zeros(2))

    def test_point_membership_helpers(self):
        c, G = np.array([1.0, 1.0]), np.array([[1.0, 0.0, 1.0], [0.0, 1.0, 1.0]])
        assert point_in_zonotope([3.0, 3.0], c, G)  # vertex c + G 1
        assert not point_in_zonotope([3.0, 3.0 + 1e-6], c, G)
        assert point_in_zonotope(torch.tensor([1.0, 1.0]), c, G)
        box = (np.zeros(2), np.eye(2))
        assert point_in_intersection([0.9, 0.9], [(c, G), box])
        assert not point_in_intersection([2.5, 2.5], [(c, G), box])
        with pytest.raises(ValueError, match="empty list"):
            point_in_intersection([0.0, 0.0], [])
        with pytest.raises(ValueError, match="point: expected shape"):
            point_in_zonotope([0.0, 0.0, 0.0], c, G)


class TestContainmentMarginLP:
    def test_boxes_have_the_exact_margin(self):
        c1, h1 = np.array([0.5, -1.0]), np.array([0.2, 1.0])
        c2, h2 = np.array([0.0, 0.0]), np.array([1.0, 2.5])
        expected = np.max((h1 + np.abs(c1 - c2)) / h2)
        assert containment_margin_lp(c1, np.diag(h1), c2, np.diag(h2)) == pytest.approx(expected)

    def test_square_outer_generators_match_the_closed_form(self):
        rng = np.random.default_rng(0)
        for _ in range(5):
            c1, c2 = rng.normal(size=3), rng.normal(size=3)
            G1, G2 = rng.normal(size=(3, 5)), rng.normal(size=(3, 3))
            assert containment_margin_lp(c1, G1, c2, G2) == pytest.approx(
                closed_form_margin(c1, G1, c2, G2), rel=1e-7)

    def test_identity_scaling_and_translation(self):
        rng = np.random.default_rng(1)
        c, G = rng.normal(size=3), rng.normal(size=(3, 7))
        assert containment_margin_lp(c, G, c, G) == pytest.approx(1.0, abs=1e-8)
        assert containment_margin_lp(c, 0.9 * G, c, G) == pytest.approx(0.9, abs=1e-8)
        assert containment_margin_lp(c, 1.1 * G, c, G) > 1.0 + 1e-6
        assert containment_margin_lp(c + np.array([0.2, 0, 0]), G, c, G) > 1.0 + 1e-6

    def test_certified_inner_set_is_really_contained(self):
        rng = np.random.default_rng(2)
        G2 = rng.normal(size=(2, 6))
        c2 = rng.normal(size=2)
        G1 = 0.3 * G2 @ rng.uniform(-1, 1, size=(6, 3))
        c1 = c2 + 0.1 * G2 @ rng.uniform(-1, 1, size=6)
        margin = containment_margin_lp(c1, G1, c2, G2)
        assert margin <= 1.0
        signs = np.array(np.meshgrid(*[[-1.0, 1.0]] * 3)).reshape(3, -1).T
        for b in signs:  # every vertex of the inner zonotope lies in the outer one
            assert gauge_lp(G2, c1 + G1 @ b - c2) <= 1.0 + 1e-9

    def test_degenerate_cases(self):
        # inner generator direction outside range(outer): infeasible -> inf
        assert math.isinf(containment_margin_lp(np.zeros(2), np.array([[0.0], [1.0]]),
                                                np.zeros(2), np.array([[1.0], [0.0]])))
        # outer is a point
        assert containment_margin_lp(np.ones(2), np.zeros((2, 1)), np.ones(2),
                                     np.zeros((2, 0))) == 0.0
        assert math.isinf(containment_margin_lp(np.ones(2), np.zeros((2, 0)), np.zeros(2),
                                                np.zeros((2, 0))))
        # inner is a point (m1 = 0): margin = gauge of the centre offset
        G2 = np.array([[2.0, 0.0], [0.0, 4.0]])
        assert containment_margin_lp(np.array([1.0, 1.0]), np.zeros((2, 0)), np.zeros(2),
                                     G2) == pytest.approx(0.5)
        with pytest.raises(ValueError, match="dimension mismatch"):
            containment_margin_lp(np.zeros(2), np.eye(2), np.zeros(3), np.eye(3))


class TestInducedContainmentMargin:
    @pytest.fixture
    def system(self):
        rng = np.random.default_rng(3)
        n, d, n_w, N = 3, 2, 2, 4
        return dict(
            f0=0.1 * rng.normal(size=(N, n)), B=0.3 * rng.normal(size=(N, n, d)),
            E=rng.normal(size=(N, n, n_w)), W_G=np.diag([0.05, 0.02]),
            a=rng.uniform(-1, 1, size=(N, d)), S_c=np.zeros(n),
            S_G=np.hstack([np.eye(n), 0.5 * rng.normal(size=(n, 2))]))

    def test_matches_explicit_next_state_zonotope(self, system):
        s = system
        margins = induced_containment_margin(**s)
        assert margins.shape == (4,)
        for i in range(4):
            nxt = Zonotope(s["f0"][i] + s["B"][i] @ s["a"][i], s["E"][i] @ s["W_G"])
            expected = float(nxt.containment_margin(Zonotope(s["S_c"], s["S_G"])))
            assert margins[i] == pytest.approx(expected)
            single = induced_containment_margin(
                s["f0"][i], s["B"][i], s["E"][i], s["W_G"], s["a"][i], s["S_c"], s["S_G"])
            assert isinstance(single, float) and single == pytest.approx(margins[i])

    def test_action_centre_and_torch_inputs(self, system):
        s = {k: torch.as_tensor(v) for k, v in system.items()}
        a0 = torch.tensor([0.2, -0.1], dtype=torch.float64)
        shifted = induced_containment_margin(**{**s, "a": s["a"] + a0}, a0=a0)
        np.testing.assert_allclose(shifted, induced_containment_margin(**system), rtol=1e-7)

    def test_shape_errors(self, system):
        with pytest.raises(ValueError, match="inconsistent shapes"):
            induced_containment_margin(**{**system, "a": system["a"][:2]})
        with pytest.raises(ValueError, match="do not compose"):
            induced_containment_margin(**{**system, "W_G": np.eye(3)})
        with pytest.raises(ValueError, match="f0 contains NaN/inf"):
            bad = system["f0"].copy()
            bad[0, 0] = np.inf
            induced_containment_margin(**{**system, "f0": bad})


# ------------------------------------------------------------------------------------------
# cvxpy builders
# ------------------------------------------------------------------------------------------
class TestPointContainmentConstraints:
    def test_ray_length_equals_inverse_gauge_with_dpp_parameters(self):
        rng = np.random.default_rng(4)
        n, m = 3, 6
        c_par, G_par, v_par = cp.Parameter(n), cp.Parameter((n, m)), cp.Parameter(n)
        t = cp.Variable()
        constraints, b = point_containment_constraints(c_par + t * v_par, c_par, G_par)
        assert b.shape == (m,)
        problem = cp.Problem(cp.Maximize(t), constraints)
        assert problem.is_dpp()
        for _ in range(3):  # re-solve with new parameter values (DPP cache)
            c_par.value, G_par.value = rng.normal(size=n), rng.normal(size=(n, m))
            v_par.value = rng.normal(size=n)
            problem.solve(solver=SOLVER)
            assert t.value == pytest.approx(1.0 / gauge_lp(G_par.value, v_par.value), rel=1e-6)
            assert np.abs(b.value).max() <= 1 + 1e-7

    def test_projection_lands_in_the_zonotope(self):
        c, G = np.array([0.0, 0.0]), np.array([[1.0, 0.5], [0.0, 1.0]])
        target = cp.Parameter(2)
        x = cp.Variable(2)
        constraints, _ = point_containment_constraints(x, c, G)
        problem = cp.Problem(cp.Minimize(cp.sum_squares(x - target)), constraints)
        assert problem.is_dpp()
        target.value = np.array([3.0, 0.2])
        problem.solve(solver=SOLVER)
        assert point_in_zonotope(x.value, c, G, tol=1e-6)
        assert not point_in_zonotope(target.value, c, G)
        target.value = np.array([0.1, 0.2])  # already inside: projection is the identity
        problem.solve(solver=SOLVER)
        np.testing.assert_allclose(x.value, target.value, atol=1e-6)

    def test_no_generators_and_shape_errors(self):
        x = cp.Variable(2)
        constraints, b = point_containment_constraints(x, np.ones(2), np.zeros((2, 0)))
        assert b is None
        cp.Problem(cp.Minimize(cp.sum(x)), constraints).solve(solver=SOLVER)
        np.testing.assert_allclose(x.value, np.ones(2), atol=1e-7)
        with pytest.raises(ValueError, match=r"point: expected shape \(2,\)"):
            point_containment_constraints(cp.Variable(3), np.zeros(2), np.eye(2))
        with pytest.raises(ValueError, match="generators: expected shape"):
            point_containment_constraints(x, np.zeros(2), np.zeros(2))


class TestZonotopeContainmentConstraints:
    def test_minimal_bound_equals_the_numpy_margin(self):
        rng = np.random.default_rng(5)
        for m1, m2 in ((3, 5), (0, 4), (4, 3)):
            c1, c2 = 0.2 * rng.normal(size=3), rng.normal(size=3)
            G1, G2 = 0.5 * rng.normal(size=(3, m1)), rng.normal(size=(3, m2))
            t = cp.Variable()
            constraints, gamma, beta = zonotope_containment_constraints(c1, G1, c2, G2, bound=t)
            assert (gamma is None) == (m1 == 0) and beta.shape == (m2,)
            cp.Problem(cp.Minimize(t), constraints).solve(solver=SOLVER)
            assert t.value == pytest.approx(containment_margin_lp(c1, G1, c2, G2), rel=1e-6,
                                            abs=1e-7)

    def test_vector_bound_gives_scaled_certificate(self):
        # RCI form of SPEC §7: rows of Gamma' bounded by scales s (here fixed)
        c, G = np.zeros(2), np.eye(2)
        s = np.array([0.5, 2.0])
        inner_G = np.diag([0.4, 1.9])
        constraints, _, _ = zonotope_containment_constraints(c, inner_G, c, G, bound=s)
        problem = cp.Problem(cp.Minimize(0), constraints)
        problem.solve(solver=SOLVER)
        assert problem.status == cp.OPTIMAL
        constraints, _, _ = zonotope_containment_constraints(c, np.diag([0.6, 1.9]), c, G,
                                                             bound=s)
        problem = cp.Problem(cp.Minimize(0), constraints)
        problem.solve(solver=SOLVER)
        assert problem.status == cp.INFEASIBLE

    def test_induced_projection_problem_is_dpp_and_safe(self):
        """BP-like QP: project a reference action onto { a in A : S'(a) ⊆ S_s } (Eq 7, 13-14)."""
        rng = np.random.default_rng(6)
        n, d, n_w = 3, 2, 2
        S_c, S_G = np.zeros(n), np.hstack([np.eye(n), 0.3 * rng.normal(size=(n, 2))])
        W_G = np.diag([0.05, 0.05])
        f0, B, EG = cp.Parameter(n), cp.Parameter((n, d)), cp.Parameter((n, n_w))
        a_ref, a = cp.Parameter(d), cp.Variable(d)
        constraints, gamma, beta = zonotope_containment_constraints(f0 + B @ a, EG, S_c, S_G)
        problem = cp.Problem(cp.Minimize(cp.sum_squares(a - a_ref)),
                             constraints + [a <= 1, a >= -1])
        assert problem.is_dpp()
        assert gamma.shape == (S_G.shape[1], n_w)
        for _ in range(3):
            f0.value = 0.2 * rng.normal(size=n)
            B.value = rng.normal(size=(n, d))
            E = rng.normal(size=(n, n_w))
            EG.value = E @ W_G
            a_ref.value = rng.uniform(-3, 3, size=d)
            problem.solve(solver=SOLVER)
            assert problem.status == cp.OPTIMAL
            margin = induced_containment_margin(f0.value, B.value, E, W_G, a.value, S_c, S_G)
            assert margin <= 1.0 + 1e-6
        # a reference action that is already safe is returned unchanged
        a_ref.value = np.zeros(d)
        f0.value = np.zeros(n)
        problem.solve(solver=SOLVER)
        np.testing.assert_allclose(a.value, np.zeros(d), atol=1e-6)

    def test_cvxpylayer_from_the_builders_outputs_safe_actions(self):
        """The builders plug into a cvxpylayers BP layer; its outputs pass the independent LP."""
        from cvxpylayers.torch import CvxpyLayer

        rng = np.random.default_rng(8)
        n, d, n_w, N = 3, 2, 2, 4
        S_c, S_G = np.zeros(n), np.hstack([np.eye(n), 0.3 * rng.normal(size=(n, 2))])
        W_G = np.diag([0.05, 0.05])
        f0, B, EG = cp.Parameter(n), cp.Parameter((n, d)), cp.Parameter((n, n_w))
        a_ref, a = cp.Parameter(d), cp.Variable(d)
        constraints, _, _ = zonotope_containment_constraints(f0 + B @ a, EG, S_c, S_G)
        problem = cp.Problem(cp.Minimize(cp.sum_squares(a - a_ref)),
                             constraints + [a <= 1, a >= -1])
        layer = CvxpyLayer(problem, parameters=[a_ref, f0, B, EG], variables=[a])
        E = torch.as_tensor(rng.normal(size=(N, n, n_w)))
        actions = torch.tensor(rng.uniform(-3, 3, size=(N, d)), requires_grad=True)
        f0_val = torch.as_tensor(0.2 * rng.normal(size=(N, n)))
        B_val = torch.as_tensor(rng.normal(size=(N, n, d)))
        (safe,) = layer(actions, f0_val, B_val, E @ torch.as_tensor(W_G))
        safe.sum().backward()
        assert torch.isfinite(actions.grad).all()
        margins = induced_containment_margin(f0_val, B_val, E, W_G, safe.detach(), S_c, S_G)
        assert (margins <= 1.0 + 1e-6).all()

    def test_point_outer_and_shape_errors(self):
        x = cp.Variable(2)
        constraints, gamma, beta = zonotope_containment_constraints(x, np.zeros((2, 1)),
                                                                    np.ones(2), np.zeros((2, 0)))
        assert gamma is None and beta is None
        cp.Problem(cp.Minimize(cp.sum(x)), constraints).solve(solver=SOLVER)
        np.testing.assert_allclose(x.value, np.ones(2), atol=1e-7)
        with pytest.raises(ValueError, match="dimension mismatch"):
            zonotope_containment_constraints(np.zeros(2), np.eye(2), np.zeros(3), np.eye(3))
        with pytest.raises(ValueError, match=r"inner_center: expected shape \(2,\)"):
            zonotope_containment_constraints(np.zeros(3), np.eye(2), np.zeros(2), np.eye(2))
        with pytest.raises(ValueError, match="must be matrices"):
            zonotope_containment_constraints(np.zeros(2), np.zeros(2), np.zeros(2), np.eye(2))


def test_min_inf_norm_factors_rank_deficient_generators_give_inf_outside_the_span():
    G = np.array([[1.0, 2.0], [0.0, 0.0]])
    b = min_inf_norm_factors(G, np.array([[0.5, 0.0], [0.5, 0.1]]))
    assert np.isfinite(b[0]).all() and np.isinf(b[1]).all()


@pytest.mark.property
@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), m=st.integers(3, 7), n=st.integers(1, 3))
def test_min_inf_norm_factors_are_optimal_and_exact(seed, m, n):
    rng = np.random.default_rng(seed)
    G = rng.normal(size=(n, m))
    b_true = rng.uniform(-1, 1, size=(5, m))
    V = b_true @ G.T
    b = min_inf_norm_factors(G, V)
    np.testing.assert_allclose(b @ G.T, V, atol=1e-6)
    assert np.all(np.abs(b).max(axis=1) <= np.abs(b_true).max(axis=1) + 1e-7)
