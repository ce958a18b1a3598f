"""EnergyEnv (SPEC §10): hours and exogenous inputs, reset/step, truncation, linearisation with a
non-centred noise box, rendering, profiles, populations, pickling."""

from __future__ import annotations

import pickle

import gymnasium
import numpy as np
import pytest
import torch

from safegbpo.envs import EnergyEnv, make_vec
from safegbpo.safesets import SafeSet
from safegbpo.sets import Zonotope
from safegbpo.tasks.energy_profiles import HOURS, EnergyProfiles, generate_profiles

F64 = torch.float64


def local_safe_set() -> SafeSet:
    """A box well inside ``S`` (not a certified RCI set: enough for env tests)."""
    return SafeSet(task="energy", state=Zonotope(torch.tensor([5.0, 21.0, 30.0]),
                                                 torch.diag(torch.tensor([2.0, 1.0, 5.0]))),
                   action=None, source="test")


def env_for(num_envs: int | None = None, seed: int = 0, **kw) -> EnergyEnv:
    return make_vec("energy", num_envs, seed=seed, safe_set=local_safe_set(), **kw)


@pytest.fixture(scope="module")
def table() -> np.ndarray:
    return generate_profiles(0).as_array()  # the default profiles of the env


def test_make_vec_defaults():
    env = env_for()
    assert type(env) is EnergyEnv and isinstance(env, gymnasium.vector.VectorEnv)
    assert env.task == "energy" and env.num_envs == 8 and env.episode_length == 720
    assert env.start_hour == 7800 and env.profiles.source == "generated (seed 0)"
    assert env.single_observation_space.shape == (23,)
    assert env.single_action_space.shape == (2,)
    low = env.single_observation_space.low
    assert low[:3].tolist() == [0.0, 18.0, 10.0] and low[13:18].tolist() == [-10.0] * 5
    assert np.isinf(env.single_observation_space.high[-1])


def test_reset_observation_holds_state_and_forecasts(table):
    env = env_for(4)
    obs, info = env.reset(seed=1)
    assert info["hour"].tolist() == [7800] * 4 and env.hours.tolist() == [7800] * 4
    assert obs.shape == (4, 23) and obs.dtype == F64
    torch.testing.assert_close(obs[:, :3], env.state)
    forecast = torch.as_tensor(table[7800:7805])  # (5, 4)
    for k in range(4):
        torch.testing.assert_close(obs[:, 3 + 5 * k: 8 + 5 * k],
                                   forecast[:, k].expand(4, -1))
    assert env.observation_space.contains(obs.numpy())


def test_step_uses_the_recorded_hour(table):
    env = env_for(3)
    env.reset(seed=0)
    start = env.state.clone()
    action = torch.tensor([[0.5, 0.2], [-0.5, 0.0], [0.0, -0.3]], dtype=F64)
    obs, reward, terminated, truncated, info = env.step(action)
    exo = torch.as_tensor(table[7800]).expand(3, -1)
    # the disturbance is the recorded outside temperature, not a sample
    torch.testing.assert_close(info["noise"], exo[:, 2:3])
    expected_state = env.model.step(start, action, exo[:, 2:3])
    torch.testing.assert_close(env.state, expected_state)
    torch.testing.assert_close(reward, env.model.reward(expected_state, action, exo))
    assert info["hour"].tolist() == [7801] * 3
    torch.testing.assert_close(obs[:, 3:8], torch.as_tensor(table[7801:7806, 0]).expand(3, -1))
    assert not terminated.any() and not truncated.any()


def test_dynamics_are_deterministic_given_the_initial_states():
    """No randomness after the reset: two envs with different seeds, same states, same actions
    -> identical trajectories and rewards."""
    a, b = env_for(2, seed=0), env_for(2, seed=123)
    states = torch.tensor([[5.0, 21.0, 30.0], [4.0, 20.5, 28.0]], dtype=F64)
    a.reset(options={"state": states})
    b.reset(options={"state": states})
    gen = torch.Generator().manual_seed(0)
    for _ in range(24):
        action = 2 * torch.rand(2, 2, generator=gen, dtype=F64) - 1
        ra = a.step(action)[1]
        rb = b.step(action)[1]
        torch.testing.assert_close(ra, rb, rtol=0, atol=0)
    torch.testing.assert_close(a.state, b.state, rtol=0, atol=0)


def test_start_hour_option_persists_over_autoresets(table):
    env = env_for(2, episode_length=3)
    env.reset(seed=0, options={"start_hour": torch.tensor([100, 8000])})
    assert env.hours.tolist() == [100, 8000]
    for _ in range(3):
        obs, _, _, truncated, info = env.step(torch.zeros(2, 2, dtype=F64))
    assert truncated.all()
    # final observation: forecast at the hour after the last step
    torch.testing.assert_close(info["final_obs"][:, 13:18],
                               torch.as_tensor(table[[[103 + k for k in range(5)],
                                                      [8003 + k for k in range(5)]], 2]))
    # same-step autoreset: the new episodes start at the same hours again
    assert env.hours.tolist() == [100, 8000] and info["hour"].tolist() == [100, 8000]
    torch.testing.assert_close(obs[:, 3], torch.as_tensor(table[[100, 8000], 0]))
    env.reset(seed=0)  # without the option: back to the default start hour
    assert env.hours.tolist() == [7800, 7800]
    env.reset(seed=0, options={"start_hour": 5})
    assert env.hours.tolist() == [5, 5]


@pytest.mark.parametrize("value", [-1, HOURS, 2.5, "x", [1, 2, 3], True])
def test_bad_start_hours_are_rejected(value):
    env = env_for(2)
    with pytest.raises(ValueError, match="start_hour"):
        env.reset(options={"start_hour": value})
    with pytest.raises(ValueError, match="start_hour"):
        env_for(2, start_hour=value if not isinstance(value, list) else -3)


def test_unknown_reset_option_lists_start_hour():
    with pytest.raises(ValueError, match="start_hour"):
        env_for(2).reset(options={"goal": 1})


def test_hours_wrap_around_the_end_of_the_year(table):
    """Decision: the profile year is periodic (hours modulo 8784)."""
    env = env_for(1, start_hour=HOURS - 2)
    obs, _ = env.reset(seed=0)
    expected = table[[HOURS - 2, HOURS - 1, 0, 1, 2], 1]
    torch.testing.assert_close(obs[0, 8:13], torch.as_tensor(expected))
    for _ in range(3):
        env.step(torch.zeros(1, 2, dtype=F64))
    assert env.hours.tolist() == [1]


def test_truncation_after_720_steps():
    env = env_for(2)
    env.reset(seed=0)
    action = torch.tensor([[0.0, 0.2], [0.0, 0.2]], dtype=F64)
    for step in range(720):
        _, _, _, truncated, info = env.step(action)
        assert bool(truncated.all()) == (step == 719)
    assert "final_state" in info and env.elapsed_steps == 0
    assert env.hours.tolist() == [7800, 7800]


def test_profiles_option_and_temperatures_outside_w(tmp_path):
    arrays = generate_profiles(2).as_array().T
    path = EnergyProfiles(*arrays, source="x").to_csv(tmp_path / "mine.csv")
    env = env_for(2, profiles=path)
    assert env.profiles.source == str(path.resolve())
    torch.testing.assert_close(env.exogenous(torch.tensor([0, 1])),
                               torch.as_tensor(arrays.T[:2]))
    hot = arrays.copy()
    hot[2, 4000] = 45.0
    bad = EnergyProfiles(*hot, source="x").to_csv(tmp_path / "hot.csv")
    with pytest.raises(ValueError, match=r"W = \[-10, 40\].*hour 4000 has 45"):
        env_for(2, profiles=bad)
    with pytest.raises(FileNotFoundError):
        env_for(2, profiles=tmp_path / "missing.csv")


# --------------------------------------------------------------------------------------------
# Eq 12-14 with a noise box that is not centred at 0
# --------------------------------------------------------------------------------------------
def test_linearise_is_taken_at_the_centre_of_w():
    env = env_for(3)
    env.reset(seed=0)
    lo, hi = (t.tolist() for t in env.noise_box.interval_hull())
    assert lo == [[-10.0]] and hi == [[40.0]]
    assert env.noise_box.center.tolist() == [[15.0]]
    f0, B, E = env.linearise()
    w0 = torch.full((3, 1), 15.0, dtype=F64)
    torch.testing.assert_close(f0, env.dynamics(env.state, torch.zeros(3, 2, dtype=F64), w0))
    torch.testing.assert_close(E[0], torch.tensor([[0.0], [1 / 240], [0.0]], dtype=F64))


def test_next_state_set_contains_every_realised_next_state():
    env = env_for(8)
    env.reset(seed=3)
    gen = torch.Generator().manual_seed(0)
    for _ in range(30):
        action = 2 * torch.rand(8, 2, generator=gen, dtype=F64) - 1
        reachable = env.next_state_set(action)
        raw = env.dynamics(env.state, action, env.exogenous()[:, 2:3])
        env.step(action)
        # the recorded t_out lies in W, so the raw successor lies in the Eq 13-14 set
        assert bool(reachable.contains(raw.unsqueeze(1)).all())
        assert reachable.generators.shape == (8, 3, 1)
        torch.testing.assert_close(reachable.generators[:, 1, 0],
                                   torch.full((8,), 25 / 240, dtype=F64))


# --------------------------------------------------------------------------------------------
# differentiability, dtype, populations, pickling, rendering
# --------------------------------------------------------------------------------------------
def test_rollout_is_differentiable_in_the_actions():
    env = env_for(2)
    env.reset(options={"state": torch.tensor([[5.0, 21.0, 30.0], [5.0, 20.0, 25.0]])})
    actions = torch.full((6, 2, 2), 0.1, dtype=F64, requires_grad=True)
    total = sum(env.step(a)[1].sum() for a in actions)
    (grad,) = torch.autograd.grad(total, actions)
    assert bool((grad[:-2, :, 1].abs() > 0).all())  # the heat pump reaches t_in two steps later
    env.cut_graph()
    assert not env.state.requires_grad


def test_float32_env():
    env = env_for(2, dtype=torch.float32)
    obs, _ = env.reset(seed=0)
    obs, reward, *_ = env.step(torch.zeros(2, 2))
    assert obs.dtype == torch.float32 and reward.dtype == torch.float32


def test_population_of_rows_with_own_hours_and_states():
    """A population env of P x N rows: every row has its own state and start hour."""
    P, N = 3, 4
    env = env_for(P * N)
    states = local_safe_set().state.sample(P * N, torch.Generator().manual_seed(0))[0]
    starts = torch.arange(P * N) * 100
    env.reset(options={"state": states, "start_hour": starts})
    single = env_for(1)
    actions = torch.full((P * N, 2), 0.1, dtype=F64)
    _, rewards, *_ = env.step(actions)
    for row in (0, 5, 11):
        single.reset(options={"state": states[row:row + 1], "start_hour": int(starts[row])})
        _, reward, *_ = single.step(actions[row:row + 1])
        torch.testing.assert_close(reward, rewards[row:row + 1])


def test_pickle_round_trip_continues_identically():
    env = env_for(2)
    env.reset(seed=0)
    env.step(torch.zeros(2, 2, dtype=F64))
    clone = pickle.loads(pickle.dumps(env))
    action = torch.tensor([[0.3, -0.2], [0.1, 0.4]], dtype=F64)
    torch.testing.assert_close(env.step(action)[1], clone.step(action)[1], rtol=0, atol=0)
    assert clone.hours.tolist() == env.hours.tolist()


def test_render_shows_the_episode():
    env = env_for(2, render_mode="rgb_array")
    env.reset(seed=0)
    first = env.render()
    assert first.shape == (2, 400, 480, 3) and first.dtype == np.uint8
    for _ in range(48):
        env.step(torch.tensor([[0.5, 0.3], [-0.5, -0.3]], dtype=F64))
    frames = env.render()
    assert frames.shape == (2, 400, 480, 3)
    assert (frames != 255).any(axis=-1).mean() > 0.05  # something is drawn
    assert not np.array_equal(frames[0], first[0])  # the curves grew
    assert not np.array_equal(frames[0], frames[1])  # per-env trajectories
    env.close()
