"""Differentiable, batched, safe-set-aware vector environments (SPEC §6).

:class:`SafeVectorEnv` is a :class:`gymnasium.vector.VectorEnv` whose whole batch of ``N``
environments lives in one torch tensor.  The transition is the task's model
(:mod:`safegbpo.tasks`: semi-implicit Euler, wrap + clamp to ``S``), so a rollout is
differentiable in the actions through every step until :meth:`SafeVectorEnv.cut_graph`.

The env also exposes what the safeguards need: the boxes ``S``, ``A``, ``W`` as zonotopes, the
safe set (a :class:`~safegbpo.safesets.SafeSet`), and the per-environment linearisation
``f(s, a, w) = f(s, a0, w0) + B(s)(a - a0) + E(s)(w - w0)`` of Eq 12 with the exact next-state
set ``<f0 + B(a - a0), E G_W>`` of Eq 13–14.

Env options: a task's environment may take keyword options beyond the common ones (its registry
entry's ``env_options``, e.g. the energy task's data file).  The class methods
:meth:`SafeVectorEnv.resolve_options`, :meth:`SafeVectorEnv.check_options` and
:meth:`SafeVectorEnv.describe_options` are how a configuration, a grid and a reproduction
handle them without knowing the task: canonical form, validation before any work, and a
description for manifests; :meth:`SafeVectorEnv.data_sources` names the data a built env uses
(recorded in run results).

Step observers: :func:`observe_steps` registers a callable ``observer(env, info)`` that every
:meth:`SafeVectorEnv.step` calls with its ``info`` (realised states included) while a ``with``
block runs -- how an independent monitor (the reproduction's safe-state monitor) watches the
environments a training run builds internally, without touching the environment class.
Observers are scoped to the current context (:mod:`contextvars`: thread- and task-local), nest,
and are removed when the block exits; an exception raised by an observer propagates out of
``step``.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple

import numpy as np
import torch
from gymnasium import spaces
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space
from torch import Tensor

import safegbpo.safesets as safesets
from safegbpo.safesets import SafeSet
from safegbpo.sets import Zonotope
from safegbpo.tasks import TaskModel, TaskSpec, get_task

if TYPE_CHECKING:
    from safegbpo.envs.rendering import Scene

__all__ = ["Linearisation", "SafeVectorEnv", "StepObserver", "observe_steps", "resolve_safe_set"]

# Rejection sampling of reset states: give up (RuntimeError) after this many candidates per
# requested state; an acceptance rate this low means the safe set is (numerically) degenerate.
_MAX_CANDIDATES_PER_STATE = 100_000


class Linearisation(NamedTuple):
    """Eq 12 at ``(s, a0, w0)`` for a batch of states ``s``.

    Attributes:
        f0: ``f(s, a0, w0)`` ``(batch, n)``.
        B: ``df/da`` at ``(s, a0, w0)`` ``(batch, n, d)``.
        E: ``df/dw`` at ``(s, a0, w0)`` ``(batch, n, n_w)``.
    """

    f0: Tensor
    B: Tensor
    E: Tensor


#: ``observer(env, info)``: called after every :meth:`SafeVectorEnv.step` (module docstring).
StepObserver = Callable[["SafeVectorEnv", Mapping[str, Any]], None]

_STEP_OBSERVERS: ContextVar[tuple[StepObserver, ...]] = ContextVar(
    "safegbpo_step_observers", default=())


@contextmanager
def observe_steps(observer: StepObserver) -> Iterator[StepObserver]:
    """Call ``observer(env, info)`` after every step of every :class:`SafeVectorEnv` of the
    current context while the block runs (the module docstring has the rules)."""
    if not callable(observer):
        raise ValueError(f"a step observer must be callable, got {type(observer).__name__}")
    token = _STEP_OBSERVERS.set((*_STEP_OBSERVERS.get(), observer))
    try:
        yield observer
    finally:
        _STEP_OBSERVERS.reset(token)


def resolve_safe_set(task: str, safe_set: Any, model: TaskModel | None = None) -> SafeSet:
    """The :class:`~safegbpo.safesets.SafeSet` for ``task`` from ``None``, a path or a set.

    * ``None`` -> the project's own certified set, :func:`safegbpo.safesets.get_safe_set`;
    * ``str`` / :class:`os.PathLike` -> :meth:`SafeSet.load` (a ``safegbpo-safe-set/1`` file);
    * a :class:`SafeSet` -> itself.

    Raises:
        ValueError: the set belongs to another task, or its state / action dimensions do not
            match the task's model.
        TypeError: ``safe_set`` is none of the above.
    """
    model = get_task(task).model if model is None else model
    if safe_set is None:
        safe_set = safesets.get_safe_set(task)
    elif isinstance(safe_set, str | os.PathLike):
        safe_set = SafeSet.load(safe_set)
    elif not isinstance(safe_set, SafeSet):
        raise TypeError("safe_set must be None, a path to a safe-set file or a SafeSet, "
                        f"got {type(safe_set).__name__}")
    if safe_set.task != task:
        raise ValueError(f"safe_set is for task {safe_set.task!r}, not {task!r}")
    centre = safe_set.state.center
    if centre.shape[0] != 1 or centre.shape[-1] != model.state_dim:
        raise ValueError(f"safe_set.state must be one zonotope of dimension {model.state_dim} "
                         f"(center shape (1, {model.state_dim})), got center {tuple(centre.shape)}")
    if safe_set.action is not None:
        a_centre = safe_set.action.center
        if a_centre.shape[0] != 1 or a_centre.shape[-1] != model.action_dim:
            raise ValueError(f"safe_set.action must be one zonotope of dimension "
                             f"{model.action_dim}, got center {tuple(a_centre.shape)}")
    return safe_set


def _positive_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


class SafeVectorEnv(VectorEnv):
    """Batched differentiable task with a safe state set (SPEC §6); subclass per task.

    Args:
        num_envs: number of environments ``N`` (default: the task's registry entry,
            :class:`~safegbpo.tasks.TaskSpec`).
        seed: seed of the env's own :class:`torch.Generator` (non-deterministic when ``None``).
            ``reset(seed=...)`` re-seeds it; no global RNG is ever used.
        safe_set: ``None`` (the project's certified set), a set-file path or a
            :class:`~safegbpo.safesets.SafeSet` of this task (see :func:`resolve_safe_set`).
        device, dtype: of every tensor the env returns (float64 by default).
        episode_length: steps per episode (default: the task's registry entry: 3000 pendulum,
            240 quadrotor, SPEC §13).
        render_mode: ``None`` or ``'rgb_array'``; :meth:`render` works in both.

    Semantics:
        * **Tensors in, tensors out.** ``reset`` returns ``obs (N, o)``; ``step`` returns
          ``obs (N, o)``, ``reward (N,)``, ``terminated (N,)`` bool (always False: balance
          tasks), ``truncated (N,)`` bool, ``info``.  Numpy actions are accepted and converted.
        * **Reset** draws each state uniformly from the safe state zonotope intersected with
          ``S`` (rejection sampling from the interval hull of the safe set clipped to ``S``,
          exact Eq 5 membership).  ``options={"state": (N, n) tensor}`` sets the states instead
          (they must lie in ``S``); the quadrotor's goal is its initial position (see
          :class:`~safegbpo.envs.quadrotor.QuadrotorEnv` for ``options["goal"]``).
        * **Step**: noise ``w`` uniform in ``W`` from the env's generator (a task with exogenous
          inputs overrides the hooks ``_step_noise``, ``_step_reward``, ``_observation``: the
          energy task uses the recorded outside temperature of each env's hour), next state
          ``model.step(s, a, w)`` (Eq 65/67 + wrap + clamp to ``S``), reward
          ``model.reward(s', a, goal)`` (Eq 66/68).  ``info["state"]`` is the env's state after
          the call (consistent with the returned ``obs``), ``info["noise"]`` the noise ``(N, n_w)``.
        * **Actions are not clipped.** An action outside ``A = [-1, 1]^d`` is applied as given:
          keeping actions safe is the safeguard's job, and clipping silently would hide its bugs.
          Only the shape ``(N, d)`` and finiteness are checked (``ValueError`` otherwise).
        * **Truncation and same-step autoreset** (``AutoresetMode.SAME_STEP``): all envs share
          the episode length, so the whole vector truncates together.  On the truncating step
          ``obs`` is already the observation of the *new* episode, while ``info["final_obs"]``
          ``(N, o)``, ``info["final_state"]`` ``(N, n)`` (and ``info["final_goal"]`` for tasks with
          a goal) hold the values reached by the step (``info["_final_obs"]`` is the all-True
          mask); the reward is that of the step.  ``final_obs`` keeps its autograd graph, so a
          terminal value can be bootstrapped through it.
        * **Differentiability.** The state keeps the autograd graph of every action since the last
          :meth:`cut_graph` (which detaches it) or reset.  No in-place operation is applied to it.
    """

    task: ClassVar[str] = ""
    #: instance attributes holding one row per environment (tensors with a leading ``N``
    #: dimension, ``None`` when a task has none): the per-row dynamic state that a population
    #: env moves between blocks (:class:`~safegbpo.algorithms.population.BlockSeededEnv`).  A
    #: task adding per-row state (e.g. the energy task's episode start hours) extends it.
    ROW_ATTRIBUTES: ClassVar[tuple[str, ...]] = ("_state", "_goal")
    metadata: dict[str, Any] = {  # noqa: RUF012 - gymnasium's class attribute
        "render_modes": ["rgb_array"],
        "render_fps": 20,  # 1 / dt
        "autoreset_mode": AutoresetMode.SAME_STEP,
    }

    def __init__(
        self,
        num_envs: int | None = None,
        seed: int | None = None,
        safe_set: SafeSet | str | os.PathLike | None = None,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float64,
        episode_length: int | None = None,
        render_mode: str | None = None,
    ) -> None:
        if not self.task:
            raise TypeError("SafeVectorEnv is abstract: use a task subclass or make_vec(task)")
        # (gymnasium's ``spec`` attribute is its EnvSpec: the registry entry is ``task_spec``)
        self.task_spec: TaskSpec = get_task(self.task)
        self.model: TaskModel = self.task_spec.model
        model = self.model
        self.num_envs = _positive_int(
            self.task_spec.num_envs if num_envs is None else num_envs, "num_envs")
        self.episode_length = _positive_int(
            self.task_spec.episode_length if episode_length is None else episode_length,
            "episode_length")
        if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
            raise ValueError(f"dtype must be a floating-point torch.dtype, got {dtype!r}")
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode must be None or 'rgb_array', got {render_mode!r}")
        self.device = torch.device(device)
        self.dtype = dtype
        self.render_mode = render_mode
        self.safe_set: SafeSet = resolve_safe_set(self.task, safe_set, model)

        self._state_low, self._state_high = model.state_bounds(dtype, self.device)
        self._action_low, self._action_high = model.action_bounds(dtype, self.device)
        self._noise_low, self._noise_high = model.noise_bounds(dtype, self.device)
        self._action_centre = 0.5 * (self._action_low + self._action_high)  # a0 of Eq 12
        self._noise_centre = 0.5 * (self._noise_low + self._noise_high)  # w0 of Eq 12
        self._init_reset_sampler()

        # spaces
        self.single_action_space = spaces.Box(-1.0, 1.0, (model.action_dim,), np.float64)
        obs_low, obs_high = self._observation_bounds()
        self.single_observation_space = spaces.Box(obs_low, obs_high, dtype=np.float64)
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)

        self._generator = torch.Generator(device=self.device)
        self._seed_generator(seed)
        self._state: Tensor | None = None
        self._goal: Tensor | None = None
        self._elapsed_steps = 0
        self._scene: Scene | None = None

    # ------------------------------------------------------------------------------------------
    # task hooks (overridden by the subclasses)
    # ------------------------------------------------------------------------------------------
    def _observation_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """Bounds ``(low, high)`` of one observation, ``(o,)`` each."""
        raise NotImplementedError

    def _initial_goal(self, states: Tensor, options: dict[str, Any]) -> Tensor | None:
        """Goal of new episodes starting in ``states`` (``None``: the task has no goal)."""
        return None

    def _make_scene(self) -> Scene:
        raise NotImplementedError

    # Exogenous-input hooks: a task whose step depends on data other than the state and the
    # action (e.g. the energy task's hourly profiles, indexed by the current hour of each env)
    # overrides these three; the model functions take those values explicitly.
    def _step_noise(self) -> Tensor:
        """Disturbance ``w (N, n_w)`` of the current step (default: uniform in ``W``)."""
        return self.sample_noise(self.num_envs)

    def _step_reward(self, next_state: Tensor, action: Tensor) -> Tensor:
        """Reward ``(N,)`` of the current step (default: ``model.reward(s', a, goal)``)."""
        return self.model.reward(next_state, action, self._goal)

    def _observation(self, state: Tensor) -> Tensor:
        """Observation ``(N, o)`` of ``state`` at the current step (default:
        ``model.observe(state, goal)``)."""
        return self.model.observe(state, self._goal)

    def _render_frames(self, scene: Scene, states: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    # ------------------------------------------------------------------------------------------
    # env options (the registry entry's ``env_options``; module docstring)
    # ------------------------------------------------------------------------------------------
    @classmethod
    def resolve_options(cls, options: Mapping[str, Any]) -> dict[str, Any]:
        """``options`` (overrides of the task's ``env_options``) in canonical form: JSON-ready,
        independent of the working directory (a subclass resolves symbolic values and makes
        paths absolute in :meth:`_resolve_option`), without the entries that equal the
        registry's default -- what a configuration records and a run id hashes.  Cheap: reads
        no data.

        Raises:
            ValueError: a name that is not an env option of the task (the message lists them),
                or a value that is not JSON-serialisable.
        """
        spec = get_task(cls.task)
        defaults = spec.env_options
        if not isinstance(options, Mapping):
            raise ValueError(f"env options must be a mapping name -> value, got "
                             f"{type(options).__name__}")
        spec.check_env_option_names(options)
        out: dict[str, Any] = {}
        for name, value in options.items():
            value = cls._resolve_option(name, value)
            try:
                json.dumps(value)
            except (TypeError, ValueError):
                raise ValueError(f"env option {name!r} of task {cls.task!r} must be "
                                 f"JSON-serialisable, got {type(value).__name__}") from None
            if value != cls._resolve_option(name, defaults[name]):
                out[name] = value
        return out

    @classmethod
    def _resolve_option(cls, name: str, value: Any) -> Any:
        """Canonical form of one option's value (default: as given)."""
        return value

    @classmethod
    def check_options(cls, options: Mapping[str, Any]) -> None:
        """Validate canonical ``options`` (:meth:`resolve_options`) fully, before any work: a
        subclass may read its data files.  ``ValueError`` naming the problem."""
        cls.resolve_options(options)

    @classmethod
    def describe_options(cls, options: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
        """What the canonical ``options`` (a missing name: its default) mean, for a
        reproduction's manifest: ``{name: {"source": text, ...}}`` (default: nothing to say)."""
        return {}

    def data_sources(self) -> dict[str, str]:
        """Where this env's exogenous data come from, ``{option: source}`` (recorded in run
        results; default: none)."""
        return {}

    # ------------------------------------------------------------------------------------------
    # properties
    # ------------------------------------------------------------------------------------------
    @property
    def state(self) -> Tensor:
        """Current states ``(N, n)`` (carrying the autograd graph since the last cut)."""
        return self._require_reset()

    @property
    def goal(self) -> Tensor | None:
        """Current goals ``(N, 2)`` for tasks with a goal (quadrotor), else ``None``."""
        self._require_reset()
        return self._goal

    @property
    def elapsed_steps(self) -> int:
        """Steps taken in the current episode (shared by all envs)."""
        return self._elapsed_steps

    @property
    def state_box(self) -> Zonotope:
        """Feasible state box ``S`` as a batch-1 zonotope ``(1, n)``, ``(1, n, n)``."""
        return Zonotope.from_box(self._state_low, self._state_high)

    @property
    def action_box(self) -> Zonotope:
        """Feasible action box ``A = [-1, 1]^d`` as a batch-1 zonotope."""
        return Zonotope.from_box(self._action_low, self._action_high)

    @property
    def noise_box(self) -> Zonotope:
        """Noise box ``W = <w0, diag(w)>`` in noise coordinates ``(1, n_w)``, ``(1, n_w, n_w)``
        (``w0`` the centre of the model's noise box, 0 except for the energy task)."""
        return Zonotope.from_box(self._noise_low, self._noise_high)

    # ------------------------------------------------------------------------------------------
    # gymnasium API
    # ------------------------------------------------------------------------------------------
    def reset(
        self, *, seed: int | list[int] | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Tensor, dict[str, Any]]:
        """Start new episodes in all envs; returns ``(obs (N, o), info)``.

        ``seed`` re-seeds the env's generator (``None`` continues its stream; a list, one seed
        per block of rows, is for the block-seeded envs of seed populations,
        :func:`safegbpo.algorithms.population_env`; a plain env rejects it).  States are drawn
        uniformly from the safe state set ∩ ``S`` unless ``options["state"]`` ``(N, n)`` is given.
        ``info`` holds ``"state"`` ``(N, n)``.
        """
        if seed is not None:
            self._seed_generator(seed)
        options = {} if options is None else dict(options)
        unknown = set(options) - self._reset_option_keys()
        if unknown:
            raise ValueError(f"unknown reset option(s) {sorted(unknown)}; "
                             f"expected {sorted(self._reset_option_keys())}")
        if options.get("state") is not None:
            states = self._validate_states(options["state"], "options['state']")
        else:
            states = self.sample_safe_states(self.num_envs)
        self._start_episodes(states, options)
        return self._observe(), {"state": self._state}

    def step(self, actions: Tensor | np.ndarray) -> tuple[Tensor, Tensor, Tensor, Tensor, dict]:
        """Apply ``actions (N, d)`` (unclipped) to all envs; see the class docstring.

        Returns:
            ``obs (N, o)``, ``reward (N,)``, ``terminated (N,)`` (bool, all False),
            ``truncated (N,)`` (bool), ``info`` with ``"state"``, ``"noise"`` and, when truncated,
            ``"final_obs"``, ``"_final_obs"``, ``"final_state"`` (``"final_goal"``).
        """
        state = self._require_reset()
        action = self._validate_actions(actions)
        noise = self._step_noise()
        next_state = self.model.step(state, action, noise)
        reward = self._step_reward(next_state, action)
        self._elapsed_steps += 1
        terminated = torch.zeros(self.num_envs, dtype=torch.bool, device=self.device)
        truncated = torch.full((self.num_envs,), self._elapsed_steps >= self.episode_length,
                               dtype=torch.bool, device=self.device)
        info: dict[str, Any] = {"noise": noise}
        if bool(truncated[0]):
            info["final_obs"] = self._observation(next_state)
            info["_final_obs"] = truncated.clone()
            info["final_state"] = next_state
            if self._goal is not None:
                info["final_goal"] = self._goal
            self._start_episodes(self.sample_safe_states(self.num_envs), {})
        else:
            self._state = next_state
        info["state"] = self._state
        for observer in _STEP_OBSERVERS.get():
            observer(self, info)
        return self._observe(), reward, terminated, truncated, info

    def render(self) -> np.ndarray:  # type: ignore[override]  # (N, H, W, 3) frames
        """RGB frames of all envs, ``(N, H, W, 3)`` uint8 (matplotlib Agg, offscreen)."""
        state = self._require_reset()
        if self._scene is None:
            self._scene = self._make_scene()
        return self._render_frames(self._scene, state.detach().cpu().numpy())

    def close_extras(self, **kwargs: Any) -> None:
        """Release the rendering figure."""
        if getattr(self, "_scene", None) is not None:
            scene: Any = self._scene
            scene.close()
            self._scene = None

    # ------------------------------------------------------------------------------------------
    # differentiable-simulation API
    # ------------------------------------------------------------------------------------------
    def cut_graph(self) -> None:
        """Detach the state (and goal) from the autograd graph (e.g. between SHAC windows)."""
        self._state = self._require_reset().detach()
        if self._goal is not None:
            self._goal = self._goal.detach()

    def dynamics(self, state: Tensor, action: Tensor, noise: Tensor) -> Tensor:
        """Raw model dynamics ``f(s, a, w)`` (Eq 65/67; no wrapping, no clamping), batched."""
        return self.model.dynamics(state, action, noise)

    def linearise(self, state: Tensor | None = None, *, method: str = "affine") -> Linearisation:
        """Eq 12 at ``(s, a0, w0)``, one linearisation per row of ``state`` (default: the
        current states); ``w0`` is the centre of ``W`` (not necessarily 0).

        ``method='affine'`` (default, SPEC §11): the task dynamics are affine in ``a`` and ``w``
        (Eq 12), so one batched evaluation of the raw :meth:`dynamics` at ``(a0, w0)``,
        ``(a0 + e_j, w0)`` and ``(a0, w0 + e_k)`` gives ``f0``, the columns ``B e_j = f(a0 +
        e_j) - f0`` and ``E e_k`` exactly (up to rounding, ``~1e-15``).  ``method='jacrev'``
        differentiates with ``torch.func.jacrev`` (vectorised with ``vmap``): the reference the
        tests compare against, and the right choice for a model that is not affine.
        Either result is differentiable in ``state`` (it keeps the state's graph).

        Returns:
            :class:`Linearisation` ``f0 (M, n)``, ``B (M, n, d)``, ``E (M, n, n_w)``.
        """
        if method not in ("affine", "jacrev"):
            raise ValueError(f"method must be 'affine' or 'jacrev', got {method!r}")
        if state is None:
            state = self.state
        else:
            state = self._validate_states(state, "state", require_in_box=False, batch=None)
        batch = state.shape[0]
        a0 = self._action_centre.to(state.dtype).expand(batch, -1)
        w0 = self._noise_centre.to(state.dtype).expand(batch, -1)
        if method == "jacrev":
            f0 = self.model.dynamics(state, a0, w0)
            jac = torch.func.vmap(torch.func.jacrev(self.model.dynamics, argnums=(1, 2)))
            B, E = jac(state, a0, w0)
            return Linearisation(f0, B, E)
        d, n_w = a0.shape[1], w0.shape[1]
        k = 1 + d + n_w
        # rows: (a0, w0), (a0 + e_j, w0) for j < d, (a0, w0 + e_k) for k < n_w
        key = (batch, state.dtype, state.device)
        cache = self.__dict__.setdefault("_linearise_points", {})
        if key not in cache:
            eye = torch.eye(d + n_w, dtype=state.dtype, device=state.device)
            offsets = torch.cat([torch.zeros(1, d + n_w, dtype=state.dtype,
                                             device=state.device), eye])
            points = torch.cat([a0[:1], w0[:1]], dim=1) + offsets  # (k, d + n_w)
            points = points.unsqueeze(0).expand(batch, k, -1).reshape(batch * k, -1)
            cache.clear()
            cache[key] = (points[:, :d].contiguous(), points[:, d:].contiguous())
        actions, noises = cache[key]
        out = self.model.dynamics(
            state.unsqueeze(1).expand(batch, k, -1).reshape(batch * k, -1), actions, noises,
        ).reshape(batch, k, -1)
        f0 = out[:, 0]
        columns = out[:, 1:] - f0.unsqueeze(1)  # (M, d + n_w, n)
        B = columns[:, :d].transpose(1, 2)
        E = columns[:, d:].transpose(1, 2)
        return Linearisation(f0, B, E)

    def next_state_set(self, actions: Tensor | np.ndarray) -> Zonotope:
        """Exact set of next (raw) states for ``actions (N, d)`` from the current states
        (Eq 13–14): ``<f0 + B (a - a0), E G_W>``, centre ``(N, n)``, generators ``(N, n, n_w)``.
        """
        action = self._validate_actions(actions)
        f0, B, E = self.linearise()
        centre = f0 + (B @ (action - self._action_centre).unsqueeze(-1)).squeeze(-1)
        # E @ diag(w) with w the half-widths of W (W need not be centred at 0: energy task)
        generators = E * (0.5 * (self._noise_high - self._noise_low))
        return Zonotope(centre, generators)

    # ------------------------------------------------------------------------------------------
    # randomness (all through the env's own generator)
    # ------------------------------------------------------------------------------------------
    def sample_noise(self, num: int) -> Tensor:
        """``num`` noise vectors uniform in ``W`` ``(num, n_w)`` (advances the env's generator)."""
        u = torch.rand((num, self.model.noise_dim), generator=self._generator,
                       dtype=self.dtype, device=self.device)
        return self._noise_low + (self._noise_high - self._noise_low) * u

    def sample_safe_states(self, num: int) -> Tensor:
        """``num`` states uniform in the safe state zonotope ∩ ``S`` ``(num, n)`` (advances the
        env's generator).

        Rejection sampling: candidates uniform in the box ``H`` = interval hull of the safe set
        ∩ ``S`` (a superset of the target), accepted iff in the zonotope (Eq 5).  Accepted
        candidates are i.i.d. uniform in ``H ∩ zonotope = zonotope ∩ S``.  Membership is decided
        by the cheap sufficient test ``||G^+ (p - c)||_inf <= 1`` (the minimum-norm factor is a
        valid factor) and, when that is inconclusive, by the exact LP of Eq 5.
        """
        num = _positive_int(num, "num")
        accepted: list[Tensor] = []
        count, drawn = 0, 0
        acceptance = 0.5  # running estimate, only sizes the candidate batches
        while count < num:
            if drawn >= _MAX_CANDIDATES_PER_STATE * num:
                raise RuntimeError(
                    f"rejection sampling of the safe set accepted {count} of {drawn} candidates; "
                    "the safe state set is (numerically) degenerate")
            size = max(8, math.ceil(1.3 * (num - count) / max(acceptance, 1e-3)))
            u = torch.rand((size, self.model.state_dim), generator=self._generator,
                           dtype=self.dtype, device=self.device)
            candidates = self._sample_low + (self._sample_high - self._sample_low) * u
            inside = self._in_safe_state_set(candidates)
            accepted.append(candidates[inside])
            count += int(inside.sum())
            drawn += size
            acceptance = max(count / drawn, 1e-3)
        return torch.cat(accepted)[:num]

    # ------------------------------------------------------------------------------------------
    # internals
    # ------------------------------------------------------------------------------------------
    def _seed_generator(self, seed: int | list[int] | None) -> None:
        if seed is None:
            self._generator.seed()  # fresh non-deterministic seed, no global RNG involved
            return
        if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
            raise ValueError(f"seed must be a non-negative integer or None, got {seed!r}")
        self._generator.manual_seed(int(seed))

    def _init_reset_sampler(self) -> None:
        """Cache the safe set's state zonotope and the sampling box (interval hull ∩ S)."""
        # membership is decided in float64 whatever the env's dtype
        zono = self.safe_set.state.detach().to(self.device, torch.float64)
        centre, generators = zono.center[0], zono.generators[0]
        n = self.model.state_dim
        if generators.shape[-1] == 0 or torch.linalg.matrix_rank(generators) < n:
            raise ValueError("the safe state set has an empty interior (rank of its generators "
                             f"< {n}); uniform reset states are undefined")
        hull_low, hull_high = (t[0].to(self.dtype) for t in zono.interval_hull())
        # the safe set's centre lies in S (SafeSet validates it), so this box is not empty
        self._sample_low = torch.maximum(hull_low, self._state_low)
        self._sample_high = torch.minimum(hull_high, self._state_high)
        self._safe_centre = centre
        self._safe_pinv = torch.linalg.pinv(generators)

    def _in_safe_state_set(self, points: Tensor) -> Tensor:
        """Exact membership (Eq 5) of ``points (B, n)`` in the safe state zonotope, ``(B,)`` bool.

        Fast path: the minimum-norm factor ``G^+ (p - c)`` is a factor of ``p`` (``G`` has full
        row rank), so ``||G^+ (p - c)||_inf <= 1`` proves membership; the other points go to
        :meth:`SafeSet.contains` (the LP of Eq 5, batched).
        """
        offsets = points.to(torch.float64) - self._safe_centre
        inside = (offsets @ self._safe_pinv.T).abs().amax(-1) <= 1.0
        undecided = torch.nonzero(~inside).flatten()
        if undecided.numel():
            inside[undecided] = self.safe_set.contains(points[undecided]).to(inside.device)
        return inside

    def _reset_option_keys(self) -> set[str]:
        return {"state"}

    def _start_episodes(self, states: Tensor, options: dict[str, Any]) -> None:
        self._goal = self._initial_goal(states, options)
        self._state = states
        self._elapsed_steps = 0

    def _observe(self) -> Tensor:
        return self._observation(self._require_reset())

    def _require_reset(self) -> Tensor:
        """The current states; ``RuntimeError`` before the first :meth:`reset`."""
        if self._state is None:
            raise RuntimeError(f"{type(self).__name__}: call reset() before using the env")
        return self._state

    def _to_tensor(self, value: Any, name: str) -> Tensor:
        if isinstance(value, Tensor):
            if value.is_complex() or value.dtype == torch.bool:
                raise ValueError(f"{name} must be real-valued, got dtype {value.dtype}")
            return value.to(device=self.device, dtype=self.dtype)
        try:
            array = np.asarray(value, dtype=np.float64)
        except (TypeError, ValueError) as err:
            raise ValueError(f"{name} must be a tensor or an array of numbers: {err}") from None
        return torch.as_tensor(array, dtype=self.dtype, device=self.device)

    def _validate_actions(self, actions: Any) -> Tensor:
        """``actions`` as an ``(N, d)`` finite tensor of the env's dtype/device (graph kept)."""
        action = self._to_tensor(actions, "action")
        expected = (self.num_envs, self.model.action_dim)
        if tuple(action.shape) != expected:
            raise ValueError(f"action must have shape {expected} (num_envs, action_dim), "
                             f"got {tuple(action.shape)}")
        finite = torch.isfinite(action.detach()).all(-1)
        if not bool(finite.all()):
            bad = torch.nonzero(~finite).flatten().tolist()
            raise ValueError(f"action contains NaN/inf (envs {bad})")
        return action

    def _validate_states(self, states: Any, name: str, require_in_box: bool = True,
                         batch: int | None = -1) -> Tensor:
        """``states`` as a finite ``(batch, n)`` tensor (``batch=-1``: ``num_envs``, ``None``:
        any batch), optionally required to lie in ``S``."""
        state = self._to_tensor(states, name)
        n = self.model.state_dim
        rows = self.num_envs if batch == -1 else batch
        if state.ndim != 2 or state.shape[1] != n or (rows is not None and state.shape[0] != rows):
            expected = f"({rows if rows is not None else 'batch'}, {n})"
            raise ValueError(f"{name} must have shape {expected}, got {tuple(state.shape)}")
        if not bool(torch.isfinite(state.detach()).all()):
            raise ValueError(f"{name} contains NaN/inf")
        if require_in_box:
            tol = 1e-12
            outside = ((state.detach() < self._state_low - tol)
                       | (state.detach() > self._state_high + tol)).any(-1)
            if bool(outside.any()):
                raise ValueError(f"{name} lies outside the feasible state box S "
                                 f"(rows {torch.nonzero(outside).flatten().tolist()})")
        return state

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(task={self.task!r}, num_envs={self.num_envs}, "
                f"episode_length={self.episode_length}, device={self.device}, dtype={self.dtype})")
