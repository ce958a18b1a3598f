"""The task interface (SPEC §6): a pure, batched, differentiable model of one control task.

A :class:`TaskModel` is a frozen dataclass of the task's exact constants with pure functions

* ``dynamics(state, action, noise) -> next_state``  (the raw integrator step, Eq 65/67),
* ``reward(next_state, action, goal) -> reward``     (Eq 66/68),
* ``observe(state, goal) -> observation``,
* ``linear_enclosure(bound) -> LinearEnclosure``     (an LDI enclosure of ``dynamics`` that the
  RCI program of SPEC §7 certifies against, :mod:`safegbpo.safesets.rci`),

and the boxes ``S`` (:meth:`TaskModel.state_bounds`), ``A = [-1, 1]^d`` and ``W``.  Shapes:
``state`` ``(batch, n)``, ``action`` ``(batch, d)``, ``noise`` ``(batch, n_w)``; everything is
``torch.float64`` by default and differentiable in every argument.

``dynamics`` returns the *raw* integrated state (no angle wrapping, no clamping to ``S``); the
environments apply :meth:`TaskModel.postprocess` (wrap + clamp) on top.  The raw map is the one
that is control- and noise-affine (Eq 12), and it is the one the safeguards linearise: inside a
safe set that lies in ``S`` the post-processing is the identity.

Models live below everything that uses them (``envs``, ``safesets``, ``safeguards``): this
module imports only torch and numpy.  What is *not* physics -- number of environments, episode
length, budgets, hyper-parameters, the RCI tuning -- is in the task's registry entry
(:class:`safegbpo.tasks.registry.TaskSpec`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
from torch import Tensor
from torch.func import jacrev

__all__ = ["LinearEnclosure", "TaskModel", "affine_enclosure", "linearise", "wrap_angle"]


def wrap_angle(angle: Tensor) -> Tensor:
    """Wrap angles to ``[-pi, pi)``: ``angle - 2 pi floor((angle + pi) / (2 pi))``, differentiable
    (gradient 1).

    Equal to SPEC §6's ``atan2(sin, cos)`` up to rounding (and exactly the identity inside
    ``(-pi, pi)``, where ``atan2(sin, cos)`` perturbs the last bit).  Written with correctly
    rounded arithmetic only, so a row's result does not depend on its position in the batch:
    PyTorch's vectorised and scalar ``atan2`` kernels differ in the last bit, which would make a
    seed's trajectory depend on the size of its population (``safegbpo.algorithms.population``).
    """
    two_pi = 2.0 * math.pi
    return angle - two_pi * torch.floor((angle + math.pi) / two_pi)


@dataclass(frozen=True)
class LinearEnclosure:
    """Polytopic linear difference inclusion (LDI) enclosing a model's dynamics.

    For every state whose coordinate ``bounded_index`` satisfies
    ``|x_j - x_e,j| <= bound``, every ``u`` in ``A`` and every ``w`` in ``W``::

        f(x, u, w) in x_e + conv_k { A_k (x - x_e) + B_k (u - u_e) } + E (w + r),
        r in <r_c, diag(r_rad)>

    (the derivation for each task is in its model's :meth:`TaskModel.linear_enclosure`).

    Attributes:
        x_e, u_e: equilibrium ``(n,)``, ``(d,)``.
        A: vertex state matrices ``(K, n, n)``; B: vertex input matrices ``(K, n, d)``.
        E: noise input matrix ``(n, n_w)``.
        noise_radius: half-widths of ``W`` ``(n_w,)``.
        remainder_center, remainder_radius: box remainder ``r`` in noise coordinates ``(n_w,)``.
        bounded_index, bound: the coordinate whose range the enclosure assumes, and its bound.
    """

    x_e: np.ndarray
    u_e: np.ndarray
    A: np.ndarray
    B: np.ndarray
    E: np.ndarray
    noise_radius: np.ndarray
    remainder_center: np.ndarray
    remainder_radius: np.ndarray
    bounded_index: int
    bound: float

    @property
    def num_vertices(self) -> int:
        return int(self.A.shape[0])

    def disturbance_generators(self) -> np.ndarray:
        """``E diag(w + r_rad)`` without zero columns, ``(n, p)``."""
        radius = self.noise_radius + self.remainder_radius
        cols = self.E * radius[None, :]
        return cols[:, radius > 0]

    def disturbance_offset(self) -> np.ndarray:
        """``E r_c`` ``(n,)``."""
        return self.E @ self.remainder_center


def linearise(
    model: TaskModel, state: Tensor, action: Tensor, noise: Tensor
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Jacobians ``A = df/dx``, ``B = df/du``, ``E = df/dw`` of the raw dynamics at one point
    (``torch.func.jacrev``), as float64 numpy arrays ``(n, n)``, ``(n, d)``, ``(n, n_w)``."""

    def f(x: Tensor, u: Tensor, w: Tensor) -> Tensor:
        return model.dynamics(x[None], u[None], w[None])[0]

    A, B, E = jacrev(f, argnums=(0, 1, 2))(state, action, noise)

    def array(j: Tensor) -> np.ndarray:
        return j.detach().cpu().numpy().astype(np.float64)

    return array(A), array(B), array(E)


@dataclass(frozen=True)
class TaskModel:
    """Common interface of the task models; see the module docstring.

    Subclasses set the dimensions and constants as dataclass fields (they are hashed into the
    safe-set cache key, so only what the safe set depends on belongs here) and implement
    :meth:`dynamics`, :meth:`reward`, :meth:`observe` and :meth:`linear_enclosure`.
    ``enclosure_index`` names the state coordinate whose range :meth:`linear_enclosure` bounds.
    """

    name: str = ""
    state_dim: int = 0
    action_dim: int = 0
    noise_dim: int = 0
    obs_dim: int = 0
    dt: float = 0.05
    state_high: tuple[float, ...] = ()
    noise_bound: tuple[float, ...] = ()
    angle_indices: tuple[int, ...] = ()
    state_names: tuple[str, ...] = ()
    action_names: tuple[str, ...] = ()

    #: State coordinate whose range the LDI enclosure assumes (SPEC §7; e.g. theta, phi).
    enclosure_index: ClassVar[int] = 0

    # -- boxes -----------------------------------------------------------------------------
    def state_bounds(self, dtype: torch.dtype = torch.float64,
                     device: torch.device | str | None = None) -> tuple[Tensor, Tensor]:
        """Feasible state box ``S`` as ``(low, high)``, each ``(n,)``."""
        high = torch.tensor(self.state_high, dtype=dtype, device=device)
        return -high, high

    def action_bounds(self, dtype: torch.dtype = torch.float64,
                      device: torch.device | str | None = None) -> tuple[Tensor, Tensor]:
        """Feasible action box ``A = [-1, 1]^d`` as ``(low, high)``."""
        high = torch.ones(self.action_dim, dtype=dtype, device=device)
        return -high, high

    def noise_bounds(self, dtype: torch.dtype = torch.float64,
                     device: torch.device | str | None = None) -> tuple[Tensor, Tensor]:
        """Noise box ``W`` as ``(low, high)``, each ``(n_w,)`` (``±noise_bound`` here; a model
        whose disturbance box is not centred at 0 overrides this method: the environments and
        the safeguards take ``w0`` as the box's centre, Eq 12)."""
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

    def linear_enclosure(self, bound: float) -> LinearEnclosure:
        """LDI enclosure of :meth:`dynamics` valid for ``|x_j - x_e,j| <= bound``,
        ``j = enclosure_index`` (SPEC §7).  Models with dynamics affine in state and action
        return :func:`affine_enclosure`; nonlinear models derive a sector enclosure."""
        raise NotImplementedError(
            f"{type(self).__name__} has no linear enclosure: implement "
            "TaskModel.linear_enclosure to compute its certified safe set (SPEC §7)")

    def equilibrium(self, dtype: torch.dtype = torch.float64,
                    device: torch.device | str | None = None) -> tuple[Tensor, Tensor]:
        """An equilibrium ``(x_e, u_e)`` with ``f(x_e, u_e, w0) = x_e`` (SPEC §7 step 1)."""
        return (
            torch.zeros(self.state_dim, dtype=dtype, device=device),
            torch.zeros(self.action_dim, dtype=dtype, device=device),
        )

    # -- shared ----------------------------------------------------------------------------
    def equilibrium_jacobians(
        self,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """``(x_e, u_e, A, B, E)`` at the equilibrium and the centre ``w0`` of ``W``.

        Raises:
            ValueError: :meth:`equilibrium` is not a fixed point of the dynamics.
        """
        x_e, u_e = self.equilibrium()
        w_low, w_high = self.noise_bounds()
        w0 = 0.5 * (w_low + w_high)
        residual = self.dynamics(x_e[None], u_e[None], w0[None])[0] - x_e
        if float(residual.abs().max()) > 1e-12:
            raise ValueError(f"{self.name}: model.equilibrium() is not a fixed point "
                             f"(residual {residual.tolist()})")
        A, B, E = linearise(self, x_e, u_e, w0)
        return x_e.numpy(), u_e.numpy(), A, B, E

    def enclosure_bound_limit(self) -> float:
        """The widest bound ``S`` allows on the enclosure's coordinate around the equilibrium,
        ``min(high - x_e, x_e - low)`` (``S`` need not be centred at 0: energy task)."""
        low, high = self.state_bounds()
        x_e = self.equilibrium()[0]
        j = self.enclosure_index
        return float(min(high[j] - x_e[j], x_e[j] - low[j]))

    def postprocess(self, next_state: Tensor) -> Tensor:
        """Wrap angles (:func:`wrap_angle`) and clamp to ``S`` (SPEC §6 "Common")."""
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


def affine_enclosure(model: TaskModel, bound: float) -> LinearEnclosure:
    """The exact one-vertex enclosure of dynamics that are affine in state, action and noise
    (``f = x_e + A (x - x_e) + B (u - u_e) + E (w - w0)``, e.g. the energy system, SPEC §10):
    the Jacobians at the equilibrium, no remainder.  Wrong for nonlinear dynamics."""
    if not bound > 0:
        raise ValueError(f"{model.name} enclosure needs bound > 0, got {bound}")
    x_e, u_e, A, B, E = model.equilibrium_jacobians()
    w_low, w_high = (t.numpy() for t in model.noise_bounds())
    zeros = np.zeros(model.noise_dim)
    return LinearEnclosure(x_e, u_e, A[None], B[None], E, (w_high - w_low) / 2.0, zeros,
                           zeros.copy(), model.enclosure_index, float(bound))
