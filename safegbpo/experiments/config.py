"""Training configuration: :class:`TrainConfig` and the tuned presets of SPEC §8.

A :class:`TrainConfig` names everything that determines a training run's result: task,
algorithm and its hyper-parameters, safeguard (and its modification: mapping, centre,
passthrough, Eq 45 regularisation), seed, budget, evaluation grid and set.  Two runs with equal
configs produce bit-identical learning curves (``safegbpo.experiments.runner``).

Defaults filled in from the task and algorithm (SPEC §8):

* ``hyper`` — the preset of the (task, algorithm) pair (:data:`PRESETS`, e.g.
  :data:`PENDULUM_SHAC`); a mapping given as ``hyper`` overrides single fields of the preset;
* ``interactions`` — the paper's budget (:data:`BUDGETS`: pendulum 100k, quadrotor 200k);
* ``eval_every`` — the paper's evaluation grid (:data:`EVAL_EVERY`, e.g. pendulum SHAC 2560 =
  5 windows x 64 steps x 8 envs);
* ``num_envs`` and ``eval_episodes`` — the task's number of environments (8 / 16);
* for the ray mask: ``mapping='linear'``, ``centre='zonotopic'`` (the base ray mask of SPEC §5).

An *interaction* is one step of one environment (a vector step of ``N`` envs is ``N``
interactions).
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any

import torch

from safegbpo.algorithms import HYPER_CONFIGS
from safegbpo.algorithms.ppo import PPOConfig
from safegbpo.algorithms.sac import SACConfig
from safegbpo.algorithms.shac import SHACConfig
from safegbpo.envs.models import MODELS

__all__ = [
    "TrainConfig",
    "PENDULUM_SHAC",
    "PENDULUM_PPO",
    "PENDULUM_SAC",
    "QUADROTOR_SHAC",
    "QUADROTOR_PPO",
    "QUADROTOR_SAC",
    "ENERGY_SHAC",
    "ENERGY_PPO",
    "ENERGY_SAC",
    "PRESETS",
    "EVAL_EVERY",
    "BUDGETS",
    "BUILTIN_SAFEGUARDS",
    "MAPPINGS",
    "CENTRES",
    "HyperConfig",
    "preset",
    "override_hyper",
    "parse_hyper_assignment",
]

HyperConfig = SHACConfig | PPOConfig | SACConfig

# -- SPEC §8 table -------------------------------------------------------------------------------
PENDULUM_SHAC = SHACConfig(
    policy_hidden=(128, 128), policy_lr=4e-4, critic_hidden=(128, 128, 128), critic_lr=2e-3,
    len_traj=64, polyak=0.4, td_weight=0.95, vf_num_fits=50, vf_fit_num_batches=1)
PENDULUM_PPO = PPOConfig(
    policy_hidden=(256,) * 4, policy_lr=3e-4, critic_hidden=(200, 200), critic_lr=2e-3,
    len_traj=1700, clip_coef=0.2, ent_coef=0.09, num_batches=45, num_fits=32)
PENDULUM_SAC = SACConfig(
    policy_hidden=(173,) * 4, policy_lr=2e-3, critic_hidden=(135,) * 4, critic_lr=2e-3,
    buffer_size=60000, polyak=0.673, learning_starts=64, policy_freq=6, target_freq=7)
QUADROTOR_SHAC = SHACConfig(
    policy_hidden=(128, 128), policy_lr=2e-3, critic_hidden=(120,) * 3, critic_lr=4e-3,
    len_traj=43, polyak=0.22, td_weight=0.93, vf_num_fits=24, vf_fit_num_batches=1)
QUADROTOR_PPO = PPOConfig(
    policy_hidden=(128,) * 3, policy_lr=1e-4, critic_hidden=(128,) * 4, critic_lr=3e-3,
    len_traj=1400, clip_coef=0.29, ent_coef=0.06, num_batches=30, num_fits=30)
QUADROTOR_SAC = SACConfig(
    policy_hidden=(359,) * 4, policy_lr=1e-3, critic_hidden=(977,) * 3, critic_lr=5e-4,
    buffer_size=45000, polyak=0.323, learning_starts=5000, policy_freq=10, target_freq=2)
# -- SPEC §10 (the energy system; reference hyper-parameters, tuned for unsafe training) --------
ENERGY_SHAC = SHACConfig(
    policy_hidden=(512,) * 3, policy_lr=1e-6, critic_hidden=(512,) * 3, critic_lr=2e-6,
    len_traj=550, polyak=0.7, td_weight=0.93, vf_num_fits=50, vf_fit_num_batches=100)
ENERGY_PPO = PPOConfig(
    policy_hidden=(256,) * 3, policy_lr=5e-5, critic_hidden=(256,) * 4, critic_lr=6e-4,
    len_traj=2880, clip_coef=0.32, ent_coef=0.065, num_batches=30, num_fits=30)
ENERGY_SAC = SACConfig(
    policy_hidden=(838,) * 2, policy_lr=1e-5, critic_hidden=(937,) * 3, critic_lr=2.5e-4,
    buffer_size=300000, polyak=0.3, learning_starts=6000, policy_freq=1, target_freq=1)

#: Tuned hyper-parameters per (task, algorithm), SPEC §8 and §10.
PRESETS: dict[tuple[str, str], HyperConfig] = {
    ("pendulum", "shac"): PENDULUM_SHAC,
    ("pendulum", "ppo"): PENDULUM_PPO,
    ("pendulum", "sac"): PENDULUM_SAC,
    ("quadrotor", "shac"): QUADROTOR_SHAC,
    ("quadrotor", "ppo"): QUADROTOR_PPO,
    ("quadrotor", "sac"): QUADROTOR_SAC,
    ("energy", "shac"): ENERGY_SHAC,
    ("energy", "ppo"): ENERGY_PPO,
    ("energy", "sac"): ENERGY_SAC,
}

#: Evaluation interval (interactions) of the paper's runs, SPEC §8 and §10.
EVAL_EVERY: dict[tuple[str, str], int] = {
    ("pendulum", "shac"): 2560,
    ("pendulum", "ppo"): 13600,
    ("pendulum", "sac"): 2504,
    ("quadrotor", "shac"): 5504,
    ("quadrotor", "ppo"): 22400,
    ("quadrotor", "sac"): 5008,
    ("energy", "shac"): 13200,
    ("energy", "ppo"): 23040,
    ("energy", "sac"): 10000,
}

#: Interaction budget of the paper's runs, SPEC §8 and §10.
BUDGETS: dict[str, int] = {"pendulum": 100_000, "quadrotor": 200_000, "energy": 1_000_000}

BUILTIN_SAFEGUARDS: tuple[str, ...] = ("bp", "rm")
MAPPINGS: tuple[str, ...] = ("linear", "hyperbolic")
CENTRES: tuple[str, ...] = ("zonotopic", "orthogonal")


def preset(task: str, algo: str) -> HyperConfig:
    """The tuned hyper-parameters of ``algo`` on ``task`` (SPEC §8)."""
    try:
        return PRESETS[(task, algo)]
    except KeyError:
        raise ValueError(f"no preset for task {task!r} and algorithm {algo!r}; known pairs: "
                         f"{sorted(PRESETS)}") from None


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


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True)
class TrainConfig:
    """Everything that determines a training run (module docstring).

    Attributes:
        task: ``'pendulum'`` or ``'quadrotor'``.
        algo: ``'shac'``, ``'ppo'`` or ``'sac'``.
        safeguard: ``None`` (unsafe training), ``'bp'`` (boundary projection), ``'rm'`` (ray
            mask) or a user class ``'package.module:Class'`` (built as ``Class(env, ...)``).
        mapping: ray mask only, ``'linear'`` (Eq 46) or ``'hyperbolic'`` (Eq 64).
        centre: ray mask only, ``'zonotopic'`` (Eq 52–53) or ``'orthogonal'`` (Eq 54).
        passthrough: straight-through gradient of the safeguard (SPEC §5).
        regularisation: Eq 45 coefficient ``lambda_reg`` (0: off; the paper uses 0.1).
        seed: run seed; network initialisation, sampling, training env and the ray mask's
            directions use independent streams derived from it.
        interactions: budget in interactions; training stops at the first iteration boundary
            at or beyond it.
        eval_every: evaluation interval in interactions.
        eval_episodes: episodes of the evaluation set.
        num_envs: training environments ``N``.
        eval_seed: seed of the evaluation set (shared by all runs: every seed and every
            configuration is scored on the same episodes).
        safe_set: optional path of a safe-set file (``safegbpo-safe-set/1``, CLI ``--set-file``)
            (it also defines the reset distribution, so it matters for unsafe training too).
        profiles: energy task only: path of an hourly profile CSV (SPEC §10, CLI ``--profiles``);
            ``None`` is the project's generated year
            (:mod:`safegbpo.tasks.energy_profiles`).
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
    seed: int = 0
    interactions: int | None = None
    eval_every: int | None = None
    eval_episodes: int | None = None
    num_envs: int | None = None
    eval_seed: int = 0
    safe_set: str | None = None
    profiles: str | None = None
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
        if isinstance(self.profiles, os.PathLike | str) and str(self.profiles):
            put("profiles", os.path.abspath(os.fspath(self.profiles)))
        if self.safeguard == "rm":
            if self.mapping is None:
                put("mapping", "linear")
            if self.centre is None:
                put("centre", "zonotopic")
        model = MODELS.get(self.task) if isinstance(self.task, str) else None
        if model is not None:
            if self.interactions is None:
                put("interactions", BUDGETS[self.task])
            if self.num_envs is None:
                put("num_envs", model.num_envs)
            if self.eval_episodes is None:
                put("eval_episodes", model.num_envs)
        if (self.task, self.algo) in PRESETS:
            if self.eval_every is None:
                put("eval_every", EVAL_EVERY[(self.task, self.algo)])
            if self.hyper is None:
                put("hyper", preset(self.task, self.algo))
            elif isinstance(self.hyper, Mapping):
                put("hyper", override_hyper(preset(self.task, self.algo), self.hyper))

    # -- validation --------------------------------------------------------------------------
    def validate(self) -> TrainConfig:
        """Raise ``ValueError`` naming the first problem (before any work); returns ``self``."""
        if self.task not in MODELS:
            raise ValueError(f"unknown task {self.task!r}; expected one of {sorted(MODELS)}")
        if self.algo not in HYPER_CONFIGS:
            raise ValueError(f"unknown algorithm {self.algo!r}; expected one of "
                             f"{sorted(HYPER_CONFIGS)}")
        sg = self.safeguard
        if sg is not None and (not isinstance(sg, str) or (
                sg not in BUILTIN_SAFEGUARDS and ":" not in sg)):
            raise ValueError(f"unknown safeguard {sg!r}; expected 'none', one of "
                             f"{list(BUILTIN_SAFEGUARDS)} or a user class 'package.module:Class'")
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
        for name in ("interactions", "eval_every", "eval_episodes", "num_envs"):
            value = getattr(self, name)
            if not _is_int(value) or value <= 0:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        expected = HYPER_CONFIGS[self.algo]
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
            self._validate_safe_set_file()
        if self.profiles is not None:
            self._validate_profiles()
        return self

    def _validate_profiles(self) -> None:
        if self.task != "energy":
            raise ValueError(f"profiles (hourly exogenous data) only apply to the energy task, "
                             f"not to {self.task!r}")
        if not os.path.isfile(self.profiles):
            raise ValueError(f"profile file {self.profiles!r} does not exist")
        from safegbpo.envs.energy import _check_profiles_within_w
        from safegbpo.envs.models import get_model
        from safegbpo.tasks.energy_profiles import resolve_profiles

        _check_profiles_within_w(resolve_profiles(self.profiles), get_model(self.task))

    def env_options(self) -> dict[str, Any]:
        """Task-specific keyword options of ``make_vec`` (the energy task's profiles)."""
        return {"profiles": self.profiles} if self.profiles is not None else {}

    def _validate_safe_set_file(self) -> None:
        if not os.path.isfile(self.safe_set):
            raise ValueError(f"safe-set file {self.safe_set!r} does not exist")
        from safegbpo.safesets import SafeSet

        safe_set = SafeSet.load(self.safe_set)
        if safe_set.task != self.task:
            raise ValueError(f"safe-set file {self.safe_set!r} is for task {safe_set.task!r}, "
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
        return options

    # -- serialisation -----------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (tuples as lists, ``hyper`` as a dict)."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if dataclasses.is_dataclass(value):
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

    def differences(self, other: TrainConfig) -> dict[str, tuple[Any, Any]]:
        """Fields whose values differ, ``{name: (self's, other's)}``."""
        mine, theirs = self.to_dict(), other.to_dict()
        return {k: (mine[k], theirs[k]) for k in mine if mine[k] != theirs[k]}
