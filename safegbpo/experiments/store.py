"""Results store of a reproduction: one atomically written record per finished run.

Layout under the results directory (``--results DIR``)::

    runs/<run_id>/            the runner's directory of the run (checkpoint, result.json,
                              policy.pt) plus spec.json; an interrupted run resumes from it
    runs/<run_id>/.store.lock advisory lock held by the worker executing the run (a worker
                              training a population holds the locks of all its seeds)
    records/<run_id>.json     the run's record, written once the run ended (atomic rename):
                              its presence is what "finished" means to the store
    manifest.json             the last invocation: profile, grid, safe sets, run ids
    cells.json, cells.md      the measured cells and the profile's checks (:mod:`.cells`)

A record (format ``safegbpo-run-record/1``) holds the run's spec, its ``status``
(``'finished'`` or ``'failed'``), the runner's result (learning ``curve``, interventions,
fallbacks, per-phase wall clock), the executing host and the timing of the last attempt; a
failed record carries the error.  A population of seeds trained together (:mod:`.executors`)
keeps one run directory and writes one record per seed, in this same format, so a store does not
depend on how its runs were grouped.  Records are never partially written (temporary file in the
same directory, ``fsync``, ``os.replace``), so a process killed at any moment leaves either no
record (the run is redone, resuming from its checkpoint) or a complete one.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from safegbpo.experiments.grid import RunSpec
from safegbpo.io import atomic_write_text

__all__ = ["RECORD_FORMAT", "ResultsStore", "RunLocked"]

RECORD_FORMAT = "safegbpo-run-record/1"


class RunLocked(RuntimeError):
    """Another live process holds the run's lock."""


class ResultsStore:
    """The results directory of a reproduction (see the module docstring)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).expanduser().resolve()
        if self.root.exists() and not self.root.is_dir():
            raise ValueError(f"results path {self.root} exists and is not a directory")
        self.runs_dir = self.root / "runs"
        self.records_dir = self.root / "records"
        self.runs_dir.mkdir(parents=True, exist_ok=True)
        self.records_dir.mkdir(parents=True, exist_ok=True)

    def __repr__(self) -> str:
        return f"ResultsStore({str(self.root)!r})"

    # -- paths -------------------------------------------------------------------------------
    @staticmethod
    def _check_id(run_id: str) -> str:
        if not run_id or "/" in run_id or run_id.startswith("."):
            raise ValueError(f"invalid run id {run_id!r}")
        return run_id

    def run_dir(self, run_id: str) -> Path:
        return self.runs_dir / self._check_id(run_id)

    def record_path(self, run_id: str) -> Path:
        return self.records_dir / f"{self._check_id(run_id)}.json"

    # -- records -----------------------------------------------------------------------------
    def has_record(self, run_id: str) -> bool:
        return self.record_path(run_id).is_file()

    def load_record(self, run_id: str) -> dict[str, Any] | None:
        """The run's record, ``None`` if it has none.

        Raises:
            ValueError: the file is not a valid record of ``run_id``.
        """
        path = self.record_path(run_id)
        try:
            text = path.read_text()
        except FileNotFoundError:
            return None
        try:
            record = json.loads(text)
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}: corrupt run record ({err})") from err
        if record.get("format") != RECORD_FORMAT or record.get("run_id") != run_id:
            raise ValueError(f"{path}: not a {RECORD_FORMAT} record of run {run_id}")
        return record

    def write_record(self, record: Mapping[str, Any]) -> Path:
        """Atomically write a run's record (``record['run_id']`` names it)."""
        if record.get("format") != RECORD_FORMAT:
            raise ValueError(f"record format must be {RECORD_FORMAT!r}")
        if record.get("status") not in ("finished", "failed"):
            raise ValueError(f"record status must be 'finished' or 'failed', got "
                             f"{record.get('status')!r}")
        path = self.record_path(str(record.get("run_id", "")))
        atomic_write_text(path, json.dumps(record, indent=1, sort_keys=True, allow_nan=True))
        return path

    def delete_record(self, run_id: str) -> None:
        """Forget a run's record (e.g. to retry a failed run); the run directory is kept."""
        self.record_path(run_id).unlink(missing_ok=True)

    def records(self, run_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
        """Records of the given runs that have one."""
        out = {}
        for run_id in run_ids:
            record = self.load_record(run_id)
            if record is not None:
                out[run_id] = record
        return out

    def pending(self, specs: Iterable[RunSpec], *, retry_failed: bool = False) -> list[RunSpec]:
        """Runs without a record (and, with ``retry_failed``, runs whose record is a failure;
        those records are deleted so the run starts over from its checkpoint)."""
        out = []
        for spec in specs:
            record = self.load_record(spec.run_id)
            if record is None:
                out.append(spec)
            elif retry_failed and record["status"] == "failed":
                self.delete_record(spec.run_id)
                out.append(spec)
        return out

    # -- run directories ---------------------------------------------------------------------
    def prepare_run_dir(self, spec: RunSpec) -> Path:
        """Create the run's directory and (atomically) its ``spec.json``; refuses a directory
        that belongs to another spec."""
        path = self.run_dir(spec.run_id)
        path.mkdir(parents=True, exist_ok=True)
        spec_file = path / "spec.json"
        if spec_file.is_file():
            stored = json.loads(spec_file.read_text())
            if stored.get("run_id") != spec.run_id:
                raise ValueError(f"{spec_file} belongs to run {stored.get('run_id')!r}")
        else:
            atomic_write_text(spec_file, json.dumps(spec.to_dict(), indent=1, sort_keys=True))
        return path

    @contextmanager
    def lock(self, run_id: str, *, timeout: float | None = None) -> Iterator[Path]:
        """Hold the run's advisory lock (``fcntl.flock``; released when the holder dies).

        Blocks until the lock is free (``timeout`` seconds at most, then :class:`RunLocked`):
        a worker orphaned by a killed session finishes or dies before its run is taken over.
        """
        path = self.run_dir(run_id)
        path.mkdir(parents=True, exist_ok=True)
        fd = os.open(path / ".store.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            deadline = None if timeout is None else time.monotonic() + timeout
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except OSError as err:
                    if err.errno not in (errno.EAGAIN, errno.EACCES):
                        raise
                    if deadline is not None and time.monotonic() > deadline:
                        raise RunLocked(f"run {run_id} is locked by another process") from err
                    time.sleep(0.2)
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
            try:
                yield path
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    @contextmanager
    def lock_all(self, run_ids: Iterable[str], *, timeout: float | None = None
                 ) -> Iterator[list[Path]]:
        """Hold the locks of several runs (a population task), taken one by one in sorted
        run-id order so that two workers with overlapping sets of runs cannot deadlock;
        ``timeout`` applies to each lock.  Yields the run directories in sorted order."""
        with ExitStack() as stack:
            yield [stack.enter_context(self.lock(run_id, timeout=timeout))
                   for run_id in sorted(set(run_ids))]

    # -- whole-reproduction files ------------------------------------------------------------
    def write_json(self, name: str, data: Any) -> Path:
        path = self.root / name
        atomic_write_text(path, json.dumps(data, indent=1, sort_keys=False, allow_nan=True))
        return path

    def write_text(self, name: str, text: str) -> Path:
        path = self.root / name
        atomic_write_text(path, text)
        return path

    def read_json(self, name: str) -> Any | None:
        path = self.root / name
        if not path.is_file():
            return None
        return json.loads(path.read_text())
