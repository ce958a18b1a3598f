"""A cart-pole balance task defined outside the safegbpo package (``docs/user-tasks.md``).

Load it by import path wherever safegbpo takes a task (with this directory on ``PYTHONPATH``)::

    safegbpo safe-set compute --task cartpole_task:CARTPOLE --out cartpole.json

The model is the classic cart-pole of Barto, Sutton & Anderson (1983) as in Gymnasium's
``CartPole`` (same masses, pole half-length and force), with a continuous force, additive
acceleration disturbances and semi-implicit Euler steps -- small and honest:

* state ``(x_dot, theta, theta_dot)``, ``theta = 0`` upright; ``S = [-3, 3] x [-0.3, 0.3] x
  [-2, 2]`` (a balance task: the pole stays within about 17 degrees, the cart below 3 m/s);
  the cart position is not part of the state: it is a pure integrator of ``x_dot`` that no
  safety constraint needs here (the track is assumed long enough), and with it the RCI program
  (one-step contraction of a zonotope template, SPEC §7) was infeasible for every template
  tried (8-16 directions) under any non-zero disturbance -- measured, not assumed;
* action ``a in [-1, 1]``, force ``F = 10 a`` N on the cart;
* disturbance ``w = (w_x, w_theta)`` in ``[-0.1, 0.1]^2`` (m/s^2, rad/s^2) added to the cart's
  and the pole's accelerations;
* with ``M = m_c + m_p`` and ``q = (F + m_p l theta_dot^2 sin theta) / M``::

      theta_ddot = (g sin theta - cos theta q) / (l (4/3 - m_p cos^2 theta / M)) + w_theta
      x_ddot     = q - m_p l theta_ddot_0 cos theta / M + w_x     (theta_ddot_0: without w)

  then ``x_dot' = x_dot + dt x_ddot``, ``theta_dot' = theta_dot + dt theta_ddot``,
  ``theta' = theta + dt theta_dot'`` (semi-implicit Euler, ``dt = 0.02`` s).

Both accelerations are affine in ``F`` and in ``w`` (nonlinear in the state), so the dynamics
are control- and noise-affine (Eq 12) -- safegbpo checks this when the task is loaded.  The model
supplies no bound on its linearisation remainder, so its safe sets are computed with a remainder
*estimated from samples* and labelled "verified by sampling, not certified".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
from torch import Tensor

from safegbpo.tasks import TaskModel, TaskSpec

__all__ = ["CARTPOLE", "CartPoleModel"]


@dataclass(frozen=True)
class CartPoleModel(TaskModel):
    """Cart-pole balance (module docstring).  The fields are the constants the safe set
    depends on (they are hashed into the safe-set cache key)."""

    name: str = "cartpole"
    state_dim: int = 3
    action_dim: int = 1
    noise_dim: int = 2
    obs_dim: int = 3
    dt: float = 0.02
    gravity: float = 9.8
    cart_mass: float = 1.0
    pole_mass: float = 0.1
    pole_half_length: float = 0.5
    force_max: float = 10.0
    state_high: tuple[float, ...] = (3.0, 0.3, 2.0)
    noise_bound: tuple[float, ...] = (0.1, 0.1)
    state_names: tuple[str, ...] = ("x_dot", "theta", "theta_dot")
    action_names: tuple[str, ...] = ("force",)

    enclosure_index: ClassVar[int] = 1  # the RCI program searches the bound on theta

    def dynamics(self, state: Tensor, action: Tensor, noise: Tensor) -> Tensor:
        x_dot, theta, theta_dot = state.unbind(-1)
        force = self.force_max * action[..., 0]
        total = self.cart_mass + self.pole_mass
        ml = self.pole_mass * self.pole_half_length
        sin, cos = torch.sin(theta), torch.cos(theta)
        q = (force + ml * theta_dot**2 * sin) / total
        theta_ddot = (self.gravity * sin - cos * q) / (
            self.pole_half_length * (4.0 / 3.0 - self.pole_mass * cos**2 / total))
        x_ddot = q - ml * theta_ddot * cos / total + noise[..., 0]
        theta_ddot = theta_ddot + noise[..., 1]
        new_x_dot = x_dot + self.dt * x_ddot
        new_theta_dot = theta_dot + self.dt * theta_ddot
        return torch.stack([new_x_dot, theta + self.dt * new_theta_dot, new_theta_dot], dim=-1)

    def reward(self, next_state: Tensor, action: Tensor, goal: Tensor | None = None) -> Tensor:
        """``-(10 theta^2 + 0.1 x_dot^2 + 0.1 theta_dot^2 + 0.01 a^2)``."""
        x_dot, theta, theta_dot = next_state.unbind(-1)
        return -(10.0 * theta**2 + 0.1 * x_dot**2 + 0.1 * theta_dot**2
                 + 0.01 * (action**2).sum(-1))

    def observe(self, state: Tensor, goal: Tensor | None = None) -> Tensor:
        """The state itself."""
        return state

    def observation_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        high = np.asarray(self.state_high)
        return -high, high


CARTPOLE = TaskSpec(
    key="cartpole",
    label="Cart-pole",
    model=CartPoleModel(),
    episode_length=200,  # 4 s
    num_envs=8,
    budget=20_000,
    # SHAC only (the example trains SHAC); an algorithm without a preset needs --hyper and
    # --eval-every on the command line
    eval_every={"shac": 1024},  # 4 windows x 32 steps x 8 envs
    presets={"shac": dict(policy_hidden=(64, 64), policy_lr=1e-3, critic_hidden=(64, 64),
                          critic_lr=2e-3, len_traj=32, polyak=0.4, td_weight=0.95,
                          vf_num_fits=16, vf_fit_num_batches=1)},
    rci=dict(num_directions=8, template_powers=(1, 3, 10), lqr_control_weight=0.1,
             bound_evaluations=5, volume_iterations=4),
)
