"""The household energy system (SPEC §10; the journal version's third task): a pure model.

A household with a battery and a heat pump driving a floor heating, stepped hourly.  The model
is a frozen dataclass of the task's constants (from the reference implementation
``ManageHousehold``) with pure, batched, differentiable functions like the other tasks
(:class:`safegbpo.tasks.base.TaskModel`); the exogenous hourly data (household load, PV
generation, outside temperature, buying price) are **explicit arguments** -- the model knows no
calendar.  The
environment (:class:`safegbpo.envs.energy.EnergyEnv`) looks them up in the profiles
(:mod:`safegbpo.tasks.energy_profiles`) at each env's current hour.

State ``(soc, t_in, t_ret)``: battery state of charge, indoor temperature, floor-heating return
temperature; ``S = [0, 10] x [18, 24] x [10, 100]``.  Action ``(a_bat, a_hp) in [-1, 1]^2``.
Dynamics (explicit Euler with ``dt = 1`` hour, linear; clamped to ``S`` by :meth:`postprocess`
like the other tasks)::

    soc'   = soc   + dt P_bat a_bat
    t_in'  = t_in  + dt (-C0 t_in + C1 t_ret + t_out / TAU)
    t_ret' = t_ret + dt (C2 t_in - C2 t_ret + C4 P_hp a_hp)

with ``C0 = (H_FH + H_OUT) / (H_OUT TAU)``, ``C1 = H_FH / (H_OUT TAU)``, ``C2 = H_FH / C_W_FH``,
``C4 = COP / C_W_FH``.  ``P_hp = 2.5`` multiplies the action directly: the reference declares a
heat-pump power offset of ``2.5`` that it never uses **(as in the reference)**, so negative
``a_hp`` cools the floor-heating water.

Disturbance.  The outside temperature ``t_out`` is the disturbance ``w`` (``n_w = 1``) and enters
``t_in'`` only: ``E = (0, dt / TAU, 0)^T``.  For safety it is bounded by
``W = [-10, 40] = <w0, 25>`` with the centre ``w0 = 15`` (not 0: the linearisation of Eq 12 is
taken at ``w0``); the simulation uses the recorded value of the current hour.

Safe set.  The dynamics are affine in state, action and ``t_out``, so the LDI enclosure of
SPEC §7 is exact: one vertex, the Jacobians at the equilibrium, no remainder
(:meth:`EnergyModel.linear_enclosure` = :func:`safegbpo.tasks.base.affine_enclosure`), and the
RCI program certifies robust control invariance of the set itself.

Reward (SPEC §10)::

    p      = a_bat + a_hp + load + pv        (raw actions, PV added with a plus sign
                                               (as in the reference))
    cost   = p dt price   if p >= 0   else   p dt 0.08    (selling price)
    reward = -cost - 100 (t_in - 21)^2

Decisions (SPEC §10 is silent, written down here):

* **"Raw actions"** means the *normalised* actions in ``[-1, 1]`` -- not the powers
  ``P_bat a_bat`` and ``P_hp a_hp`` that drive the dynamics (as in the reference) -- and, as in
  the other tasks, the action that is *applied* to the system: with a safeguard that is the safe
  action ``g(a, s)`` (the policy's raw output never reaches the plant, so it is not billed).
* The comfort term uses ``t_in`` of the **state after the step**, like the other tasks' rewards
  (``t_in'`` does not depend on the action of the step, so the comfort gradient reaches the
  actions through the dynamics of later steps).
* ``load``, ``pv`` and ``price`` are those of the hour the step starts in (the hour whose
  ``t_out`` drives the step).

Observation (23 values): the state, then 5-hour forecasts -- the current hour and the next 4 -- of
load, PV, outside temperature and buying price, grouped by quantity::

    (soc, t_in, t_ret, load_h..load_h+4, pv_h..pv_h+4, t_out_h..t_out_h+4, price_h..price_h+4)

Episodes start at hour 7800 (late November) and last 720 steps (30 days), ``num_envs = 8``:
those are facts of the task's registry entry (:data:`safegbpo.tasks.registry.ENERGY`: its
``episode_length``, ``num_envs`` and the env option ``start_hour``), not of the model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from safegbpo.tasks.base import LinearEnclosure, TaskModel, affine_enclosure

__all__ = ["EXOGENOUS_COLUMNS", "EnergyModel"]

#: Column order of the exogenous inputs the model functions take (``(..., 4)`` tensors), the
#: same as the profile CSV's data columns.
EXOGENOUS_COLUMNS: tuple[str, ...] = ("load", "pv", "outside_temperature", "buying_price")
_LOAD, _PV, _T_OUT, _PRICE = range(4)


@dataclass(frozen=True)
class EnergyModel(TaskModel):
    """Household battery + heat pump (SPEC §10); see the module docstring for every formula.

    Exogenous inputs are tensors whose last dimension follows :data:`EXOGENOUS_COLUMNS`
    ``(load, pv, outside_temperature, buying_price)``: ``(B, 4)`` for one hour (reward),
    ``(B, H, 4)`` for a forecast of ``H`` hours (observation).
    """

    name: str = "energy"
    state_dim: int = 3
    action_dim: int = 2
    noise_dim: int = 1
    obs_dim: int = 23
    dt: float = 1.0  # hours
    battery_power: float = 2.0  # P_bat
    heat_pump_power: float = 2.5  # P_hp
    heat_pump_offset: float = 2.5  # declared but unused (as in the reference)
    h_fh: float = 1.1  # H_FH
    h_out: float = 0.26  # H_OUT
    tau: float = 240.0  # TAU
    c_w_fh: float = 1.1625  # C_W_FH
    cop: float = 3.01  # COP
    selling_price: float = 0.08
    comfort_temperature: float = 21.0
    comfort_weight: float = 100.0
    state_low: tuple[float, ...] = (0.0, 18.0, 10.0)
    state_high: tuple[float, ...] = (10.0, 24.0, 100.0)
    #: ``W = <w0, diag(noise_bound)>``: centre 15, half-width 25, i.e. ``t_out in [-10, 40]``.
    noise_center: tuple[float, ...] = (15.0,)
    noise_bound: tuple[float, ...] = (25.0,)
    angle_indices: tuple[int, ...] = ()
    forecast_horizon: int = 5
    state_names: tuple[str, ...] = ("soc", "t_in", "t_ret")
    action_names: tuple[str, ...] = ("battery", "heat_pump")

    #: ``t_in``: the enclosure is exact for every state, so its bound is redundant (the RCI
    #: search uses the full half-width 3 of ``S`` around the equilibrium's 21).
    enclosure_index: ClassVar[int] = 1
    linear: ClassVar[bool] = True  # exact enclosure (affine_enclosure)
    exogenous_inputs: ClassVar[bool] = True  # reward/observe take the hour's data

    # -- derived constants -----------------------------------------------------------------
    @property
    def c0(self) -> float:
        """``C0 = (H_FH + H_OUT) / (H_OUT TAU)``."""
        return (self.h_fh + self.h_out) / (self.h_out * self.tau)

    @property
    def c1(self) -> float:
        """``C1 = H_FH / (H_OUT TAU)``."""
        return self.h_fh / (self.h_out * self.tau)

    @property
    def c2(self) -> float:
        """``C2 = H_FH / C_W_FH``."""
        return self.h_fh / self.c_w_fh

    @property
    def c4(self) -> float:
        """``C4 = COP / C_W_FH``."""
        return self.cop / self.c_w_fh

    # -- boxes (S and W are not centred at 0) ----------------------------------------------
    def state_bounds(self, dtype: torch.dtype = torch.float64,
                     device: torch.device | str | None = None) -> tuple[Tensor, Tensor]:
        """``S = [0, 10] x [18, 24] x [10, 100]`` as ``(low, high)``."""
        return (torch.tensor(self.state_low, dtype=dtype, device=device),
                torch.tensor(self.state_high, dtype=dtype, device=device))

    def noise_bounds(self, dtype: torch.dtype = torch.float64,
                     device: torch.device | str | None = None) -> tuple[Tensor, Tensor]:
        """``W``: ``t_out in [-10, 40]`` as ``(low, high)``."""
        centre = torch.tensor(self.noise_center, dtype=dtype, device=device)
        half = torch.tensor(self.noise_bound, dtype=dtype, device=device)
        return centre - half, centre + half

    # -- model functions -------------------------------------------------------------------
    def dynamics(self, state: Tensor, action: Tensor, noise: Tensor) -> Tensor:
        """Raw next state ``(B, 3)`` (module docstring; unclamped); ``noise (B, 1)`` is
        ``t_out``."""
        soc, t_in, t_ret = state.unbind(-1)
        a_bat, a_hp = action[..., 0], action[..., 1]
        t_out = noise[..., 0]
        dt = self.dt
        new_soc = soc + dt * self.battery_power * a_bat
        new_t_in = t_in + dt * (-self.c0 * t_in + self.c1 * t_ret + t_out / self.tau)
        new_t_ret = t_ret + dt * (self.c2 * t_in - self.c2 * t_ret
                                  + self.c4 * self.heat_pump_power * a_hp)
        return torch.stack([new_soc, new_t_in, new_t_ret], dim=-1)

    def grid_power(self, action: Tensor, exogenous: Tensor) -> Tensor:
        """``p = a_bat + a_hp + load + pv`` ``(B,)`` (raw actions, PV added with a plus sign
        (as in the reference))."""
        _check_exogenous(exogenous, action.shape[:-1], "exogenous")
        return (action[..., 0] + action[..., 1] + exogenous[..., _LOAD] + exogenous[..., _PV])

    def reward(self, next_state: Tensor, action: Tensor, exogenous: Tensor | None = None
               ) -> Tensor:
        """``-cost - 100 (t_in' - 21)^2`` ``(B,)`` (module docstring).

        Args:
            next_state: ``(B, 3)`` state after the step.
            action: ``(B, 2)`` the applied (normalised) action.
            exogenous: ``(B, 4)`` load, PV, outside temperature and buying price of the hour of
                the step (:data:`EXOGENOUS_COLUMNS`); required.
        """
        if exogenous is None:
            raise ValueError("the energy reward needs the exogenous inputs of the step "
                             "(load, pv, outside_temperature, buying_price)")
        p = self.grid_power(action, exogenous)
        price = torch.where(p >= 0, exogenous[..., _PRICE],
                            torch.full_like(p, self.selling_price))
        cost = p * self.dt * price
        comfort = (next_state[..., 1] - self.comfort_temperature) ** 2
        return -cost - self.comfort_weight * comfort

    def observe(self, state: Tensor, forecast: Tensor | None = None) -> Tensor:
        """``(B, 3 + 4 H)`` -- the state, then the ``H``-hour forecasts of load, PV, outside
        temperature and price (module docstring); ``forecast`` ``(B, H, 4)`` is required."""
        if forecast is None:
            raise ValueError("the energy observation needs the forecast of the exogenous inputs "
                             "(B, forecast_horizon, 4)")
        if forecast.ndim != state.ndim + 1 or forecast.shape[-1] != len(EXOGENOUS_COLUMNS) \
                or forecast.shape[:-2] != state.shape[:-1]:
            raise ValueError(f"forecast must have shape (batch, horizon, 4) matching the states "
                             f"{tuple(state.shape)}, got {tuple(forecast.shape)}")
        return torch.cat([state, forecast.transpose(-1, -2).flatten(-2)], dim=-1)

    def equilibrium(self, dtype: torch.dtype = torch.float64,
                    device: torch.device | str | None = None) -> tuple[Tensor, Tensor]:
        """``(x_e, u_e)`` with ``f(x_e, u_e, w0) = x_e`` at the centre ``w0 = 15`` of ``W``:
        half-charged battery (``a_bat = 0``), ``t_in = 21`` (the comfort temperature, the centre
        of its range), ``t_ret`` and ``a_hp`` from the two temperature equations at rest::

            C1 t_ret = C0 t_in - w0 / TAU,     C4 P_hp a_hp = C2 (t_ret - t_in)
        """
        w0 = self.noise_center[0]
        t_in = self.comfort_temperature
        t_ret = (self.c0 * t_in - w0 / self.tau) / self.c1
        a_hp = self.c2 * (t_ret - t_in) / (self.c4 * self.heat_pump_power)
        soc = 0.5 * (self.state_low[0] + self.state_high[0])
        return (torch.tensor([soc, t_in, t_ret], dtype=dtype, device=device),
                torch.tensor([0.0, a_hp], dtype=dtype, device=device))


    def linear_enclosure(self, bound: float) -> LinearEnclosure:
        """The exact enclosure of the linear dynamics (module docstring): one vertex, the
        Jacobians at the equilibrium (linearised at the centre ``w0 = 15`` of ``W``, so the
        noise of the enclosure is ``w - w0`` in ``<0, 25>``), no remainder -- valid for every
        state, action and ``t_out`` in ``W``.  ``bound`` (on ``t_in``) does not restrict the
        validity of a linear model; it only adds the redundant constraint
        ``|t_in - 21| <= bound`` to the RCI program."""
        return affine_enclosure(self, bound)


def _check_exogenous(exogenous: Tensor, batch_shape: torch.Size, name: str) -> None:
    if exogenous.shape[-1] != len(EXOGENOUS_COLUMNS) or exogenous.shape[:-1] != batch_shape:
        raise ValueError(f"{name} must have shape (*batch, 4) = {(*batch_shape, 4)} with columns "
                         f"{EXOGENOUS_COLUMNS}, got {tuple(exogenous.shape)}")
