"""User-defined tasks: the load-time Eq 12 check, loading by import path, the enclosure
cases (linear / task-supplied remainder bound / sampled estimate) and the certification label
of their safe sets (``docs/user-tasks.md``)."""

from __future__ import annotations

import dataclasses
import json
import sys
import textwrap
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pytest
import torch

from safegbpo.safesets.safe_set import CERTIFIED, SAMPLED, SafeSet
from safegbpo.sets import Zonotope
from safegbpo.tasks import (
    TaskModel,
    TaskModelError,
    TaskSpec,
    get_task,
    same_task,
    task_import_path,
    task_names,
    tasks,
)


@dataclass(frozen=True)
class Tilt(TaskModel):
    """A 2-state pendulum-like model: ``v' = v + dt (k sin x + a + w)``, ``x' = x + dt v'``."""

    name: str = "tilt"
    state_dim: int = 2
    action_dim: int = 1
    noise_dim: int = 1
    obs_dim: int = 2
    dt: float = 0.05
    gain: float = 2.0
    state_high: tuple[float, ...] = (1.0, 2.0)
    noise_bound: tuple[float, ...] = (0.05,)
    state_names: tuple[str, ...] = ("x", "v")
    action_names: tuple[str, ...] = ("u",)
    mode: str = "ok"  # "ok", "square_action", "action_times_noise", "noise_cubed"

    enclosure_index: ClassVar[int] = 0

    def dynamics(self, state, action, noise):
        x, v = state.unbind(-1)
        a, w = action[..., 0], noise[..., 0]
        drive = 5.0 * a
        if self.mode == "square_action":
            drive = drive + a**2
        elif self.mode == "action_times_noise":
            drive = drive + a * w
        disturbance = w**3 if self.mode == "noise_cubed" else w
        v2 = v + self.dt * (self.gain * torch.sin(x) + drive + disturbance)
        return torch.stack([x + self.dt * v2, v2], dim=-1)

    def reward(self, next_state, action, goal=None):
        return -(next_state**2).sum(-1)

    def observe(self, state, goal=None):
        return state


@dataclass(frozen=True)
class BoundedTilt(Tilt):
    """``Tilt`` with a proven remainder bound: ``|k (sin x - x)| <= k |x|^3 / 6``."""

    def linearisation_remainder(self, bound):
        r = self.gain * bound**3 / 6.0
        acc = np.array([self.dt**2 * r, self.dt * r])
        return -acc, acc


@dataclass(frozen=True)
class WrongBoundTilt(Tilt):
    def linearisation_remainder(self, bound):
        return np.zeros(2), np.zeros(2)


@dataclass(frozen=True)
class LinearTilt(Tilt):
    linear: ClassVar[bool] = True

    def dynamics(self, state, action, noise):
        x, v = state.unbind(-1)
        v2 = v + self.dt * (self.gain * x + 5.0 * action[..., 0] + noise[..., 0])
        return torch.stack([x + self.dt * v2, v2], dim=-1)


@pytest.mark.parametrize("mode, what, component", [
    ("square_action", "the action a", "'v'"),
    ("action_times_noise", "cross term", "'v'"),
    ("noise_cubed", "the noise w", "'v'"),
])
def test_non_affine_dynamics_are_rejected_naming_the_violation(mode, what, component):
    with pytest.raises(TaskModelError) as err:
        TaskSpec(key="tilt", model=Tilt(mode=mode), episode_length=10)
    message = str(err.value)
    assert "not affine" in message and what in message and component in message
    assert "task 'tilt'" in message


def test_other_contract_violations_are_named():
    with pytest.raises(TaskModelError, match="state_names"):
        TaskSpec(key="t", model=Tilt(state_names=("x",)), episode_length=10)
    with pytest.raises(TaskModelError, match="box S .* empty or flat"):
        TaskSpec(key="t", model=Tilt(state_high=(1.0, 0.0)), episode_length=10)
    with pytest.raises(TaskModelError, match="fixed point"):
        @dataclass(frozen=True)
        class Drift(Tilt):
            def dynamics(self, state, action, noise):
                return super().dynamics(state, action, noise) + 0.1
        TaskSpec(key="t", model=Drift(), episode_length=10)


def test_builtin_tasks_pass_the_check_and_are_unchanged():
    assert task_names()[:3] == ("pendulum", "quadrotor", "energy")
    for key, spec in tasks().items():
        assert dataclasses.replace(spec).key == key  # rebuilding re-runs the check


def test_import_path_loading_remembers_the_key_without_registering(tmp_path, monkeypatch):
    module = tmp_path / "my_tilt_task.py"
    module.write_text(textwrap.dedent("""
        from tests.tasks.test_user_tasks import Tilt
        from safegbpo.tasks import TaskSpec
        TASK = TaskSpec(key="my-tilt", model=Tilt(), episode_length=20)
        NOT_A_TASK = 3
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    spec = get_task("my_tilt_task:TASK")
    assert spec.key == "my-tilt" and spec.label == "my-tilt"
    assert get_task("my-tilt") is spec and same_task("my-tilt", "my_tilt_task:TASK")
    assert task_import_path("my-tilt") == "my_tilt_task:TASK"
    assert "my-tilt" not in task_names()
    with pytest.raises(ValueError, match="not a TaskSpec"):
        get_task("my_tilt_task:NOT_A_TASK")
    from safegbpo.envs import make_vec
    env = make_vec("my_tilt_task:TASK", num_envs=4, seed=0,
                   safe_set=_box_set("my-tilt", Tilt()))
    obs, _ = env.reset(seed=0)
    assert obs.shape == (4, 2) and env.task == "my-tilt" and env.episode_length == 20
    _, reward, *_ = env.step(torch.zeros(4, 1, dtype=torch.float64))
    assert reward.shape == (4,)
    sys.modules.pop("my_tilt_task", None)


def _box_set(task, model):
    low, high = model.state_bounds()
    return SafeSet(task, Zonotope.from_box(0.5 * low, 0.5 * high), certification="not certified")


@pytest.mark.parametrize("model, certified, basis", [
    (LinearTilt(), True, "exact"),
    (BoundedTilt(), True, "supplied by the task"),
    (Tilt(), False, "estimated from"),
])
def test_enclosure_cases(model, certified, basis):
    enc = model.linear_enclosure(0.5)
    assert enc.certified is certified and basis in enc.basis
    assert model.enclosure_certified() is certified
    if not certified:  # the estimate covers the residuals actually seen on fresh samples
        from safegbpo.tasks.base import _remainder_points, linearisation_residuals
        res = linearisation_residuals(model, *_remainder_points(model, 0.5, 3000, 7)).numpy()
        centre, radius = enc.state_remainder_center, enc.state_remainder_radius
        assert np.all(np.abs(res - centre) <= radius + 1e-12)
        assert radius[1] > 0


def test_a_wrong_remainder_bound_is_refused():
    with pytest.raises(ValueError, match="is not a bound"):
        WrongBoundTilt().linear_enclosure(0.5)


@pytest.mark.parametrize("model, label", [(BoundedTilt(), CERTIFIED), (Tilt(), SAMPLED)])
def test_rci_sets_carry_the_certification_label(tmp_path, model, label):
    from safegbpo.safesets.rci import compute_rci
    from safegbpo.safesets.verify import verify_safe_set
    from safegbpo.tasks.registry import _LOADED

    spec = TaskSpec(key=f"tilt-{label[:4]}", model=model, episode_length=10)
    _LOADED[spec.key] = ("tests:none", spec)
    try:
        safe = compute_rci(spec.key)
        assert safe.certification == label
        path = safe.save(tmp_path / "set.json")
        data = json.loads(path.read_text())
        assert data["certification"] == label
        assert SafeSet.load(path).certification == label
        report = verify_safe_set(safe, num_samples=50, reference=None)
        assert report.verdict and report.certification == label
        # the rule for old files without the field: the task decides
        del data["certification"]
        path.write_text(json.dumps(data))
        assert SafeSet.load(path).certification == label
        data["certification"] = "proven by vibes"
        path.write_text(json.dumps(data))
        with pytest.raises(ValueError, match="certification"):
            SafeSet.load(path)
    finally:
        _LOADED.pop(spec.key, None)


def test_builtin_sets_without_the_field_load_as_certified():
    low, high = get_task("pendulum").model.state_bounds()
    data = SafeSet("pendulum", Zonotope.from_box(0.5 * low, 0.5 * high)).to_dict()
    data.pop("certification")
    assert SafeSet.from_dict(data).certification == CERTIFIED


def test_a_task_named_by_import_path_trains_as_a_seed_population(tmp_path, monkeypatch):
    """The set file names the task by its key, the command by its import path: both the
    single-seed and the population path accept the pair (``train --task mod:ATTR --seeds``)."""
    from safegbpo.experiments.config import TrainConfig
    from safegbpo.experiments.runner import train_population

    module = tmp_path / "pop_tilt_task.py"
    module.write_text(textwrap.dedent("""
        from tests.tasks.test_user_tasks import Tilt
        from safegbpo.tasks import TaskSpec
        TASK = TaskSpec(key="pop-tilt", model=Tilt(), episode_length=16, num_envs=2,
                        eval_every={"shac": 64})
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    from safegbpo.tasks.registry import _LOADED

    try:
        assert get_task("pop_tilt_task:TASK").key == "pop-tilt"
        set_file = _box_set("pop-tilt", Tilt()).save(tmp_path / "pop-tilt.json")
        configs = [TrainConfig(task="pop_tilt_task:TASK", algo="shac",
                               seed=seed, interactions=64, eval_every=64, eval_episodes=1,
                               safe_set=str(set_file),
                               hyper={"len_traj": 8, "vf_num_fits": 1})
                   for seed in (0, 1)]
        results = train_population(configs, [tmp_path / "s0", tmp_path / "s1"],
                                   progress=False)
        assert [r["status"] for r in results] == ["finished", "finished"]
        assert all(r["population"]["members"] == 2 for r in results)
        assert all(r["safe_set_certification"] == "not certified" for r in results)
    finally:
        sys.modules.pop("pop_tilt_task", None)
        _LOADED.pop("pop-tilt", None)
