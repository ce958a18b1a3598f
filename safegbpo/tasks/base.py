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

__all__ = ["LinearEnclosure", "TaskModel", "affine_enclosure", "linearisation_residuals",
           "linearise", "remainder_enclosure", "sampled_remainder", "wrap_angle"]


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
        state_remainder_center, state_remainder_radius: an additional box remainder in state
            coordinates ``(n,)`` (``None``: none), ``f(...) in ... + <c_r, diag(r)>``: what a
            task's bound on its linearisation remainder gives (:func:`remainder_enclosure`).
        certified: ``True`` iff the enclosure is a proof (exact for linear dynamics, derived
            sector bounds, or a remainder bound the task supplies); ``False`` when the
            remainder was *estimated from samples* -- a set computed with it is labelled
            "verified by sampling, not certified" (:mod:`safegbpo.safesets.rci`).
        basis: one line saying what the enclosure rests on (recorded in set files).
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
    state_remainder_center: np.ndarray | None = None
    state_remainder_radius: np.ndarray | None = None
    certified: bool = True
    basis: str = ""

    @property
    def num_vertices(self) -> int:
        return int(self.A.shape[0])

    def disturbance_generators(self) -> np.ndarray:
        """``E diag(w + r_rad)`` without zero columns, ``(n, p)``."""
        radius = self.noise_radius + self.remainder_radius
        cols = self.E * radius[None, :]
        cols = cols[:, radius > 0]
        if self.state_remainder_radius is not None:  # + diag(r) of the state-space remainder
            r = np.asarray(self.state_remainder_radius, dtype=np.float64)
            cols = np.hstack([cols, np.diag(r)[:, r > 0]])
        return cols

    def disturbance_offset(self) -> np.ndarray:
        """``E r_c`` (plus the state-space remainder's centre) ``(n,)``."""
        offset = self.E @ self.remainder_center
        if self.state_remainder_center is not None:
            offset = offset + np.asarray(self.state_remainder_center, dtype=np.float64)
        return offset


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
    :meth:`dynamics`, :meth:`reward` and :meth:`observe`.  The LDI enclosure the RCI program
    certifies against (:meth:`linear_enclosure`) comes, in this order of preference, from

    1. the model's own :meth:`linear_enclosure` (the paper's tasks: derived sector bounds);
    2. ``linear = True``: the dynamics are affine in the state too, the enclosure is exact
       (:func:`affine_enclosure`; the energy system);
    3. :meth:`linearisation_remainder`: a box the task *proves* encloses the remainder of the
       Jacobian linearisation over the region (:func:`remainder_enclosure`, certified);
    4. otherwise the remainder is *estimated from samples* (:func:`sampled_remainder`) and every
       set computed with it is labelled "verified by sampling, not certified".

    ``enclosure_index`` names the state coordinate whose range the enclosure bounds.
    ``exogenous_inputs``: ``reward``/``observe`` need data besides state and action (the
    energy system), so the load-time check (:mod:`safegbpo.tasks.checks`) skips them.
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
    #: The dynamics are affine in the state as well (exact one-vertex enclosure).
    linear: ClassVar[bool] = False
    #: ``reward``/``observe`` take exogenous data instead of a goal (skipped by the checks).
    exogenous_inputs: ClassVar[bool] = False
    #: Samples of the remainder estimate (:func:`sampled_remainder`; vertices of A x W added).
    remainder_samples: ClassVar[int] = 20_000

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

    def observation_bounds(self) -> tuple[np.ndarray, np.ndarray] | None:
        """Bounds ``(low, high)`` of one observation ``(o,)`` each, or ``None`` (unbounded);
        used by the generic environment :class:`safegbpo.envs.TaskEnv`."""
        return None

    def linearisation_remainder(self, bound: float) -> tuple[np.ndarray, np.ndarray] | None:
        """A *proven* box ``(low, high)`` ``(n,)`` enclosing the remainder
        ``f(x, u, w) - [x_e + A (x - x_e) + B (u - u_e) + E (w - w0)]`` (``A, B, E`` the
        Jacobians at the equilibrium and the centre ``w0`` of ``W``) for every ``x`` in ``S``
        with ``|x_j - x_e,j| <= bound`` (``j = enclosure_index``), ``u`` in ``A``, ``w`` in
        ``W``; ``None`` (default) when the task has no such bound.  Supplying it makes the
        safe sets of the task certified (SPEC §7 "box remainder")."""
        return None

    def linear_enclosure(self, bound: float) -> LinearEnclosure:
        """LDI enclosure of :meth:`dynamics` valid for ``|x_j - x_e,j| <= bound``,
        ``j = enclosure_index`` (SPEC §7); the default follows the order of the class
        docstring (exact if ``linear``, the task's remainder bound, else a sampled estimate
        with ``certified=False``)."""
        if self.linear:
            return affine_enclosure(self, bound)
        proven = self.linearisation_remainder(bound)
        if proven is not None:
            return remainder_enclosure(self, bound, *proven, certified=True,
                                       basis="linearisation remainder bound supplied by the "
                                             "task (TaskModel.linearisation_remainder)")
        low, high = sampled_remainder(self, bound)
        return remainder_enclosure(self, bound, low, high, certified=False,
                                   basis=f"linearisation remainder estimated from "
                                         f"{self.remainder_samples} samples (not a bound)")

    def enclosure_certified(self) -> bool:
        """Whether the sets computed for this model rest on a proven enclosure (the class
        docstring's cases 1-3); the rule for set files without a certification field."""
        if self.linear or type(self).linear_enclosure is not TaskModel.linear_enclosure:
            return True
        return self.linearisation_remainder(self.enclosure_bound_limit()) is not None

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
                           zeros.copy(), model.enclosure_index, float(bound),
                           basis="exact: the dynamics are affine")


def _region(model: TaskModel, bound: float) -> tuple[np.ndarray, np.ndarray]:
    """The states ``x`` of ``S`` with ``|x_j - x_e,j| <= bound`` as a box ``(low, high)``."""
    low, high = (t.numpy().copy() for t in model.state_bounds())
    x_e = model.equilibrium()[0].numpy()
    j = model.enclosure_index
    low[j], high[j] = max(low[j], x_e[j] - bound), min(high[j], x_e[j] + bound)
    return low, high


def linearisation_residuals(model: TaskModel, states: Tensor, actions: Tensor,
                            noise: Tensor) -> Tensor:
    """``f(x, u, w) - [x_e + A (x - x_e) + B (u - u_e) + E (w - w0)]`` ``(B, n)`` with the
    Jacobians at the equilibrium (:meth:`TaskModel.equilibrium_jacobians`)."""
    x_e, u_e, A, B, E = (torch.as_tensor(a, dtype=torch.float64)
                         for a in model.equilibrium_jacobians())
    w_low, w_high = model.noise_bounds()
    w0 = 0.5 * (w_low + w_high)
    with torch.no_grad():
        f = model.dynamics(states, actions, noise)
    lin = x_e + (states - x_e) @ A.T + (actions - u_e) @ B.T + (noise - w0) @ E.T
    return f - lin


def _remainder_points(model: TaskModel, bound: float, num: int, seed: int
                      ) -> tuple[Tensor, Tensor, Tensor]:
    """States of the region and actions/noise of ``A x W``: uniform draws, draws paired with
    vertices of ``A x W`` (the remainder is affine in ``(u, w)``, so its extremes over them
    lie at vertices) and the vertices of the whole box when there are at most 4096."""
    gen = torch.Generator().manual_seed(seed)
    s_low, s_high = (torch.as_tensor(a) for a in _region(model, bound))
    a_low, a_high = model.action_bounds()
    w_low, w_high = model.noise_bounds()
    low = torch.cat([s_low, a_low, w_low])
    high = torch.cat([s_high, a_high, w_high])
    k, n, d = low.numel(), model.state_dim, model.action_dim
    u = torch.rand((num, k), generator=gen, dtype=torch.float64)
    u[num // 2:, n:] = torch.round(u[num // 2:, n:])  # half of them at vertices of A x W
    if 2**k <= 4096:
        corners = torch.cartesian_prod(*[torch.tensor([0.0, 1.0], dtype=torch.float64)] * k)
        u = torch.cat([u, corners.reshape(-1, k)])
    pts = low + (high - low) * u
    return pts[:, :n], pts[:, n:n + d], pts[:, n + d:]


def sampled_remainder(model: TaskModel, bound: float, *, num: int | None = None,
                      seed: int = 0, inflation: float = 0.1
                      ) -> tuple[np.ndarray, np.ndarray]:
    """An *estimate* ``(low, high)`` ``(n,)`` of the linearisation remainder over the region
    of ``bound`` (:meth:`TaskModel.linearisation_remainder` has the definition): the range of
    the residuals at ``num`` sampled points (:func:`_remainder_points`), widened by
    ``inflation`` times the range on each side.  Not a bound: a set computed with it is
    labelled "verified by sampling, not certified"."""
    num = model.remainder_samples if num is None else num
    residual = linearisation_residuals(model, *_remainder_points(model, bound, num, seed))
    lo, hi = residual.amin(0).numpy(), residual.amax(0).numpy()
    pad = inflation * (hi - lo)
    return lo - pad, hi + pad


def remainder_enclosure(model: TaskModel, bound: float, low: np.ndarray, high: np.ndarray,
                        *, certified: bool, basis: str) -> LinearEnclosure:
    """The one-vertex enclosure ``f in x_e + A (x - x_e) + B (u - u_e) + E (w - w0) + R`` with
    the state-space box remainder ``R = [low, high]`` (SPEC §7's box remainder).

    A remainder the task claims to bound (``certified``) is checked against sampled residuals
    first: a residual outside the claimed box raises ``ValueError`` naming it.
    """
    if not bound > 0:
        raise ValueError(f"{model.name} enclosure needs bound > 0, got {bound}")
    low = np.asarray(low, dtype=np.float64).reshape(-1)
    high = np.asarray(high, dtype=np.float64).reshape(-1)
    n = model.state_dim
    if low.shape != (n,) or high.shape != (n,) or not (np.isfinite(low).all()
                                                        and np.isfinite(high).all()) \
            or np.any(low > high):
        raise ValueError(f"{model.name}: the linearisation remainder must be a finite box "
                         f"(low <= high) of shape ({n},) each, got {low}, {high}")
    if certified:
        residual = linearisation_residuals(
            model, *_remainder_points(model, bound, 2000, seed=1)).numpy()
        outside = (residual < low - 1e-9) | (residual > high + 1e-9)
        if outside.any():
            row, col = np.argwhere(outside)[0]
            raise ValueError(
                f"{model.name}: linearisation_remainder({bound:.6g}) is not a bound: the "
                f"remainder of {model.state_names[col]!r} is {residual[row, col]:.6g} at a "
                f"sampled point, outside [{low[col]:.6g}, {high[col]:.6g}]")
    x_e, u_e, A, B, E = model.equilibrium_jacobians()
    w_low, w_high = (t.numpy() for t in model.noise_bounds())
    zeros = np.zeros(model.noise_dim)
    return LinearEnclosure(x_e, u_e, A[None], B[None], E, (w_high - w_low) / 2.0, zeros,
                           zeros.copy(), model.enclosure_index, float(bound),
                           state_remainder_center=(low + high) / 2.0,
                           state_remainder_radius=(high - low) / 2.0,
                           certified=certified, basis=basis)
