"""Differentiability of rollouts in the actions (SHAC's analytic gradients) and cut_graph."""

from __future__ import annotations

import pytest
import torch

from safegbpo.envs import make_vec
from safegbpo.safesets import SafeSet
from safegbpo.sets import Zonotope

START = {
    "pendulum": [[0.2, -0.4], [-0.3, 0.5]],
    "quadrotor": [[0.1, -0.2, 0.05, 0.2, -0.1, 0.3], [-0.3, 0.1, -0.1, -0.2, 0.3, -0.5]],
}


def local_safe_set(task: str) -> SafeSet:
    """A box well inside ``S`` (not a certified RCI set: enough for env tests)."""
    half = {"pendulum": [0.5, 1.0], "quadrotor": [0.5, 0.5, 0.1, 0.2, 0.2, 0.3]}[task]
    n = len(half)
    return SafeSet(task=task, state=Zonotope(torch.zeros(n), torch.diag(torch.tensor(half))),
                   action=None, source="test")


def rollout_return(env, actions: torch.Tensor, seed: int = 5) -> torch.Tensor:
    """Sum of rewards of ``actions (k, N, d)`` from fixed states with a fixed noise sequence."""
    start = torch.tensor(START[env.task], dtype=torch.float64)
    env.reset(seed=seed, options={"state": start})
    total = torch.zeros((), dtype=torch.float64)
    for action in actions:
        _, reward, *_ = env.step(action)
        total = total + reward.sum()
    return total


@pytest.mark.gradcheck
@pytest.mark.parametrize("task, k", [("pendulum", 8), ("quadrotor", 6)])
def test_return_gradient_matches_central_differences(task, k):
    """Autograd through ``k`` steps (dynamics + reward) == central finite differences.

    Small actions keep the states inside ``S`` (no active clamp, no angle wrap), where the
    rollout is smooth; the noise is identical in every rollout (same seed).
    """
    env = make_vec(task, 2, seed=0, safe_set=local_safe_set(task))
    d = env.model.action_dim
    gen = torch.Generator().manual_seed(1)
    actions = 0.1 * (2 * torch.rand((k, 2, d), generator=gen, dtype=torch.float64) - 1)
    actions.requires_grad_(True)
    (grad,) = torch.autograd.grad(rollout_return(env, actions), actions)
    assert bool((grad.abs() > 0).all())
    h = 1e-6
    numeric = torch.zeros_like(grad)
    with torch.no_grad():
        flat = actions.detach().clone().reshape(-1)
        for i in range(flat.numel()):
            plus, minus = flat.clone(), flat.clone()
            plus[i] += h
            minus[i] -= h
            numeric.view(-1)[i] = (rollout_return(env, plus.view_as(actions))
                                   - rollout_return(env, minus.view_as(actions))) / (2 * h)
    torch.testing.assert_close(grad, numeric, rtol=1e-6, atol=1e-7)


@pytest.mark.gradcheck
@pytest.mark.parametrize("task", ["pendulum", "quadrotor"])
def test_torch_gradcheck_of_a_rollout(task):
    env = make_vec(task, 2, seed=0, safe_set=local_safe_set(task))
    actions = torch.full((5, 2, env.model.action_dim), 0.05, dtype=torch.float64,
                         requires_grad=True)
    assert torch.autograd.gradcheck(lambda a: rollout_return(env, a, seed=3), (actions,),
                                    eps=1e-6, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("task", ["pendulum", "quadrotor"])
def test_gradient_flows_through_many_steps_until_cut_graph(task):
    env = make_vec(task, 2, seed=0, safe_set=local_safe_set(task))
    env.reset(seed=0, options={"state": torch.tensor(START[task], dtype=torch.float64)})
    d = env.model.action_dim
    first = torch.full((2, d), 0.05, dtype=torch.float64, requires_grad=True)
    env.step(first)
    for _ in range(20):
        env.step(torch.zeros(2, d, dtype=torch.float64))
    assert env.state.requires_grad
    (grad,) = torch.autograd.grad(env.state.sum(), first, retain_graph=True)
    assert float(grad.abs().sum()) > 0

    env.cut_graph()
    assert not env.state.requires_grad
    later = torch.full((2, d), 0.05, dtype=torch.float64, requires_grad=True)
    _, reward, *_ = env.step(later)
    grad_first, grad_later = torch.autograd.grad(reward.sum(), (first, later), allow_unused=True)
    assert grad_first is None
    assert grad_later is not None and float(grad_later.abs().sum()) > 0


def test_initial_state_gradient_and_final_obs_graph():
    """Given initial states keep their graph; on truncation ``final_obs`` keeps the graph of the
    episode (terminal values can be bootstrapped) while the new episode starts detached."""
    env = make_vec("pendulum", 2, seed=0, safe_set=local_safe_set("pendulum"), episode_length=2)
    start = torch.tensor(START["pendulum"], dtype=torch.float64, requires_grad=True)
    env.reset(options={"state": start})
    action = torch.zeros(2, 1, dtype=torch.float64, requires_grad=True)
    env.step(action)
    obs, _, _, truncated, info = env.step(action)
    assert bool(truncated.all())
    assert not obs.requires_grad and not env.state.requires_grad
    grad_start, grad_action = torch.autograd.grad(info["final_obs"][:, 2].sum(), (start, action))
    assert float(grad_start.abs().sum()) > 0 and float(grad_action.abs().sum()) > 0
