"""Training runs: :func:`train` runs, checkpoints and resumes one :class:`TrainConfig`.

Output directory ``out_dir`` (created if needed):

* ``result.json`` — ``{"format", "status", "config", "interactions", "curve": [{"step",
  "reward"}], "history", "interventions", "fallbacks", "safeguard_steps", "wallclock": {phase:
  seconds}, "safe_set_source", "data_sources" (the env's exogenous data, e.g. the energy
  task's profiles: :meth:`safegbpo.envs.SafeVectorEnv.data_sources`), "algorithm_summary"
  (:meth:`safegbpo.algorithms.Algorithm.summary`, e.g. PCRPO's mode counts), "policy", ...}``,
  rewritten at every evaluation (``status`` ``"running"``) and at the end (``"finished"``;
  ``"failed"`` with ``"error"`` if training raised);
* ``checkpoint.pt`` — everything needed to continue bit for bit: networks, optimisers, the
  algorithm's generator, the SAC replay buffer, the training environment (pickled whole:
  states, generator, episode clock, goals), safeguard counters, curve and timers;
* ``policy.pt`` — the policy's weights and architecture (:func:`load_policy`).

All three are written atomically (:mod:`safegbpo.io`), the checkpoint first, so a
run killed at any point (SIGKILL included) restarts from its last evaluation and, because
every random draw comes from generators stored in the checkpoint, ends with the same curve as an
uninterrupted run.  Starting a finished run again returns its result immediately; an existing
run with a different config is refused with a ``ValueError`` naming the differing fields; two
processes cannot train into the same directory at once (a lock file).

Loop (one *interaction* = one step of one environment): iterate the algorithm (one SHAC window /
PPO rollout + update / SAC vector step + update) while ``interactions < budget``; after an
iteration that reaches the next multiple of ``eval_every``, evaluate the deterministic policy on
the fixed evaluation set (:class:`~safegbpo.algorithms.Evaluator`, seeded by ``eval_seed`` and
independent of the training env) and checkpoint.  The run ends at the first iteration boundary
at or beyond the budget, with a final evaluation if the last one was not at that step, so the
curve always ends with the final policy.

Threads: a run executes with one torch intra-op thread (restored afterwards).  The networks and
batches are small, so intra-op threading only adds synchronisation overhead (10x slower on a
loaded 2-core machine), and a fixed thread count keeps float reductions, hence curves, bitwise
reproducible across machines.  Parallelism comes from running several runs at once.

Wall clock (``wallclock``, seconds): ``rollout`` (simulation and policy sampling),
``safeguard`` (safeguard calls during training), ``update`` (losses, backward passes,
optimiser steps, critic fits), ``evaluation``, ``checkpoint`` (writing files), ``setup`` and
``total``; phases are exclusive and sum to about ``total``.  Work lost to a crash (after the
last checkpoint) is not counted.
"""

from __future__ import annotations

import errno
import fcntl
import os
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from safegbpo import __version__
from safegbpo.algorithms import Algorithm, Evaluator, GaussianPolicy, PhaseTimer, get_algorithm
from safegbpo.algorithms.base import derive_seed
from safegbpo.experiments.config import TrainConfig
from safegbpo.io import (
    atomic_torch_save,
    atomic_write_json,
    read_json,
    remove_stale_temporaries,
    torch_load,
)

__all__ = [
    "train",
    "load_result",
    "load_policy",
    "RESULT_FILE",
    "CHECKPOINT_FILE",
    "POLICY_FILE",
    "RESULT_FORMAT",
    "CHECKPOINT_FORMAT",
]

RESULT_FILE = "result.json"
CHECKPOINT_FILE = "checkpoint.pt"
POLICY_FILE = "policy.pt"
LOCK_FILE = ".lock"
#: torch intra-op threads of a training run (module docstring).
TRAIN_THREADS = 1
RESULT_FORMAT = "safegbpo-train-result/1"
CHECKPOINT_FORMAT = "safegbpo-checkpoint/1"
POLICY_FORMAT = "safegbpo-policy/1"


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
    """The :class:`GaussianPolicy` saved in ``policy.pt`` (a file or a run directory)."""
    path = Path(path)
    if path.is_dir():
        path = path / POLICY_FILE
    saved = torch_load(path, map_location=device)
    if not isinstance(saved, dict) or saved.get("format") != POLICY_FORMAT:
        raise ValueError(f"{path} is not a safegbpo policy file ({POLICY_FORMAT})")
    generator = torch.Generator().manual_seed(0)  # weights are overwritten below
    policy = GaussianPolicy(saved["obs_dim"], saved["act_dim"], tuple(saved["hidden"]),
                            generator=generator, device=device)
    policy.load_state_dict(saved["state_dict"])
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

    Returns the content of ``out_dir/result.json``.

    Raises:
        ValueError: invalid config (before any work), ``out_dir`` holds a run with a different
            config or is not a directory, or another process is training into it.
    """
    if not isinstance(config, TrainConfig):
        raise ValueError(f"config must be a TrainConfig, got {type(config).__name__}")
    config.validate()
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} exists and is not a directory")
    out.mkdir(parents=True, exist_ok=True)
    with _exclusive(out), _torch_threads(TRAIN_THREADS):
        remove_stale_temporaries(out)
        result = load_result(out)
        checkpoint = torch_load(out / CHECKPOINT_FILE, map_location=config.device) \
            if (out / CHECKPOINT_FILE).is_file() else None
        for stored in (result, checkpoint):
            if stored is not None:
                _check_same_config(config, stored.get("config"), out)
        if result is not None and result.get("status") == "finished" \
                and (out / POLICY_FILE).is_file():
            return result
        if checkpoint is not None and checkpoint.get("format") != CHECKPOINT_FORMAT:
            raise ValueError(f"{out / CHECKPOINT_FILE} is not a safegbpo checkpoint")
        return _Run(config, out, checkpoint).run(progress)


def _check_same_config(config: TrainConfig, stored: Any, out: Path) -> None:
    if not isinstance(stored, dict):
        raise ValueError(f"{out} holds a run without a readable config; use another --out")
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


class _Run:
    """State of one training session (fresh or resumed from a checkpoint)."""

    def __init__(self, config: TrainConfig, out: Path, checkpoint: dict[str, Any] | None):
        self.config, self.out = config, out
        self.session_start = time.perf_counter()
        stored_seconds = dict(checkpoint["wallclock"]) if checkpoint else {}
        self.total_before = stored_seconds.pop("total", 0.0)
        self.timer = PhaseTimer(stored_seconds)
        with self.timer("setup"):
            self._build(checkpoint)

    # -- construction ------------------------------------------------------------------------
    def _build(self, checkpoint: dict[str, Any] | None) -> None:
        from safegbpo.envs import make_vec

        cfg = self.config
        safe_set = cfg.safe_set  # None -> the project's certified set; a path -> SafeSet.load
        if checkpoint is None:
            env = make_vec(cfg.task, cfg.num_envs, seed=derive_seed(cfg.seed, "env/train"),
                           safe_set=safe_set, device=cfg.device, **cfg.env_options)
        else:
            env = checkpoint["env"]
        eval_env = make_vec(cfg.task, cfg.eval_episodes, seed=derive_seed(cfg.eval_seed,
                                                                          "env/eval"),
                            safe_set=env.safe_set, device=cfg.device, **cfg.env_options)
        self.env = env
        self.safeguard = self._make_safeguard(env)
        self.evaluator = Evaluator(eval_env, derive_seed(cfg.eval_seed, "env/eval"),
                                   self._make_safeguard(eval_env))
        algorithm_cls = get_algorithm(cfg.algo).cls
        self.algorithm: Algorithm = algorithm_cls(
            env, cfg.hyper, seed=derive_seed(cfg.seed, "algorithm"),
            env_seed=None if checkpoint else derive_seed(cfg.seed, "env/train"),
            safeguard=self.safeguard, regularisation=cfg.regularisation, timer=self.timer,
            device=cfg.device)
        if checkpoint is None:
            self.interactions, self.iterations = 0, 0
            self.curve: list[dict[str, Any]] = []
            self.history: list[dict[str, Any]] = []
        else:
            self.algorithm.load_state_dict(checkpoint["algorithm"])
            self.interactions = int(checkpoint["interactions"])
            self.iterations = int(checkpoint["iterations"])
            self.curve = list(checkpoint["curve"])
            self.history = list(checkpoint["history"])
            if self.safeguard is not None:
                for key, value in checkpoint["safeguard_counters"].items():
                    setattr(self.safeguard, key, value)

    def _make_safeguard(self, env: Any) -> Any:
        cfg = self.config
        if cfg.safeguard is None:
            return None
        from safegbpo.safeguards import make_safeguard

        return make_safeguard(cfg.safeguard, env,
                              **cfg.safeguard_options(derive_seed(cfg.seed, "safeguard")))

    # -- bookkeeping -------------------------------------------------------------------------
    def _counters(self) -> dict[str, int]:
        if self.safeguard is None:
            return {"interventions": 0, "fallbacks": 0, "steps": 0}
        return {key: int(getattr(self.safeguard, key, 0))
                for key in ("interventions", "fallbacks", "steps")}

    def _wallclock(self) -> dict[str, float]:
        seconds = dict(self.timer.seconds)
        seconds["total"] = self.total_before + time.perf_counter() - self.session_start
        return seconds

    def _result(self, status: str, error: str | None = None) -> dict[str, Any]:
        counters = self._counters()
        result = {
            "format": RESULT_FORMAT,
            "status": status,
            "config": self.config.to_dict(),
            "interactions": self.interactions,
            "iterations": self.iterations,
            "curve": self.curve,
            "history": self.history,
            "interventions": counters["interventions"],
            "fallbacks": counters["fallbacks"],
            "safeguard_steps": counters["steps"],
            "wallclock": self._wallclock(),
            "safe_set_source": str(getattr(self.env.safe_set, "source", "")),
            "data_sources": self.env.data_sources(),  # e.g. the energy task's profiles
            "algorithm_summary": self.algorithm.summary(),  # e.g. PCRPO's mode counts
            "policy": POLICY_FILE,
            "version": __version__,
        }
        if error is not None:
            result["error"] = error
        return result

    def _evaluate(self) -> float:
        with self.timer("evaluation"):
            reward = self.evaluator(self.algorithm.act)
        counters = self._counters()
        self.curve.append({"step": self.interactions, "reward": reward})
        self.history.append({"step": self.interactions, "reward": reward,
                             "interventions": counters["interventions"],
                             "fallbacks": counters["fallbacks"],
                             "seconds": self._wallclock()["total"]})
        return reward

    def _save(self, status: str) -> dict[str, Any]:
        with self.timer("checkpoint"):
            policy = self.algorithm.policy
            atomic_torch_save({
                "format": CHECKPOINT_FORMAT,
                "config": self.config.to_dict(),
                "algorithm": self.algorithm.state_dict(),
                "env": self.env,
                "interactions": self.interactions,
                "iterations": self.iterations,
                "curve": self.curve,
                "history": self.history,
                "safeguard_counters": self._counters(),
                "wallclock": self._wallclock(),
            }, self.out / CHECKPOINT_FILE)
            atomic_torch_save({
                "format": POLICY_FORMAT,
                "task": self.config.task,
                "algo": self.config.algo,
                "obs_dim": policy.obs_dim,
                "act_dim": policy.act_dim,
                "hidden": list(self.config.hyper.policy_hidden),
                "interactions": self.interactions,
                "state_dict": policy.state_dict(),
            }, self.out / POLICY_FILE)
            result = self._result(status)
            atomic_write_json(self.out / RESULT_FILE, result)
        return result

    # -- main loop ---------------------------------------------------------------------------
    def run(self, progress: bool) -> dict[str, Any]:
        cfg = self.config
        budget, every = cfg.interactions, cfg.eval_every
        assert budget is not None and every is not None  # filled in and checked by validate()
        with _Progress(enabled=progress, total=budget, done=self.interactions,
                       description=f"{cfg.task} {cfg.algo} {cfg.safeguard or 'unsafe'}") as bar:
            if self.curve:
                bar.update(self.interactions, self.curve[-1]["reward"], self._counters())
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
                    bar.update(self.interactions, reward, self._counters())
                if not self.curve or self.curve[-1]["step"] != self.interactions:
                    bar.update(self.interactions, self._evaluate(), self._counters())
            except Exception as err:
                with self.timer("checkpoint"):
                    atomic_write_json(self.out / RESULT_FILE,
                                      {**self._last_saved_result(), "status": "failed",
                                       "error": f"{type(err).__name__}: {err}"})
                raise
            return self._save("finished")

    def _last_saved_result(self) -> dict[str, Any]:
        """The result as of the last checkpoint (what a resume would restart from)."""
        saved = load_result(self.out)
        return saved if saved is not None else self._result("failed")


class _Progress:
    """Rich progress bar: interactions, last evaluation reward, interventions, fallbacks,
    interactions per second (a no-op when disabled)."""

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
