"""Evaluation protocol (SPEC §13): the paper episode from the seed-42 state of the safe set, the
seeded set of episodes, episode returns, batched over a population, safeguarded."""

from __future__ import annotations

import pytest
import torch

from safegbpo.algorithms.evaluation import PAPER_SEED, SET_SIZE, set_seed_for

from .conftest import make_evaluator, make_plain_env

F64 = torch.float64


def zero_policy(obs: torch.Tensor) -> torch.Tensor:
    return torch.zeros(*obs.shape[:-1], 1, dtype=obs.dtype)


def damping_policy(obs: torch.Tensor) -> torch.Tensor:
    """A stabilising PD-like law on ``(sin, cos, theta_dot)``."""
    return torch.clamp(-(0.8 * obs[..., :1] + 0.15 * obs[..., 2:]), -1.0, 1.0)


def episode_returns(seed: int, rows: int, steps: int, policy=zero_policy) -> torch.Tensor:
    """Returns of a plain env of ``rows`` pendulums reset with ``seed``, run for ``steps``."""
    env = make_plain_env("pendulum", rows, seed=0, episode_length=steps)
    obs, _ = env.reset(seed=seed)
    total = torch.zeros(rows, dtype=F64)
    for _ in range(steps):
        obs, reward, _, _, _ = env.step(policy(obs))
        total += reward
    return total


def test_defaults_are_the_reference_protocol():
    evaluator = make_evaluator("pendulum")
    assert (evaluator.paper_seed, evaluator.set_size) == (PAPER_SEED, SET_SIZE) == (42, 16)
    assert evaluator.set_seed == set_seed_for(42) != 42
    assert evaluator.max_steps == 3000  # run to truncation: the task's episode length
    assert make_evaluator("quadrotor", set_size=0).max_steps == 240


def test_paper_episode_is_one_env_reset_with_seed_42_and_the_set_is_seeded():
    evaluator = make_evaluator("pendulum", set_size=3, set_seed=7, episode_length=20)
    result = evaluator(zero_policy)
    assert result.paper.shape == (1,) and result.episodes.shape == (1, 3)
    # the paper column: the episode return of one env reset with seed 42 (state and noise)
    assert float(result.paper[0]) == float(episode_returns(42, 1, 20)[0])
    assert torch.equal(result.episodes[0], episode_returns(7, 3, 20))


def test_evaluation_is_a_deterministic_function_of_the_policy():
    evaluator = make_evaluator("pendulum", set_size=4, episode_length=30)
    first = evaluator(zero_policy)
    evaluator.env.step(torch.zeros(5, 1, dtype=F64))  # consuming randomness in between
    again = evaluator(zero_policy)
    assert torch.equal(first.paper, again.paper) and torch.equal(first.episodes, again.episodes)
    better = evaluator(damping_policy)
    assert float(better.episodes.mean()) > float(first.episodes.mean())


def test_every_member_is_scored_on_the_same_episodes_in_one_pass():
    calls = []

    def per_member(obs: torch.Tensor) -> torch.Tensor:
        calls.append(tuple(obs.shape))
        return torch.stack([zero_policy(obs[0]), damping_policy(obs[1]), zero_policy(obs[2])])

    population = make_evaluator("pendulum", 3, set_size=2, episode_length=15)(per_member)
    assert calls == [(3, 3, 3)] * 15
    alone = make_evaluator("pendulum", set_size=2, episode_length=15)
    for member, policy in enumerate((zero_policy, damping_policy, zero_policy)):
        single = alone(policy)
        assert torch.equal(population.paper[member], single.paper[0])
        assert torch.equal(population.episodes[member], single.episodes[0])


def test_safeguard_gets_the_actions_and_states_of_all_rows():
    calls = []

    class ToZero:
        def __init__(self, env):
            self.env = env

        def __call__(self, action, state):
            calls.append((tuple(action.shape), tuple(state.shape)))
            assert torch.equal(state, self.env.state)
            return torch.zeros_like(action)

    guarded = make_evaluator("pendulum", 2, set_size=1, episode_length=5,
                             safeguard_factory=ToZero)
    result = guarded(damping_policy)
    unguarded = make_evaluator("pendulum", 2, set_size=1, episode_length=5)(zero_policy)
    assert torch.equal(result.paper, unguarded.paper)
    assert calls == [((4, 1), (4, 2))] * 5


def test_bad_arguments_are_rejected():
    with pytest.raises(ValueError, match="members"):
        make_evaluator("pendulum", 0)
    with pytest.raises(ValueError, match="set_size"):
        make_evaluator("pendulum", set_size=-1)
