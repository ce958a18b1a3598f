"""Lemmas 1-3 hold for the project's safeguards, and the checks fail for wrong Jacobians."""

from __future__ import annotations

import pytest
import torch
from spec_test_helpers import make_env

import safegbpo.safeguards as safeguards
from spec.checks import lemmas


@pytest.mark.gradcheck
def test_lemma1_holds_for_boundary_projection():
    result = lemmas.check_lemma1(num_sets=4, actions_per_set=12, seed=1)
    assert result.holds, result.details
    m = result.measured
    assert m["inside_samples"] > 0 and m["outside_samples"] > 0
    assert max(m["outside_rank_minus_d"]) <= -1


@pytest.mark.gradcheck
def test_lemma1_rejects_a_full_rank_projection(monkeypatch):
    """A 'projection' whose Jacobian is the identity everywhere (straight-through) breaks the
    lemma outside the zonotope."""
    original = safeguards.boundary_projection

    def straight_through(action, center, generators):
        out = original(action.detach(), center, generators)
        return out + action - action.detach()

    monkeypatch.setattr(safeguards, "boundary_projection", straight_through)
    result = lemmas.check_lemma1(num_sets=2, actions_per_set=8, seed=1)
    assert result.holds is False and "G_I (G_I^T G_I)^+ G_I^T" in result.details
    assert "full rank" in result.details


@pytest.mark.gradcheck
def test_lemma1_tests_the_interior_derivative_by_finite_differences(monkeypatch):
    """Issue 10 finding 6: 'J = I inside' held by construction (interior actions are returned
    unchanged, so autograd gives I whatever the map does nearby).  A map that wiggles interior
    points by 1e-5 (values pass every 1e-3 comparison) with derivative 0.1, while reporting the
    identity Jacobian, now fails on its finite differences."""
    original = safeguards.boundary_projection

    def wiggles_inside(action, center, generators):
        out = original(action, center, generators)
        inside = (out.detach() - action.detach()).norm(dim=-1, keepdim=True) == 0
        wiggle = 1e-5 * torch.sin(out.detach() / 1e-4)
        return out + torch.where(inside, wiggle, torch.zeros_like(wiggle))

    monkeypatch.setattr(safeguards, "boundary_projection", wiggles_inside)
    result = lemmas.check_lemma1(num_sets=2, actions_per_set=8, seed=1)
    assert result.holds is False, result.details
    assert "finite differences inside" in result.details
    m = result.measured
    assert m["max_error_inside_vs_identity"] <= lemmas.LEMMA_TOL  # autograd alone: fooled
    assert m["max_projection_error_vs_bvls"] <= lemmas.LEMMA_TOL  # values alone: fooled


def test_lemma2_holds_on_both_tasks():
    for task in ("pendulum", "quadrotor"):
        env = make_env(task, num_envs=4)
        result = lemmas.check_lemma2(env, num_states=4, candidates=16, pairs=12, seed=2)
        assert result.holds, (task, result.details)
        assert result.measured["eq12_premise_max_error"] < 1e-9
        assert result.measured["combinations_tested"] > 0


def test_lemma2_detects_a_non_convex_set(monkeypatch):
    """An oracle whose 'exact' membership is a non-convex set (an annulus) must fail Lemma 2."""
    env = make_env("quadrotor", num_envs=4)

    def annulus(self, actions, index, tol=1e-9):
        r = torch.as_tensor(actions).norm(dim=-1).numpy()
        return (r > 0.5) & (r < 1.0)

    monkeypatch.setattr(lemmas.SafeActionOracle, "exact_induced_safe", annulus)
    result = lemmas.check_lemma2(env, num_states=2, candidates=32, pairs=16, seed=2)
    assert result.holds is False and "unsafe" in result.details


@pytest.mark.gradcheck
def test_lemma3_holds_for_both_mappings():
    result = lemmas.check_lemma3(num_sets=2, actions_per_set=8, seed=3)
    assert result.holds, result.details
    assert result.measured["ball_max_error"] < 1e-8
    assert result.measured["sigma_min_min"] > 0


@pytest.mark.gradcheck
def test_lemma3_rejects_a_map_with_the_wrong_radial_derivative(monkeypatch):
    """A mask that scales by (lam_S/lam_A)^2 along the ray has the wrong eigenvalues."""
    original = safeguards.ray_mask_map

    def squared(action, centre, lam_S, lam_A, mapping="linear"):
        once = original(action, centre, lam_S, lam_A, mapping)
        return original(once, centre, lam_S, lam_A, mapping)

    monkeypatch.setattr(safeguards, "ray_mask_map", squared)
    result = lemmas.check_lemma3(num_sets=1, actions_per_set=4, seed=3)
    assert result.holds is False and "balls" in result.details


def test_radial_formulas_match_spec():
    r, s, a = torch.tensor(0.3), torch.tensor(0.5), torch.tensor(0.9)
    assert lemmas.radial_derivative(r, s, a, "linear") == pytest.approx(0.5 / 0.9)
    h = lambda x: s * torch.tanh(x / s) / torch.tanh(a / s)  # noqa: E731 - SPEC Eq 64
    x = r.clone().requires_grad_(True)
    (dh,) = torch.autograd.grad(h(x), x)
    assert float(lemmas.radial_derivative(r, s, a, "hyperbolic")) == pytest.approx(float(dh))
    assert float(lemmas.radial_ratio(r, s, a, "hyperbolic")) == pytest.approx(float(h(r) / r))
