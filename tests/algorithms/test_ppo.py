"""PPO (SPEC §8): GAE, time-limit bootstrapping, Eq 45 from stored transitions, learning."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from safegbpo.algorithms import PPO, PPOConfig
from safegbpo.algorithms.ppo import gae
from safegbpo.safeguards import make_safeguard

from .conftest import boundary_states, make_env, make_evaluator

F64 = torch.float64


def brute_force_gae(rewards, values, dones, last_value, gamma, lam):
    steps, n = rewards.shape
    next_values = torch.cat([values[1:], last_value[None]])
    deltas = rewards + gamma * (~dones) * next_values - values
    out = torch.zeros_like(rewards)
    for env in range(n):
        for t in range(steps):
            weight, k = 1.0, t
            while True:
                out[t, env] += weight * deltas[k, env]
                if bool(dones[k, env]) or k == steps - 1:
                    break
                weight *= gamma * lam
                k += 1
    return out


@pytest.mark.property
@settings(max_examples=40, deadline=None)
@given(steps=st.integers(1, 6), n=st.integers(1, 3), gamma=st.floats(0.0, 1.0),
       lam=st.floats(0.0, 1.0), seed=st.integers(0, 2**16))
def test_gae_matches_the_discounted_sum_of_td_errors(steps, n, gamma, lam, seed):
    g = torch.Generator().manual_seed(seed)
    rewards = torch.randn(steps, n, generator=g, dtype=F64)
    values = torch.randn(steps, n, generator=g, dtype=F64)
    last = torch.randn(n, generator=g, dtype=F64)
    dones = torch.rand(steps, n, generator=g) < 0.3
    torch.testing.assert_close(gae(rewards, values, dones, last, gamma, lam),
                               brute_force_gae(rewards, values, dones, last, gamma, lam))


def test_rollout_is_per_env_and_bootstraps_the_time_limit():
    env = make_env("pendulum", 2, episode_length=3)
    config = PPOConfig(policy_hidden=(8,), critic_hidden=(8,), len_traj=4, gamma=0.9)
    algo = PPO(env, config, seeds=[0], env_seeds=[1])
    assert algo.interactions_per_iteration == 4 * 2
    recorded = []
    step = env.step

    def recording_step(action):
        out = step(action)
        recorded.append(out)
        return out

    env.step = recording_step
    batch = algo.collect()
    assert batch["obs"].shape == (4, 1, 2, 3)  # (steps, members, envs, obs)
    assert batch["done"][:, 0, 0].tolist() == [0, 0, 1, 0]
    with torch.no_grad():
        bootstrap = 0.9 * algo.critic(recorded[2][4]["final_obs"][None])[0]
    torch.testing.assert_close(batch["reward"][2, 0], recorded[2][1] + bootstrap)
    torch.testing.assert_close(batch["reward"][1, 0], recorded[1][1])
    torch.testing.assert_close(torch.tanh(batch["pre_tanh"]), batch["safe_action"])  # unsafe


def _intervening_batch(regularisation: float):
    """A PPO rollout on pendulums near vertices of the safe set, with the boundary projection
    intervening on most of the (biased) actions."""
    env = make_env("pendulum", 2)
    env.reset(seed=[0])
    guard = make_safeguard("bp", env)
    config = PPOConfig(policy_hidden=(8,), critic_hidden=(8,), len_traj=3)
    algo = PPO(env, config, seeds=[0], env_seeds=None, safeguard=guard,
               regularisation=regularisation)
    with torch.no_grad():
        algo.policy.mean_net[-1].bias.fill_(2.0)
    candidates = boundary_states(env, 64)
    with torch.no_grad():
        guard(torch.full((64, 1), 0.96, dtype=F64), state=candidates)
    states = candidates[guard.last_intervened][:2]
    guard.reset_counters()
    obs, _ = env.reset(seed=[3], options={"state": states})
    algo.obs = obs
    batch = algo.collect()  # (T, 1, N, ...) -> (1, T N, ...)
    flat = {k: v.transpose(0, 1).flatten(1, 2) for k, v in batch.items() if k != "last_value"}
    flat["advantage"] = torch.randn(flat["reward"].shape, generator=torch.Generator()
                                    .manual_seed(0), dtype=F64)
    return algo, guard, flat


def _gradient(algo, batch) -> torch.Tensor:
    loss, _ = algo.policy_loss(batch)
    grads = torch.autograd.grad(loss.sum(), list(algo.policy.parameters()))
    return torch.cat([g.flatten() for g in grads])


def test_regularisation_reaches_the_policy_gradient_when_the_safeguard_intervened():
    algo, guard, batch = _intervening_batch(0.1)
    intervened = (batch["safe_action"] - torch.tanh(batch["pre_tanh"])).abs().amax(-1) > 1e-6
    assert guard.interventions > 0 and bool(intervened.any())
    with torch.no_grad():  # move the policy: a_theta != a, so the term is not at its optimum
        algo.policy.mean_net[-1].bias.add_(0.3)
    regularised = _gradient(algo, batch)
    algo.regularisation = 0.0
    plain = _gradient(algo, batch)
    assert float((regularised - plain).abs().max()) > 1e-4
    # the term is 0.1 * mean_i m_i ||a_theta,i - g_i||^2 with the stored safe action as target
    algo.regularisation = 0.1
    action = algo.policy.action_from_noise(batch["obs"], batch["noise"])
    term = 0.1 * (intervened[..., None] * (action - batch["safe_action"]) ** 2).sum(-1).mean()
    expected = torch.cat([g.flatten() for g in torch.autograd.grad(
        term, list(algo.policy.parameters()))])
    torch.testing.assert_close(regularised - plain, expected)


def test_regularisation_ignores_transitions_without_intervention():
    algo, _, batch = _intervening_batch(0.1)
    batch["safe_action"] = torch.tanh(batch["pre_tanh"])  # as if g(a) = a everywhere
    with torch.no_grad():
        algo.policy.mean_net[-1].bias.add_(0.3)
    regularised = _gradient(algo, batch)
    algo.regularisation = 0.0
    torch.testing.assert_close(regularised, _gradient(algo, batch), rtol=0, atol=0)


def test_ppo_improves_the_unsafe_pendulum():
    config = PPOConfig(policy_hidden=(64, 64), critic_hidden=(64, 64), len_traj=128,
                       num_fits=10, num_batches=8)
    algo = PPO(make_env("pendulum", 8, episode_length=200), config, seeds=[0], env_seeds=[0])
    evaluator = make_evaluator("pendulum", set_size=8, set_seed=100, episode_length=200)
    initial = float(evaluator(algo.act).episodes.mean())
    for _ in range(4096 // algo.interactions_per_iteration):
        stats = algo.iterate()
    final = float(evaluator(algo.act).episodes.mean())
    assert initial < -500.0
    assert final > initial / 4, f"no clear improvement: {initial:.1f} -> {final:.1f}"
    assert set(stats) >= {"policy_loss", "value_loss", "entropy", "approx_kl"}


def test_invalid_hyper_parameters_are_rejected():
    with pytest.raises(ValueError, match="num_batches"):
        PPOConfig(num_batches=0).validate()
    with pytest.raises(ValueError, match="ent_coef"):
        PPOConfig(ent_coef=-0.1).validate()
    with pytest.raises(ValueError, match="clip_coef"):
        PPOConfig(clip_coef=0.0).validate()
