"""Planar-quadrotor balance as a :class:`~safegbpo.envs.base.SafeVectorEnv` (SPEC §6).

State ``(x, z, phi, x_dot, z_dot, phi_dot)``, ``S = ±(8, 8, pi/12, 0.8, 1.0, pi/2)``, action
``(a_T, a_phi) in [-1, 1]^2``; the goal ``(x_g, z_g)`` is each episode's initial position and
the observation is the state followed by the goal (8 values).  16 envs, 240 steps by default.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
from torch import Tensor

from safegbpo.envs.base import SafeVectorEnv
from safegbpo.envs.rendering import QuadrotorScene, Scene
from safegbpo.tasks import QuadrotorModel

__all__ = ["QuadrotorEnv"]


class QuadrotorEnv(SafeVectorEnv):
    """Batched differentiable planar quadrotor (paper Eq 67–68); see :class:`SafeVectorEnv`.

    Goal: the initial position ``state[:, :2]`` of each episode (detached: it is a target, not
    a decision variable), or ``options["goal"]`` ``(N, 2)`` passed to :meth:`reset` together
    with ``options["state"]``.  The reward is measured against the goal of the episode the step
    belongs to, also on the truncating step (``info["final_goal"]``).
    """

    task: ClassVar[str] = "quadrotor"
    model: QuadrotorModel

    def _observation_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """State box ``S`` followed by the position bounds of the goal (a position in ``S``)."""
        state_high = np.asarray(self.model.state_high, dtype=np.float64)
        high = np.concatenate([state_high, state_high[:2]])
        return -high, high

    def _reset_option_keys(self) -> set[str]:
        return {"state", "goal"}

    def _initial_goal(self, states: Tensor, options: dict[str, Any]) -> Tensor:
        goal = options.get("goal")
        if goal is None:
            return states[:, :2].detach().clone()
        if options.get("state") is None:
            raise ValueError("options['goal'] requires options['state'] (the goal of a sampled "
                             "episode is its initial position)")
        goal = self._to_tensor(goal, "options['goal']")
        if tuple(goal.shape) != (self.num_envs, 2):
            raise ValueError(f"options['goal'] must have shape ({self.num_envs}, 2), "
                             f"got {tuple(goal.shape)}")
        if not bool(goal.isfinite().all()):
            raise ValueError("options['goal'] contains NaN/inf")
        return goal.detach()

    def _make_scene(self) -> QuadrotorScene:
        return QuadrotorScene()

    def _render_frames(self, scene: Scene, states: np.ndarray) -> np.ndarray:
        assert isinstance(scene, QuadrotorScene) and self.goal is not None
        return scene.render(states, self.goal.detach().cpu().numpy())
