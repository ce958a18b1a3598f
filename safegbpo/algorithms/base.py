"""Pieces shared by SHAC, PPO and SAC: the :class:`Algorithm` interface, seeding, phase timing.

An algorithm trains a *population* of ``P >= 1`` independent seeds in lockstep
(:mod:`safegbpo.algorithms.population`; a single-seed run is a population of one): it owns the
members' networks (ensembles), optimisers and random generators, and steps the (training)
vector environment of ``P x N`` rows it was built for.  The training loop
(``safegbpo.experiments.runner``) only calls :meth:`Algorithm.iterate` — one SHAC window, one
PPO rollout + update, one SAC vector step + update, for every member — counts
``interactions_per_iteration`` environment interactions per member and call (one interaction =
one step of one environment), and checkpoints with :meth:`Algorithm.state_dict` /
:meth:`Algorithm.load_state_dict`.

Seeding: every random draw comes from ``torch.Generator`` s owned by the algorithm, per member
(network initialisation and sampling use two streams derived from the member's seed with
:func:`derive_seed`) and drawn in the same order whatever the population; the global RNG is
never used.
"""

from __future__ import annotations

import abc
import copy
import time
import zlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch
from torch import Tensor, nn

from safegbpo.algorithms.networks import GaussianPolicy

if TYPE_CHECKING:
    from safegbpo.envs.protocol import TrainingEnv

__all__ = [
    "Algorithm",
    "PhaseTimer",
    "derive_seed",
    "make_generator",
    "SafeguardFn",
    "final_observations",
    "stored_regularisation_loss",
    "check_hidden",
    "check_positive",
    "check_positive_int",
    "check_unit",
]

#: A safeguard as seen by the algorithms: ``g(actions (R, d), states (R, n)) -> safe (R, d)`` for
#: the env's rows (the call of :class:`safegbpo.safeguards.SafeguardProtocol`; the states are
#: passed explicitly, never read from the environment by the safeguard).
SafeguardFn = Callable[[Tensor, Tensor], Tensor]


def derive_seed(seed: int, purpose: str) -> int:
    """A 63-bit seed for the stream ``purpose`` derived from the run ``seed``.

    Uses ``numpy.random.SeedSequence`` with the CRC32 of ``purpose`` as spawn key, so streams
    of different purposes are statistically independent and stable across versions.
    """
    if not isinstance(seed, int | np.integer) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    sequence = np.random.SeedSequence(int(seed), spawn_key=(zlib.crc32(purpose.encode()),))
    return int(sequence.generate_state(1, dtype=np.uint64)[0] >> np.uint64(1))


def make_generator(seed: int, device: torch.device | str = "cpu") -> torch.Generator:
    """A ``torch.Generator`` on ``device`` seeded with ``seed``."""
    generator = torch.Generator(device=device)
    generator.manual_seed(int(seed))
    return generator


class PhaseTimer:
    """Exclusive wall-clock time per named phase.

    Phases nest (``with timer("rollout"): ... with timer("safeguard"): ...``) and each second is
    attributed to the innermost active phase only, so the phases add up to the timed total.
    """

    def __init__(self, seconds: dict[str, float] | None = None) -> None:
        self.seconds: dict[str, float] = dict(seconds or {})
        self._stack: list[list[Any]] = []  # [name, start, child_seconds]

    @contextmanager
    def __call__(self, phase: str) -> Iterator[None]:
        start = time.perf_counter()
        self._stack.append([phase, start, 0.0])
        try:
            yield
        finally:
            _, _, children = self._stack.pop()
            elapsed = time.perf_counter() - start
            self.seconds[phase] = self.seconds.get(phase, 0.0) + elapsed - children
            if self._stack:
                self._stack[-1][2] += elapsed


class Algorithm(abc.ABC):
    """Interface of the learning algorithms (see the module docstring), for a population of
    ``members`` seeds (:mod:`~safegbpo.algorithms.population`).

    The environment has ``members x N`` rows, member ``p`` owning rows ``p N .. (p + 1) N - 1``
    (``self.num_envs`` is ``N``, the environments *per member*).  Subclasses set
    ``self.policy`` (a :class:`GaussianPolicy` ensemble) and ``self.generators`` (one sampling
    stream per member) and register what a checkpoint must hold in ``self.modules`` /
    ``self.optimizers`` / :meth:`extra_state`.  ``self.obs`` (current observations
    ``(members x N, o)``) is set by :meth:`reset_env` (constructors call it when given
    ``env_seeds``) or :meth:`load_state_dict` (resuming: the environment's state is restored by
    the caller).

    Safeguard counters of the training steps are kept per member (``interventions``,
    ``fallbacks``, ``uncertified`` (rows without a certified safe action:
    :mod:`safegbpo.safeguards.recovery`), ``safeguard_steps``, each ``(members,)`` int64) from
    the safeguard's per-row masks of every call.
    """

    name: ClassVar[str] = ""

    def __init__(
        self,
        env: TrainingEnv,
        *,
        members: int,
        safeguard: SafeguardFn | None,
        regularisation: float,
        timer: PhaseTimer | None,
    ) -> None:
        if regularisation < 0 or not np.isfinite(regularisation):
            raise ValueError(f"regularisation coefficient must be finite and >= 0, got "
                             f"{regularisation}")
        if isinstance(members, bool) or not isinstance(members, int) or members < 1:
            raise ValueError(f"members must be a positive integer, got {members!r}")
        total = int(env.num_envs)
        if total % members:
            raise ValueError(f"the env's {total} rows do not split into {members} members")
        self.env = env
        self.members = members
        self.safeguard = safeguard
        self.regularisation = float(regularisation)
        self.timer = timer if timer is not None else PhaseTimer()
        self.num_envs: int = total // members
        self.obs_dim: int = int(env.model.obs_dim)
        self.act_dim: int = int(env.model.action_dim)
        self.modules: dict[str, nn.Module] = {}
        self.optimizers: dict[str, torch.optim.Optimizer] = {}
        self.policy: GaussianPolicy
        self.generators: list[torch.Generator] = []
        self.obs: Tensor | None = None  # set by reset_env() or load_state_dict()
        zeros = torch.zeros(members, dtype=torch.int64)
        self.interventions, self.fallbacks, self.safeguard_steps = (zeros.clone(),
                                                                      zeros.clone(),
                                                                      zeros.clone())
        self.uncertified = zeros.clone()

    def reset_env(self, seeds: Sequence[int] | None) -> None:
        """Start training episodes: ``env.reset(seed=seeds)`` (one seed per member's block of a
        population env) and keep the observations."""
        obs, _ = self.env.reset(seed=None if seeds is None else list(seeds))
        self.obs = obs.detach()

    def current_obs(self) -> Tensor:
        """The current training observations ``(members x N, o)``; error before
        :meth:`reset_env`."""
        if self.obs is None:
            raise RuntimeError(f"{type(self).__name__}: call reset_env(seed) (or load a "
                               "checkpoint) before iterate()")
        return self.obs

    def by_member(self, rows: Tensor) -> Tensor:
        """Env rows ``(members x N, ...)`` as ``(members, N, ...)`` (a view)."""
        return rows.view(self.members, self.num_envs, *rows.shape[1:])

    # -- the training step -------------------------------------------------------------------
    @property
    @abc.abstractmethod
    def interactions_per_iteration(self) -> int:
        """Environment interactions *of one member* consumed by one :meth:`iterate` call."""

    @abc.abstractmethod
    def iterate(self) -> dict[str, float]:
        """One training iteration of every member; returns scalar statistics (member means)."""

    # -- helpers -----------------------------------------------------------------------------
    def apply_safeguard(self, action: Tensor, state: Tensor) -> Tensor:
        """``g(a, s)`` for the actions ``(members x N, d)`` in the states ``(members x N, n)``
        (identity without a safeguard), timed as the ``safeguard`` phase and counted per member.
        Differentiable (in both) if the caller records gradients."""
        if self.safeguard is None:
            return action
        with self.timer("safeguard"):
            safe = self.safeguard(action, state)
        if safe.shape != action.shape:
            raise ValueError(f"safeguard returned shape {tuple(safe.shape)} for actions of "
                             f"shape {tuple(action.shape)}")
        with torch.no_grad():
            intervened = getattr(self.safeguard, "last_intervened", None)
            if intervened is None:  # a user safeguard without the masks: same definition
                from safegbpo.safeguards import INTERVENTION_THRESHOLD

                intervened = torch.linalg.vector_norm(safe.detach() - action.detach(),
                                                      dim=-1) > INTERVENTION_THRESHOLD
            fallback = getattr(self.safeguard, "last_fallback", None)
            self.interventions += self.by_member(intervened.cpu()).sum(1)
            if fallback is not None:
                self.fallbacks += self.by_member(fallback.cpu()).sum(1)
            uncertified = getattr(self.safeguard, "last_uncertified", None)
            if uncertified is not None:
                self.uncertified += self.by_member(uncertified.cpu()).sum(1)
            self.safeguard_steps += self.num_envs
        return safe

    @torch.no_grad()
    def act(self, obs: Tensor) -> Tensor:
        """Deterministic (evaluation) actions ``tanh(mu(o))``: ``(members, batch, o) ->
        (members, batch, d)``."""
        return self.policy.deterministic(obs)

    def summary(self, member: int) -> dict[str, Any]:
        """Algorithm-specific entries of member ``member``'s ``result.json``
        (``algorithm_summary``; e.g. PCRPO's mode counts); JSON-ready, empty by default."""
        return {}

    def extra_state(self) -> dict[str, Any]:
        """Algorithm-specific checkpoint content: ``{"members": {name: (members, ...)
        tensors}, "shared": {name: value}}`` (override if needed)."""
        return {"members": {}, "shared": {}}

    def load_extra_state(self, state: dict[str, Any]) -> None:  # noqa: B027 - optional hook
        """Restore :meth:`extra_state` (nothing by default)."""

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue training bit for bit (except the environment), as a
        snapshot (deep copy: later training does not alter it).  Every tensor with a leading
        dimension is per member (split it with
        :func:`~safegbpo.algorithms.population.split_population_state`)."""
        return copy.deepcopy({
            "name": self.name,
            "members": self.members,
            "modules": {k: m.state_dict() for k, m in self.modules.items()},
            "optimizers": {k: o.state_dict() for k, o in self.optimizers.items()},
            "generators": [g.get_state() for g in self.generators],
            "obs": self.by_member(self.current_obs().detach()).clone(),
            "counters": {"interventions": self.interventions, "fallbacks": self.fallbacks,
                         "uncertified": self.uncertified,
                         "safeguard_steps": self.safeguard_steps},
            "extra": self.extra_state(),
        })

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("name") != self.name:
            raise ValueError(f"checkpoint is for algorithm {state.get('name')!r}, "
                             f"not {self.name!r}")
        if int(state.get("members", 0)) != self.members:
            raise ValueError(f"checkpoint holds {state.get('members')} members, this population "
                             f"{self.members}")
        for key, module in self.modules.items():
            module.load_state_dict(state["modules"][key])
        for key, optimizer in self.optimizers.items():
            optimizer.load_state_dict(state["optimizers"][key])
        for generator, saved in zip(self.generators, state["generators"], strict=True):
            generator.set_state(saved)
        device = next(self.policy.parameters()).device
        self.obs = state["obs"].to(device).reshape(self.members * self.num_envs, -1)
        counters = state["counters"]
        self.interventions = counters["interventions"].clone()
        self.fallbacks = counters["fallbacks"].clone()
        self.safeguard_steps = counters["safeguard_steps"].clone()
        # checkpoints before the uncertified counter (issue 10) had none: zero is what they saw
        # only if the safeguard never flagged a row, which they could not record -- refuse
        if "uncertified" not in counters:
            raise ValueError("checkpoint has no 'uncertified' safeguard counter (written before "
                             "the recovery contract): it cannot be resumed; start the run again")
        self.uncertified = counters["uncertified"].clone()
        self.load_extra_state(state["extra"])


def stored_regularisation_loss(policy: GaussianPolicy, obs: Tensor, noise: Tensor,
                               action: Tensor, safe_action: Tensor, coef: float,
                               mask: Tensor | None = None) -> Tensor:
    """Eq 45 for the sampling-based algorithms (PPO, SAC) from stored transitions, per member.

    The rollout stored, per transition, the policy's noise ``eps`` ``(P, B, d)``, its action
    ``a = tanh(mu(o) + std eps)`` and the executed safe action ``g(a, s)`` (each ``(P, B, d)``).
    The current policy re-evaluates ``a_theta = tanh(mu_theta(o) + std_theta eps)`` (``= a`` at
    the parameters that sampled it) and the term of member ``p`` is

        ``coef * mean_B m_i ||a_theta,i - g(a_i, s_i)||^2``,

    with ``m_i = 1`` where the safeguard intervened (``||g(a) - a|| > 1e-6``) and 0 elsewhere
    (there ``g(a) = a``: Eq 45 vanishes), and ``m_i = 0`` where ``mask`` is False (SAC's uniform
    random actions before ``learning_starts``: they have no ``eps``).  ``g(a, s)`` is a fixed
    target, so the gradient is ``2 coef (a_theta - g)`` through ``a_theta``: Eq 45's gradient
    without the ``-J_g^T (a - g)`` part, which is exactly zero for the boundary projection
    (``J^T n = 0`` along the mapping direction, Eq 16) and a scaling along the ray for the ray
    mask.  Re-solving the safeguard for every mini-batch of every epoch would multiply its cost
    by the number of gradient steps.  Returns ``(P,)``.
    """
    from safegbpo.safeguards import INTERVENTION_THRESHOLD, regularisation_loss

    current = policy.action_from_noise(obs, noise)
    intervened = torch.linalg.vector_norm(safe_action - action, dim=-1) > INTERVENTION_THRESHOLD
    if mask is not None:
        intervened = intervened & mask
    target = torch.where(intervened.unsqueeze(-1), safe_action, current.detach())
    return torch.stack([regularisation_loss(current[p], target[p], coef)
                        for p in range(current.shape[0])])


def final_observations(next_obs: Tensor, done: Tensor, info: dict[str, Any]) -> Tensor:
    """The real next observation of every env ``(N, o)``: ``info["final_obs"]`` where an episode
    ended (same-step autoreset put the reset observation in ``next_obs``), ``next_obs`` elsewhere.

    ``info["final_obs"]`` may be a tensor ``(N, o)`` (rows of envs that did not finish are
    ignored) or a per-env sequence with ``None`` for envs that did not finish.
    """
    if not bool(done.any()):
        return next_obs
    final = info.get("final_obs")
    if final is None:
        raise ValueError("env reported a finished episode but no info['final_obs']")
    if not isinstance(final, Tensor):
        rows = [final[i] if bool(done[i]) else next_obs[i] for i in range(next_obs.shape[0])]
        final = torch.stack([torch.as_tensor(r, dtype=next_obs.dtype, device=next_obs.device)
                             for r in rows])
    if final.shape != next_obs.shape:
        raise ValueError(f"info['final_obs'] has shape {tuple(final.shape)}, expected "
                         f"{tuple(next_obs.shape)}")
    return torch.where(done.unsqueeze(-1), final, next_obs)


# -- validation of hyper-parameter dataclasses ---------------------------------------------
def check_hidden(name: str, value: tuple[int, ...]) -> None:
    if not isinstance(value, tuple) or not value or not all(
            isinstance(v, int) and v > 0 for v in value):
        raise ValueError(f"{name} must be a non-empty tuple of positive ints, got {value!r}")


def check_positive(name: str, value: float) -> None:
    if not isinstance(value, int | float) or not value > 0 or value == float("inf"):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")


def check_positive_int(name: str, value: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


def check_unit(name: str, value: float) -> None:
    if not isinstance(value, int | float) or not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must lie in [0, 1], got {value!r}")
