"""The registry of tasks: every fact about a task that is not physics, in one entry.

A :class:`TaskSpec` holds a task's key (``--task``, file names, run ids), its report and
archive labels, its model (:mod:`safegbpo.tasks.base`), the environment class that simulates
it, the number of environments and the episode length, the paper's interaction budget and
evaluation grid per algorithm, the tuned hyper-parameters per algorithm (plain mappings of the
algorithm's config fields, so this module does not import :mod:`safegbpo.algorithms`) and the
tuning of the RCI program that computes its certified safe set (SPEC §7).

Everything that accepts a task reads it from here (:func:`get_task` is the one place that
resolves a task name): the environments, the safe sets, the training configuration, the
experiment grid, the metrics, the spec and its figures, the benchmark and every command's
``--task``.  Adding a task is one model module and one :func:`register_task` call (see
``docs/ARCHITECTURE.md``); a task defined outside the package is named by import path,
``--task mypkg.mymodule:MY_TASK`` (a :class:`TaskSpec`), through the same function.

User-defined tasks (``docs/user-tasks.md``).  A :class:`TaskSpec` needs only ``key``, ``model``
and ``episode_length``; the other fields have defaults (the generic environment
:class:`safegbpo.envs.TaskEnv`, 8 environments, a 100k budget, no algorithm presets, an RCI
template of ``2 n`` directions).  Every :class:`TaskSpec` is checked when it is built
(:func:`safegbpo.tasks.checks.check_task_model`: boxes, batching, Eq 12 affinity in the action
and the noise, equilibrium), so a task loaded by import path fails at load time with a message
naming the violation.  :func:`get_task` remembers a task it loaded by import path under its
``key`` for the rest of the process (so environments, set files and safeguards can name it by
key), without adding it to the registry's list of tasks (:func:`task_names` -- what "every task"
means for the paper's reproduction); :func:`task_import_path` gives the path back, e.g. for
recording it in results.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from safegbpo.loading import is_import_path, load_attr
from safegbpo.registry import Registry
from safegbpo.tasks.base import TaskModel
from safegbpo.tasks.checks import check_task_model
from safegbpo.tasks.energy import EnergyModel
from safegbpo.tasks.pendulum import PendulumModel
from safegbpo.tasks.quadrotor import QuadrotorModel

__all__ = ["DEFAULT_ENV", "PCRPO_CONSTRAINTS", "TaskSpec", "get_model", "get_task",
           "pcrpo_preset", "register_task", "same_task", "task_import_path", "task_names",
           "tasks", "unregister_task"]

#: The environment class of a task that does not name its own (:class:`safegbpo.envs.TaskEnv`).
DEFAULT_ENV = "safegbpo.envs.generic:TaskEnv"


@dataclass(frozen=True, kw_only=True)
class TaskSpec:
    """One task (module docstring).

    Attributes:
        key: the task's name (``'pendulum'``): ``--task``, set files, run ids, safe-set cache.
        label: row/column label in reports (``'Pendulum'``).
        archive_label: the task's name in the reference implementation's archive
            (``../shared/reference/paper_learning_curves.json``).
        model: the :class:`~safegbpo.tasks.base.TaskModel` (constants and dynamics).
        env: the environment class as ``'module:Class'`` (a subclass of
            :class:`safegbpo.envs.SafeVectorEnv`), imported when an env is built: tasks sit
            below ``envs`` in the import graph.
        num_envs: training environments (SPEC §6).
        episode_length: steps per episode (training and evaluation).
        budget: the paper's interaction budget per run (SPEC §8); the default of
            ``safegbpo train --interactions`` and the reference against which the report
            decides whether a run is comparable with the paper.
        eval_every: evaluation interval (interactions) per algorithm (SPEC §8).
        presets: tuned hyper-parameters per algorithm: fields of the algorithm's config
            dataclass (SPEC §8; e.g. a soft-constraint baseline's cost limit goes here too).
        rci: fields of :class:`safegbpo.safesets.rci.RCIConfig` for the project's safe set.
        env_options: the keyword options of the environment class that a configuration may
            set (``TrainConfig.env_options``, ``safegbpo train --env-option KEY=VALUE``), with
            their defaults (e.g. a data file); :func:`safegbpo.envs.make_vec` passes them.
        reproduce_env_options: the env options of a reproduction (``safegbpo reproduce``) over
            ``env_options``, e.g. the energy task's ``profiles='auto'``: the reference
            implementation's data when ``../shared`` is present.
    """

    key: str
    model: TaskModel
    episode_length: int
    label: str = ""
    archive_label: str = ""
    env: str = DEFAULT_ENV
    num_envs: int = 8
    budget: int = 100_000
    eval_every: Mapping[str, int] = field(default_factory=dict)
    presets: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    rci: Mapping[str, Any] = field(default_factory=dict)
    env_options: Mapping[str, Any] = field(default_factory=dict)
    reproduce_env_options: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.key or not isinstance(self.key, str) or ":" in self.key:
            raise ValueError(f"task key must be a non-empty name without ':', got {self.key!r}")
        if not isinstance(self.model, TaskModel):
            raise ValueError(f"task {self.key!r}: model must be a TaskModel, got "
                             f"{type(self.model).__name__}")
        if not self.label:
            object.__setattr__(self, "label", self.key)
        if not self.archive_label:
            object.__setattr__(self, "archive_label", self.label)
        if "num_directions" not in self.rci:  # RCIConfig's one required field
            object.__setattr__(self, "rci", {"num_directions": 2 * self.model.state_dim,
                                             **self.rci})
        if not is_import_path(self.env):
            raise ValueError(f"task {self.key!r}: env must be 'module:Class', got {self.env!r}")
        for name in ("num_envs", "episode_length", "budget"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"task {self.key!r}: {name} must be a positive integer, got "
                                 f"{value!r}")
        missing = sorted(set(self.presets) - set(self.eval_every))
        if missing:
            raise ValueError(f"task {self.key!r}: no evaluation interval for {missing}")
        self.check_env_option_names(self.reproduce_env_options)
        check_task_model(self.model, task=self.key)

    def check_env_option_names(self, names: Iterable[str]) -> None:
        """``ValueError`` listing the task's env options if ``names`` has another one."""
        unknown = sorted(set(names) - set(self.env_options))
        if unknown:
            raise ValueError(f"env option(s) {unknown} do not apply to task {self.key!r}; its "
                             f"env options: {', '.join(sorted(self.env_options)) or 'none'}")

    @property
    def algorithms(self) -> tuple[str, ...]:
        """Algorithms with a preset for this task."""
        return tuple(self.presets)


# --------------------------------------------------------------------------------------------
# the built-in tasks (SPEC §6, §8 and §10)
# --------------------------------------------------------------------------------------------
PENDULUM = TaskSpec(
    key="pendulum",
    label="Pendulum",
    archive_label="Pendulum",
    model=PendulumModel(),
    env="safegbpo.envs.pendulum:PendulumEnv",
    num_envs=8,
    # SPEC §13: 3000 steps (150 s), the reference's BalancePendulumConfig.num_steps.
    episode_length=3000,
    budget=100_000,
    eval_every={"shac": 2560, "ppo": 13600, "sac": 2504},  # SHAC: 5 windows x 64 x 8
    presets={
        "shac": dict(policy_hidden=(128, 128), policy_lr=4e-4, critic_hidden=(128, 128, 128),
                     critic_lr=2e-3, len_traj=64, polyak=0.4, td_weight=0.95, vf_num_fits=50,
                     vf_fit_num_batches=1),
        "ppo": dict(policy_hidden=(256,) * 4, policy_lr=3e-4, critic_hidden=(200, 200),
                    critic_lr=2e-3, len_traj=1700, clip_coef=0.2, ent_coef=0.09,
                    num_batches=45, num_fits=32),
        "sac": dict(policy_hidden=(173,) * 4, policy_lr=2e-3, critic_hidden=(135,) * 4,
                    critic_lr=2e-3, buffer_size=60000, polyak=0.673, learning_starts=64,
                    policy_freq=6, target_freq=7),
    },
    rci=dict(num_directions=5, template_powers=(1, 2, 3, 5, 10), lqr_control_weight=1.0,
             volume_iterations=30),
)

QUADROTOR = TaskSpec(
    key="quadrotor",
    label="Quadrotor",
    archive_label="Quadrotor",
    model=QuadrotorModel(),
    env="safegbpo.envs.quadrotor:QuadrotorEnv",
    num_envs=16,
    episode_length=240,
    budget=200_000,
    eval_every={"shac": 5504, "ppo": 22400, "sac": 5008},
    presets={
        "shac": dict(policy_hidden=(128, 128), policy_lr=2e-3, critic_hidden=(120,) * 3,
                     critic_lr=4e-3, len_traj=43, polyak=0.22, td_weight=0.93, vf_num_fits=24,
                     vf_fit_num_batches=1),
        "ppo": dict(policy_hidden=(128,) * 3, policy_lr=1e-4, critic_hidden=(128,) * 4,
                    critic_lr=3e-3, len_traj=1400, clip_coef=0.29, ent_coef=0.06,
                    num_batches=30, num_fits=30),
        "sac": dict(policy_hidden=(359,) * 4, policy_lr=1e-3, critic_hidden=(977,) * 3,
                    critic_lr=5e-4, buffer_size=45000, polyak=0.323, learning_starts=5000,
                    policy_freq=10, target_freq=2),
    },
    rci=dict(num_directions=18, template_powers=(5, 10, 15), lqr_control_weight=0.1,
             volume_iterations=10),
)

ENERGY = TaskSpec(
    key="energy",
    label="Energy System",
    archive_label="Energy System",
    model=EnergyModel(),
    env="safegbpo.envs.energy:EnergyEnv",
    num_envs=8,
    episode_length=720,  # 30 days of hourly steps (SPEC §10)
    budget=1_000_000,
    eval_every={"shac": 13200, "ppo": 23040, "sac": 10000},
    # SPEC §10: the reference's hyper-parameters (tuned for unsafe training)
    presets={
        "shac": dict(policy_hidden=(512,) * 3, policy_lr=1e-6, critic_hidden=(512,) * 3,
                     critic_lr=2e-6, len_traj=550, polyak=0.7, td_weight=0.93, vf_num_fits=50,
                     vf_fit_num_batches=100),
        "ppo": dict(policy_hidden=(256,) * 3, policy_lr=5e-5, critic_hidden=(256,) * 4,
                    critic_lr=6e-4, len_traj=2880, clip_coef=0.32, ent_coef=0.065,
                    num_batches=30, num_fits=30),
        "sac": dict(policy_hidden=(838,) * 2, policy_lr=1e-5, critic_hidden=(937,) * 3,
                    critic_lr=2.5e-4, buffer_size=300000, polyak=0.3, learning_starts=6000,
                    policy_freq=1, target_freq=1),
    },
    # linear dynamics: one exact enclosure, no bound to search (the t_in bound is the box's)
    rci=dict(num_directions=5, template_powers=(1, 2, 3, 5, 10), lqr_control_weight=0.01,
             bound_fraction_range=(1.0, 1.0), bound_evaluations=1, volume_iterations=30),
    # profiles: None = the project's generated year, 'reference', 'auto' or a CSV path
    # (safegbpo.envs.energy.EnergyEnv); every episode starts at hour 7800 (SPEC §10)
    env_options={"profiles": None, "start_hour": 7800},
    reproduce_env_options={"profiles": "auto"},
)

# --------------------------------------------------------------------------------------------
# PCRPO, the soft-constraint baseline (SPEC §12): PPO's tuned preset and evaluation grid plus
# the cost constraint.  The one place where the cost limit b and the slack h+- are chosen.
# --------------------------------------------------------------------------------------------
PCRPO_CONSTRAINTS: Mapping[str, Mapping[str, float]] = {
    # The cost is the number of realised states outside S_s per episode (cost='indicator').
    # The safeguards' count is exactly 0, but a soft constraint on an expectation needs b > 0:
    # J_c >= 0, so with b = 0 and h- <= 0 the reward-only mode could never be entered and PCRPO
    # would only alternate between cost-only and both.  Every task therefore gets the strictest
    # limit under which all three modes are reachable at a comparable scale: b = 1% of the
    # episode's states (of the task's episode length; a grid that shortens the episodes, e.g.
    # the quick profile's 200-step pendulum, keeps b unless it overrides it), with the "both"
    # band b +- b/2 (h+ = b/2, h- = -b/2).  For scale, the initial (seed 0) PPO preset policy
    # leaves S_s in 36 of 200 pendulum states (measured with 200-step episodes), 119 of 240
    # quadrotor states and 689 of 720 energy-system states per episode (measured).
    "pendulum": dict(cost_limit=30.0, slack_upper=15.0, slack_lower=-15.0),  # 1% of 3000 steps
    "quadrotor": dict(cost_limit=2.4, slack_upper=1.2, slack_lower=-1.2),  # 1% of 240 steps
    "energy": dict(cost_limit=7.2, slack_upper=3.6, slack_lower=-3.6),  # 1% of 720 steps
}


def pcrpo_preset(spec: TaskSpec, constraint: Mapping[str, Any]) -> TaskSpec:
    """``spec`` with a ``'pcrpo'`` preset: its PPO preset (PCRPO is built on PPO with the same
    tuned hyper-parameters, SPEC §12; the cost critic learns at the critic's rate) plus
    ``constraint`` (``cost_limit``, ``slack_upper``,
    ``slack_lower``, ...), evaluated on PPO's grid."""
    if "ppo" not in spec.presets:
        raise ValueError(f"task {spec.key!r} has no PPO preset to build PCRPO's on")
    ppo = spec.presets["ppo"]
    critic = {"cost_critic_lr": ppo["critic_lr"]} if "critic_lr" in ppo else {}
    return replace(spec, presets={**spec.presets, "pcrpo": {**ppo, **critic, **constraint}},
                   eval_every={**spec.eval_every, "pcrpo": spec.eval_every["ppo"]})


PENDULUM, QUADROTOR, ENERGY = (pcrpo_preset(spec, PCRPO_CONSTRAINTS[spec.key])
                               for spec in (PENDULUM, QUADROTOR, ENERGY))

_TASKS: Registry[TaskSpec] = Registry("task")
#: Tasks loaded by import path in this process: key -> (import path, spec).
_LOADED: dict[str, tuple[str, TaskSpec]] = {}


def register_task(spec: TaskSpec) -> TaskSpec:
    """Add ``spec`` to the registry (its ``key`` must be new); returns it."""
    if not isinstance(spec, TaskSpec):
        raise ValueError(f"register_task expects a TaskSpec, got {type(spec).__name__}")
    return _TASKS.register(spec.key, spec)


def unregister_task(key: str) -> None:
    """Remove a registered task (tests, plugins); unknown keys raise ``ValueError``."""
    _TASKS.unregister(key)


def task_names() -> tuple[str, ...]:
    """Keys of the registered tasks, in registration order."""
    return _TASKS.names()


def tasks() -> Mapping[str, TaskSpec]:
    """Read-only view of the registry (key -> :class:`TaskSpec`)."""
    return _TASKS.view()


def get_task(name: str) -> TaskSpec:
    """The task called ``name``: a registered key, or ``'package.module:ATTR'`` naming a
    :class:`TaskSpec` defined outside the package.

    Raises:
        ValueError: unknown name (the message lists the registered tasks), or an import path
            that does not name a :class:`TaskSpec`.
    """
    spec = _TASKS.get(name)
    if spec is not None:
        return spec
    if isinstance(name, str) and name in _LOADED:
        return _LOADED[name][1]
    if isinstance(name, str) and is_import_path(name):
        loaded = load_attr(name, what="TaskSpec")  # building the TaskSpec checks its model
        if not isinstance(loaded, TaskSpec):
            raise ValueError(f"{name!r} is a {type(loaded).__name__}, not a TaskSpec")
        known = _TASKS.get(loaded.key)
        if known is not None and known is not loaded:
            raise ValueError(f"{name!r} defines task {loaded.key!r}, which is the key of a "
                             "registered task: choose another key")
        previous = _LOADED.get(loaded.key)
        if previous is not None and previous[1] is not loaded:
            raise ValueError(f"{name!r} defines task {loaded.key!r}, already loaded from "
                             f"{previous[0]!r}: two tasks cannot share a key")
        if known is None and previous is None:
            _LOADED[loaded.key] = (name, loaded)
        return loaded
    raise ValueError(f"unknown task {name!r}; expected one of {sorted(_TASKS.names())} or a "
                     "TaskSpec as 'package.module:ATTR'")


def task_import_path(name: str) -> str | None:
    """The import path a task was loaded from in this process (``None`` for a registered
    task or one not loaded); ``name`` is its key or the path itself."""
    spec = get_task(name)
    entry = _LOADED.get(spec.key)
    return entry[0] if entry is not None and entry[1] is spec else None


def same_task(a: str, b: str) -> bool:
    """Whether two task names (keys or import paths) name the same task."""
    return a == b or get_task(a).key == get_task(b).key


def get_model(task: str) -> TaskModel:
    """The model of ``task`` (:func:`get_task` resolves the name)."""
    return get_task(task).model


for _spec in (PENDULUM, QUADROTOR, ENERGY):
    register_task(_spec)
