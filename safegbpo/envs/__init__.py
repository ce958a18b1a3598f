"""Differentiable vectorised tasks (SPEC §6, §10): pendulum and planar quadrotor balance, and the
household energy system.

:func:`make_vec` builds a :class:`SafeVectorEnv` for a task name; the pure task models live in
:mod:`safegbpo.envs.models`.
"""

from __future__ import annotations

from typing import Any

import torch

from safegbpo.envs.base import Linearisation, SafeVectorEnv, resolve_safe_set
from safegbpo.envs.energy import EnergyEnv
from safegbpo.envs.models import MODELS, TaskModel, get_model
from safegbpo.envs.pendulum import PendulumEnv
from safegbpo.envs.quadrotor import QuadrotorEnv

__all__ = [
    "ENVS",
    "EnergyEnv",
    "Linearisation",
    "MODELS",
    "PendulumEnv",
    "QuadrotorEnv",
    "SafeVectorEnv",
    "TaskModel",
    "get_model",
    "make_vec",
    "resolve_safe_set",
]

ENVS: dict[str, type[SafeVectorEnv]] = {"pendulum": PendulumEnv, "quadrotor": QuadrotorEnv,
                                        "energy": EnergyEnv}


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
    """The vector env of ``task`` (``'pendulum'``, ``'quadrotor'`` or ``'energy'``).

    Args:
        task: task name.
        num_envs: number of environments (default: the task's, SPEC §6).
        seed: seed of the env's generator (see :class:`SafeVectorEnv`).
        safe_set: ``None`` -> the project's certified set (:func:`safegbpo.safesets.get_safe_set`),
            a path (``str`` / ``os.PathLike``) -> :meth:`safegbpo.safesets.SafeSet.load`, or a
            :class:`~safegbpo.safesets.SafeSet` of this task.
        device, dtype: of the env's tensors.
        **kwargs: ``episode_length``, ``render_mode``; energy only: ``profiles``,
            ``start_hour`` (:class:`~safegbpo.envs.energy.EnergyEnv`).

    Raises:
        ValueError: unknown task (the message lists the tasks), or a safe set of another task /
            dimension.
    """
    try:
        env_cls = ENVS[task]
    except (KeyError, TypeError):
        raise ValueError(f"unknown task {task!r}; expected one of {sorted(ENVS)}") from None
    return env_cls(num_envs=num_envs, seed=seed, safe_set=safe_set, device=device, dtype=dtype,
                   **kwargs)
