"""Tasks (SPEC §6, §10): the models (physics) and the registry of everything else about a task.

* :mod:`safegbpo.tasks.base` — :class:`TaskModel`, the interface every task model implements
  (dynamics, reward, observation, boxes, LDI enclosure); :class:`LinearEnclosure`;
* :mod:`safegbpo.tasks.pendulum`, :mod:`safegbpo.tasks.quadrotor` — the paper's tasks;
* :mod:`safegbpo.tasks.energy` — the journal version's household energy system (SPEC §10), with
  its exogenous hourly data in :mod:`safegbpo.tasks.energy_profiles`;
* :mod:`safegbpo.tasks.checks` — the load-time check of a model (boxes, batching, Eq 12);
* :mod:`safegbpo.tasks.registry` — :class:`TaskSpec` and :func:`get_task`, the one place that
  resolves a task name.

This package sits below ``envs`` and ``safesets`` (it imports neither).
"""

from safegbpo.tasks.base import (
    LinearEnclosure,
    TaskModel,
    affine_enclosure,
    remainder_enclosure,
    sampled_remainder,
    wrap_angle,
)
from safegbpo.tasks.checks import TaskModelError, check_task_model
from safegbpo.tasks.energy import EnergyModel
from safegbpo.tasks.pendulum import PendulumModel
from safegbpo.tasks.quadrotor import QuadrotorModel
from safegbpo.tasks.registry import (
    TaskSpec,
    get_model,
    get_task,
    register_task,
    same_task,
    task_import_path,
    task_names,
    tasks,
    unregister_task,
)

__all__ = [
    "EnergyModel",
    "LinearEnclosure",
    "PendulumModel",
    "QuadrotorModel",
    "TaskModel",
    "TaskModelError",
    "TaskSpec",
    "affine_enclosure",
    "check_task_model",
    "get_model",
    "get_task",
    "register_task",
    "remainder_enclosure",
    "same_task",
    "sampled_remainder",
    "task_import_path",
    "task_names",
    "tasks",
    "unregister_task",
    "wrap_angle",
]
