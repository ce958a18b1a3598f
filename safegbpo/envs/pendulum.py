"""Inverted-pendulum balance as a :class:`~safegbpo.envs.base.SafeVectorEnv` (SPEC §6).

State ``(theta, theta_dot)`` with ``theta = 0`` upright, ``S = [-pi, pi] x [-8, 8]``, action
``a in [-1, 1]`` (torque ``30 a``), observation ``(sin theta, cos theta, theta_dot)``,
8 envs and 3000 steps per episode by default (the task's registry entry: the reference's,
SPEC §13).
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from safegbpo.envs.base import SafeVectorEnv
from safegbpo.envs.rendering import PendulumScene, Scene
from safegbpo.tasks import PendulumModel

__all__ = ["PendulumEnv"]


class PendulumEnv(SafeVectorEnv):
    """Batched differentiable pendulum (paper Eq 65–66); see :class:`SafeVectorEnv`."""

    task: ClassVar[str] = "pendulum"
    model: PendulumModel

    def _observation_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """``(sin, cos) in [-1, 1]^2``, ``|theta_dot| <= 8``."""
        max_speed = self.model.state_high[1]
        high = np.array([1.0, 1.0, max_speed])
        return -high, high

    def _make_scene(self) -> PendulumScene:
        return PendulumScene(length=self.model.length)

    def _render_frames(self, scene: Scene, states: np.ndarray) -> np.ndarray:
        assert isinstance(scene, PendulumScene)
        return scene.render(states)
