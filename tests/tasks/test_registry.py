"""The task registry: one entry per task, read by everything that accepts a task."""

from __future__ import annotations

import dataclasses

import pytest

from safegbpo.envs import make_vec
from safegbpo.experiments.config import TrainConfig, preset
from safegbpo.tasks import (
    PendulumModel,
    QuadrotorModel,
    TaskSpec,
    get_model,
    get_task,
    register_task,
    task_names,
)

from .conftest import FAKE_KEY, FastPendulumEnv, fake_safe_set, fake_spec

# module-level TaskSpec for the import-path test
IMPORTED = dataclasses.replace(fake_spec(), key="imported-pendulum")
NOT_A_SPEC = 42


def test_builtin_tasks_and_their_entries():
    assert task_names()[:2] == ("pendulum", "quadrotor")
    pendulum, quadrotor = get_task("pendulum"), get_task("quadrotor")
    assert isinstance(pendulum.model, PendulumModel) and isinstance(quadrotor.model,
                                                                    QuadrotorModel)
    assert get_model("quadrotor") is quadrotor.model
    assert (pendulum.num_envs, pendulum.episode_length, pendulum.budget) == (8, 3000, 100_000)
    assert (quadrotor.num_envs, quadrotor.episode_length, quadrotor.budget) == (16, 240, 200_000)
    assert set(pendulum.presets) == set(pendulum.eval_every) == {"shac", "ppo", "sac", "pcrpo"}
    assert (pendulum.label, quadrotor.archive_label) == ("Pendulum", "Quadrotor")


def test_unknown_names_and_bad_entries_raise_naming_the_problem():
    with pytest.raises(ValueError, match="unknown task 'cartpole'.*pendulum.*quadrotor"):
        get_task("cartpole")
    with pytest.raises(ValueError, match="already registered"):
        register_task(get_task("pendulum"))
    with pytest.raises(ValueError, match="module:Class"):
        dataclasses.replace(fake_spec(), env="FastPendulumEnv")
    with pytest.raises(ValueError, match="num_envs"):
        dataclasses.replace(fake_spec(), num_envs=0)
    with pytest.raises(ValueError, match="evaluation interval"):
        dataclasses.replace(fake_spec(), eval_every={})
    with pytest.raises(ValueError, match="model must be a TaskModel"):
        dataclasses.replace(fake_spec(), model="pendulum")


def test_a_task_given_by_import_path_resolves_to_its_spec():
    assert get_task(f"{__name__}:IMPORTED") is IMPORTED
    with pytest.raises(ValueError, match="not a TaskSpec"):
        get_task(f"{__name__}:NOT_A_SPEC")
    with pytest.raises(ValueError, match="cannot import"):
        get_task("no_such_module_xyz:TASK")


def test_one_registry_entry_adds_a_task(fake_task: TaskSpec):
    """Registering the entry is the only step: env defaults, training defaults, presets."""
    assert FAKE_KEY in task_names() and get_task(FAKE_KEY) is fake_task
    env = make_vec(FAKE_KEY, seed=0, safe_set=fake_safe_set())
    assert type(env) is FastPendulumEnv and env.model.dt == 0.02
    assert (env.num_envs, env.episode_length) == (3, 7)
    config = TrainConfig(task=FAKE_KEY, algo="shac")
    assert (config.interactions, config.eval_every, config.num_envs) == (4096, 1024, 3)
    assert config.hyper == preset(FAKE_KEY, "shac") and config.hyper.len_traj == 8
    with pytest.raises(ValueError, match="no preset for task 'fast-pendulum'"):
        preset(FAKE_KEY, "ppo")
    with pytest.raises(ValueError, match="no preset"):
        TrainConfig(task=FAKE_KEY, algo="ppo").validate()
    assert isinstance(fake_task, TaskSpec)
