"""Seed populations: per-block random streams of the env, checkpoint split/merge, per-member
clipping, and the central property: a member's training is bitwise the same whatever the other
members are (and a population of one is the single-seed run)."""

from __future__ import annotations

import copy

import pytest
import torch

from safegbpo.algorithms import (
    PPO,
    SAC,
    SHAC,
    PPOConfig,
    SACConfig,
    SHACConfig,
    merge_population_states,
    split_population_state,
)
from safegbpo.algorithms.population import clip_grad_norm_, population_env
from safegbpo.safeguards import make_safeguard
from safegbpo.tasks import task_names

from .conftest import make_env, make_plain_env, task_safe_set

F64 = torch.float64
TASKS = ("pendulum", "quadrotor", "energy")


def actions_for(env, generator: torch.Generator) -> torch.Tensor:
    return 2.0 * torch.rand(env.num_envs, env.model.action_dim, generator=generator,
                            dtype=F64) - 1.0


# -- the env -------------------------------------------------------------------------------------
@pytest.mark.parametrize("task", TASKS)
def test_each_block_is_the_env_a_population_of_one_would_have(task):
    """Reset states, noise, rewards and same-step autoreset of block b are those of a one-block
    env seeded like it, draw for draw, through two episodes."""
    sizes, seeds = [3, 2, 4], [11, 12, 13]
    env = population_env(task, sizes, safe_set=task_safe_set(task), episode_length=4)
    alone = [population_env(task, [size], safe_set=task_safe_set(task), episode_length=4)
             for size in sizes]
    obs, _ = env.reset(seed=seeds)
    parts = [a.reset(seed=[s])[0] for a, s in zip(alone, seeds, strict=True)]
    assert torch.equal(obs, torch.cat(parts))
    g = torch.Generator().manual_seed(0)
    for _ in range(6):  # crosses the time limit (autoreset) once
        action = actions_for(env, g)
        out = env.step(action)
        rows = 0
        for block in alone:
            piece = action[rows:rows + block.num_envs]
            single = block.step(piece)
            sl = slice(rows, rows + block.num_envs)
            assert torch.equal(out[0][sl], single[0]) and torch.equal(out[1][sl], single[1])
            assert torch.equal(out[3][sl], single[3])
            if "final_obs" in single[4]:
                assert torch.equal(out[4]["final_obs"][sl], single[4]["final_obs"])
            rows += block.num_envs
    # a one-block env seeded s is the plain env reset with seed s
    plain = make_plain_env(task, 3, seed=99, episode_length=4)
    assert torch.equal(plain.reset(seed=11)[0], alone[0].reset(seed=[11])[0])


def test_random_draws_outside_the_blocks_are_refused():
    env = make_env("pendulum", 2, members=2)
    env.reset(seed=[1, 2])
    with pytest.raises(RuntimeError, match="outside the per-block streams"):
        torch.rand(1, generator=env._generator)
    with pytest.raises(ValueError, match="all its 4 rows"):
        env.sample_noise(2)
    with pytest.raises(ValueError, match="one seed per block"):
        env.reset(seed=3)
    with pytest.raises(ValueError, match="sum to num_envs"):
        env._init_blocks([1, 1])


@pytest.mark.parametrize("task", TASKS)
def test_block_states_move_between_populations(task):
    """Blocks of two populations, reassembled into a third one, continue exactly as in the
    populations they came from."""
    a = make_env(task, 2, members=2, episode_length=5)
    b = make_env(task, 2, members=1, episode_length=5)
    a.reset(seed=[1, 2])
    b.reset(seed=[3])
    g = torch.Generator().manual_seed(0)
    for _ in range(3):
        a.step(actions_for(a, g))
        b.step(actions_for(b, g))
    merged = make_env(task, 2, members=2, episode_length=5)
    merged.load_block_states([b.block_state(0), a.block_state(1)])
    for _ in range(4):  # crosses the time limit
        action = actions_for(merged, g)
        out = merged.step(action)
        ref_b = b.step(action[:2])
        ref_a = a.step(torch.cat([torch.zeros(2, a.model.action_dim, dtype=F64), action[2:]]))
        assert torch.equal(out[0][:2], ref_b[0]) and torch.equal(out[0][2:], ref_a[0][2:])
    c = make_env(task, 2, members=2, episode_length=5)
    c.reset(seed=[0, 0])
    c.step(actions_for(c, g))
    with pytest.raises(ValueError, match="different episode steps"):
        merged.load_block_states([a.block_state(0), c.block_state(1)])


def test_energy_blocks_carry_each_rows_hour():
    """The energy env's per-row hour (its episode start, hence its exogenous inputs) moves with a
    block: blocks at different hours, reassembled, continue exactly as in their populations,
    through the time limit (autoresets keep each row's start hour)."""
    a = make_env("energy", 2, members=2, episode_length=5)
    b = make_env("energy", 2, members=1, episode_length=5)
    a.reset(seed=[1, 2], options={"start_hour": torch.tensor([10, 20, 30, 40])})
    b.reset(seed=[3], options={"start_hour": 500})
    g = torch.Generator().manual_seed(0)
    for _ in range(3):
        a.step(actions_for(a, g))
        b.step(actions_for(b, g))
    merged = make_env("energy", 2, members=2, episode_length=5)
    merged.reset(seed=[0, 0])  # every row at the default hour 7800
    merged.load_block_states([b.block_state(0), a.block_state(1)])
    assert merged.hours.tolist() == [503, 503, 33, 43]
    for _ in range(4):  # crosses the time limit
        action = actions_for(merged, g)
        out = merged.step(action)
        ref_b = b.step(action[:2])
        ref_a = a.step(torch.cat([torch.zeros(2, 2, dtype=F64), action[2:]]))
        assert torch.equal(out[0][:2], ref_b[0]) and torch.equal(out[0][2:], ref_a[0][2:])
        assert torch.equal(out[1][:2], ref_b[1]) and torch.equal(out[1][2:], ref_a[1][2:])
    assert merged.hours.tolist() == [502, 502, 32, 42]


@pytest.mark.parametrize("task", task_names())
def test_per_row_state_of_every_task_is_declared(task):
    """Every tensor attribute of a task env with one row per environment is in ROW_ATTRIBUTES
    (what block_state moves); a task adding other per-row state must declare it."""
    env = make_env(task, 7, episode_length=3)
    env.reset(seed=[0])
    for _ in range(4):
        env.step(torch.zeros(7, env.model.action_dim, dtype=F64))
    per_row = {name for name, value in vars(env).items()
               if isinstance(value, torch.Tensor) and value.ndim and value.shape[0] == 7}
    assert per_row <= set(type(env).ROW_ATTRIBUTES), per_row


# -- algorithms ----------------------------------------------------------------------------------
CONFIGS = {
    "shac": (SHAC, SHACConfig(policy_hidden=(16, 16), critic_hidden=(16, 16), len_traj=8,
                              vf_num_fits=3), 4),
    "shac-preset-widths": (SHAC, SHACConfig(len_traj=8, vf_num_fits=2), 2),
    "ppo": (PPO, PPOConfig(policy_hidden=(16, 16), critic_hidden=(16, 16), len_traj=16,
                           num_fits=2, num_batches=3), 2),
    # odd widths: member matrices that are not 64-byte aligned in a stacked tensor
    "sac": (SAC, SACConfig(policy_hidden=(17, 13), critic_hidden=(19, 9), batch_size=16,
                           learning_starts=3, policy_freq=2, target_freq=3), 12),
}


def _train(key: str, task: str, seeds: list[int], safeguard: str | None = None, **options):
    cls, config, iterations = CONFIGS[key]
    env = make_env(task, 3, members=len(seeds), episode_length=7)
    guard = None if safeguard is None else make_safeguard(safeguard, env, **options)
    algo = cls(env, config, seeds=seeds, env_seeds=[s + 100 for s in seeds], safeguard=guard,
               regularisation=0.1 if safeguard else 0.0)
    for _ in range(iterations):
        algo.iterate()
    return algo


def _member(algo, index: int) -> dict[str, torch.Tensor]:
    """Member ``index``'s slice of everything that evolves in training."""
    state = split_population_state(algo.state_dict())[index]
    flat = {}

    def walk(prefix, value):
        if isinstance(value, torch.Tensor):
            flat[prefix] = value
        elif isinstance(value, dict):
            for k, v in value.items():
                walk(f"{prefix}/{k}", v)
        elif isinstance(value, list | tuple):
            for i, v in enumerate(value):
                walk(f"{prefix}[{i}]", v)

    walk("", state)
    return flat


def _assert_same_member(a, i, b, j):
    left, right = _member(a, i), _member(b, j)
    assert left.keys() == right.keys()
    different = [k for k in left if not torch.equal(left[k], right[k])]
    assert not different, f"member state differs in {different[:5]}"


@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize("key", sorted(CONFIGS))
def test_a_member_trains_bitwise_as_in_a_population_of_one(key, task):
    """Seeds 3 and 5 trained alone and inside the population [3, 7, 5]: networks, optimiser
    state, generators, observations (and SAC's buffer) are bitwise equal."""
    together = _train(key, task, [3, 7, 5])
    for index, seed in ((0, 3), (2, 5)):
        _assert_same_member(together, index, _train(key, task, [seed]), 0)
    other = _train(key, task, [7])
    assert not torch.equal(_member(other, 0)["/obs"], _member(together, 0)["/obs"])


@pytest.mark.parametrize("task,safeguard,options", [
    ("pendulum", "bp", {}), ("pendulum", "rm", {}), ("energy", "bp", {}),
    ("quadrotor", "bp", {}), ("pendulum", "bp", {"backend": "cvxpylayers"}),
    ("quadrotor", "rm", {"mapping": "hyperbolic", "backend": "cvxpylayers"}),
    pytest.param("quadrotor", "rm", {"mapping": "hyperbolic"}, marks=pytest.mark.xfail(
        strict=True, reason="known: the exact backend's 2-D zonotopic centre (batched IPM + "
        "one Newton step from its iterate) depends on the other rows of a batch at rounding "
        "level (~1e-16), so an exact-backend ray-mask seed in a population is not bitwise its "
        "single-seed run")),
])
def test_safeguarded_member_is_independent_of_its_population(task, safeguard, options):
    """One batched safeguard call for all members; per-member counters from its row masks."""
    together = _train("shac", task, [3, 5], safeguard, **options)
    alone = _train("shac", task, [5], safeguard, **options)
    _assert_same_member(together, 1, alone, 0)
    assert int(together.interventions[1]) == int(alone.interventions[0]) > 0
    assert together.safeguard_steps.tolist() == [3 * 8 * 4] * 2
    assert int(together.interventions.sum()) == together.safeguard.interventions


def test_same_seeds_give_the_same_population():
    a, b = _train("ppo", "pendulum", [1, 2]), _train("ppo", "pendulum", [1, 2])
    for i in range(2):
        _assert_same_member(a, i, b, i)


def test_checkpoints_split_into_members_and_merge_back():
    algo = _train("sac", "pendulum", [1, 2, 3])
    state = algo.state_dict()
    members = split_population_state(state)
    assert [m["members"] for m in members] == [1, 1, 1]
    assert members[1]["extra"]["members"]["buffer"]["obs"].shape[0] == 1
    merged = merge_population_states(members)
    assert merged["members"] == 3
    assert merged.keys() == state.keys()
    assert torch.equal(merged["obs"], state["obs"])
    assert all(torch.equal(a, b) for a, b in zip(
        merged["modules"]["policy"].values(), state["modules"]["policy"].values(), strict=True))
    # a population resumed from the merged members continues like the original
    env = copy.deepcopy(algo.env)
    clone = SAC(env, CONFIGS["sac"][1], seeds=[1, 2, 3], env_seeds=None)
    clone.load_state_dict(merged)
    for _ in range(4):
        algo.iterate()
        clone.iterate()
    for i in range(3):
        _assert_same_member(algo, i, clone, i)
    bad = copy.deepcopy(members)
    bad[1]["extra"]["shared"]["vector_steps"] += 1
    with pytest.raises(ValueError, match="disagree"):
        merge_population_states(bad)


def test_gradient_clipping_is_per_member():
    torch.manual_seed(0)
    params = [torch.nn.Parameter(torch.zeros(3, 4, 5, dtype=F64)),
              torch.nn.Parameter(torch.zeros(3, 5, dtype=F64))]
    grads = [torch.randn(p.shape, dtype=F64) * torch.tensor([0.01, 1.0, 10.0], dtype=F64).view(
        -1, *([1] * (p.ndim - 1))) for p in params]
    for p, g in zip(params, grads, strict=True):
        p.grad = g.clone()
    norms = clip_grad_norm_(params, 1.0)
    for member in range(3):
        singles = [torch.nn.Parameter(p.detach()[member].clone()) for p in params]
        for s, g in zip(singles, grads, strict=True):
            s.grad = g[member].clone()
        norm = torch.nn.utils.clip_grad_norm_(singles, 1.0)
        torch.testing.assert_close(norms[member], norm)
        for s, p in zip(singles, params, strict=True):
            torch.testing.assert_close(p.grad[member], s.grad)
    assert float(norms[0]) < 1.0 < float(norms[1]) < float(norms[2])
