"""The generic environment of a task without its own env class (user-defined tasks).

:class:`TaskEnv` is a :class:`~safegbpo.envs.base.SafeVectorEnv` that takes everything from the
task's model and registry entry: dynamics, reward and observation of the model (the model's
``reward(next_state, action)`` and ``observe(state)``: no goal), observation bounds from
:meth:`~safegbpo.tasks.TaskModel.observation_bounds` (unbounded by default), reset states uniform
in the safe set ∩ ``S`` (:meth:`SafeVectorEnv.sample_safe_states`; override it in a subclass
for another reset distribution -- the states must stay inside the safe set), no rendering.

A :class:`~safegbpo.tasks.TaskSpec` without ``env`` uses it; :func:`safegbpo.envs.env_class`
binds it to the task (a subclass whose ``task`` is the spec's key), so one class serves every
such task.  A task may also subclass :class:`TaskEnv` (or :class:`SafeVectorEnv`) in its own
package and name it as ``env='mypkg.mymodule:MyEnv'``, leaving ``task`` empty to be bound the
same way.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from safegbpo.envs.base import SafeVectorEnv
from safegbpo.envs.rendering import Scene

__all__ = ["TaskEnv"]


class TaskEnv(SafeVectorEnv):
    """Vector env of any task model (module docstring); built through ``make_vec(task)``."""

    task: ClassVar[str] = ""

    def _observation_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        bounds = self.model.observation_bounds()
        o = self.model.obs_dim
        if bounds is None:
            return np.full(o, -np.inf), np.full(o, np.inf)
        low, high = (np.asarray(b, dtype=np.float64).reshape(-1) for b in bounds)
        if low.shape != (o,) or high.shape != (o,) or np.any(low > high):
            raise ValueError(f"task {self.task!r}: observation_bounds() must return (low, high) "
                             f"of shape ({o},) with low <= high, got {low.shape}, {high.shape}")
        return low, high

    def _make_scene(self) -> Scene:
        raise NotImplementedError(f"task {self.task!r} has no renderer (the generic TaskEnv "
                                  "does not draw; subclass it and implement _make_scene)")
