"""Inverted-pendulum balance (SPEC §6, paper Eq 65–66): the model and its LDI enclosure."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
from torch import Tensor

from safegbpo.tasks.base import LinearEnclosure, TaskModel

__all__ = ["PendulumModel"]


@dataclass(frozen=True)
class PendulumModel(TaskModel):
    """Inverted pendulum balance (SPEC §6, paper Eq 65–66). ``theta = 0`` is upright.

    ``theta_ddot = (3 g / (2 l)) sin(theta) + (3 / (m l^2)) * tau + w``, ``tau = 30 a``;
    semi-implicit Euler: ``theta_dot' = theta_dot + dt * theta_ddot``,
    ``theta' = theta + dt * theta_dot'``.  The noise is an additive acceleration disturbance
    on ``theta_ddot`` (decision: SPEC §6 only gives its bound), uniform in ``[-0.1, 0.1]``.
    """

    name: str = "pendulum"
    state_dim: int = 2
    action_dim: int = 1
    noise_dim: int = 1
    obs_dim: int = 3
    dt: float = 0.05
    gravity: float = 9.81
    length: float = 1.0
    mass: float = 1.0
    max_torque: float = 30.0
    state_high: tuple[float, ...] = (math.pi, 8.0)
    noise_bound: tuple[float, ...] = (0.1,)
    angle_indices: tuple[int, ...] = (0,)
    state_names: tuple[str, ...] = ("theta", "theta_dot")
    action_names: tuple[str, ...] = ("torque",)

    enclosure_index: ClassVar[int] = 0  # theta

    def dynamics(self, state: Tensor, action: Tensor, noise: Tensor) -> Tensor:
        theta, theta_dot = state[..., 0], state[..., 1]
        torque = self.max_torque * action[..., 0]
        theta_ddot = (
            3.0 * self.gravity / (2.0 * self.length) * torch.sin(theta)
            + 3.0 / (self.mass * self.length**2) * torque
            + noise[..., 0]
        )
        new_theta_dot = theta_dot + self.dt * theta_ddot
        new_theta = theta + self.dt * new_theta_dot
        return torch.stack([new_theta, new_theta_dot], dim=-1)

    def reward(self, next_state: Tensor, action: Tensor, goal: Tensor | None = None) -> Tensor:
        """``-(theta^2 + 0.1 theta_dot^2 + 0.001 a^2)`` on the state after the step (Eq 66)."""
        theta, theta_dot = next_state[..., 0], next_state[..., 1]
        return -(theta**2 + 0.1 * theta_dot**2 + 0.001 * (action**2).sum(-1))

    def observe(self, state: Tensor, goal: Tensor | None = None) -> Tensor:
        """``(sin theta, cos theta, theta_dot)``."""
        theta, theta_dot = state[..., 0], state[..., 1]
        return torch.stack([torch.sin(theta), torch.cos(theta), theta_dot], dim=-1)

    def linear_enclosure(self, bound: float) -> LinearEnclosure:
        """Sector enclosure of ``k sin(theta)`` (``k = 3g/(2l)``) for ``|theta| <= bound <= pi``.

        With ``sigma = sin(theta)/theta`` (``= 1`` at 0), ``sin(theta) = theta + (sigma - 1)
        theta`` and ``sigma in [sin(nu)/nu, 1]`` for ``|theta| <= nu <= pi`` (``sin(x)/x``
        decreases on ``[0, pi]``).  Vertices ``A_k = A + k (sigma_k - 1) E e_theta^T``,
        ``sigma_k in {sin(nu)/nu, 1}``; no box remainder.
        """
        if not 0.0 < bound <= math.pi:
            raise ValueError(f"pendulum enclosure needs 0 < bound <= pi, got {bound}")
        x_e, u_e, A, B, E = self.equilibrium_jacobians()
        k = 3.0 * self.gravity / (2.0 * self.length)
        sigma_min = math.sin(bound) / bound
        e_theta = np.eye(self.state_dim)[0]
        A_v = np.stack([A + k * (sigma - 1.0) * np.outer(E[:, 0], e_theta)
                        for sigma in (sigma_min, 1.0)])
        B_v = np.stack([B, B])
        zeros = np.zeros(self.noise_dim)
        return LinearEnclosure(x_e, u_e, A_v, B_v, E, np.asarray(self.noise_bound, float),
                               zeros, zeros.copy(), self.enclosure_index, float(bound))
