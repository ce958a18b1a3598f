"""The household energy system as a :class:`~safegbpo.envs.base.SafeVectorEnv` (SPEC §10).

State ``(soc, t_in, t_ret)``, ``S = [0, 10] x [18, 24] x [10, 100]``, action
``(a_bat, a_hp) in [-1, 1]^2``, hourly steps; the model is
:class:`~safegbpo.tasks.energy.EnergyModel`.  8 envs, 720-step episodes (30 days) starting at
hour 7800 by default (the task's registry entry, :data:`safegbpo.tasks.registry.ENERGY`).

Exogenous inputs.  Each env has a *current hour* (:attr:`EnergyEnv.hours`, ``(N,)``): the start
hour of its episode plus the steps taken.  A step looks up, at that hour, the outside
temperature -- the disturbance ``w`` of the step, so ``info["noise"]`` holds it -- and the load,
PV and buying price of the reward; the observation holds the forecasts of the current hour and
the next four.  The data come from :class:`~safegbpo.tasks.energy_profiles.EnergyProfiles`:
``profiles=None`` (or ``"generated"``) is the project's generated year, ``"reference"`` the
reference's CSV from ``../shared``, ``"auto"`` the reference's CSV when present, else the
generated year, a path any CSV in that format.  The safe sets are certified for
``t_out in W = [-10, 40]``; profiles whose outside temperature leaves ``W`` are rejected (a
safety guarantee for other temperatures would be void).

End of the year (decision).  Hours are taken modulo the 8784 hours of the profiles: the year is
treated as periodic, so an episode or a forecast that runs past 31 December continues with
1 January of the same profiles.  With the defaults (start 7800, 720 steps, forecasts 4 hours
ahead: hour 8524 at most) this never happens.

Reset.  States are drawn from the safe set (as for every task) or given as
``options["state"]``; ``options["start_hour"]`` (an int, or ``(N,)`` ints) sets the hour the
episodes start at -- it applies to the episodes started by this reset *and* by the following
autoresets, until the next ``reset``; without it every env starts at the env's ``start_hour``
(default 7800).  Populations of ``P x N`` rows work unchanged: every row has its own hour
(``_episode_start`` is in :attr:`ROW_ATTRIBUTES`, so a population env moves it with the
row's state).

Env options (the registry entry's ``env_options``: ``profiles``, ``start_hour``).  A training
configuration names them as ``TrainConfig.env_options`` (``safegbpo train --env-option
profiles=reference``); :meth:`EnergyEnv.resolve_options` turns ``profiles`` into ``None`` or an
absolute CSV path, :meth:`EnergyEnv.check_options` loads and checks the file before any work,
and :meth:`EnergyEnv.data_sources` (``{"profiles": source}``) is recorded in run results.

Rendering.  :meth:`render` draws, per env, the episode so far: temperatures (``t_in`` with its
comfort target and bounds, ``t_ret``, ``t_out``), the battery's state of charge, and the buying
price with the grid power ``p`` of each step (:class:`~safegbpo.envs.rendering.EnergyScene`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor

from safegbpo.envs.base import SafeVectorEnv
from safegbpo.envs.rendering import EnergyScene, Scene
from safegbpo.tasks import TaskModel, get_task
from safegbpo.tasks.energy import EXOGENOUS_COLUMNS, EnergyModel
from safegbpo.tasks.energy_profiles import (
    HOURS,
    EnergyProfiles,
    describe_profiles,
    profiles_option,
    resolve_profiles,
)

__all__ = ["EnergyEnv"]

_T_OUT = EXOGENOUS_COLUMNS.index("outside_temperature")


class EnergyEnv(SafeVectorEnv):
    """Batched differentiable household energy system (SPEC §10); see the module docstring and
    :class:`SafeVectorEnv`.

    Args:
        profiles: ``None`` / ``"generated"`` (generated year), ``"reference"``, ``"auto"``, a
            CSV path or :class:`EnergyProfiles`.
        start_hour: default start hour of the episodes (``0 <= start_hour < 8784``; default the
            registry entry's 7800).
        **kwargs: those of :class:`SafeVectorEnv`.

    Raises:
        ValueError: bad profiles (see :meth:`EnergyProfiles.from_csv`), outside temperatures
            outside ``W``, a bad start hour.
        FileNotFoundError: a profile file that does not exist.
    """

    task: ClassVar[str] = "energy"
    #: the start hour of each row's episode fixes its current hour, hence its exogenous inputs
    ROW_ATTRIBUTES: ClassVar[tuple[str, ...]] = (*SafeVectorEnv.ROW_ATTRIBUTES, "_episode_start")
    model: EnergyModel

    def __init__(self, num_envs: int | None = None, seed: int | None = None,
                 safe_set: Any = None, device: str | torch.device = "cpu",
                 dtype: torch.dtype = torch.float64, episode_length: int | None = None,
                 render_mode: str | None = None, *,
                 profiles: EnergyProfiles | str | os.PathLike | None = None,
                 start_hour: int | None = None) -> None:
        self.profiles: EnergyProfiles = resolve_profiles(profiles)
        spec = get_task(self.task)
        _check_profiles_within_w(self.profiles, spec.model)
        self.start_hour = self._check_hour(spec.env_options["start_hour"] if start_hour is None
                                           else start_hour, "start_hour")
        super().__init__(num_envs=num_envs, seed=seed, safe_set=safe_set, device=device,
                         dtype=dtype, episode_length=episode_length, render_mode=render_mode)
        self._table = torch.as_tensor(self.profiles.as_array(), dtype=self.dtype,
                                      device=self.device)  # (HOURS, 4)
        self._offsets = torch.arange(self.model.forecast_horizon, device=self.device)
        self._episode_start = torch.full((self.num_envs,), self.start_hour, dtype=torch.int64,
                                         device=self.device)
        self._history_states: list[Tensor] = []
        self._history_actions: list[Tensor] = []

    # ------------------------------------------------------------------------------------------
    # env options (SafeVectorEnv.resolve_options)
    # ------------------------------------------------------------------------------------------
    @classmethod
    def _resolve_option(cls, name: str, value: Any) -> Any:
        """``profiles``: ``None`` or an absolute CSV path (:func:`profiles_option`)."""
        return profiles_option(value) if name == "profiles" else value

    @classmethod
    def check_options(cls, options: Mapping[str, Any]) -> None:
        """The profile file exists, is valid and stays in ``W``; the start hour is an hour of
        the year (``ValueError`` naming the problem)."""
        resolved = cls.resolve_options(options)
        if "start_hour" in resolved:
            cls._check_hour(resolved["start_hour"], "start_hour")
        path = resolved.get("profiles")
        if path is not None:
            if not os.path.isfile(path):
                raise ValueError(f"profile file {path!r} does not exist")
            try:
                profiles = resolve_profiles(path)
            except FileNotFoundError as err:
                raise ValueError(str(err)) from None
            _check_profiles_within_w(profiles, get_task(cls.task).model)

    @classmethod
    def describe_options(cls, options: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
        """``{"profiles": {"source", "path", "summary"}}``
        (:func:`~safegbpo.tasks.energy_profiles.describe_profiles`)."""
        return {"profiles": describe_profiles(cls.resolve_options(options).get("profiles"))}

    def data_sources(self) -> dict[str, str]:
        """``{"profiles": source}`` of the loaded profiles (a file path or the generated year's
        ``"generated (seed 0)"``)."""
        return {"profiles": self.profiles.source}

    # ------------------------------------------------------------------------------------------
    # exogenous inputs
    # ------------------------------------------------------------------------------------------
    @property
    def hours(self) -> Tensor:
        """Current hour of the year of every env ``(N,)`` int64 (the hour the next step
        starts in), in ``[0, 8784)``."""
        self._require_reset()
        return (self._episode_start + self._elapsed_steps) % HOURS

    @property
    def episode_start_hours(self) -> Tensor:
        """Start hour of each env's current episode ``(N,)`` int64."""
        return self._episode_start.clone()

    def exogenous(self, hours: Tensor | None = None) -> Tensor:
        """``(N, 4)`` load, PV, outside temperature and buying price at ``hours`` (default: the
        current hours; taken modulo the year)."""
        hours = self.hours if hours is None else hours
        return self._table[hours.to(self.device) % HOURS]

    def forecast(self, hours: Tensor | None = None) -> Tensor:
        """``(N, H, 4)`` exogenous inputs of the ``H = 5`` hours from ``hours`` (default: the
        current hours) on, the observation's forecast (modulo the year)."""
        hours = self.hours if hours is None else hours
        index = (hours.to(self.device)[:, None] + self._offsets[None, :]) % HOURS
        return self._table[index]

    def _step_noise(self) -> Tensor:
        """The recorded outside temperature of the current hour ``(N, 1)`` (the disturbance)."""
        return self.exogenous()[:, _T_OUT:_T_OUT + 1]

    def _step_reward(self, next_state: Tensor, action: Tensor) -> Tensor:
        return self.model.reward(next_state, action, self.exogenous())

    def _observation(self, state: Tensor) -> Tensor:
        return self.model.observe(state, self.forecast())

    # ------------------------------------------------------------------------------------------
    # reset / step
    # ------------------------------------------------------------------------------------------
    def reset(self, *, seed: int | list[int] | None = None, options: dict[str, Any] | None = None
              ) -> tuple[Tensor, dict[str, Any]]:
        """See :class:`SafeVectorEnv.reset`; ``options["start_hour"]`` (int or ``(N,)``) sets
        the start hour of the episodes (module docstring).  ``info["hour"]`` is ``(N,)``."""
        options = {} if options is None else dict(options)
        start = options.get("start_hour")
        starts = (torch.full((self.num_envs,), self.start_hour, dtype=torch.int64,
                             device=self.device) if start is None else self._start_hours(start))
        previous = self._episode_start
        self._episode_start = starts
        try:
            obs, info = super().reset(seed=seed, options=options)
        except BaseException:
            self._episode_start = previous
            raise
        info["hour"] = self.hours
        return obs, info

    def step(self, actions: Tensor | np.ndarray) -> tuple[Tensor, Tensor, Tensor, Tensor, dict]:
        """See :class:`SafeVectorEnv.step`; ``info["noise"]`` is the outside temperature of the
        step ``(N, 1)``, ``info["hour"]`` the hour of the *next* step ``(N,)``."""
        action = self._validate_actions(actions)
        obs, reward, terminated, truncated, info = super().step(action)
        if not bool(truncated[0]):
            self._history_actions.append(action.detach())
            self._history_states.append(self.state.detach())
        info["hour"] = self.hours
        return obs, reward, terminated, truncated, info

    def _reset_option_keys(self) -> set[str]:
        return {"state", "start_hour"}

    def _start_episodes(self, states: Tensor, options: dict[str, Any]) -> None:
        super()._start_episodes(states, options)
        self._history_states = [states.detach()]
        self._history_actions = []

    # ------------------------------------------------------------------------------------------
    # validation
    # ------------------------------------------------------------------------------------------
    @staticmethod
    def _check_hour(value: Any, name: str) -> int:
        if isinstance(value, bool) or not isinstance(value, int | np.integer) \
                or not 0 <= value < HOURS:
            raise ValueError(f"{name} must be an integer hour in [0, {HOURS}), got {value!r}")
        return int(value)

    def _start_hours(self, value: Any) -> Tensor:
        if isinstance(value, int | np.integer) and not isinstance(value, bool):
            hour = self._check_hour(value, "options['start_hour']")
            return torch.full((self.num_envs,), hour, dtype=torch.int64, device=self.device)
        try:
            arr = np.asarray(value.detach().cpu().numpy() if isinstance(value, Tensor)
                             else value)
        except (TypeError, ValueError):
            arr = np.asarray([])
        if arr.shape != (self.num_envs,) or not np.issubdtype(arr.dtype, np.integer) \
                or arr.min() < 0 or arr.max() >= HOURS:
            raise ValueError(f"options['start_hour'] must be an integer hour in [0, {HOURS}) or "
                             f"{self.num_envs} of them, got {value!r}")
        return torch.as_tensor(arr, dtype=torch.int64, device=self.device)

    # ------------------------------------------------------------------------------------------
    # spaces and rendering
    # ------------------------------------------------------------------------------------------
    def _observation_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """``S``, then per forecast hour: load and PV in ``[0, 1]``, ``t_out`` in ``W``, price in
        ``[0, inf)``."""
        h = self.model.forecast_horizon
        s_low, s_high = (t.numpy() for t in self.model.state_bounds())
        w_low, w_high = (float(t) for t in self.model.noise_bounds())
        low = np.concatenate([s_low, np.zeros(h), np.zeros(h), np.full(h, w_low), np.zeros(h)])
        high = np.concatenate([s_high, np.ones(h), np.ones(h), np.full(h, w_high),
                               np.full(h, np.inf)])
        return low, high

    def _make_scene(self) -> EnergyScene:
        return EnergyScene(episode_length=self.episode_length,
                           state_low=self.model.state_low, state_high=self.model.state_high,
                           comfort=self.model.comfort_temperature)

    def _render_frames(self, scene: Scene, states: np.ndarray) -> np.ndarray:
        assert isinstance(scene, EnergyScene)
        traj = torch.stack(self._history_states, dim=1).cpu().numpy()  # (N, T+1, 3)
        steps = traj.shape[1] - 1
        hours = (self._episode_start[:, None]
                 + torch.arange(steps + 1, device=self.device)[None, :]) % HOURS
        exo = self._table[hours].cpu().numpy()  # (N, T+1, 4)
        if steps:
            actions = torch.stack(self._history_actions, dim=1)  # (N, T, 2)
            power = self.model.grid_power(actions, self._table[hours[:, :-1]]).cpu().numpy()
        else:
            power = np.zeros((self.num_envs, 0))
        return scene.render(traj, exo, power, self._episode_start.cpu().numpy())


def _check_profiles_within_w(profiles: EnergyProfiles, model: TaskModel) -> None:
    """The recorded outside temperature is the disturbance: it must lie in ``W``."""
    low, high = (float(t) for t in model.noise_bounds())
    t_out = profiles.outside_temperature
    bad = np.flatnonzero((t_out < low) | (t_out > high))
    if bad.size:
        raise ValueError(
            f"{profiles.source or 'energy profiles'}: outside_temperature must lie in "
            f"W = [{low:g}, {high:g}] (the safe sets are certified for it); hour "
            f"{int(bad[0])} has {t_out[bad[0]]:.6g} ({bad.size} hours outside)")
