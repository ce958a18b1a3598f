"""SafeVectorEnv: construction, spaces, seeding, reset/step semantics, autoreset, validation."""

from __future__ import annotations

import json
import math

import gymnasium
import numpy as np
import pytest
import torch
from gymnasium.vector import AutoresetMode
from scipy import stats

from safegbpo.envs import PendulumEnv, QuadrotorEnv, SafeVectorEnv, make_vec
from safegbpo.safesets import SafeSet
from safegbpo.sets import Zonotope
from tests.helpers import reference_file

TASKS = ("pendulum", "quadrotor")
DIMS = {"pendulum": (2, 1, 1, 3), "quadrotor": (6, 2, 2, 8)}  # n, d, n_w, o


def local_safe_set(task: str) -> SafeSet:
    """A small zonotope well inside ``S`` (not a certified RCI set: enough for env tests)."""
    if task == "pendulum":
        generators = [[0.5, 0.0, 0.2], [0.0, 1.0, -0.5]]
    else:
        generators = np.diag([0.5, 0.5, 0.1, 0.2, 0.2, 0.3]).tolist()
        for row, value in zip(generators, (0.1, -0.1, 0.02, 0.05, 0.0, 0.1), strict=True):
            row.append(value)
    n = len(generators)
    return SafeSet(task=task, state=Zonotope(torch.zeros(n), torch.tensor(generators)),
                   action=None, source="test")


def env_for(task: str, num_envs: int | None = None, seed: int = 0, **kw) -> SafeVectorEnv:
    return make_vec(task, num_envs, seed=seed, safe_set=local_safe_set(task), **kw)


# --------------------------------------------------------------------------------------------
# construction
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("task, cls, num_envs, length",
                         [("pendulum", PendulumEnv, 8, 3000), ("quadrotor", QuadrotorEnv, 16, 240)])
def test_make_vec_task_defaults(task, cls, num_envs, length):
    env = env_for(task)
    assert type(env) is cls and isinstance(env, gymnasium.vector.VectorEnv)
    assert env.task == task and env.model.name == task
    assert env.num_envs == num_envs and env.episode_length == length
    assert env.metadata["autoreset_mode"] == AutoresetMode.SAME_STEP
    assert env.metadata["render_modes"] == ["rgb_array"]


def test_make_vec_unknown_task_lists_tasks():
    with pytest.raises(ValueError, match="pendulum.*quadrotor"):
        make_vec("cartpole", safe_set=local_safe_set("pendulum"))


def test_safe_set_of_other_task_or_dimension_is_rejected(tmp_path):
    with pytest.raises(ValueError, match="task 'quadrotor'"):
        make_vec("pendulum", safe_set=local_safe_set("quadrotor"))
    path = tmp_path / "wrong_dim.json"
    path.write_text(json.dumps({
        "format": "safegbpo-safe-set/1", "task": "pendulum", "state_center": [0.0, 0.0, 0.0],
        "state_generators": np.eye(3).tolist()}))
    with pytest.raises(ValueError, match="shape|dimension"):
        make_vec("pendulum", safe_set=path)
    with pytest.raises(TypeError, match="safe_set"):
        make_vec("pendulum", safe_set=42)


def test_degenerate_safe_set_is_rejected():
    flat = SafeSet(task="pendulum", state=Zonotope(torch.zeros(2), [[1.0], [1.0]]),
                   action=None, source="test")
    with pytest.raises(ValueError, match="empty interior"):
        make_vec("pendulum", safe_set=flat)


def test_safe_set_from_file(tmp_path):
    generators = [[0.4, 0.1], [-0.2, 0.9]]
    path = tmp_path / "pendulum.json"
    path.write_text(json.dumps({
        "format": "safegbpo-safe-set/1", "task": "pendulum", "state_center": [0.1, -0.2],
        "state_generators": generators, "action_center": [0.0],
        "action_generators": [[0.3, -0.1]]}))
    for spec in (path, str(path)):
        env = make_vec("pendulum", 4, seed=0, safe_set=spec)
        torch.testing.assert_close(env.safe_set.state.generators[0],
                                   torch.tensor(generators, dtype=torch.float64))
        env.reset()
        assert bool(env.safe_set.state.contains(env.state.unsqueeze(0)).all())


def test_default_safe_set_comes_from_safesets(monkeypatch):
    import safegbpo.safesets as safesets

    calls = []

    def fake_get_safe_set(task):
        calls.append(task)
        return local_safe_set(task)

    # raising=False: also works while safesets.get_safe_set is still being written
    monkeypatch.setattr(safesets, "get_safe_set", fake_get_safe_set, raising=False)
    env = make_vec("quadrotor", 2, seed=0)
    assert calls == ["quadrotor"] and env.safe_set.task == "quadrotor"


@pytest.mark.parametrize("kwargs, match", [
    ({"num_envs": 0}, "num_envs"), ({"num_envs": 2.5}, "num_envs"),
    ({"episode_length": 0}, "episode_length"), ({"dtype": torch.int64}, "dtype"),
    ({"render_mode": "human"}, "render_mode"), ({"seed": -1}, "seed"),
])
def test_constructor_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        PendulumEnv(safe_set=local_safe_set("pendulum"), **kwargs)


def test_abstract_base_cannot_be_built():
    with pytest.raises(TypeError, match="abstract"):
        SafeVectorEnv(safe_set=local_safe_set("pendulum"))


# --------------------------------------------------------------------------------------------
# spaces and boxes
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("task", TASKS)
def test_spaces_declared_and_consistent(task):
    n, d, n_w, o = DIMS[task]
    env = env_for(task, 5)
    assert env.single_action_space == gymnasium.spaces.Box(-1.0, 1.0, (d,), np.float64)
    assert env.action_space.shape == (5, d) and env.action_space.dtype == np.float64
    assert env.single_observation_space.shape == (o,)
    assert env.observation_space.shape == (5, o) and env.observation_space.dtype == np.float64
    np.testing.assert_array_equal(env.observation_space.low[3], env.single_observation_space.low)
    obs, _ = env.reset()
    assert env.observation_space.contains(obs.numpy())
    for _ in range(20):
        obs, *_ = env.step(torch.as_tensor(env.action_space.sample()))
        assert env.observation_space.contains(obs.numpy())


def test_observation_bounds_are_the_true_bounds():
    pend = env_for("pendulum")
    np.testing.assert_array_equal(pend.single_observation_space.high, [1.0, 1.0, 8.0])
    quad = env_for("quadrotor")
    high = [8.0, 8.0, math.pi / 12, 0.8, 1.0, math.pi / 2, 8.0, 8.0]
    np.testing.assert_allclose(quad.single_observation_space.high, high, rtol=0, atol=1e-15)
    np.testing.assert_array_equal(quad.single_observation_space.low,
                                  -quad.single_observation_space.high)


@pytest.mark.parametrize("task", TASKS)
def test_boxes_are_zonotopes_of_the_task(task):
    n, d, n_w, _ = DIMS[task]
    env = env_for(task)
    low, high = env.model.state_bounds()
    s_low, s_high = env.state_box.interval_hull()
    torch.testing.assert_close(s_low[0], low)
    torch.testing.assert_close(s_high[0], high)
    a_low, a_high = env.action_box.interval_hull()
    torch.testing.assert_close(a_high[0], torch.ones(d, dtype=torch.float64))
    torch.testing.assert_close(a_low[0], -torch.ones(d, dtype=torch.float64))
    w_low, w_high = env.noise_box.interval_hull()
    torch.testing.assert_close(w_high[0], torch.full((n_w,), 0.1, dtype=torch.float64))
    assert bool(env.noise_box.center.eq(0).all())


# --------------------------------------------------------------------------------------------
# reset and seeding
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("task", TASKS)
def test_reset_seed_reproducible_and_no_global_rng(task):
    env = env_for(task, 6, seed=123)
    np_state = np.random.get_state()[1].copy()
    obs_a, info_a = env.reset(seed=7)
    obs_a2, *_ = env.step(torch.zeros(6, DIMS[task][1]))
    torch.manual_seed(999)  # the global RNG must not matter
    obs_b, info_b = env.reset(seed=7)
    obs_b2, *_ = env.step(torch.zeros(6, DIMS[task][1]))
    torch.testing.assert_close(info_a["state"], info_b["state"], rtol=0, atol=0)
    torch.testing.assert_close(obs_a2, obs_b2, rtol=0, atol=0)
    _, info_c = env.reset(seed=8)
    assert not torch.equal(info_a["state"], info_c["state"])
    torch.manual_seed(999)
    expected_torch_state = torch.get_rng_state()
    env.reset()
    env.step(torch.zeros(6, DIMS[task][1]))
    assert torch.equal(torch.get_rng_state(), expected_torch_state)
    assert np.array_equal(np.random.get_state()[1], np_state)


def test_constructor_seed_and_seed_none_continue_the_stream():
    env1 = env_for("pendulum", 4, seed=5)
    env2 = env_for("pendulum", 4, seed=0)
    first, _ = env1.reset()
    again, _ = env2.reset(seed=5)
    torch.testing.assert_close(first, again, rtol=0, atol=0)
    second, _ = env1.reset()  # seed=None: continue the stream, no re-seeding
    assert not torch.equal(first, second)
    second2, _ = env2.reset()
    torch.testing.assert_close(second, second2, rtol=0, atol=0)


@pytest.mark.parametrize("task", TASKS)
def test_reset_states_lie_in_safe_set_and_S(task):
    env = env_for(task, 64, seed=1)
    _, info = env.reset()
    states = info["state"]
    assert states.shape == (64, DIMS[task][0]) and states.dtype == torch.float64
    assert torch.equal(states, env.state)
    assert bool(env.safe_set.state.contains(states.unsqueeze(0)).all())
    low, high = env.model.state_bounds()
    assert bool(((states >= low) & (states <= high)).all())


def test_reset_is_uniform_in_a_skewed_zonotope():
    """For a parallelogram ``<c, G>`` (square ``G``) uniform states have factors
    ``G^{-1}(s - c)`` i.i.d. uniform on ``[-1, 1]``; the interval hull is 2x larger, so a sampler
    that skipped the rejection step (or sampled the factors non-uniformly) would fail."""
    generators = torch.tensor([[0.6, 0.5], [-1.0, 1.5]], dtype=torch.float64)
    centre = torch.tensor([0.2, -0.5], dtype=torch.float64)
    safe = SafeSet(task="pendulum", state=Zonotope(centre, generators), action=None,
                   source="test")
    env = make_vec("pendulum", 2000, seed=3, safe_set=safe)
    _, info = env.reset()
    factors = torch.linalg.solve(generators, (info["state"] - centre).T).T
    assert float(factors.abs().max()) <= 1.0 + 1e-12
    for column in factors.T:
        assert stats.kstest(column.numpy(), stats.uniform(loc=-1, scale=2).cdf).pvalue > 1e-3
    # independence of the two factors: correlation ~ 0
    assert abs(float(torch.corrcoef(factors.T)[0, 1])) < 0.1


def test_reset_intersects_safe_set_with_S():
    """A safe set sticking out of ``S`` in theta: resets are uniform in ``Z ∩ S``."""
    safe = SafeSet(task="pendulum",
                   state=Zonotope(torch.zeros(2), torch.diag(torch.tensor([4.0, 1.0]))),
                   action=None, source="test")
    env = make_vec("pendulum", 2000, seed=4, safe_set=safe)
    _, info = env.reset()
    theta = info["state"][:, 0]
    assert float(theta.abs().max()) <= math.pi
    assert stats.kstest(theta.numpy(), stats.uniform(loc=-math.pi, scale=2 * math.pi).cdf
                        ).pvalue > 1e-3


def test_reset_with_given_states():
    env = env_for("pendulum", 3)
    states = torch.tensor([[0.1, 0.2], [-3.0, 7.5], [math.pi, -8.0]], dtype=torch.float64)
    obs, info = env.reset(options={"state": states})
    torch.testing.assert_close(env.state, states)
    torch.testing.assert_close(obs, torch.stack([states[:, 0].sin(), states[:, 0].cos(),
                                                 states[:, 1]], -1))
    with pytest.raises(ValueError, match=r"shape \(3, 2\)"):
        env.reset(options={"state": torch.zeros(2, 2)})
    with pytest.raises(ValueError, match="outside the feasible state box"):
        env.reset(options={"state": torch.tensor([[0.0, 9.0]] * 3)})
    with pytest.raises(ValueError, match="NaN"):
        env.reset(options={"state": torch.tensor([[0.0, float("nan")]] * 3)})
    with pytest.raises(ValueError, match="unknown reset option"):
        env.reset(options={"goal": torch.zeros(3, 2)})


def test_quadrotor_goal_is_initial_position():
    env = env_for("quadrotor", 4, seed=2)
    obs, info = env.reset()
    torch.testing.assert_close(env.goal, info["state"][:, :2])
    torch.testing.assert_close(obs, torch.cat([info["state"], env.goal], -1))
    goal0 = env.goal.clone()
    for _ in range(3):
        obs, *_ = env.step(torch.full((4, 2), 0.5))
    torch.testing.assert_close(env.goal, goal0)
    torch.testing.assert_close(obs[:, 6:], goal0)
    assert not torch.allclose(obs[:, :2], goal0)
    states = torch.zeros(4, 6, dtype=torch.float64)
    goal = torch.tensor([[1.0, 2.0]] * 4, dtype=torch.float64)
    obs, _ = env.reset(options={"state": states, "goal": goal})
    torch.testing.assert_close(env.goal, goal)
    with pytest.raises(ValueError, match="requires options\\['state'\\]"):
        env.reset(options={"goal": goal})
    with pytest.raises(ValueError, match="shape"):
        env.reset(options={"state": states, "goal": goal[:, :1]})


def test_pendulum_has_no_goal():
    env = env_for("pendulum", 2)
    env.reset()
    assert env.goal is None


def test_use_before_reset_raises():
    env = env_for("pendulum", 2)
    for use in (lambda: env.step(torch.zeros(2, 1)), lambda: env.state, env.render,
                env.cut_graph, env.linearise):
        with pytest.raises(RuntimeError, match="reset"):
            use()


# --------------------------------------------------------------------------------------------
# step
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("task", TASKS)
def test_step_returns_five_tuple_with_shapes_and_dtypes(task):
    n, d, n_w, o = DIMS[task]
    env = env_for(task, 5)
    env.reset()
    result = env.step(torch.zeros(5, d))
    assert len(result) == 5
    obs, reward, terminated, truncated, info = result
    assert obs.shape == (5, o) and obs.dtype == torch.float64
    assert reward.shape == (5,) and reward.dtype == torch.float64
    assert terminated.shape == (5,) and terminated.dtype == torch.bool
    assert truncated.shape == (5,) and truncated.dtype == torch.bool
    assert not bool(terminated.any()) and not bool(truncated.any())
    assert info["state"].shape == (5, n) and torch.equal(info["state"], env.state)
    assert info["noise"].shape == (5, n_w)
    assert bool((info["noise"].abs() <= 0.1).all())
    torch.testing.assert_close(obs, env.model.observe(env.state, env.goal))


def test_noise_is_uniform_in_W():
    env = env_for("quadrotor", 1000, seed=9)
    env.reset(options={"state": torch.zeros(1000, 6)})
    noise = env.step(torch.zeros(1000, 2))[4]["noise"]
    for column in noise.T:
        assert stats.kstest(column.numpy(), stats.uniform(loc=-0.1, scale=0.2).cdf).pvalue > 1e-3


def test_float32_and_numpy_actions():
    env = env_for("pendulum", 2, dtype=torch.float32)
    obs, _ = env.reset()
    assert obs.dtype == torch.float32
    obs, reward, *_ = env.step(np.zeros((2, 1)))
    assert obs.dtype == torch.float32 and reward.dtype == torch.float32
    obs, *_ = env.step([[0.5], [-0.5]])
    assert obs.shape == (2, 3)


@pytest.mark.parametrize("action, match", [
    (torch.tensor([[float("nan")], [0.0]]), "NaN"),
    (torch.tensor([[float("inf")], [0.0]]), "NaN/inf"),
    (torch.zeros(2), r"shape \(2, 1\)"),
    (torch.zeros(3, 1), r"shape \(2, 1\)"),
    (torch.zeros(2, 2), r"shape \(2, 1\)"),
    (np.array([["a"], ["b"]]), "array of numbers"),
])
def test_bad_actions_raise(action, match):
    env = env_for("pendulum", 2)
    env.reset()
    with pytest.raises(ValueError, match=match):
        env.step(action)


def test_pendulum_step_matches_hand_computation():
    """theta_ddot = 3g/(2l) sin(theta) + 3/(m l^2) * 30 a + w, semi-implicit Euler, dt 0.05."""
    env = env_for("pendulum", 1, seed=11)
    env.reset(options={"state": torch.tensor([[0.3, -0.5]], dtype=torch.float64)})
    _, reward, _, _, info = env.step(torch.tensor([[0.2]], dtype=torch.float64))
    w = float(info["noise"][0, 0])
    theta_ddot = 14.715 * math.sin(0.3) + 90.0 * 0.2 + w
    theta_dot = -0.5 + 0.05 * theta_ddot
    theta = 0.3 + 0.05 * theta_dot
    torch.testing.assert_close(env.state, torch.tensor([[theta, theta_dot]], dtype=torch.float64),
                               rtol=0, atol=1e-14)
    expected = -(theta**2 + 0.1 * theta_dot**2 + 0.001 * 0.2**2)
    assert abs(float(reward[0]) - expected) < 1e-14


def test_quadrotor_step_matches_hand_computation():
    env = env_for("quadrotor", 1, seed=12)
    s = [0.1, -0.2, 0.1, 0.3, -0.4, 0.5]
    env.reset(options={"state": torch.tensor([s], dtype=torch.float64)})
    a_t, a_phi = 0.4, -0.6
    _, reward, _, _, info = env.step(torch.tensor([[a_t, a_phi]], dtype=torch.float64))
    wx, wz = info["noise"][0].tolist()
    thrust, phi_d = 9.81 + 6 / 7 * a_t, math.pi / 12 * a_phi
    x_dot = 0.3 + 0.05 * (thrust * math.sin(0.1) + wx)
    z_dot = -0.4 + 0.05 * (thrust * math.cos(0.1) - 9.81 + wz)
    phi_dot = 0.5 + 0.05 * (55 * phi_d - 70 * 0.1 - 17 * 0.5)
    x, z, phi = 0.1 + 0.05 * x_dot, -0.2 + 0.05 * z_dot, 0.1 + 0.05 * phi_dot
    expected_state = [x, z, phi, x_dot, z_dot, phi_dot]
    torch.testing.assert_close(env.state[0], torch.tensor(expected_state, dtype=torch.float64),
                               rtol=0, atol=1e-14)
    dist = math.hypot(x - 0.1, z + 0.2)
    expected = -(2.5 * dist + 0.1 * (phi**2 + x_dot**2 + z_dot**2 + phi_dot**2)
                 + 0.002 * thrust**2 + 0.001 * phi_d**2)
    assert abs(float(reward[0]) - expected) < 1e-9


def test_actions_outside_A_are_applied_unclipped():
    env = env_for("pendulum", 2, seed=0)
    start = torch.zeros(2, 2, dtype=torch.float64)
    env.reset(seed=0, options={"state": start})
    env.step(torch.tensor([[1.0], [1.0]]))
    at_bound = env.state.clone()
    env.reset(seed=0, options={"state": start})
    env.step(torch.tensor([[1.5], [-1.5]]))
    # same noise (same seed): the difference is exactly the torque difference (no clipping)
    torch.testing.assert_close(env.state[0, 1] - at_bound[0, 1],
                               torch.tensor(0.05 * 90 * 0.5, dtype=torch.float64))
    assert float(env.state[1, 1]) < 0


def test_wrap_and_clamp_to_S():
    env = env_for("pendulum", 2, seed=0)
    env.reset(options={"state": torch.tensor([[3.1, 5.0], [0.0, 7.9]])})
    env.step(torch.tensor([[1.0], [1.0]]))
    theta, theta_dot = env.state.T
    assert -math.pi < float(theta[0]) < 0  # wrapped across pi
    assert float(theta_dot[1]) == 8.0  # clamped to S


# --------------------------------------------------------------------------------------------
# truncation and same-step autoreset
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("task", TASKS)
def test_truncation_and_same_step_autoreset(task):
    n, d, _, _ = DIMS[task]
    env = env_for(task, 4, seed=21, episode_length=3)
    env.reset()
    action = torch.full((4, d), 0.3)
    for k in range(2):
        *_, truncated, info = env.step(action)
        assert not bool(truncated.any()) and env.elapsed_steps == k + 1
        assert "final_obs" not in info
    goal_before = env.goal
    state_before = env.state
    obs, reward, terminated, truncated, info = env.step(action)
    assert bool(truncated.all()) and not bool(terminated.any())
    assert env.elapsed_steps == 0
    final_state = info["final_state"]
    assert final_state.shape == (4, n) and torch.equal(info["_final_obs"], truncated)
    # the final values are those reached by the step ...
    expected_final = env.model.step(state_before, action.double(), info["noise"])
    torch.testing.assert_close(final_state, expected_final, rtol=0, atol=0)
    torch.testing.assert_close(info["final_obs"], env.model.observe(final_state, goal_before))
    torch.testing.assert_close(reward, env.model.reward(final_state, action.double(),
                                                        goal_before))
    # ... while obs / state already belong to the new episode
    assert torch.equal(info["state"], env.state)
    torch.testing.assert_close(obs, env.model.observe(env.state, env.goal))
    assert not torch.allclose(env.state, final_state)
    assert bool(env.safe_set.state.contains(env.state.unsqueeze(0)).all())
    if task == "quadrotor":
        torch.testing.assert_close(info["final_goal"], goal_before)
        torch.testing.assert_close(env.goal, env.state[:, :2])
    *_, truncated, info = env.step(action)
    assert not bool(truncated.any()) and env.elapsed_steps == 1


# --------------------------------------------------------------------------------------------
# the paper's reference safe sets (read at run time, never copied)
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("task", TASKS)
def test_reference_safe_set_files_drive_resets(task):
    """The reference pendulum set sticks out of ``S`` (|theta_dot| up to ~11.6): resets must
    still be inside both the set and ``S``."""
    path = reference_file("safe_sets", f"{task}.json")
    env = make_vec(task, seed=0, safe_set=path)
    _, info = env.reset()
    states = info["state"]
    assert bool(env.safe_set.contains(states).all())
    low, high = env.model.state_bounds()
    assert bool(((states >= low) & (states <= high)).all())
