"""Training runs: :func:`train` runs, checkpoints and resumes one :class:`TrainConfig`;
:func:`train_population` trains several seeds of one configuration together in one process.

A *population* (:mod:`safegbpo.algorithms.population`) trains the seeds of configurations that
differ only in ``seed`` in lockstep: one env of ``P x N`` rows, ensembles of the networks, one
batched safeguard call per step, per-seed optimiser state, gradient clipping and random
streams.  A seed's result is the same whatever population it is trained in (bitwise for the
algorithms and environments; see the population module), and :func:`train` is a population of
one.  Each seed keeps its own run directory in the single-seed format below, so the results
store, metrics, tables and resume work per seed as before.

Output directory ``out_dir`` of a seed (created if needed):

* ``result.json`` — ``{"format", "status", "config", "interactions", "curve": [{"step",
  "reward"}], "eval_set_curve": [{"step", "reward", "std"}], "evaluation", "history",
  "interventions", "fallbacks", "uncertified" (steps without a certified safe action:
  :mod:`safegbpo.safeguards.recovery`), "safeguard_steps", "wallclock": {phase: seconds},
  "population", "safe_set_source", "safe_set_certification", "data_sources" (the env's
  exogenous data, e.g. the energy task's profiles:
  :meth:`safegbpo.envs.SafeVectorEnv.data_sources`), "algorithm_summary" (this seed's
  :meth:`safegbpo.algorithms.Algorithm.summary`, e.g. PCRPO's mode counts), "policy", ...}``,
  rewritten at every evaluation (``status`` ``"running"``) and at the end (``"finished"``;
  ``"failed"`` with ``"error"`` if training raised);
* ``checkpoint.pt`` — everything needed to continue this seed bit for bit: its networks,
  optimiser state, generators, SAC replay buffer, its block of the training environment
  (its rows of the env's per-row state -- states, goals, the energy task's episode start
  hours --, episode clock, generator), safeguard counters, curves and timers;
* ``policy.pt`` — the policy's weights and architecture (:func:`load_policy`).

All three are written atomically (:mod:`safegbpo.io`), the checkpoint first, so a
run killed at any point (SIGKILL included) restarts from its last evaluation and, because
every random draw comes from generators stored in the checkpoint, ends with the same curve as an
uninterrupted run.  The seeds of a population checkpoint together at every evaluation; if a
kill lands between two seeds' files, those seeds resume as separate populations from their own
last checkpoints (seeds are grouped by progress), which changes nothing in their results.
Starting a finished run again returns its result immediately; an existing run with a different
config is refused with a ``ValueError`` naming the differing fields; two processes cannot train
into the same directory at once (a lock file).

Loop (one *interaction* = one step of one environment, counted per seed): iterate the algorithm
(one SHAC window / PPO rollout + update / SAC vector step + update) while ``interactions <
budget``; after an iteration that reaches the next multiple of ``eval_every``, evaluate and
checkpoint.  The run ends at the first iteration boundary at or beyond the budget, with a final
evaluation if the last one was not at that step, so the curve always ends with the final policy.

Evaluation (SPEC §13, :class:`~safegbpo.algorithms.Evaluator`): ``curve`` — the paper column —
is the return of one episode of the deterministic policy from the fixed initial state drawn
with ``eval_seed`` (42) from the safe set in use; ``eval_set_curve`` is the mean (and standard
deviation) of the returns of ``eval_episodes`` (16) episodes from a fixed, seeded set of initial
states.  With a safeguard the evaluation is safeguarded (the deployed system).  The ray mask's
generator directions are drawn once from a fixed seed (:data:`SAFEGUARD_SEED`), the same for
every seed of every run: one safeguard serves a whole population.

Threads: a run executes with one torch intra-op thread (restored afterwards).  The networks and
batches are small, so intra-op threading only adds synchronisation overhead (10x slower on a
loaded 2-core machine), and a fixed thread count keeps float reductions, hence curves, bitwise
reproducible across machines.  Parallelism comes from populations and from running several
runs at once.

Wall clock (``wallclock``, seconds): ``rollout`` (simulation and policy sampling),
``safeguard`` (safeguard calls during training), ``update`` (losses, backward passes,
optimiser steps, critic fits), ``evaluation``, ``checkpoint`` (writing files), ``setup`` and
``total``; phases are exclusive and sum to about ``total``.  In a population they are the
population's (shared by its seeds: ``population`` names them).  Work lost to a crash (after the
last checkpoint) is not counted.
"""

from __future__ import annotations

import errno
import fcntl
import os
import time
from collections.abc import Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import torch

from safegbpo import __version__
from safegbpo.algorithms import (
    Algorithm,
    Evaluator,
    GaussianPolicy,
    PhaseTimer,
    get_algorithm,
    merge_population_states,
    population_env,
    split_population_state,
)
from safegbpo.algorithms.base import derive_seed
from safegbpo.algorithms.evaluation import set_seed_for
from safegbpo.algorithms.networks import linear_state_to_ensemble, select_members
from safegbpo.experiments.config import TrainConfig
from safegbpo.io import (
    atomic_torch_save,
    atomic_write_json,
    read_json,
    remove_stale_temporaries,
    torch_load,
)
from safegbpo.safeguards import DEFAULT_BACKEND, PAPER_BACKEND

__all__ = [
    "train",
    "train_population",
    "load_result",
    "load_policy",
    "RESULT_FILE",
    "CHECKPOINT_FILE",
    "POLICY_FILE",
    "RESULT_FORMAT",
    "CHECKPOINT_FORMAT",
    "SAFEGUARD_SEED",
]

RESULT_FILE = "result.json"
CHECKPOINT_FILE = "checkpoint.pt"
POLICY_FILE = "policy.pt"
LOCK_FILE = ".lock"
#: torch intra-op threads of a training run (module docstring).
TRAIN_THREADS = 1
RESULT_FORMAT = "safegbpo-train-result/1"
#: Per-seed checkpoints (version 2: one member of a population; version 1 held a pickled env).
CHECKPOINT_FORMAT = "safegbpo-checkpoint/2"
#: Policy files (version 2: a one-member ensemble; version 1 files are still read).
POLICY_FORMAT = "safegbpo-policy/2"
_POLICY_FORMAT_V1 = "safegbpo-policy/1"
#: Seed of the ray mask's generator directions (shared by every run; module docstring).
SAFEGUARD_SEED = 0


# -- public helpers ------------------------------------------------------------------------------
def load_result(out_dir: str | os.PathLike) -> dict[str, Any] | None:
    """The ``result.json`` of ``out_dir`` (``None`` if there is none)."""
    path = Path(out_dir) / RESULT_FILE
    if not path.is_file():
        return None
    result = read_json(path)
    if not isinstance(result, dict) or result.get("format") != RESULT_FORMAT:
        raise ValueError(f"{path} is not a safegbpo training result ({RESULT_FORMAT})")
    return result


def load_policy(path: str | os.PathLike, device: str | torch.device = "cpu") -> GaussianPolicy:
    """The :class:`GaussianPolicy` saved in ``policy.pt`` (a file or a run directory): a
    one-member policy, ``policy(obs (batch, o)) -> actions (batch, d)`` (deterministic)."""
    path = Path(path)
    if path.is_dir():
        path = path / POLICY_FILE
    saved = torch_load(path, map_location=device)
    if not isinstance(saved, dict) or saved.get("format") not in (POLICY_FORMAT,
                                                                  _POLICY_FORMAT_V1):
        raise ValueError(f"{path} is not a safegbpo policy file ({POLICY_FORMAT})")
    generators = [torch.Generator().manual_seed(0)]  # weights are overwritten below
    policy = GaussianPolicy(saved["obs_dim"], saved["act_dim"], tuple(saved["hidden"]),
                            generators=generators, device=device)
    state = saved["state_dict"]
    if saved["format"] == _POLICY_FORMAT_V1:  # a single nn.Linear network
        state = linear_state_to_ensemble(state, policy)
    policy.load_state_dict(state)
    return policy


# -- locking -------------------------------------------------------------------------------------
@contextmanager
def _exclusive(out_dir: Path):
    """Hold an exclusive ``flock`` on ``out_dir/.lock`` (released by the OS if killed)."""
    handle = open(out_dir / LOCK_FILE, "a+")  # noqa: SIM115 - closed in finally
    try:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            if err.errno in (errno.EAGAIN, errno.EACCES):
                raise ValueError(f"another process is training into {out_dir}") from None
            raise
        yield
    finally:
        handle.close()


@contextmanager
def _torch_threads(count: int):
    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


# -- the run -------------------------------------------------------------------------------------
def train(config: TrainConfig, out_dir: str | os.PathLike, *, progress: bool = True
          ) -> dict[str, Any]:
    """Run (or resume, or return the finished) training run of ``config`` in ``out_dir``.

    Returns the content of ``out_dir/result.json``.  The same as ``train_population([config],
    [out_dir])[0]``.

    Raises:
        ValueError: invalid config (before any work), ``out_dir`` holds a run with a different
            config or is not a directory, or another process is training into it.
    """
    return train_population([config], [out_dir], progress=progress)[0]


def train_population(configs: Sequence[TrainConfig], out_dirs: Sequence[str | os.PathLike],
                     *, progress: bool = True) -> list[dict[str, Any]]:
    """Train the seeds of one configuration together (module docstring); seed ``i`` trains with
    ``configs[i]`` into ``out_dirs[i]``, exactly as :func:`train` would, and the results are
    returned in that order.

    The configurations must be equal except for ``seed`` (distinct), and the directories
    distinct.  Finished seeds are returned as they are; the others are resumed from their
    checkpoints or started, in lockstep with the other seeds at the same progress.

    Raises:
        ValueError: invalid or mismatched configs (before any work), or a directory problem as
            for :func:`train`.
    """
    configs, outs = _check_population(configs, out_dirs)
    for out in outs:
        if out.exists() and not out.is_dir():
            raise ValueError(f"--out {out} exists and is not a directory")
    for out in outs:
        out.mkdir(parents=True, exist_ok=True)
    with ExitStack() as stack:
        for out in outs:
            stack.enter_context(_exclusive(out))
        stack.enter_context(_torch_threads(TRAIN_THREADS))
        results: list[dict[str, Any] | None] = [None] * len(configs)
        groups: dict[Any, list[tuple[int, dict[str, Any] | None]]] = {}
        for i, (config, out) in enumerate(zip(configs, outs, strict=True)):
            remove_stale_temporaries(out)
            result = load_result(out)
            checkpoint = torch_load(out / CHECKPOINT_FILE, map_location=config.device) \
                if (out / CHECKPOINT_FILE).is_file() else None
            for stored in (result, checkpoint):
                if stored is not None:
                    _check_same_config(config, stored.get("config"), out)
            if result is not None and result.get("status") == "finished" \
                    and (out / POLICY_FILE).is_file():
                results[i] = result
                continue
            if checkpoint is not None and checkpoint.get("format") != CHECKPOINT_FORMAT:
                raise ValueError(f"{out / CHECKPOINT_FILE} is not a safegbpo checkpoint of this "
                                 f"version ({CHECKPOINT_FORMAT}, found "
                                 f"{checkpoint.get('format')!r}); use another --out")
            progress_key = None if checkpoint is None else (int(checkpoint["interactions"]),
                                                            int(checkpoint["iterations"]))
            groups.setdefault(progress_key, []).append((i, checkpoint))
        for members in groups.values():
            indices = [i for i, _ in members]
            run = _PopulationRun([configs[i] for i in indices], [outs[i] for i in indices],
                                 [checkpoint for _, checkpoint in members])
            for i, result in zip(indices, run.run(progress), strict=True):
                results[i] = result
        return [r for r in results if r is not None]


def _check_population(configs: Sequence[TrainConfig], out_dirs: Sequence[str | os.PathLike]
                      ) -> tuple[list[TrainConfig], list[Path]]:
    configs, outs = list(configs), [Path(d) for d in out_dirs]
    if not configs:
        raise ValueError("a population needs at least one configuration")
    if len(configs) != len(outs):
        raise ValueError(f"{len(configs)} configurations but {len(outs)} output directories")
    for config in configs:
        if not isinstance(config, TrainConfig):
            raise ValueError(f"config must be a TrainConfig, got {type(config).__name__}")
        config.validate()
    for config in configs[1:]:
        differences = {k: v for k, v in config.differences(configs[0]).items() if k != "seed"}
        if differences:
            listed = ", ".join(f"{k}: {old!r} vs {new!r}" for k, (new, old) in differences.items())
            raise ValueError(f"a population trains seeds of one configuration; these differ in "
                             f"more than the seed ({listed})")
    seeds = [c.seed for c in configs]
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"duplicate seeds in a population: {seeds}")
    resolved = [o.resolve() for o in outs]
    if len(set(resolved)) != len(resolved):
        raise ValueError("every seed of a population needs its own output directory")
    return configs, outs


def _check_same_config(config: TrainConfig, stored: Any, out: Path) -> None:
    if not isinstance(stored, dict):
        raise ValueError(f"{out} holds a run without a readable config; use another --out")
    if "backend" not in stored:
        # written before the exact backend existed: its safeguard ran the Eq 6 programs (an
        # unsafe run is the same under any backend: the default)
        stored = {**stored, "backend": PAPER_BACKEND if stored.get("safeguard") is not None
                  else DEFAULT_BACKEND}
    if "env_options" not in stored:
        # written before env options existed: the task's default environment
        stored = {**stored, "env_options": {}}
    missing = sorted(set(config.to_dict()) - set(stored))
    if missing:
        raise ValueError(f"{out} holds a run of an older version (its config has no "
                         f"{', '.join(missing)}: another protocol); use another --out")
    try:
        previous = TrainConfig.from_dict(stored)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{out} holds a run with an unreadable config ({err}); use another "
                         "--out") from None
    differences = config.differences(previous)
    if differences:
        listed = ", ".join(f"{k}: existing {old!r} vs requested {new!r}"
                           for k, (new, old) in differences.items())
        raise ValueError(f"{out} already holds a run with a different config ({listed}); "
                         "use another --out or the same configuration to resume")


class _Member:
    """Per-seed bookkeeping of a population run."""

    def __init__(self, config: TrainConfig, out: Path, checkpoint: dict[str, Any] | None):
        self.config, self.out = config, out
        stored = dict(checkpoint["wallclock"]) if checkpoint else {}
        self.total_before = stored.pop("total", 0.0)
        self.seconds_before = stored
        self.curve: list[dict[str, Any]] = list(checkpoint["curve"]) if checkpoint else []
        self.set_curve: list[dict[str, Any]] = \
            list(checkpoint["eval_set_curve"]) if checkpoint else []
        self.history: list[dict[str, Any]] = list(checkpoint["history"]) if checkpoint else []


class _PopulationRun:
    """State of one training session of a population (fresh or resumed from checkpoints)."""

    def __init__(self, configs: list[TrainConfig], outs: list[Path],
                 checkpoints: list[dict[str, Any] | None]):
        self.config = configs[0]
        self.members = [_Member(c, o, k) for c, o, k in zip(configs, outs, checkpoints,
                                                            strict=True)]
        self.session_start = time.perf_counter()
        self.timer = PhaseTimer()
        with self.timer("setup"):
            self._build(checkpoints)

    # -- construction ------------------------------------------------------------------------
    def _build(self, checkpoints: list[dict[str, Any] | None]) -> None:
        from safegbpo.envs import resolve_safe_set

        cfg, size = self.config, len(self.members)
        seeds = [m.config.seed for m in self.members]
        # filled in and checked by validate()
        assert cfg.num_envs is not None and cfg.eval_episodes is not None
        self.safe_set = resolve_safe_set(cfg.task, cfg.safe_set)
        self.env = population_env(cfg.task, [cfg.num_envs] * size, safe_set=self.safe_set,
                                  episode_length=cfg.episode_length, device=cfg.device,
                                  env_options=cfg.env_options)
        resume = checkpoints[0] is not None
        self.safeguard = self._make_safeguard(self.env)
        self.algorithm: Algorithm = get_algorithm(cfg.algo).cls(
            self.env, cfg.hyper, seeds=[derive_seed(s, "algorithm") for s in seeds],
            env_seeds=None if resume else [derive_seed(s, "env/train") for s in seeds],
            safeguard=self.safeguard, regularisation=cfg.regularisation, timer=self.timer,
            device=cfg.device)
        self.evaluator = Evaluator(
            cfg.task, size, safe_set=self.safe_set, paper_seed=cfg.eval_seed,
            set_size=cfg.eval_episodes, episode_length=cfg.episode_length,
            env_options=cfg.env_options,
            safeguard_factory=self._make_safeguard if cfg.safeguard is not None else None,
            device=cfg.device)
        stored = [k for k in checkpoints if k is not None]
        if not resume:
            self.interactions, self.iterations = 0, 0
            return
        if len(stored) != size:
            raise ValueError("a population resumes only seeds that all have a checkpoint")
        self.env.load_block_states([k["env"] for k in stored])
        self.algorithm.load_state_dict(merge_population_states([k["algorithm"]
                                                                for k in stored]))
        self.interactions = int(stored[0]["interactions"])
        self.iterations = int(stored[0]["iterations"])

    def _make_safeguard(self, env: Any) -> Any:
        cfg = self.config
        if cfg.safeguard is None:
            return None
        from safegbpo.safeguards import make_safeguard

        return make_safeguard(cfg.safeguard, env, **cfg.safeguard_options(SAFEGUARD_SEED))

    # -- bookkeeping -------------------------------------------------------------------------
    def _counters(self, index: int) -> dict[str, int]:
        algo = self.algorithm
        return {"interventions": int(algo.interventions[index]),
                "fallbacks": int(algo.fallbacks[index]),
                "uncertified": int(algo.uncertified[index]),
                "steps": int(algo.safeguard_steps[index])}

    def _wallclock(self, member: _Member) -> dict[str, float]:
        seconds = dict(member.seconds_before)
        for phase, value in self.timer.seconds.items():
            seconds[phase] = seconds.get(phase, 0.0) + value
        seconds["total"] = member.total_before + time.perf_counter() - self.session_start
        return seconds

    def _result(self, index: int, status: str) -> dict[str, Any]:
        member, cfg = self.members[index], self.config
        counters = self._counters(index)
        return {
            "format": RESULT_FORMAT,
            "status": status,
            "config": member.config.to_dict(),
            "interactions": self.interactions,
            "iterations": self.iterations,
            "curve": member.curve,
            "eval_set_curve": member.set_curve,
            "evaluation": {
                "protocol": "SPEC §13: curve = return of one episode from the seed-eval_seed "
                            "initial state; eval_set_curve = mean/std of the returns of "
                            "eval_episodes episodes from a fixed seeded set",
                "paper_seed": cfg.eval_seed,
                "set_seed": set_seed_for(cfg.eval_seed),
                "set_size": cfg.eval_episodes,
                "episode_length": int(self.env.episode_length),
            },
            "history": member.history,
            "interventions": counters["interventions"],
            "fallbacks": counters["fallbacks"],
            "uncertified": counters["uncertified"],
            "safeguard_steps": counters["steps"],
            "wallclock": self._wallclock(member),
            "population": {"seeds": [m.config.seed for m in self.members],
                           "members": len(self.members)},
            "safe_set_source": str(getattr(self.safe_set, "source", "")),
            "safe_set_certification": str(getattr(self.safe_set, "certification", "")),
            "data_sources": self.env.data_sources(),  # e.g. the energy task's profiles
            "algorithm_summary": self.algorithm.summary(index),  # e.g. PCRPO's mode counts
            "policy": POLICY_FILE,
            "version": __version__,
        }

    def _evaluate(self) -> float:
        with self.timer("evaluation"):
            result = self.evaluator(self.algorithm.act)
        for index, member in enumerate(self.members):
            reward = float(result.paper[index])
            episodes = result.episodes[index]
            member.curve.append({"step": self.interactions, "reward": reward})
            if episodes.numel():
                member.set_curve.append({
                    "step": self.interactions, "reward": float(episodes.mean()),
                    "std": float(episodes.std()) if episodes.numel() > 1 else 0.0})
            counters = self._counters(index)
            member.history.append({"step": self.interactions, "reward": reward,
                                   "interventions": counters["interventions"],
                                   "fallbacks": counters["fallbacks"],
                                   "uncertified": counters["uncertified"],
                                   "seconds": self._wallclock(member)["total"]})
        return float(result.paper.mean())

    def _save(self, status: str) -> list[dict[str, Any]]:
        with self.timer("checkpoint"):
            states = split_population_state(self.algorithm.state_dict())
            for index, member in enumerate(self.members):
                atomic_torch_save({
                    "format": CHECKPOINT_FORMAT,
                    "config": member.config.to_dict(),
                    "algorithm": states[index],
                    "env": self.env.block_state(index),
                    "interactions": self.interactions,
                    "iterations": self.iterations,
                    "curve": member.curve,
                    "eval_set_curve": member.set_curve,
                    "history": member.history,
                    "wallclock": self._wallclock(member),
                }, member.out / CHECKPOINT_FILE)
            results = []
            for index, member in enumerate(self.members):
                policy = select_members(self.algorithm.policy, index)
                atomic_torch_save({
                    "format": POLICY_FORMAT,
                    "task": self.config.task,
                    "algo": self.config.algo,
                    "obs_dim": policy.obs_dim,
                    "act_dim": policy.act_dim,
                    "hidden": list(self.config.hyper.policy_hidden),
                    "interactions": self.interactions,
                    "state_dict": policy.state_dict(),
                }, member.out / POLICY_FILE)
                result = self._result(index, status)
                atomic_write_json(member.out / RESULT_FILE, result)
                results.append(result)
        return results

    # -- main loop ---------------------------------------------------------------------------
    def _description(self) -> str:
        cfg = self.config
        seeds = [m.config.seed for m in self.members]
        text = f"{cfg.task} {cfg.algo} {cfg.safeguard or 'unsafe'}"
        return text if len(seeds) == 1 else f"{text} seeds {_format_seeds(seeds)}"

    def _totals(self) -> dict[str, int]:
        algo = self.algorithm
        return {"interventions": int(algo.interventions.sum()),
                "fallbacks": int(algo.fallbacks.sum())}

    def run(self, progress: bool) -> list[dict[str, Any]]:
        cfg = self.config
        budget, every = cfg.interactions, cfg.eval_every
        assert budget is not None and every is not None  # filled in and checked by validate()
        with _Progress(enabled=progress, total=budget, done=self.interactions,
                       description=self._description()) as bar:
            if self.members[0].curve:
                last = sum(m.curve[-1]["reward"] for m in self.members) / len(self.members)
                bar.update(self.interactions, last, self._totals())
            try:
                while self.interactions < budget:
                    next_eval = (self.interactions // every + 1) * every
                    self.algorithm.iterate()
                    self.iterations += 1
                    self.interactions += self.algorithm.interactions_per_iteration
                    reward = None
                    if self.interactions >= next_eval:
                        reward = self._evaluate()
                        if self.interactions < budget:
                            self._save("running")
                    bar.update(self.interactions, reward, self._totals())
                if not self.members[0].curve \
                        or self.members[0].curve[-1]["step"] != self.interactions:
                    bar.update(self.interactions, self._evaluate(), self._totals())
            except Exception as err:
                with self.timer("checkpoint"):
                    for index, member in enumerate(self.members):
                        atomic_write_json(member.out / RESULT_FILE,
                                          {**self._last_saved_result(index), "status": "failed",
                                           "error": f"{type(err).__name__}: {err}"})
                raise
            return self._save("finished")

    def _last_saved_result(self, index: int) -> dict[str, Any]:
        """The result as of the last checkpoint (what a resume would restart from)."""
        saved = load_result(self.members[index].out)
        return saved if saved is not None else self._result(index, "failed")


def _format_seeds(seeds: Sequence[int]) -> str:
    """``[0, 1, 2, 5]`` -> ``'0-2,5'``."""
    parts: list[str] = []
    start: int | None = None
    previous = -2
    for seed in sorted(seeds):
        if start is None:
            start = previous = seed
        elif seed == previous + 1:
            previous = seed
        else:
            parts.append(f"{start}-{previous}" if previous != start else f"{start}")
            start = previous = seed
    parts.append(f"{start}-{previous}" if previous != start else f"{start}")
    return ",".join(parts)


class _Progress:
    """Rich progress bar: interactions, last evaluation reward (member mean), interventions,
    fallbacks (population totals), interactions per second (a no-op when disabled)."""

    def __init__(self, *, enabled: bool, total: int, done: int, description: str) -> None:
        self.enabled = enabled
        self.total, self.start_done = total, done
        self.description = description
        self.reward: float | None = None

    def __enter__(self) -> _Progress:
        if not self.enabled:
            return self
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        from safegbpo.console import make_console

        self.progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("reward {task.fields[reward]}"),
            TextColumn("interv. {task.fields[interventions]}"),
            TextColumn("fallb. {task.fields[fallbacks]}"),
            TextColumn("{task.fields[rate]} steps/s"),
            TimeElapsedColumn(), TimeRemainingColumn(),
            console=make_console(stderr=True))
        self.progress.__enter__()
        self.task = self.progress.add_task(self.description, total=self.total,
                                           completed=self.start_done, reward="-",
                                           interventions=0, fallbacks=0, rate="-")
        self.clock = time.perf_counter()
        return self

    def update(self, interactions: int, reward: float | None, counters: dict[str, int]) -> None:
        if not self.enabled:
            return
        if reward is not None:
            self.reward = reward
        elapsed = max(time.perf_counter() - self.clock, 1e-9)
        rate = (interactions - self.start_done) / elapsed
        self.progress.update(
            self.task, completed=min(interactions, self.total),
            reward="-" if self.reward is None else f"{self.reward:.4g}",
            interventions=counters["interventions"], fallbacks=counters["fallbacks"],
            rate=f"{rate:.0f}")

    def __exit__(self, *exc: Any) -> None:
        if self.enabled:
            self.progress.__exit__(*exc)
