"""SAC (SPEC §8): what the buffer stores, delayed/target updates, twin Q, Eq 45, learning."""

from __future__ import annotations

import copy

import pytest
import torch

from safegbpo.algorithms import SAC, SACConfig, derive_seed, make_generator
from safegbpo.safeguards import make_safeguard

from .conftest import boundary_states, make_env, make_evaluator

F64 = torch.float64
TINY = SACConfig(policy_hidden=(8,), critic_hidden=(8,), batch_size=16, learning_starts=0)


def test_buffer_stores_the_unsafe_action_and_the_real_next_observation():
    env = make_env("pendulum", 2, episode_length=2)
    guard = make_safeguard("rm", env)
    algo = SAC(env, TINY, seeds=[0], env_seeds=[1], safeguard=guard)
    recorded = []
    step = env.step

    def recording_step(action):
        out = step(action)
        recorded.append((action.detach(), out))
        return out

    env.step = recording_step
    algo.iterate()
    algo.iterate()  # the time limit: next_obs must be the final observation, not the reset one
    data = {k: v[0] for k, v in algo.buffer.data.items()}  # member 0
    assert len(algo.buffer) == 4 and algo.vector_steps == 2
    executed = torch.cat([a for a, _ in recorded])
    torch.testing.assert_close(data["safe_action"][:4], executed)
    assert bool((data["action"][:4] != executed).any()), "RM should move the policy's actions"
    torch.testing.assert_close(data["next_obs"][2:4], recorded[1][1][4]["final_obs"])
    assert bool((data["terminated"][:4] == 0).all())  # truncation is not termination
    assert bool(data["from_policy"][:4].all())


def test_policy_and_target_updates_follow_the_vector_step_schedule():
    """CleanRL's schedule in vector steps t: Q from t > learning_starts, policy when
    t % policy_freq == 0, target when t % target_freq == 0."""
    config = SACConfig(policy_hidden=(8,), critic_hidden=(8,), batch_size=8, learning_starts=0,
                       policy_freq=2, target_freq=3, polyak=0.5)
    algo = SAC(make_env("pendulum", 2), config, seeds=[0], env_seeds=[0])
    policy_before = copy.deepcopy(algo.policy.state_dict())
    target_before = copy.deepcopy(algo.q_targets.state_dict())
    assert "q_loss" not in algo.iterate()  # t = 0: collect only
    stats = algo.iterate()  # t = 1: Q only
    assert "q_loss" in stats and "policy_loss" not in stats
    assert all(torch.equal(v, policy_before[k]) for k, v in algo.policy.state_dict().items())
    assert "policy_loss" in algo.iterate()  # t = 2: Q and two policy steps
    assert any(not torch.equal(v, policy_before[k]) for k, v in algo.policy.state_dict().items())
    assert all(torch.equal(v, target_before[k]) for k, v in algo.q_targets.state_dict().items())
    q = copy.deepcopy(algo.q_functions)
    algo.iterate()  # t = 3: target <- 0.5 target + 0.5 Q (Q after its third step)
    assert algo.updates == 3
    for (name, t), q_new in zip(algo.q_targets.named_parameters(), algo.q_functions.parameters(),
                                strict=True):
        torch.testing.assert_close(t, 0.5 * target_before[name] + 0.5 * q_new.detach())
    assert any(not torch.equal(a, b) for a, b in zip(q.parameters(),
                                                     algo.q_functions.parameters(), strict=True))


def test_learning_starts_counts_vector_steps_of_uniform_random_actions():
    config = SACConfig(policy_hidden=(8,), critic_hidden=(8,), batch_size=8, learning_starts=3,
                       policy_freq=1, twin_q=True)
    algo = SAC(make_env("pendulum", 4, members=2), config, seeds=[5, 6], env_seeds=[0, 1])
    assert len(algo.q_functions) == 2 and len(algo.q_targets) == 2
    # member p's random actions: uniform in [-1, 1] from its own sampling stream
    streams = [make_generator(derive_seed(s, "sac/sample")) for s in (5, 6)]
    expected = [torch.cat([2.0 * torch.rand((4, 1), generator=g, dtype=F64) - 1.0
                           for _ in range(3)]) for g in streams]
    policy_before = copy.deepcopy(algo.policy.state_dict())
    for t in range(5):  # t = 0, 1, 2 random; t = 3 policy, no update; t = 4 first update
        stats = algo.iterate()
        assert ("q_loss" in stats) == (t == 4)
    data = algo.buffer.data
    for member in range(2):
        assert torch.equal(data["action"][member, :12], expected[member])
        assert not bool(data["from_policy"][member, :12].any())
        assert bool(data["from_policy"][member, 12:20].all())
    assert any(not torch.equal(v, policy_before[k]) for k, v in algo.policy.state_dict().items())
    assert len(SAC(make_env("pendulum", 2), TINY, seeds=[0], env_seeds=[0]).q_functions) == 1


def _intervening_sac():
    env = make_env("pendulum", 2)
    env.reset(seed=[0])
    guard = make_safeguard("bp", env)
    algo = SAC(env, TINY, seeds=[0], env_seeds=None, safeguard=guard, regularisation=0.1)
    with torch.no_grad():
        algo.policy.mean_net[-1].bias.fill_(2.0)
    candidates = boundary_states(env, 64)
    with torch.no_grad():
        guard(torch.full((64, 1), 0.96, dtype=F64), state=candidates)
    states = candidates[guard.last_intervened][:2]
    guard.reset_counters()
    obs, _ = env.reset(seed=[3], options={"state": states})
    algo.obs = obs
    for _ in range(3):
        algo.collect()
    return algo, guard


def _gradient(algo: SAC, batch, generator_state) -> torch.Tensor:
    algo.generators[0].set_state(generator_state)  # same fresh actions for both losses
    loss, _ = algo.policy_loss(batch)
    grads = torch.autograd.grad(loss.sum(), list(algo.policy.parameters()))
    return torch.cat([g.flatten() for g in grads])


def test_regularisation_reaches_the_policy_gradient_when_the_safeguard_intervened():
    algo, guard = _intervening_sac()
    batch = {k: v[:, : len(algo.buffer)] for k, v in algo.buffer.data.items()}
    intervened = (batch["safe_action"] - batch["action"]).abs().amax(-1) > 1e-6
    assert guard.interventions > 0 and bool(intervened.any())
    state = algo.generators[0].get_state()
    with torch.no_grad():
        algo.policy.mean_net[-1].bias.add_(0.3)
    regularised = _gradient(algo, batch, state)
    algo.regularisation = 0.0
    plain = _gradient(algo, batch, state)
    assert float((regularised - plain).abs().max()) > 1e-4
    batch["safe_action"] = batch["action"]  # no intervention: the term vanishes
    algo.regularisation = 0.0
    no_term = _gradient(algo, batch, state)
    algo.regularisation = 0.1
    torch.testing.assert_close(_gradient(algo, batch, state), no_term, rtol=0, atol=0)


def test_sac_improves_the_unsafe_pendulum():
    config = SACConfig(policy_hidden=(64, 64), critic_hidden=(64, 64), learning_starts=8)
    algo = SAC(make_env("pendulum", 8, episode_length=200), config, seeds=[0], env_seeds=[0])
    evaluator = make_evaluator("pendulum", set_size=8, set_seed=100, episode_length=200)
    initial = float(evaluator(algo.act).episodes.mean())
    for _ in range(2048 // algo.interactions_per_iteration):
        algo.iterate()
    final = float(evaluator(algo.act).episodes.mean())
    assert initial < -500.0
    assert final > initial / 4, f"no clear improvement: {initial:.1f} -> {final:.1f}"


def test_checkpoint_round_trip_continues_identically():
    a = SAC(make_env("pendulum", 2, episode_length=5), TINY, seeds=[1], env_seeds=[2])
    for _ in range(7):
        a.iterate()
    state, env = a.state_dict(), copy.deepcopy(a.env)
    for _ in range(7):
        a.iterate()
    b = SAC(env, TINY, seeds=[1], env_seeds=None)
    b.load_state_dict(state)
    for _ in range(7):
        b.iterate()
    assert b.updates == a.updates and len(b.buffer) == len(a.buffer)
    for p, q in zip(a.policy.parameters(), b.policy.parameters(), strict=True):
        assert torch.equal(p, q)
    assert torch.equal(a.log_alpha, b.log_alpha)


def test_invalid_hyper_parameters_are_rejected():
    with pytest.raises(ValueError, match="buffer_size"):
        SACConfig(buffer_size=0).validate()
    with pytest.raises(ValueError, match="learning_starts"):
        SACConfig(learning_starts=-1).validate()
    with pytest.raises(ValueError, match="buffer_size"):
        SAC(make_env("pendulum", 8), SACConfig(buffer_size=4), seeds=[0], env_seeds=[0])
