"""Learning algorithms (SPEC §8, §12): SHAC (analytic gradients through the simulator and the
safeguard), PPO and SAC (safeguard as a post-processing step), PCRPO (the soft-constraint
baseline on top of PPO, no safeguard), with their networks, replay buffer and evaluation
(SPEC §13 protocol).

Every algorithm trains a *population* of independent seeds in lockstep in one process
(:mod:`safegbpo.algorithms.population`); a single-seed run is a population of one.  Each
algorithm reads top to bottom in its own module, with its hyper-parameters in one frozen
dataclass (:class:`SHACConfig`, :class:`PPOConfig`, :class:`SACConfig`, :class:`PCRPOConfig`).
The registry below names every algorithm once (:class:`AlgorithmSpec`: name, report label,
class, config dataclass); the tuned presets per task are plain mappings in the task registry
(:class:`safegbpo.tasks.TaskSpec.presets`), turned into config objects by
:func:`safegbpo.experiments.config.preset`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from safegbpo.algorithms.base import Algorithm, PhaseTimer, derive_seed, make_generator
from safegbpo.algorithms.buffers import ReplayBuffer
from safegbpo.algorithms.evaluation import EvaluationResult, Evaluator
from safegbpo.algorithms.networks import MLP, GaussianPolicy, QCritic, ValueCritic
from safegbpo.algorithms.pcrpo import PCRPO, PCRPOConfig
from safegbpo.algorithms.population import (
    member_rows,
    merge_population_states,
    population_env,
    split_population_state,
)
from safegbpo.algorithms.ppo import PPO, PPOConfig
from safegbpo.algorithms.sac import SAC, SACConfig
from safegbpo.algorithms.shac import SHAC, SHACConfig
from safegbpo.registry import Registry

__all__ = [
    "MLP",
    "PCRPO",
    "PPO",
    "SAC",
    "SHAC",
    "Algorithm",
    "AlgorithmSpec",
    "EvaluationResult",
    "Evaluator",
    "GaussianPolicy",
    "PCRPOConfig",
    "PPOConfig",
    "PhaseTimer",
    "QCritic",
    "ReplayBuffer",
    "SACConfig",
    "SHACConfig",
    "ValueCritic",
    "algorithm_names",
    "algorithms",
    "derive_seed",
    "get_algorithm",
    "make_generator",
    "member_rows",
    "merge_population_states",
    "population_env",
    "register_algorithm",
    "split_population_state",
    "unregister_algorithm",
]


@dataclass(frozen=True)
class AlgorithmSpec:
    """One learning algorithm.

    Attributes:
        name: ``TrainConfig.algo`` / ``--algo`` (``'shac'``).
        label: its name in reports (``'SHAC'``).
        cls: the :class:`Algorithm` subclass, built as ``cls(env, hyper, seeds=, env_seeds=,
            safeguard=, regularisation=, timer=, device=)`` for a population of
            ``len(seeds)`` members (:mod:`safegbpo.algorithms.population`).
        config: its hyper-parameter dataclass (default-constructible, with ``validate()``).
        safeguarded: whether it trains through a safeguard (``False`` for a soft-constraint
            method such as PCRPO, which must be configured without one).
    """

    name: str
    label: str
    cls: Callable[..., Algorithm]
    config: type[Any]
    safeguarded: bool = True


_ALGORITHMS: Registry[AlgorithmSpec] = Registry("algorithm")


def register_algorithm(spec: AlgorithmSpec) -> AlgorithmSpec:
    """Add ``spec`` to the registry (its ``name`` must be new); returns it."""
    return _ALGORITHMS.register(spec.name, spec)


def unregister_algorithm(name: str) -> None:
    """Remove a registered algorithm (tests, plugins)."""
    _ALGORITHMS.unregister(name)


def get_algorithm(name: str) -> AlgorithmSpec:
    """The algorithm called ``name``; ``ValueError`` listing the registered ones otherwise."""
    spec = _ALGORITHMS.get(name)
    if spec is None:
        raise ValueError(f"unknown algorithm {name!r}; expected one of "
                         f"{sorted(_ALGORITHMS.names())}")
    return spec


def algorithm_names() -> tuple[str, ...]:
    """Names of the registered algorithms, in registration order."""
    return _ALGORITHMS.names()


def algorithms() -> Mapping[str, AlgorithmSpec]:
    """Read-only view of the registry (name -> :class:`AlgorithmSpec`)."""
    return _ALGORITHMS.view()


register_algorithm(AlgorithmSpec("shac", "SHAC", SHAC, SHACConfig))
register_algorithm(AlgorithmSpec("ppo", "PPO", PPO, PPOConfig))
register_algorithm(AlgorithmSpec("sac", "SAC", SAC, SACConfig))
register_algorithm(AlgorithmSpec("pcrpo", "PCRPO", PCRPO, PCRPOConfig, safeguarded=False))
