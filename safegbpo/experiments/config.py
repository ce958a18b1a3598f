"""Training configuration: :class:`TrainConfig`, and the tuned presets as config objects.

A :class:`TrainConfig` names everything that determines a training run's result: task,
algorithm and its hyper-parameters, safeguard (and its modification: mapping, centre,
passthrough, Eq 45 regularisation), seed, budget, evaluation grid and set.  Two runs with equal
configs produce bit-identical learning curves (``safegbpo.experiments.runner``).

Defaults are filled in from the task's registry entry (:class:`safegbpo.tasks.TaskSpec`,
SPEC §8) and the algorithm registry (:func:`safegbpo.algorithms.get_algorithm`):

* ``hyper`` — the preset of the (task, algorithm) pair (:func:`preset`: the task entry's
  ``presets[algo]`` as the algorithm's config dataclass); a mapping given as ``hyper``
  overrides single fields of the preset;
* ``interactions`` — the task's budget (pendulum 100k, quadrotor 200k, energy 1M);
* ``eval_every`` — the task's evaluation grid (e.g. pendulum SHAC 2560 = 5 windows x 64 steps
  x 8 envs);
* ``num_envs`` — the task's number of environments (8 / 16);
* ``episode_length`` — the task's (pendulum 3000, quadrotor 240 steps: the reference's,
  SPEC §13; the energy system's registry entry), for training and evaluation;
* the evaluation protocol of SPEC §13 (:class:`~safegbpo.algorithms.Evaluator`): the learning
  curve is the return of one episode from the initial state drawn with ``eval_seed = 42`` from
  the safe set in use; ``eval_episodes = 16`` episodes from a fixed seeded set of initial
  states give a second, lower-variance curve reported alongside;
* for the ray mask: ``mapping='linear'``, ``centre='zonotopic'`` (the base ray mask of SPEC §5);
* ``backend`` — ``'exact'`` (SPEC §11), the built-in safeguards' backend;
* ``env_options`` — none: the environment's options are the task's ``env_options`` unless the
  config overrides some (e.g. the energy task's ``profiles``); they are kept in the canonical
  form of the task's env class (:meth:`safegbpo.envs.SafeVectorEnv.resolve_options`: absolute
  paths, defaults dropped), so equal settings give equal configs.

An *interaction* is one step of one environment (a vector step of ``N`` envs is ``N``
interactions).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any

import torch

from safegbpo.algorithms import get_algorithm
from safegbpo.algorithms.evaluation import PAPER_SEED, SET_SIZE
from safegbpo.envs import env_class
from safegbpo.safeguards import BACKENDS, CENTRES, DEFAULT_BACKEND, MAPPINGS, SAFEGUARDS
from safegbpo.tasks import TaskSpec, get_task

__all__ = [
    "TrainConfig",
    "HyperConfig",
    "preset",
    "override_hyper",
    "parse_hyper_assignment",
]

#: An algorithm's hyper-parameter dataclass instance (``AlgorithmSpec.config``).
HyperConfig = Any


def preset(task: str, algo: str) -> HyperConfig:
    """The tuned hyper-parameters of ``algo`` on ``task`` (SPEC §8): the task registry entry's
    ``presets[algo]`` as the algorithm's config dataclass.

    Raises:
        ValueError: unknown task or algorithm, or no preset for the pair.
    """
    spec = get_task(task)
    algorithm = get_algorithm(algo)
    if algo not in spec.presets:
        raise ValueError(f"no preset for task {task!r} and algorithm {algo!r}; the task has "
                         f"presets for {sorted(spec.presets)}")
    return override_hyper(algorithm.config(), spec.presets[algo])


def _coerce(name: str, value: Any, default: Any) -> Any:
    """``value`` converted to the type of the dataclass field's ``default``."""
    if isinstance(default, bool):
        if isinstance(value, str):
            lowered = value.strip().lower()
            if lowered in ("true", "1", "yes"):
                return True
            if lowered in ("false", "0", "no"):
                return False
            raise ValueError(f"hyper-parameter {name!r} expects true/false, got {value!r}")
        if not isinstance(value, bool):
            raise ValueError(f"hyper-parameter {name!r} expects a bool, got {value!r}")
        return value
    if isinstance(default, tuple):
        items = value.split(",") if isinstance(value, str) else value
        if not isinstance(items, list | tuple):
            raise ValueError(f"hyper-parameter {name!r} expects a sequence, got {value!r}")
        element = type(default[0]) if default else float
        return tuple(_coerce(name, item, element()) for item in items)
    if isinstance(default, int):
        if isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                raise ValueError(f"hyper-parameter {name!r} expects an integer, got "
                                 f"{value!r}") from None
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"hyper-parameter {name!r} expects an integer, got {value!r}")
        return value
    if isinstance(default, float):
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ValueError(f"hyper-parameter {name!r} expects a number, got {value!r}") \
                from None
    return value


def override_hyper(base: HyperConfig, overrides: Mapping[str, Any]) -> HyperConfig:
    """``base`` with the fields in ``overrides`` replaced (values coerced to the field types:
    ``"128,128"`` or ``[128, 128]`` for tuples, ``"true"`` for bools).  Unknown names raise
    ``ValueError`` listing the valid ones."""
    names = {f.name: getattr(base, f.name) for f in fields(base)}
    unknown = sorted(set(overrides) - set(names))
    if unknown:
        raise ValueError(f"unknown hyper-parameter(s) {unknown} for {type(base).__name__}; "
                         f"valid: {sorted(names)}")
    return replace(base, **{k: _coerce(k, v, names[k]) for k, v in overrides.items()})


def parse_hyper_assignment(text: str) -> tuple[str, str]:
    """``"KEY=VALUE"`` -> ``(KEY, VALUE)`` (CLI ``--hyper``)."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise ValueError(f"--hyper expects KEY=VALUE, got {text!r}")
    return key.strip(), value.strip()


def _registered_task(task: Any) -> TaskSpec | None:
    """The task's registry entry, ``None`` for an unknown name (validate() reports it)."""
    if not isinstance(task, str):
        return None
    try:
        return get_task(task)
    except ValueError:
        return None


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True)
class TrainConfig:
    """Everything that determines a training run (module docstring).

    Attributes:
        task: a registered task (:func:`safegbpo.tasks.get_task`), e.g. ``'pendulum'``.
        algo: ``'shac'``, ``'ppo'`` or ``'sac'``.
        safeguard: ``None`` (unsafe training), ``'bp'`` (boundary projection), ``'rm'`` (ray
            mask) or a user class ``'package.module:Class'`` (built as ``Class(env, ...)``).
        mapping: ray mask only, ``'linear'`` (Eq 46) or ``'hyperbolic'`` (Eq 64).
        centre: ray mask only, ``'zonotopic'`` (Eq 52–53) or ``'orthogonal'`` (Eq 54).
        passthrough: straight-through gradient of the safeguard (SPEC §5).
        regularisation: Eq 45 coefficient ``lambda_reg`` (0: off; the paper uses 0.1).
        backend: safeguard backend, ``'exact'`` (default, SPEC §11) or ``'cvxpylayers'``
            (the paper's Eq 6 programs); passed to the built-in safeguards.
        seed: run seed; network initialisation, sampling, training env and the ray mask's
            directions use independent streams derived from it.
        interactions: budget in interactions; training stops at the first iteration boundary
            at or beyond it.
        eval_every: evaluation interval in interactions.
        eval_episodes: episodes of the second evaluation, from a fixed set of initial states
            (default 16; the set is seeded from ``eval_seed``).
        num_envs: training environments ``N``.
        eval_seed: seed of the paper evaluation's one initial state (default 42, the
            reference's; shared by all runs: every seed and every configuration is scored on
            the same episodes).
        episode_length: steps per episode, training and evaluation (default: the task's).
        safe_set: optional path of a safe-set file (``safegbpo-safe-set/1``, CLI ``--safe-set``)
            (it also defines the reset distribution, so it matters for unsafe training too).
        env_options: options of the task's environment over its registry entry's
            ``env_options`` (CLI ``--env-option KEY=VALUE``), e.g. the energy task's hourly
            ``profiles`` (a CSV path or ``'reference'``); passed to ``make_vec``.
        hyper: the algorithm's hyper-parameters (default: :func:`preset`).
        device: torch device of networks and environments.
    """

    task: str = "pendulum"
    algo: str = "shac"
    safeguard: str | None = None
    mapping: str | None = None
    centre: str | None = None
    passthrough: bool = False
    regularisation: float = 0.0
    backend: str = DEFAULT_BACKEND
    seed: int = 0
    interactions: int | None = None
    eval_every: int | None = None
    eval_episodes: int | None = None
    num_envs: int | None = None
    eval_seed: int = PAPER_SEED
    episode_length: int | None = None
    safe_set: str | None = None
    env_options: Mapping[str, Any] = field(default_factory=dict)
    hyper: Any = field(default=None)
    device: str = "cpu"

    def __post_init__(self) -> None:
        def put(name: str, value: Any) -> None:
            object.__setattr__(self, name, value)

        if isinstance(self.safeguard, str) and self.safeguard.strip().lower() in ("", "none"):
            put("safeguard", None)
        if isinstance(self.regularisation, int) and not isinstance(self.regularisation, bool):
            put("regularisation", float(self.regularisation))
        if isinstance(self.safe_set, os.PathLike | str) and str(self.safe_set):
            put("safe_set", os.path.abspath(os.fspath(self.safe_set)))
        if self.safeguard == "rm":
            if self.mapping is None:
                put("mapping", "linear")
            if self.centre is None:
                put("centre", "zonotopic")
        if isinstance(self.env_options, Mapping):
            put("env_options", dict(self.env_options))
        spec = _registered_task(self.task)
        if spec is not None:
            if isinstance(self.env_options, Mapping):
                try:
                    put("env_options", env_class(self.task).resolve_options(self.env_options))
                except ValueError:
                    pass  # validate() reports it
            if self.interactions is None:
                put("interactions", spec.budget)
            if self.num_envs is None:
                put("num_envs", spec.num_envs)
            if self.episode_length is None:
                put("episode_length", spec.episode_length)
            if self.algo in spec.presets:
                if self.eval_every is None:
                    put("eval_every", spec.eval_every[self.algo])
                if self.hyper is None:
                    put("hyper", preset(self.task, self.algo))
                elif isinstance(self.hyper, Mapping):
                    put("hyper", override_hyper(preset(self.task, self.algo), self.hyper))
        if self.eval_episodes is None:
            put("eval_episodes", SET_SIZE)

    # -- validation --------------------------------------------------------------------------
    def validate(self) -> TrainConfig:
        """Raise ``ValueError`` naming the first problem (before any work); returns ``self``."""
        task = get_task(self.task)
        algorithm = get_algorithm(self.algo)
        if self.algo not in task.presets and (self.hyper is None or self.eval_every is None):
            raise ValueError(f"no preset for task {self.task!r} and algorithm {self.algo!r} "
                             f"(the task has {sorted(task.presets)}): give hyper and eval_every")
        sg = self.safeguard
        if sg is not None and (not isinstance(sg, str) or (
                sg not in SAFEGUARDS and ":" not in sg)):
            raise ValueError(f"unknown safeguard {sg!r}; expected 'none', one of "
                             f"{list(SAFEGUARDS)} or a user class 'package.module:Class'")
        if sg is not None and not algorithm.safeguarded:
            raise ValueError(f"algorithm {self.algo!r} trains without a safeguard "
                             f"(--safeguard none), got safeguard {sg!r}")
        if self.mapping is not None:
            if sg != "rm":
                raise ValueError(f"mapping {self.mapping!r} only applies to the ray mask "
                                 f"(--safeguard rm), not to safeguard {sg or 'none'!r}")
            if self.mapping not in MAPPINGS:
                raise ValueError(f"unknown mapping {self.mapping!r}; expected one of "
                                 f"{list(MAPPINGS)}")
        if self.centre is not None:
            if sg != "rm":
                raise ValueError(f"centre {self.centre!r} only applies to the ray mask "
                                 f"(--safeguard rm), not to safeguard {sg or 'none'!r}")
            if self.centre not in CENTRES:
                raise ValueError(f"unknown centre {self.centre!r}; expected one of "
                                 f"{list(CENTRES)}")
        if not isinstance(self.passthrough, bool):
            raise ValueError(f"passthrough must be a bool, got {self.passthrough!r}")
        if self.backend not in BACKENDS:
            raise ValueError(f"unknown backend {self.backend!r}; expected one of {list(BACKENDS)}")
        if self.passthrough and sg is None:
            raise ValueError("passthrough gradient requires a safeguard (--safeguard bp|rm)")
        reg = self.regularisation
        if isinstance(reg, bool) or not isinstance(reg, int | float) or not math.isfinite(reg) \
                or reg < 0:
            raise ValueError(f"regularisation must be a finite number >= 0, got {reg!r}")
        if reg > 0 and sg is None:
            raise ValueError("regularisation (Eq 45) penalises the safeguard's mapping distance "
                             "and requires a safeguard (--safeguard bp|rm)")
        for name in ("seed", "eval_seed"):
            value = getattr(self, name)
            if not _is_int(value) or value < 0:
                raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
        for name in ("interactions", "eval_every", "eval_episodes", "num_envs",
                     "episode_length"):
            value = getattr(self, name)
            if not _is_int(value) or value <= 0:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        expected = algorithm.config
        if not isinstance(self.hyper, expected):
            raise ValueError(f"hyper must be a {expected.__name__} for algorithm {self.algo!r}, "
                             f"got {type(self.hyper).__name__}")
        self.hyper.validate()
        try:
            device = torch.device(self.device)
        except (RuntimeError, TypeError) as err:
            raise ValueError(f"invalid device {self.device!r}: {err}") from None
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"device {self.device!r} requested but CUDA is not available")
        if self.safe_set is not None:
            self._validate_safe_set_file(self.safe_set)
        env_class(self.task).check_options(self.env_options)
        return self

    def _validate_safe_set_file(self, path: str) -> None:
        if not os.path.isfile(path):
            raise ValueError(f"safe-set file {path!r} does not exist")
        from safegbpo.safesets import SafeSet

        safe_set = SafeSet.load(path)
        if safe_set.task != self.task:
            raise ValueError(f"safe-set file {path!r} is for task {safe_set.task!r}, "
                             f"not {self.task!r}")

    # -- safeguard ---------------------------------------------------------------------------
    def safeguard_options(self, seed: int) -> dict[str, Any]:
        """Keyword options of ``make_safeguard(self.safeguard, env, **options)``; ``seed`` is
        the ray mask's direction seed (derived from the run seed by the runner)."""
        if self.safeguard is None:
            return {}
        options: dict[str, Any] = {}
        if self.passthrough:
            options["passthrough"] = True
        if self.safeguard == "rm":
            options.update(mapping=self.mapping, centre=self.centre, seed=seed)
        if self.safeguard in SAFEGUARDS:
            options["backend"] = self.backend
        return options

    # -- serialisation -----------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (tuples as lists, ``hyper`` as a dict)."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if dataclasses.is_dataclass(value) and not isinstance(value, type):
                value = {k: list(v) if isinstance(v, tuple) else v
                         for k, v in dataclasses.asdict(value).items()}
            out[f.name] = value
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainConfig:
        """Inverse of :meth:`to_dict`; unknown keys raise ``ValueError``."""
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"unknown TrainConfig field(s) {unknown}; valid: {sorted(names)}")
        return cls(**dict(data))

    def __hash__(self) -> int:
        return hash(json.dumps(self.to_dict(), sort_keys=True, default=str))

    def differences(self, other: TrainConfig) -> dict[str, tuple[Any, Any]]:
        """Fields whose values differ, ``{name: (self's, other's)}``."""
        mine, theirs = self.to_dict(), other.to_dict()
        return {k: (mine[k], theirs[k]) for k in mine if mine[k] != theirs[k]}
