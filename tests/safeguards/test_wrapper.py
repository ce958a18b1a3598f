"""SafeguardActionWrapper: the safeguard is really applied (the reference's wrapper silently
returned the raw action)."""

from __future__ import annotations

import copy

import gymnasium
import numpy as np
import pytest
import torch

from safegbpo.envs import make_vec
from safegbpo.safeguards import SafeguardActionWrapper, make_safeguard

from .conftest import F64, TOL, independent_violation, make_env


@pytest.fixture(scope="module")
def env(task):
    return make_env(task, num_envs=4, seed=3)


@pytest.mark.parametrize("name", ["bp", "rm"])
def test_wrapper_steps_the_env_with_the_safe_action(env, name):
    safeguard = make_safeguard(name, env)
    wrapped = SafeguardActionWrapper(env, safeguard)
    assert isinstance(wrapped, gymnasium.vector.VectorActionWrapper)
    wrapped.reset(seed=4)
    d = env.model.action_dim
    unsafe = torch.full((env.num_envs, d), 1.7, dtype=F64)  # outside A: must be changed
    unsafe[0] = -1.7
    for _ in range(3):
        before = env.state.clone()
        twin = copy.deepcopy(env)  # the same env, stepped directly with the safe action below
        obs, reward, terminated, truncated, info = wrapped.step(unsafe)
        safe = info["safe_action"]
        assert torch.equal(info["unsafe_action"], unsafe)
        assert torch.equal(safe, safeguard.last_safe_action)
        assert bool(info["intervened"].all())  # +-1.7 lie outside A
        assert info["fallback"].tolist() == [False] * env.num_envs
        # the realised transition is the model's step with the *safe* action and the noise
        expected = env.model.step(before, safe, info["noise"])
        torch.testing.assert_close(env.state, expected)
        raw = env.model.step(before, unsafe, info["noise"])
        assert float((raw - env.state).abs().max()) > 1e-3
        twin_obs, twin_reward, *_, twin_info = twin.step(safe)
        torch.testing.assert_close(info["noise"], twin_info["noise"])
        torch.testing.assert_close(twin.state, env.state)
        torch.testing.assert_close(obs, twin_obs)  # (the energy task's obs needs its hour)
        assert independent_violation(env, before, safe).max() <= TOL
        torch.testing.assert_close(reward, twin_reward)
        if not env.task_spec.env_options:  # no exogenous data: the model's formulas directly
            torch.testing.assert_close(obs, env.model.observe(env.state, env.goal))
            torch.testing.assert_close(reward, env.model.reward(env.state, safe, env.goal))


def test_wrapper_keeps_the_graph_and_forwards_env_attributes(env):
    wrapped = SafeguardActionWrapper(env, make_safeguard("rm", env, mapping="hyperbolic"))
    wrapped.reset(seed=5)
    action = torch.zeros(env.num_envs, env.model.action_dim, dtype=F64, requires_grad=True)
    _, reward, *_ = wrapped.step(action + 0.3)
    reward.sum().backward()
    assert bool(torch.isfinite(action.grad).all()) and float(action.grad.abs().sum()) > 0
    assert wrapped.state is env.state and wrapped.num_envs == env.num_envs
    wrapped.cut_graph()
    assert not env.state.requires_grad
    with pytest.raises(AttributeError):
        _ = wrapped.no_such_attribute


def test_wrapper_accepts_numpy_actions(env):
    wrapped = SafeguardActionWrapper(env, make_safeguard("bp", env))
    wrapped.reset(seed=6)
    actions = np.zeros((env.num_envs, env.model.action_dim))
    _, _, _, _, info = wrapped.step(actions)
    assert isinstance(info["unsafe_action"], torch.Tensor)
    assert info["safe_action"].shape == actions.shape


def test_wrapper_rejects_a_safeguard_of_another_env(env, task):
    other = make_vec(task, env.num_envs, seed=7, safe_set=env.safe_set)
    with pytest.raises(ValueError, match="different environment"):
        SafeguardActionWrapper(env, make_safeguard("bp", other))


def _constant_in_the_action(safeguard, action, state) -> bool:
    """Whether the safeguard's output has a zero Jacobian w.r.t. the action."""
    a = action.detach().clone().requires_grad_()
    out = safeguard(a, state=state.detach())
    for j in range(out.shape[1]):
        (grad,) = torch.autograd.grad(out[:, j].sum(), a, retain_graph=True,
                                      allow_unused=True)
        if grad is not None and float(grad.abs().sum()) > 0:
            return False
    return True


@pytest.mark.parametrize("scale", [0.5, 1.2])
@pytest.mark.parametrize("name", ["bp", "rm"])
def test_backpropagation_through_time_across_safeguarded_steps(env, name, scale):
    """SHAC-style: the loss of a short rollout reaches the policy parameters through the
    safeguard's dependence on the action *and* on the (differentiable) state.

    With ``scale = 1.2`` the actions are saturated far outside ``A``; on the energy task the
    boundary projection then sends every action of the rollout to a *vertex* of its safe
    polytope (two active rows, both state independent or pinning the action to the box), where
    the exact projection is locally constant: the safe actions, hence the states, do not depend
    on the policy and no gradient reaches it, correctly.  That case is asserted as such (zero
    action Jacobians at every step, zero gradient); otherwise the gradient must be nonzero,
    and with ``scale = 0.5`` the safeguard must not be constant."""
    safeguard = make_safeguard(name, env)
    wrapped = SafeguardActionWrapper(env, safeguard)
    obs, _ = wrapped.reset(seed=8)
    policy = torch.nn.Linear(obs.shape[-1], env.model.action_dim, dtype=F64)
    generator = torch.Generator().manual_seed(9)
    with torch.no_grad():
        for p in policy.parameters():
            p.copy_((torch.rand(p.shape, generator=generator, dtype=F64) * 2 - 1)
                    / obs.shape[-1] ** 0.5)
    total = torch.zeros((), dtype=F64)
    constant = []
    for _ in range(3):
        action = torch.tanh(policy(obs)) * scale
        constant.append(_constant_in_the_action(safeguard, action, env.state))
        obs, reward, *_ = wrapped.step(action)
        total = total + reward.sum()
    total.backward()
    grads = [p.grad for p in policy.parameters()]
    assert all(g is not None and bool(torch.isfinite(g).all()) for g in grads)
    size = sum(float(g.abs().sum()) for g in grads)
    if all(constant):
        assert scale > 1.0 and name == "bp", "only saturated projections may be constant"
        assert size == 0.0
    else:
        assert size > 0
    wrapped.cut_graph()
