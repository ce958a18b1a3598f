"""Executing the grid's runs: a local process pool (default) or a Ray cluster.

The unit of work is a *population task*: the training runs of one configuration that differ only
in their seed (:func:`safegbpo.experiments.grid.group_populations`; ``population_size`` caps the
number of seeds per task, default all seeds of a configuration), trained together in one
process by :func:`safegbpo.experiments.runner.train_population`; every other run (the Table 6
timing runs) is a task of its own.  Both executors run the same worker function,
:func:`execute_population`, once per task:

1. take the locks of all the task's runs in the results store (sorted order; a worker orphaned
   by a killed session finishes or dies before its runs are taken over);
2. drop the runs that already have a record (another worker finished them) -- resume works per
   seed: a population resumes every seed from its own checkpoint;
3. train the remaining seeds together: ``population_trainer(configs, [run dirs])`` (by default
   :func:`~safegbpo.experiments.runner.train_population`; the runner resumes each seed from the
   checkpoint an interrupted attempt left in its directory), under an optional monitor entered
   once per seed (``monitor(spec, run_dir, member=p, members=P)``, e.g. the independent safe-state
   monitor of :mod:`.monitor`, which attributes the population env's rows to their seed; its
   report becomes that seed's record's ``safety`` entry);
4. write one record per run atomically, in the store's unchanged format (``status='finished'``,
   or ``'failed'`` with the error when training raised: such a run counts as stuck,
   :func:`.metrics.stuck_reason`).

A population that raises is retried seed by seed (each a population of one, resuming from its
own checkpoint -- a seed's result does not depend on its population), so one diverging seed is
recorded as failed alone and the others finish with the results they would have had anyway.  A
single-run ``trainer`` without a population form (``population_trainer=None`` and a trainer
other than the runner's) trains a task's seeds one after another.

Runs are independent, so the order of completion does not matter and a repeated command only
executes the runs without a record.  Workers use one torch thread (``torch.set_num_threads(1)``)
so ``--jobs N`` processes use ``N`` cores, whatever the size of their populations.

* :class:`PoolExecutor` -- ``concurrent.futures.ProcessPoolExecutor`` with the *spawn* start
  method (no forked torch/OpenMP state).  On Linux each worker asks the kernel to kill it when
  the parent dies (``PR_SET_PDEATHSIG``), so killing the session kills its workers.
* :class:`RayExecutor` -- one Ray task per population task (``num_cpus=1``); ``address=None``
  starts a local Ray instance with ``jobs`` CPUs, otherwise connects to the cluster at
  ``address``.  The results directory must be on a filesystem shared by all nodes and
  ``safegbpo`` installed on every node (``pip install safegbpo[ray]``).
"""

from __future__ import annotations

import multiprocessing
import os
import platform
import signal
import sys
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from safegbpo.experiments.grid import RunSpec, group_populations
from safegbpo.experiments.store import RECORD_FORMAT, ResultsStore
from safegbpo.loading import load_attr

__all__ = [
    "DEFAULT_POPULATION_TRAINER",
    "DEFAULT_TRAINER",
    "Executor",
    "PoolExecutor",
    "RayExecutor",
    "execute_population",
    "execute_run",
    "make_executor",
]

#: The single-run trainer, ``train(config, out_dir, *, progress) -> result``.
DEFAULT_TRAINER = "safegbpo.experiments.runner:train"
#: Its population form, ``train_population(configs, out_dirs, *, progress) -> [result]``.
DEFAULT_POPULATION_TRAINER = "safegbpo.experiments.runner:train_population"

OnResult = Callable[[Mapping[str, Any]], None]


def _set_parent_death_signal() -> None:
    """Linux: deliver SIGKILL to this process when its parent dies (best effort)."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGKILL)
    except OSError:  # pragma: no cover - no libc
        pass


def init_worker(kill_with_parent: bool = True) -> None:
    """Worker initialisation: one torch thread, and (pool workers) die with the parent."""
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("MKL_NUM_THREADS", "1")
    import torch

    torch.set_num_threads(1)
    if kill_with_parent:
        _set_parent_death_signal()


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _summary(record: Mapping[str, Any]) -> dict[str, Any]:
    """What a worker sends back: small, the full record is in the store."""
    return {
        "run_id": record["run_id"],
        "status": record["status"],
        "seconds": record.get("attempt", {}).get("seconds"),
        "error": (record.get("error") or {}).get("message"),
        "safety": record.get("safety"),
        "population": (record.get("population") or {}).get("members"),
    }


def population_trainer_for(trainer: str, population_trainer: str | None) -> str | None:
    """The population trainer used with ``trainer``: ``population_trainer`` if given, the
    runner's :func:`~safegbpo.experiments.runner.train_population` for the runner's ``train``,
    otherwise ``None`` (the trainer has no population form: seeds train one after another)."""
    if population_trainer is not None:
        return population_trainer
    return DEFAULT_POPULATION_TRAINER if trainer == DEFAULT_TRAINER else None


@dataclass(frozen=True)
class _Trainers:
    """The trainer functions of a worker (module docstring)."""

    single: Callable[..., Mapping[str, Any]]
    single_name: str
    population: Callable[..., Sequence[Mapping[str, Any]]] | None
    population_name: str | None

    @classmethod
    def load(cls, trainer: str, population_trainer: str | None) -> _Trainers:
        name = population_trainer_for(trainer, population_trainer)
        return cls(load_attr(trainer, what="function"), trainer,
                   None if name is None else load_attr(name, what="function"), name)

    def train(self, configs: list[Any], run_dirs: list[Path]) -> list[dict[str, Any]]:
        """Train ``configs`` into ``run_dirs`` (several only with a population trainer)."""
        if len(configs) == 1:
            return [dict(self.single(configs[0], run_dirs[0], progress=False))]
        assert self.population is not None
        results = [dict(r) for r in self.population(configs, run_dirs, progress=False)]
        if len(results) != len(configs):
            raise RuntimeError(f"population trainer {self.population_name} returned "
                               f"{len(results)} results for {len(configs)} seeds")
        return results

    def name(self, size: int) -> str:
        return self.single_name if size == 1 else str(self.population_name)


def execute_run(
    spec_dict: Mapping[str, Any],
    results_root: str,
    trainer: str = DEFAULT_TRAINER,
    device: str = "cpu",
    monitor: str | None = None,
    lock_timeout: float | None = None,
) -> dict[str, Any]:
    """Run (or resume) one grid run and write its record; returns a short summary (a
    population of one: :func:`execute_population`)."""
    return execute_population([spec_dict], results_root, trainer, device, monitor,
                              lock_timeout)[0]


def execute_population(
    spec_dicts: Sequence[Mapping[str, Any]],
    results_root: str,
    trainer: str = DEFAULT_TRAINER,
    device: str = "cpu",
    monitor: str | None = None,
    lock_timeout: float | None = None,
    population_trainer: str | None = None,
) -> list[dict[str, Any]]:
    """Run (or resume) one population task and write one record per run; returns one short
    summary per run, in the order of ``spec_dicts``.

    Args:
        spec_dicts: :meth:`RunSpec.to_dict` of the task's runs: runs of one configuration that
            differ only in their seed (:func:`~safegbpo.experiments.grid.group_populations`),
            or a single run.
        results_root: the results directory (:class:`ResultsStore`).
        trainer: ``'module:function'`` with the runner's signature
            ``train(config, out_dir, *, progress) -> result dict`` (a population of one).
        device: torch device of the runs.
        monitor: optional ``'module:function'``; ``monitor(spec, run_dir, *, member, members)``
            is a context manager entered around training, once per seed (``member`` its index
            in the population of ``members``), whose value has ``report() -> dict``, stored as
            the seed's record's ``safety`` entry.
        lock_timeout: seconds to wait for each run's lock (``None``: as long as needed).
        population_trainer: ``'module:function'`` with the signature of
            :func:`~safegbpo.experiments.runner.train_population` (default:
            :func:`population_trainer_for`).

    Errors in the specs or the configurations (before training starts) propagate: they are
    bugs of the grid, not results.  Errors raised by training are recorded (``status='failed'``;
    module docstring for populations).
    """
    init_worker(kill_with_parent=False)
    specs = [RunSpec.from_dict(d) for d in spec_dicts]
    if not specs:
        return []
    if len(specs) > 1 and len(group_populations(specs)) != 1:
        raise ValueError(f"runs {[s.run_id for s in specs]} are not one population (a task's "
                         "runs differ only in their seed)")
    store = ResultsStore(results_root)
    trainers = _Trainers.load(trainer, population_trainer)
    configs = {s.run_id: s.train_config(device) for s in specs}  # validates before any work
    summaries: dict[str, dict[str, Any]] = {}
    with store.lock_all([s.run_id for s in specs], timeout=lock_timeout):
        todo = []
        for spec in specs:
            existing = store.load_record(spec.run_id)
            if existing is not None:
                summaries[spec.run_id] = _summary(existing)
            else:
                todo.append(spec)
        if len(todo) > 1 and trainers.population is None:  # no population form: one by one
            groups = [[spec] for spec in todo]
        else:
            groups = [todo] if todo else []
        for group in groups:
            for record in _attempt(store, group, [configs[s.run_id] for s in group], trainers,
                                   monitor):
                summaries[record["run_id"]] = _summary(record)
    return [summaries[s.run_id] for s in specs]


def _attempt(store: ResultsStore, specs: list[RunSpec], configs: list[Any],
             trainers: _Trainers, monitor: str | None) -> list[dict[str, Any]]:
    """Train ``specs`` as one population and write their records (a failed population is
    retried seed by seed); returns the records."""
    run_dirs = [store.prepare_run_dir(spec) for spec in specs]
    # an earlier attempt left files (checkpoint, result) besides our own spec and locks
    resumed = [any(not p.name.startswith(".") and p.name != "spec.json"
                   for p in run_dir.iterdir()) for run_dir in run_dirs]
    started = _now()
    start = time.perf_counter()
    size = len(specs)
    failure: dict[str, Any] | None = None
    results: list[dict[str, Any]] = []
    with ExitStack() as stack:
        watchers = [] if monitor is None else [
            stack.enter_context(load_attr(monitor, what="function")(
                spec, run_dir, member=member, members=size))
            for member, (spec, run_dir) in enumerate(zip(specs, run_dirs, strict=True))]
        try:
            results = trainers.train(configs, run_dirs)
        except Exception as err:  # training failed: the run is recorded as stuck
            failure = {"type": type(err).__name__, "message": str(err),
                       "traceback": traceback.format_exc(limit=20)}
    if failure is not None and size > 1:
        # which seed failed is unknown: each resumes alone from its own checkpoint
        return [record for spec, config in zip(specs, configs, strict=True)
                for record in _attempt(store, [spec], [config], trainers, monitor)]
    seconds = time.perf_counter() - start
    records = []
    for index, spec in enumerate(specs):
        record: dict[str, Any] = {
            "format": RECORD_FORMAT,
            "run_id": spec.run_id,
            "spec": spec.to_dict(),
            "host": platform.node(),
            "trainer": trainers.name(size),
        }
        if failure is not None:
            record.update(status="failed", curve=[], error=failure)
        else:
            result = results[index]
            if result.get("status", "finished") != "finished":
                raise RuntimeError(
                    f"trainer returned status {result.get('status')!r} for {spec.run_id}: "
                    "expected a finished run"
                )
            # the spec replaces the config; the record keeps its own format and status
            record.update({k: v for k, v in result.items()
                           if k not in ("format", "config", "status")})
            record["result_format"] = result.get("format")
            record["status"] = "finished"
        if watchers:
            record["safety"] = dict(watchers[index].report())
        record["attempt"] = {
            "started": started,
            "finished": _now(),
            "seconds": seconds,
            "resumed": resumed[index],
        }
        store.write_record(record)
        records.append(record)
    return records


# --------------------------------------------------------------------------------------------
# executors
# --------------------------------------------------------------------------------------------
def _check_jobs(jobs: Any) -> int:
    """``jobs`` if it is a positive integer, else a ``ValueError`` naming ``--jobs``."""
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ValueError(f"--jobs must be a positive integer, got {jobs!r}")
    return jobs


def _check_population_size(size: Any) -> int | None:
    """``size`` if it is ``None`` or a positive integer, else a ``ValueError`` naming
    ``--population-size``."""
    if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 1):
        raise ValueError(f"--population-size must be a positive integer, got {size!r}")
    return size


class Executor(Protocol):
    """Runs specs (grouped into population tasks), writing their records into the store; calls
    ``on_result`` once per finished run."""

    def run(
        self, specs: Sequence[RunSpec], store: ResultsStore, *, on_result: OnResult | None = None
    ) -> list[dict[str, Any]]: ...


class _ExecutorBase:
    """What both executors pass to :func:`execute_population` (validated up front)."""

    def __init__(self, trainer: str, population_trainer: str | None, device: str,
                 monitor: str | None, population_size: int | None) -> None:
        load_attr(trainer, what="function")  # fail early on a bad trainer path
        if population_trainer is not None:
            load_attr(population_trainer, what="function")
        self.trainer = trainer
        self.population_trainer = population_trainer
        self.device = device
        self.monitor = monitor
        self.population_size = _check_population_size(population_size)

    def tasks(self, specs: Sequence[RunSpec]) -> list[list[dict[str, Any]]]:
        """The population tasks of ``specs`` as the workers' arguments."""
        return [[spec.to_dict() for spec in task]
                for task in group_populations(specs, self.population_size)]

    def arguments(self, task: list[dict[str, Any]], store: ResultsStore) -> tuple[Any, ...]:
        return (task, str(store.root), self.trainer, self.device, self.monitor, None,
                self.population_trainer)


class PoolExecutor(_ExecutorBase):
    """Local process pool (spawn context, ``jobs`` workers, one torch thread each); one
    population task per worker call."""

    def __init__(
        self,
        jobs: int | None = None,
        *,
        trainer: str = DEFAULT_TRAINER,
        device: str = "cpu",
        monitor: str | None = None,
        population_trainer: str | None = None,
        population_size: int | None = None,
    ) -> None:
        self.jobs = _check_jobs((os.cpu_count() or 1) if jobs is None else jobs)
        super().__init__(trainer, population_trainer, device, monitor, population_size)

    def run(
        self, specs: Sequence[RunSpec], store: ResultsStore, *, on_result: OnResult | None = None
    ) -> list[dict[str, Any]]:
        tasks = self.tasks(specs)
        if not tasks:
            return []
        context = multiprocessing.get_context("spawn")
        results: list[dict[str, Any]] = []
        with ProcessPoolExecutor(
            max_workers=min(self.jobs, len(tasks)), mp_context=context, initializer=init_worker
        ) as pool:
            pending = {pool.submit(execute_population, *self.arguments(task, store))
                       for task in tasks}
            try:
                while pending:
                    done, pending = wait(pending, return_when=FIRST_COMPLETED)
                    for future in done:
                        for summary in future.result():
                            results.append(summary)
                            if on_result is not None:
                                on_result(summary)
            except BaseException:
                for future in pending:
                    future.cancel()
                raise
        return results


class RayExecutor(_ExecutorBase):
    """One Ray task per population task; ``address=None`` starts a local Ray with ``jobs``
    CPUs."""

    def __init__(
        self,
        address: str | None = None,
        jobs: int | None = None,
        *,
        trainer: str = DEFAULT_TRAINER,
        device: str = "cpu",
        monitor: str | None = None,
        population_trainer: str | None = None,
        population_size: int | None = None,
    ) -> None:
        try:
            import ray  # noqa: F401
        except ImportError as err:
            raise ValueError(
                "--executor ray needs Ray: pip install 'safegbpo[ray]'"
            ) from err
        if jobs is not None:
            _check_jobs(jobs)
        super().__init__(trainer, population_trainer, device, monitor, population_size)
        self.address = address
        self.jobs = jobs

    def run(
        self, specs: Sequence[RunSpec], store: ResultsStore, *, on_result: OnResult | None = None
    ) -> list[dict[str, Any]]:
        import ray

        tasks = self.tasks(specs)
        if not tasks:
            return []
        started_here = not ray.is_initialized()
        if started_here:
            kwargs: dict[str, Any] = {
                "include_dashboard": False,
                "log_to_driver": True,
                "runtime_env": {
                    "env_vars": {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"},
                },
            }
            if self.address is None:
                kwargs["num_cpus"] = self.jobs or os.cpu_count() or 1
                # a local instance's workers see the driver's import path (e.g. a trainer
                # module given by path that is not installed)
                paths = [p for p in sys.path if p and os.path.isdir(p)]
                kwargs["runtime_env"]["env_vars"]["PYTHONPATH"] = os.pathsep.join(paths)
            else:
                kwargs["address"] = self.address
            ray.init(**kwargs)
        try:
            remote = ray.remote(num_cpus=1, max_retries=0)(execute_population)
            pending = [remote.remote(*self.arguments(task, store)) for task in tasks]
            results: list[dict[str, Any]] = []
            while pending:
                done, pending = ray.wait(pending, num_returns=1)
                for summary in ray.get(done[0]):
                    results.append(summary)
                    if on_result is not None:
                        on_result(summary)
            return results
        finally:
            if started_here:
                ray.shutdown()


def make_executor(
    kind: str,
    *,
    jobs: int | None = None,
    address: str | None = None,
    trainer: str = DEFAULT_TRAINER,
    device: str = "cpu",
    monitor: str | None = None,
    population_trainer: str | None = None,
    population_size: int | None = None,
) -> PoolExecutor | RayExecutor:
    """``'pool'`` -> :class:`PoolExecutor`, ``'ray'`` -> :class:`RayExecutor`."""
    options: dict[str, Any] = dict(trainer=trainer, device=device, monitor=monitor,
                                   population_trainer=population_trainer,
                                   population_size=population_size)
    if kind == "pool":
        if address is not None:
            raise ValueError("--address is only meaningful with --executor ray")
        return PoolExecutor(jobs, **options)
    if kind == "ray":
        return RayExecutor(address, jobs, **options)
    raise ValueError(f"unknown executor {kind!r}; expected 'pool' or 'ray'")
