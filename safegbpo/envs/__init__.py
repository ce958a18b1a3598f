"""Differentiable vectorised tasks (SPEC §6, §10): pendulum and planar quadrotor balance, and
the household energy system.

:func:`make_vec` builds the :class:`SafeVectorEnv` of a task named in the task registry
(:func:`safegbpo.tasks.get_task`); the pure task models live in :mod:`safegbpo.tasks`.
"""

from __future__ import annotations

import re
import sys
from typing import Any

import torch

from safegbpo.envs.base import (
    Linearisation,
    SafeVectorEnv,
    StepObserver,
    observe_steps,
    resolve_safe_set,
)
from safegbpo.envs.energy import EnergyEnv
from safegbpo.envs.generic import TaskEnv
from safegbpo.envs.pendulum import PendulumEnv
from safegbpo.envs.protocol import TrainingEnv
from safegbpo.envs.quadrotor import QuadrotorEnv
from safegbpo.loading import load_attr
from safegbpo.tasks import TaskModel, get_model, get_task

__all__ = [
    "EnergyEnv",
    "Linearisation",
    "PendulumEnv",
    "QuadrotorEnv",
    "SafeVectorEnv",
    "StepObserver",
    "TaskEnv",
    "TaskModel",
    "TrainingEnv",
    "env_class",
    "get_model",
    "make_vec",
    "observe_steps",
    "resolve_safe_set",
]


_BOUND: dict[tuple[type, str], type[SafeVectorEnv]] = {}


def env_class(task: str) -> type[SafeVectorEnv]:
    """The environment class of ``task`` (its registry entry's ``env``).  A class without a
    ``task`` of its own (the generic :class:`TaskEnv`, or a user's subclass of it) is bound to
    the task: a subclass whose ``task`` is the entry's key (cached, one per class and task).

    Raises:
        ValueError: the entry's ``env`` is not a :class:`SafeVectorEnv` subclass, or it is bound
            to another task.
    """
    spec = get_task(task)
    cls = load_attr(spec.env, what="Class")
    if not (isinstance(cls, type) and issubclass(cls, SafeVectorEnv)):
        raise ValueError(f"task {spec.key!r}: env {spec.env!r} is not a SafeVectorEnv subclass")
    if not cls.task:
        bound = _BOUND.get((cls, spec.key))
        if bound is None:
            # a module-level name, so that pickle (checkpoints) finds the bound class
            name = f"{cls.__name__}_{re.sub(r'[^0-9a-zA-Z_]', '_', spec.key)}"
            bound = type(name, (cls,), {"task": spec.key, "__module__": cls.__module__,
                                        "__qualname__": name})
            setattr(sys.modules[cls.__module__], name, bound)
            _BOUND[(cls, spec.key)] = bound
        return bound
    if cls.task != spec.key:
        raise ValueError(f"task {spec.key!r}: env {spec.env!r} is the environment of task "
                         f"{cls.task!r} (its class attribute 'task')")
    return cls


def make_vec(
    task: str,
    num_envs: int | None = None,
    *,
    seed: int | None = None,
    safe_set: Any = None,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float64,
    **kwargs: Any,
) -> SafeVectorEnv:
    """The vector env of ``task`` (a key of the task registry, e.g. ``'pendulum'``).

    Args:
        task: task name (:func:`safegbpo.tasks.get_task`).
        num_envs: number of environments (default: the task's).
        seed: seed of the env's generator (see :class:`SafeVectorEnv`).
        safe_set: ``None`` -> the project's certified set (:func:`safegbpo.safesets.get_safe_set`),
            a path (``str`` / ``os.PathLike``) -> :meth:`safegbpo.safesets.SafeSet.load`, or a
            :class:`~safegbpo.safesets.SafeSet` of this task.
        device, dtype: of the env's tensors.
        **kwargs: ``episode_length``, ``render_mode`` and the task's env options (defaults:
            the registry entry's ``env_options``; e.g. the energy task's ``profiles``,
            ``start_hour``, :class:`~safegbpo.envs.energy.EnergyEnv`).

    Raises:
        ValueError: unknown task (the message lists the tasks), or a safe set of another task /
            dimension.
    """
    spec = get_task(task)
    options = {**spec.env_options, **kwargs}
    return env_class(task)(num_envs=num_envs, seed=seed, safe_set=safe_set, device=device,
                           dtype=dtype, **options)
