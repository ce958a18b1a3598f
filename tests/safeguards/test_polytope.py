"""The exact safe action set as a polytope per state (SPEC §11): exact pruning, a noise box not
centred at 0, safe sets sticking out of ``S``, the margin."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from safegbpo.envs import make_vec
from safegbpo.safeguards import BoundaryProjection, make_safeguard
from safegbpo.safesets import SafeSet
from safegbpo.safesets.verify import default_reference_path

from .conftest import F64, make_env, random_actions, random_states


def _next_state_gauges(env, states, actions):
    """Largest exact gauge in ``S_s`` of the next states over the vertices of ``W`` (model
    dynamics; independent of the backend), and the largest excess over ``S``."""
    low, high = env._noise_low, env._noise_high
    low_S, high_S = env.model.state_bounds()
    worst, excess = np.zeros(len(states)), np.full(len(states), -np.inf)
    for signs in itertools.product((0, 1), repeat=low.shape[0]):
        w = torch.where(torch.tensor(signs, dtype=torch.bool), high, low).expand(len(states), -1)
        nxt = env.model.dynamics(states, actions, w).detach()
        worst = np.maximum(worst, env.safe_set.hrep_gauge(nxt))
        excess = np.maximum(excess, torch.maximum(nxt - high_S, low_S - nxt).amax(-1).numpy())
    return worst, excess


@pytest.fixture(scope="module")
def env(task):
    return make_env(task, num_envs=8, seed=2)


def test_pruned_rows_can_never_bind_inside_a(env):
    """Rows dropped by the pruning are satisfied at every corner of A (hence on all of A)."""
    bp = BoundaryProjection(env)
    states = random_states(env, 16, torch.Generator().manual_seed(1))
    data = bp.action_set_data(states)
    poly = bp.exact.polytope(data)
    ex, s = bp.exact, bp.structure
    F = ex.F
    f0, B = data.f0.numpy(), data.B.numpy()
    r = np.abs(F @ data.noise_generators[0].numpy()).sum(1)
    corners = np.array(list(itertools.product(*zip(s.box_low, s.box_high, strict=True))))
    for i in range(16):
        y = f0[i] + (corners - s.box_center) @ B[i].T  # next-state centres of the corners
        v = y @ F.T
        kept = set(poly.source[i][poly.valid[i]].tolist())
        K = F.shape[0]
        for k in range(K):
            if ex.num_fixed + k not in kept:
                assert (v[:, k] <= ex.upper[k] - r[k] + 1e-12).all()
            if ex.num_fixed + K + k not in kept:
                assert (v[:, k] >= ex.lower[k] + r[k] - 1e-12).all()


def test_outputs_are_exactly_safe_and_tight(env):
    """Projections of unsafe actions are safe for every noise vertex and touch the boundary
    (the exact set is not conservative)."""
    bp = BoundaryProjection(env)
    gen = torch.Generator().manual_seed(2)
    states = random_states(env, 24, gen)
    actions = random_actions(24, env.model.action_dim, gen, spread=3.0)
    safe = bp(actions, state=states)
    gauges, _ = _next_state_gauges(env, states, safe)
    assert gauges.max() <= 1.0 + 1e-9
    moved = (safe - actions).norm(dim=-1) > 1e-9
    in_box = (safe.abs() < 1.0 - 1e-9).all(-1)
    # where neither the box nor U_s binds, the induced constraint must be tight
    violation = bp.exact.violation(safe, bp.action_set_data(states))
    assert np.all(violation <= 1e-12)
    assert np.all(np.abs(violation[moved.numpy()]) <= 1e-9)
    assert bool((moved & in_box).any())


def test_margin_keeps_outputs_inside():
    env = make_env("quadrotor", num_envs=8, seed=2)
    bp = make_safeguard("bp", env, margin=1e-3)
    gen = torch.Generator().manual_seed(3)
    states = random_states(env, 16, gen)
    safe = bp(random_actions(16, 2, gen, spread=3.0), state=states)
    assert bp.fallbacks == 0
    assert bp.exact.violation(safe, bp.action_set_data(states)).max() < -5e-4


def test_noise_box_not_centred_at_zero():
    """W = [-0.05, 0.25] (like the energy system's W = [-10, 40]): the linearisation is taken
    at w0 = 0.1 and the Pontryagin difference uses W's half-widths."""
    env = make_env("pendulum", num_envs=8, seed=4)
    env._noise_low = torch.tensor([-0.05], dtype=F64)
    env._noise_high = torch.tensor([0.25], dtype=F64)
    env._noise_centre = 0.5 * (env._noise_low + env._noise_high)
    for name, options in (("bp", {}), ("rm", {}), ("rm", {"centre": "orthogonal"})):
        safeguard = make_safeguard(name, env, **options)
        gen = torch.Generator().manual_seed(5)
        states = random_states(env, 32, gen)
        safe = safeguard(random_actions(32, 1, gen, spread=3.0), state=states)
        gauges, _ = _next_state_gauges(env, states, safe)
        assert gauges.max() <= 1.0 + 1e-9, name
        assert safeguard.fallbacks == 0


@pytest.mark.skipif(default_reference_path("pendulum") is None,
                    reason="reference data (../shared/reference) not available")
def test_safe_set_sticking_out_of_S_adds_the_rows_of_S():
    """The reference pendulum set reaches |theta_dot| ~ 11.6 > 8: the exact set keeps the
    next state in S ⊖ W_s too (the env would clamp it)."""
    safe_set = SafeSet.load(default_reference_path("pendulum"))
    env = make_vec("pendulum", 8, seed=0, safe_set=safe_set)
    env.reset(seed=0)
    bp = BoundaryProjection(env)
    assert bp.exact.state_box_rows == 1
    gen = torch.Generator().manual_seed(6)
    c, G = safe_set.state.center[0], safe_set.state.generators[0]
    low, high = env.model.state_bounds()
    b = torch.rand(400, G.shape[1], generator=gen, dtype=F64) * 2 - 1
    states = (c + b @ G.T)
    states = states[((states >= low) & (states <= high)).all(-1)][:32]
    actions = random_actions(states.shape[0], 1, gen, spread=3.0)
    safe = bp(actions, state=states)
    ok = ~bp.last_fallback
    gauges, excess = _next_state_gauges(env, states[ok], safe[ok])
    assert gauges.max() <= 1.0 + 1e-9 and excess.max() <= 1e-9
