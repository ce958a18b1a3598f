"""Pieces shared by SHAC, PPO and SAC: the :class:`Algorithm` interface, seeding, phase timing.

An algorithm owns its networks, optimisers and random generator, and steps the (training)
vector environment it was built for.  The training loop (``safegbpo.experiments.runner``)
only calls :meth:`Algorithm.iterate` — one SHAC window, one PPO rollout + update, one SAC
vector step + update — counts ``interactions_per_iteration`` environment interactions per call
(one interaction = one step of one environment), and checkpoints with
:meth:`Algorithm.state_dict` / :meth:`Algorithm.load_state_dict`.

Seeding: every random draw comes from a ``torch.Generator`` owned by the algorithm (network
initialisation and sampling use two streams derived from the run seed with
:func:`derive_seed`); the global RNG is never used.
"""

from __future__ import annotations

import abc
import time
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor, nn

from safegbpo.algorithms.networks import GaussianPolicy

__all__ = [
    "Algorithm",
    "PhaseTimer",
    "derive_seed",
    "make_generator",
    "Safeguard",
    "check_hidden",
    "check_positive",
    "check_positive_int",
    "check_unit",
]

#: A safeguard as seen by the algorithms: maps actions ``(N, d)`` of the env's current states
#: to safe actions ``(N, d)`` (``safegbpo.safeguards.Safeguard`` protocol).
Safeguard = Callable[[Tensor], Tensor]


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
    """Interface of the learning algorithms (see the module docstring).

    Subclasses set ``self.policy`` (a :class:`GaussianPolicy`), ``self.generator`` (sampling
    stream), ``self.obs`` (current observations ``(N, o)``) and register what a checkpoint must
    hold in ``self.modules`` / ``self.optimizers`` / :meth:`extra_state`.
    """

    name: ClassVar[str] = ""

    def __init__(
        self,
        env: Any,
        *,
        safeguard: Safeguard | None,
        regularisation: float,
        timer: PhaseTimer | None,
    ) -> None:
        if regularisation < 0 or not np.isfinite(regularisation):
            raise ValueError(f"regularisation coefficient must be finite and >= 0, got "
                             f"{regularisation}")
        self.env = env
        self.safeguard = safeguard
        self.regularisation = float(regularisation)
        self.timer = timer if timer is not None else PhaseTimer()
        self.num_envs: int = int(env.num_envs)
        self.obs_dim: int = int(env.model.obs_dim)
        self.act_dim: int = int(env.model.action_dim)
        self.modules: dict[str, nn.Module] = {}
        self.optimizers: dict[str, torch.optim.Optimizer] = {}
        self.policy: GaussianPolicy
        self.generator: torch.Generator
        self.obs: Tensor

    # -- the training step -------------------------------------------------------------------
    @property
    @abc.abstractmethod
    def interactions_per_iteration(self) -> int:
        """Environment interactions consumed by one :meth:`iterate` call."""

    @abc.abstractmethod
    def iterate(self) -> dict[str, float]:
        """One training iteration; returns scalar statistics (losses, ...)."""

    # -- helpers -----------------------------------------------------------------------------
    def apply_safeguard(self, action: Tensor) -> Tensor:
        """``g(a, s)`` for the env's current states (identity without a safeguard), timed as
        the ``safeguard`` phase.  Differentiable if the caller records gradients."""
        if self.safeguard is None:
            return action
        with self.timer("safeguard"):
            safe = self.safeguard(action)
        if safe.shape != action.shape:
            raise ValueError(f"safeguard returned shape {tuple(safe.shape)} for actions of "
                             f"shape {tuple(action.shape)}")
        return safe

    @torch.no_grad()
    def act(self, obs: Tensor) -> Tensor:
        """Deterministic (evaluation) action ``tanh(mu(o))`` ``(batch, d)``."""
        return self.policy.deterministic(obs)

    def extra_state(self) -> dict[str, Any]:
        """Algorithm-specific checkpoint content (buffers, counters); override if needed."""
        return {}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        """Restore :meth:`extra_state`."""

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue training bit for bit (except the environment)."""
        return {
            "name": self.name,
            "modules": {k: m.state_dict() for k, m in self.modules.items()},
            "optimizers": {k: o.state_dict() for k, o in self.optimizers.items()},
            "generator": self.generator.get_state(),
            "obs": self.obs.detach().clone(),
            "extra": self.extra_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("name") != self.name:
            raise ValueError(f"checkpoint is for algorithm {state.get('name')!r}, not {self.name!r}")
        for key, module in self.modules.items():
            module.load_state_dict(state["modules"][key])
        for key, optimizer in self.optimizers.items():
            optimizer.load_state_dict(state["optimizers"][key])
        self.generator.set_state(state["generator"])
        self.obs = state["obs"].to(self.obs.device)
        self.load_extra_state(state["extra"])


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
