"""The environment contract the learning algorithms and the evaluation code against.

:class:`TrainingEnv` is what :mod:`safegbpo.algorithms` uses of an environment (a
:class:`~safegbpo.envs.SafeVectorEnv` satisfies it): a Gymnasium-style vector API on torch
tensors plus the differentiable-simulation extras SHAC needs (the current ``state`` with its
autograd graph, :meth:`cut_graph`).  What a safeguard reads from its environment is
:class:`safegbpo.safeguards.SafeguardEnv`.
"""

from __future__ import annotations

from typing import Any, Protocol

from torch import Tensor

from safegbpo.tasks import TaskModel

__all__ = ["TrainingEnv"]


class TrainingEnv(Protocol):
    """A batch of ``num_envs`` environments stepped together (see
    :class:`~safegbpo.envs.SafeVectorEnv` for the semantics).

    Attributes:
        num_envs: ``N``.
        episode_length: steps per episode (all environments truncate together).
        model: the task model (``obs_dim``, ``action_dim``, boxes, dynamics).
    """

    num_envs: int
    episode_length: int
    model: TaskModel

    @property
    def state(self) -> Tensor:
        """Current states ``(N, n)`` (with the autograd graph since the last cut)."""
        ...

    def reset(self, *, seed: int | list[int] | None = None,
              options: dict[str, Any] | None = None) -> tuple[Tensor, dict[str, Any]]: ...

    def step(self, actions: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor, dict[str, Any]]:
        ...

    def cut_graph(self) -> None: ...
