"""Executing the grid's runs: a local process pool (default) or a Ray cluster.

Both executors run the same worker function, :func:`execute_run`, once per pending run:

1. take the run's lock in the results store (a worker orphaned by a killed session finishes or
   dies before the run is taken over);
2. if the run already has a record (another worker finished it), return it;
3. call the trainer (``safegbpo.experiments.runner:train`` by default) on the run's directory
   -- the runner resumes from the checkpoint an interrupted attempt left there;
   under an optional monitor (e.g. the independent safe-state monitor of :mod:`.reproduce`,
   whose report becomes the record's ``safety`` entry);
4. write the run's record atomically (``status='finished'``, or ``'failed'`` with the error when
   training raised: such a run counts as stuck, :func:`.metrics.stuck_reason`).

Runs are independent, so the order of completion does not matter and a repeated command only
executes the runs without a record.  Workers use one torch thread (``torch.set_num_threads(1)``)
so ``--jobs N`` processes use ``N`` cores.

* :class:`PoolExecutor` -- ``concurrent.futures.ProcessPoolExecutor`` with the *spawn* start
  method (no forked torch/OpenMP state).  On Linux each worker asks the kernel to kill it when
  the parent dies (``PR_SET_PDEATHSIG``), so killing the session kills its workers.
* :class:`RayExecutor` -- one Ray task per run (``num_cpus=1``); ``address=None`` starts a local
  Ray instance with ``jobs`` CPUs, otherwise connects to the cluster at ``address``.  The results
  directory must be on a filesystem shared by all nodes and ``safegbpo`` installed on every node
  (``pip install safegbpo[ray]``).
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
from contextlib import nullcontext
from datetime import UTC, datetime
from typing import Any, Protocol

from safegbpo.experiments.grid import RunSpec
from safegbpo.experiments.store import RECORD_FORMAT, ResultsStore
from safegbpo.loading import load_attr

__all__ = [
    "DEFAULT_TRAINER",
    "Executor",
    "PoolExecutor",
    "RayExecutor",
    "execute_run",
    "make_executor",
]

DEFAULT_TRAINER = "safegbpo.experiments.runner:train"

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
    }


def execute_run(
    spec_dict: Mapping[str, Any],
    results_root: str,
    trainer: str = DEFAULT_TRAINER,
    device: str = "cpu",
    monitor: str | None = None,
    lock_timeout: float | None = None,
) -> dict[str, Any]:
    """Run (or resume) one grid run and write its record; returns a short summary.

    Args:
        spec_dict: :meth:`RunSpec.to_dict` of the run.
        results_root: the results directory (:class:`ResultsStore`).
        trainer: ``'module:function'`` with the runner's signature
            ``train(config, out_dir, *, progress) -> result dict``.
        device: torch device of the run.
        monitor: optional ``'module:function'``; ``monitor(spec, run_dir)`` is a context manager
            entered around training whose value has ``report() -> dict``, stored as the
            record's ``safety`` entry.
        lock_timeout: seconds to wait for the run's lock (``None``: wait as long as needed).

    Errors in the spec or the configuration (before training starts) propagate: they are bugs
    of the grid, not results.  Errors raised by training are recorded (``status='failed'``).
    """
    init_worker(kill_with_parent=False)
    spec = RunSpec.from_dict(spec_dict)
    store = ResultsStore(results_root)
    train = load_attr(trainer, what="function")
    config = spec.train_config(device)  # validates before any work
    with store.lock(spec.run_id, timeout=lock_timeout):
        existing = store.load_record(spec.run_id)
        if existing is not None:
            return _summary(existing)
        run_dir = store.prepare_run_dir(spec)
        # an earlier attempt left files (checkpoint, result) besides our own spec and locks
        resumed = any(not p.name.startswith(".") and p.name != "spec.json"
                      for p in run_dir.iterdir())
        started = _now()
        start = time.perf_counter()
        record: dict[str, Any] = {
            "format": RECORD_FORMAT,
            "run_id": spec.run_id,
            "spec": spec.to_dict(),
            "host": platform.node(),
            "trainer": trainer,
        }
        watch: Any = (load_attr(monitor, what="function")(spec, run_dir) if monitor is not None
                      else nullcontext())
        with watch as watcher:
            try:
                result = dict(train(config, run_dir, progress=False))
            except Exception as err:  # training failed: the run is recorded as stuck
                record.update(
                    status="failed",
                    curve=[],
                    error={
                        "type": type(err).__name__,
                        "message": str(err),
                        "traceback": traceback.format_exc(limit=20),
                    },
                )
            else:
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
        if monitor is not None:
            record["safety"] = dict(watcher.report())
        record["attempt"] = {
            "started": started,
            "finished": _now(),
            "seconds": time.perf_counter() - start,
            "resumed": resumed,
        }
        store.write_record(record)
    return _summary(record)


# --------------------------------------------------------------------------------------------
# executors
# --------------------------------------------------------------------------------------------
def _check_jobs(jobs: Any) -> int:
    """``jobs`` if it is a positive integer, else a ``ValueError`` naming ``--jobs``."""
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ValueError(f"--jobs must be a positive integer, got {jobs!r}")
    return jobs


class Executor(Protocol):
    """Runs specs, writing their records into the store; calls ``on_result`` per finished run."""

    def run(
        self, specs: Sequence[RunSpec], store: ResultsStore, *, on_result: OnResult | None = None
    ) -> list[dict[str, Any]]: ...


class PoolExecutor:
    """Local process pool (spawn context, ``jobs`` workers, one torch thread each)."""

    def __init__(
        self,
        jobs: int | None = None,
        *,
        trainer: str = DEFAULT_TRAINER,
        device: str = "cpu",
        monitor: str | None = None,
    ) -> None:
        jobs = _check_jobs((os.cpu_count() or 1) if jobs is None else jobs)
        load_attr(trainer, what="function")  # fail early on a bad trainer path
        self.jobs = jobs
        self.trainer = trainer
        self.device = device
        self.monitor = monitor

    def run(
        self, specs: Sequence[RunSpec], store: ResultsStore, *, on_result: OnResult | None = None
    ) -> list[dict[str, Any]]:
        if not specs:
            return []
        context = multiprocessing.get_context("spawn")
        results: list[dict[str, Any]] = []
        with ProcessPoolExecutor(
            max_workers=min(self.jobs, len(specs)), mp_context=context, initializer=init_worker
        ) as pool:
            futures = {
                pool.submit(
                    execute_run, spec.to_dict(), str(store.root), self.trainer, self.device,
                    self.monitor,
                ): spec
                for spec in specs
            }
            pending = set(futures)
            try:
                while pending:
                    done, pending = wait(pending, return_when=FIRST_COMPLETED)
                    for future in done:
                        summary = future.result()
                        results.append(summary)
                        if on_result is not None:
                            on_result(summary)
            except BaseException:
                for future in pending:
                    future.cancel()
                raise
        return results


class RayExecutor:
    """One Ray task per run; ``address=None`` starts a local Ray with ``jobs`` CPUs."""

    def __init__(
        self,
        address: str | None = None,
        jobs: int | None = None,
        *,
        trainer: str = DEFAULT_TRAINER,
        device: str = "cpu",
        monitor: str | None = None,
    ) -> None:
        try:
            import ray  # noqa: F401
        except ImportError as err:
            raise ValueError(
                "--executor ray needs Ray: pip install 'safegbpo[ray]'"
            ) from err
        if jobs is not None:
            _check_jobs(jobs)
        load_attr(trainer, what="function")
        self.address = address
        self.jobs = jobs
        self.trainer = trainer
        self.device = device
        self.monitor = monitor

    def run(
        self, specs: Sequence[RunSpec], store: ResultsStore, *, on_result: OnResult | None = None
    ) -> list[dict[str, Any]]:
        import ray

        if not specs:
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
            remote = ray.remote(num_cpus=1, max_retries=0)(execute_run)
            refs = [
                remote.remote(
                    spec.to_dict(), str(store.root), self.trainer, self.device, self.monitor
                )
                for spec in specs
            ]
            results: list[dict[str, Any]] = []
            pending = list(refs)
            while pending:
                done, pending = ray.wait(pending, num_returns=1)
                summary = ray.get(done[0])
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
) -> PoolExecutor | RayExecutor:
    """``'pool'`` -> :class:`PoolExecutor`, ``'ray'`` -> :class:`RayExecutor`."""
    if kind == "pool":
        if address is not None:
            raise ValueError("--address is only meaningful with --executor ray")
        return PoolExecutor(jobs, trainer=trainer, device=device, monitor=monitor)
    if kind == "ray":
        return RayExecutor(address, jobs, trainer=trainer, device=device, monitor=monitor)
    raise ValueError(f"unknown executor {kind!r}; expected 'pool' or 'ray'")
