"""Pure, batched, differentiable models of the paper's tasks (SPEC §6, paper Appendix 7.1).

Each model is a frozen dataclass of the task's exact constants with pure functions

* ``dynamics(state, action, noise) -> next_state``  (semi-implicit Euler, Eq 65/67),
* ``reward(next_state, action, goal) -> reward``     (Eq 66/68),
* ``observe(state, goal) -> observation``.

Shapes: ``state`` ``(batch, n)``, ``action`` ``(batch, d)``, ``noise`` ``(batch, n_w)``;
everything is ``torch.float64`` by default and differentiable in every argument.

``dynamics`` returns the *raw* integrated state (no angle wrapping, no clamping to ``S``); the
environments apply :meth:`postprocess` (wrap + clamp) on top.  The raw map is the one that is
control- and noise-affine (Eq 12), and it is the one the safeguards linearise: inside a safe set
that lies in ``S`` the post-processing is the identity.

Noise model (decision, documented here because SPEC §6 only gives its bounds): the noise is an
additive *acceleration* disturbance, one component per velocity it acts on
(pendulum: ``theta_ddot``; quadrotor: ``x_ddot`` and ``z_ddot``), sampled uniformly from
``W = <0, diag(noise_bound)>``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["TaskModel", "PendulumModel", "QuadrotorModel", "MODELS", "get_model", "wrap_angle"]


def wrap_angle(angle: Tensor) -> Tensor:
    """Wrap angles to ``(-pi, pi]`` with ``atan2(sin, cos)`` (SPEC §6), differentiable."""
    return torch.atan2(torch.sin(angle), torch.cos(angle))


@dataclass(frozen=True)
class TaskModel:
    """Common interface of the task models; see the module docstring."""

    name: str = ""
    state_dim: int = 0
    action_dim: int = 0
    noise_dim: int = 0
    obs_dim: int = 0
    dt: float = 0.05
    state_high: tuple[float, ...] = ()
    noise_bound: tuple[float, ...] = ()
    angle_indices: tuple[int, ...] = ()
    episode_length: int = 200
    num_envs: int = 8
    state_names: tuple[str, ...] = ()
    action_names: tuple[str, ...] = ()

    # -- boxes -----------------------------------------------------------------------------
    def state_bounds(self, dtype=torch.float64, device=None) -> tuple[Tensor, Tensor]:
        """Feasible state box ``S`` as ``(low, high)``, each ``(n,)``."""
        high = torch.tensor(self.state_high, dtype=dtype, device=device)
        return -high, high

    def action_bounds(self, dtype=torch.float64, device=None) -> tuple[Tensor, Tensor]:
        """Feasible action box ``A = [-1, 1]^d`` as ``(low, high)``."""
        high = torch.ones(self.action_dim, dtype=dtype, device=device)
        return -high, high

    def noise_bounds(self, dtype=torch.float64, device=None) -> tuple[Tensor, Tensor]:
        """Noise box ``W`` as ``(low, high)``, each ``(n_w,)``."""
        high = torch.tensor(self.noise_bound, dtype=dtype, device=device)
        return -high, high

    # -- to be provided by subclasses ------------------------------------------------------
    def dynamics(self, state: Tensor, action: Tensor, noise: Tensor) -> Tensor:  # pragma: no cover
        raise NotImplementedError

    def reward(  # pragma: no cover
        self, next_state: Tensor, action: Tensor, goal: Tensor | None = None
    ) -> Tensor:
        raise NotImplementedError

    def observe(self, state: Tensor, goal: Tensor | None = None) -> Tensor:  # pragma: no cover
        raise NotImplementedError

    def equilibrium(self, dtype=torch.float64, device=None) -> tuple[Tensor, Tensor]:
        """An equilibrium ``(x_e, u_e)`` with ``f(x_e, u_e, w0) = x_e`` (SPEC §7 step 1), ``w0`` the
        centre of ``W`` (0 for the pendulum and the quadrotor)."""
        return (
            torch.zeros(self.state_dim, dtype=dtype, device=device),
            torch.zeros(self.action_dim, dtype=dtype, device=device),
        )

    # -- shared ----------------------------------------------------------------------------
    def postprocess(self, next_state: Tensor) -> Tensor:
        """Wrap angles with ``atan2`` and clamp to ``S`` (SPEC §6 "Common")."""
        if self.angle_indices:
            cols = list(next_state.unbind(-1))
            for i in self.angle_indices:
                cols[i] = wrap_angle(cols[i])
            next_state = torch.stack(cols, dim=-1)
        low, high = self.state_bounds(next_state.dtype, next_state.device)
        return torch.clamp(next_state, low, high)

    def step(self, state: Tensor, action: Tensor, noise: Tensor) -> Tensor:
        """Full environment transition: ``postprocess(dynamics(state, action, noise))``."""
        return self.postprocess(self.dynamics(state, action, noise))


@dataclass(frozen=True)
class PendulumModel(TaskModel):
    """Inverted pendulum balance (SPEC §6, paper Eq 65–66). ``theta = 0`` is upright.

    ``theta_ddot = (3 g / (2 l)) sin(theta) + (3 / (m l^2)) * tau + w``, ``tau = 30 a``;
    semi-implicit Euler: ``theta_dot' = theta_dot + dt * theta_ddot``,
    ``theta' = theta + dt * theta_dot'``.
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
    # SPEC §6 gives no pendulum episode length; 200 steps (10 s) as in Gymnasium's Pendulum.
    episode_length: int = 200
    num_envs: int = 8
    state_names: tuple[str, ...] = ("theta", "theta_dot")
    action_names: tuple[str, ...] = ("torque",)

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


@dataclass(frozen=True)
class QuadrotorModel(TaskModel):
    """Planar quadrotor balance (SPEC §6, Mitchell et al. 2019; paper Eq 67–68).

    State ``(x, z, phi, x_dot, z_dot, phi_dot)``, action ``(a_T, a_phi)``:
    ``T = g + (6/7) a_T``, ``phi_d = (pi/12) a_phi``;
    ``x_ddot = T sin(phi) + w_x``, ``z_ddot = T cos(phi) - g + w_z``,
    ``phi_ddot = 55 phi_d - 70 phi - 17 phi_dot``; semi-implicit Euler (velocities first, then
    positions with the new velocities).  The goal is the initial position ``(x_g, z_g)``.
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
    episode_length: int = 240
    num_envs: int = 16
    state_names: tuple[str, ...] = ("x", "z", "phi", "x_dot", "z_dot", "phi_dot")
    action_names: tuple[str, ...] = ("thrust", "roll")

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

    def equilibrium(self, dtype=torch.float64, device=None) -> tuple[Tensor, Tensor]:
        """Hover at the origin: ``T = g`` i.e. ``a_T = 0``, ``phi = 0``."""
        return super().equilibrium(dtype, device)


# The energy task (SPEC §10) lives in its own module; it subclasses TaskModel defined above.
from safegbpo.tasks.energy import EnergyModel  # noqa: E402

MODELS: dict[str, TaskModel] = {"pendulum": PendulumModel(), "quadrotor": QuadrotorModel(),
                                "energy": EnergyModel()}


def get_model(task: str) -> TaskModel:
    """The model of ``task`` (``'pendulum'``, ``'quadrotor'`` or ``'energy'``); clear error
    otherwise."""
    try:
        return MODELS[task]
    except KeyError:
        raise ValueError(f"unknown task {task!r}; expected one of {sorted(MODELS)}") from None

