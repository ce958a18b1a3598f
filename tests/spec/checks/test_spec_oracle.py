"""The independent safe-action oracle and the audit's sampling."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from spec_test_helpers import make_env

from spec.checks.oracle import SafeActionOracle
from spec.checks.sampling import CATEGORIES, boundary_pairs, sample_actions, sample_safe_states


@pytest.fixture(scope="module", params=["pendulum", "quadrotor"])
def setup(request):
    env = make_env(request.param, num_envs=6)
    gen = torch.Generator().manual_seed(1)
    states = sample_safe_states(env, 6, gen)
    return env, states, SafeActionOracle(env, states)


def test_states_lie_in_the_safe_set_and_the_box(setup):
    env, states, _ = setup
    assert env.safe_set.state.contains(states.unsqueeze(0), tol=1e-9).all()
    low, high = env.model.state_bounds(dtype=states.dtype)
    assert ((states >= low) & (states <= high)).all()


def test_state_sampling_is_reproducible_and_validated(setup):
    env, _, _ = setup
    a = sample_safe_states(env, 5, torch.Generator().manual_seed(3))
    b = sample_safe_states(env, 5, torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    with pytest.raises(ValueError, match="num"):
        sample_safe_states(env, 0, torch.Generator())
    with pytest.raises(ValueError, match="vertex_fraction"):
        sample_safe_states(env, 2, torch.Generator(), vertex_fraction=1.5)


def test_margins_agree_with_the_envs_next_state_set(setup):
    """Eq 13-14 containment margins from the oracle equal Zonotope.containment_margin of the
    env's own next-state set (two independent constructions of the same LP)."""
    env, states, oracle = setup
    gen = torch.Generator().manual_seed(2)
    actions = sample_actions(oracle, "uniform", gen)
    env.reset(options={"state": states})
    nxt = env.next_state_set(actions)
    reference = nxt.containment_margin(env.safe_set.state).numpy()
    np.testing.assert_allclose(oracle.margins(actions).induced, reference, atol=1e-7)


def test_ray_distance_finds_the_boundary(setup):
    env, states, oracle = setup
    d = oracle.action_dim
    v = np.ones(d) / np.sqrt(d)
    for i in range(oracle.num_states):
        p0 = oracle.interior_point(i)
        assert oracle.is_safe(p0[None], tol=1e-7, index=np.array([i]))[0]
        t = oracle.ray_distance(i, p0, v)
        inside = p0 + (1 - 1e-4) * t * v
        outside = p0 + (1 + 1e-3) * t * v + 1e-6 * v
        m_in = oracle.margins(inside[None], np.array([i])).worst()[0]
        m_out = oracle.margins(outside[None], np.array([i])).worst()[0]
        assert m_in <= 1 + 1e-7 and m_out > 1, (i, t, m_in, m_out)


def test_support_points_are_extreme(setup):
    _, _, oracle = setup
    d = oracle.action_dim
    gen = torch.Generator().manual_seed(4)
    candidates = sample_actions(oracle, "uniform", gen).numpy()
    for i in range(oracle.num_states):
        direction = np.eye(d)[0]
        p = oracle.support_point(i, direction)
        assert oracle.is_safe(p[None], tol=1e-7, index=np.array([i]))[0]
        safe = oracle.is_safe(candidates[i:i + 1], index=np.array([i]))
        if safe[0]:
            assert candidates[i] @ direction <= p @ direction + 1e-7


def test_eq6_safety_implies_exact_safety(setup):
    """Eq 6 is sufficient: every Eq-6-certified action is in the exact induced set (Eq 7)."""
    _, _, oracle = setup
    gen = torch.Generator().manual_seed(5)
    for category in ("uniform", "boundary", "edges"):
        a = sample_actions(oracle, category, gen)
        idx = np.arange(oracle.num_states)
        certified = oracle.is_safe(a, tol=0.0, index=idx)
        exact = oracle.exact_induced_safe(a, idx, tol=1e-7)
        assert not (certified & ~exact).any(), category


def test_action_categories(setup):
    _, _, oracle = setup
    gen = torch.Generator().manual_seed(6)
    out = {c: sample_actions(oracle, c, gen) for c in CATEGORIES}
    assert (out["uniform"].abs() <= 1).all()
    assert (out["outside"].abs().amax(dim=1) > 1.0).all()
    worst = oracle.margins(out["boundary"]).worst()
    assert np.all(np.abs(worst - 1.0) < 0.05), worst
    inside, outside = boundary_pairs(oracle, gen, delta=1e-3)
    assert oracle.is_safe(inside, tol=1e-9).all()
    assert not oracle.is_safe(outside, tol=1e-9).any()
    with pytest.raises(ValueError, match="unknown action category"):
        sample_actions(oracle, "corners", gen)


def test_oracle_validates_input(setup):
    env, _, oracle = setup
    with pytest.raises(ValueError, match="shape"):
        SafeActionOracle(env, torch.zeros(3))
    with pytest.raises(ValueError, match="NaN"):
        SafeActionOracle(env, torch.full((1, env.model.state_dim), float("nan")))
    with pytest.raises(ValueError, match="shape"):
        oracle.margins(np.zeros((2, oracle.action_dim + 1)))
    nan_margin = oracle.margins(np.full((1, oracle.action_dim), np.nan))
    assert nan_margin.violation(1e-6)[0]


def test_p1_margins_share_no_code_path_with_the_safeguards(monkeypatch):
    """Issue 10 finding 5: the P1 numbers come from the nonlinear model at the vertices of W
    and the spec's own Eq 5 LP -- not from env.linearise, Eq 6, the H-representation or the
    LPs of safegbpo.sets.containment that the cvxpylayers backend certifies with."""
    import safegbpo.sets.containment as containment
    from safegbpo.safeguards import BoundaryProjection
    from spec.checks.oracle import SafeActionOracle

    env = make_env()
    states = env.state.clone()
    oracle = SafeActionOracle(env, states)  # (its sampling LPs use the linearisation)
    actions = torch.linspace(-1.5, 1.5, env.num_envs, dtype=torch.float64)[:, None]
    before = oracle.margins(actions).worst()

    def forbidden(*args, **kwargs):
        raise AssertionError("the P1 oracle used a code path of the safeguards")

    for name in ("gauge_lp", "induced_containment_margin", "containment_margin_lp",
                 "point_in_zonotope"):
        monkeypatch.setattr(containment, name, forbidden)
    monkeypatch.setattr(env, "linearise", forbidden)
    monkeypatch.setattr(type(env.safe_set), "hrep", property(forbidden))
    after = oracle.margins(actions).worst()
    np.testing.assert_array_equal(before, after)
    # and it agrees with the safeguard: projections are safe (<= 1), raw outside actions not
    monkeypatch.undo()
    safe = BoundaryProjection(env)(actions, states)
    assert np.all(oracle.margins(safe).worst() <= 1.0 + 1e-9)
    assert np.any(before > 1.0)
