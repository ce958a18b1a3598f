"""Planar-quadrotor balance (SPEC §6, Mitchell et al. 2019; paper Eq 67–68): the model and its
LDI enclosure."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
from torch import Tensor

from safegbpo.tasks.base import LinearEnclosure, TaskModel

__all__ = ["QuadrotorModel"]


@dataclass(frozen=True)
class QuadrotorModel(TaskModel):
    """Planar quadrotor balance (SPEC §6, Mitchell et al. 2019; paper Eq 67–68).

    State ``(x, z, phi, x_dot, z_dot, phi_dot)``, action ``(a_T, a_phi)``:
    ``T = g + (6/7) a_T``, ``phi_d = (pi/12) a_phi``;
    ``x_ddot = T sin(phi) + w_x``, ``z_ddot = T cos(phi) - g + w_z``,
    ``phi_ddot = 55 phi_d - 70 phi - 17 phi_dot``; semi-implicit Euler (velocities first, then
    positions with the new velocities).  The goal is the initial position ``(x_g, z_g)``.  The
    noise is an additive acceleration disturbance on ``x_ddot`` and ``z_ddot``.
    """

    name: str = "quadrotor"
    state_dim: int = 6
    action_dim: int = 2
    noise_dim: int = 2
    obs_dim: int = 8
    dt: float = 0.05
    gravity: float = 9.81
    thrust_gain: float = 6.0 / 7.0
    roll_gain: float = math.pi / 12.0
    k_phi_d: float = 55.0
    k_phi: float = 70.0
    k_phi_dot: float = 17.0
    state_high: tuple[float, ...] = (8.0, 8.0, math.pi / 12.0, 0.8, 1.0, math.pi / 2.0)
    noise_bound: tuple[float, ...] = (0.1, 0.1)
    angle_indices: tuple[int, ...] = ()  # |phi| <= pi/12 by S: no wrapping needed
    state_names: tuple[str, ...] = ("x", "z", "phi", "x_dot", "z_dot", "phi_dot")
    action_names: tuple[str, ...] = ("thrust", "roll")

    enclosure_index: ClassVar[int] = 2  # phi

    def thrust(self, action: Tensor) -> Tensor:
        return self.gravity + self.thrust_gain * action[..., 0]

    def desired_roll(self, action: Tensor) -> Tensor:
        return self.roll_gain * action[..., 1]

    def dynamics(self, state: Tensor, action: Tensor, noise: Tensor) -> Tensor:
        x, z, phi, x_dot, z_dot, phi_dot = state.unbind(-1)
        thrust = self.thrust(action)
        phi_d = self.desired_roll(action)
        x_ddot = thrust * torch.sin(phi) + noise[..., 0]
        z_ddot = thrust * torch.cos(phi) - self.gravity + noise[..., 1]
        phi_ddot = self.k_phi_d * phi_d - self.k_phi * phi - self.k_phi_dot * phi_dot
        new_x_dot = x_dot + self.dt * x_ddot
        new_z_dot = z_dot + self.dt * z_ddot
        new_phi_dot = phi_dot + self.dt * phi_ddot
        new_x = x + self.dt * new_x_dot
        new_z = z + self.dt * new_z_dot
        new_phi = phi + self.dt * new_phi_dot
        return torch.stack([new_x, new_z, new_phi, new_x_dot, new_z_dot, new_phi_dot], dim=-1)

    def reward(self, next_state: Tensor, action: Tensor, goal: Tensor | None = None) -> Tensor:
        """Eq 68: ``-(2.5 ||(x,z)-goal|| + 0.1 (phi^2 + x_dot^2 + z_dot^2 + phi_dot^2)
        + 0.002 T^2 + 0.001 phi_d^2)``.

        The distance uses ``sqrt(d^2 + 1e-12)`` so the reward stays differentiable at the goal
        (the deviation from the exact norm is below 1e-6).
        """
        x, z, phi, x_dot, z_dot, phi_dot = next_state.unbind(-1)
        if goal is None:
            goal = torch.zeros_like(next_state[..., :2])
        dist = torch.sqrt((x - goal[..., 0]) ** 2 + (z - goal[..., 1]) ** 2 + 1e-12)
        thrust = self.thrust(action)
        phi_d = self.desired_roll(action)
        return -(
            2.5 * dist
            + 0.1 * phi**2
            + 0.1 * x_dot**2
            + 0.1 * z_dot**2
            + 0.1 * phi_dot**2
            + 0.002 * thrust**2
            + 0.001 * phi_d**2
        )

    def observe(self, state: Tensor, goal: Tensor | None = None) -> Tensor:
        """State plus goal ``(x_g, z_g)``: 8 values."""
        if goal is None:
            goal = torch.zeros_like(state[..., :2])
        return torch.cat([state, goal], dim=-1)

    def equilibrium(self, dtype: torch.dtype = torch.float64,
                    device: torch.device | str | None = None) -> tuple[Tensor, Tensor]:
        """Hover at the origin: ``T = g`` i.e. ``a_T = 0``, ``phi = 0``."""
        return super().equilibrium(dtype, device)

    def linear_enclosure(self, bound: float) -> LinearEnclosure:
        """Sector enclosure of ``T sin(phi)``, ``T cos(phi)`` for ``|phi| <= bound <= pi/12``.

        ``T = g + c a_T`` (``c = 6/7``): ``x_ddot = T sin(phi) = g phi + (beta - g) phi`` with
        ``beta = T sin(phi)/phi in [(g - c) sin(nu)/nu, g + c]`` (``T in [g - c, g + c]``, both
        factors positive); ``z_ddot = T cos(phi) - g = c a_T + c (gamma - 1) a_T + g (cos(phi)
        - 1)`` with ``gamma = cos(phi) in [cos(nu), 1]`` and the box remainder
        ``g (cos(phi) - 1) in [-g (1 - cos(nu)), 0]``.  Vertices
        ``A_k = A + (beta_k - g) E_x e_phi^T``, ``B_k = B + c (gamma_k - 1) E_z e_{a_T}^T`` (4).
        """
        if not 0.0 < bound <= math.pi / 12 + 1e-12:
            raise ValueError(f"quadrotor enclosure needs 0 < bound <= pi/12, got {bound}")
        x_e, u_e, A, B, E = self.equilibrium_jacobians()
        g, c = self.gravity, self.thrust_gain
        sinc = math.sin(bound) / bound
        n, d = self.state_dim, self.action_dim
        e_phi, e_thrust = np.eye(n)[2], np.eye(d)[0]
        A_v, B_v = [], []
        for beta in ((g - c) * sinc, g + c):
            for gamma in (math.cos(bound), 1.0):
                A_v.append(A + (beta - g) * np.outer(E[:, 0], e_phi))
                B_v.append(B + c * (gamma - 1.0) * np.outer(E[:, 1], e_thrust))
        half = g * (1.0 - math.cos(bound)) / 2.0
        return LinearEnclosure(x_e, u_e, np.stack(A_v), np.stack(B_v), E,
                               np.asarray(self.noise_bound, float), np.array([0.0, -half]),
                               np.array([0.0, half]), self.enclosure_index, float(bound))
