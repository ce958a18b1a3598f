"""Run a reproduction: a profile's grid -> runs -> records -> measured cells.

:func:`reproduce` is the library half of ``safegbpo reproduce``:

1. load the profile's grid (:mod:`.profiles`, :mod:`.grid`), resolve the safe sets
   (``--safe-sets DIR`` -> ``DIR/<task>.json``; otherwise the project's own certified sets) and
   describe them (source, SHA-256, state-set volume); resolve each task's env options (its
   registry entry's ``reproduce_env_options`` -- e.g. the energy task's ``profiles='auto'``: the
   reference implementation's profiles when ``../shared`` is present, else the generated year --
   under ``--env-option TASK.KEY=VALUE``), check them, record them in the manifest and say
   which data is used;
2. run every training run without a record (:mod:`.executors`; the results store makes the
   command resumable: finished runs are skipped, interrupted ones resume from their checkpoint),
   each under the independent safe-state monitor (:mod:`.monitor`).  The seeds of one
   configuration train together as a population in one process
   (:func:`~safegbpo.experiments.grid.group_populations`, at most ``population_size`` seeds per
   population); ``jobs`` populations run in parallel;
3. run the Table 6 timing runs one at a time in a single local worker (no concurrent run
   competes for the CPU; no monitor, whose cost would be timed; one seed each: no population);
4. measure the cells (:mod:`.cells`), run the profile's checks (:mod:`.checks`) and write
   ``<results>/cells.json`` and ``cells.md``.

The comparison with the paper and the compliance report are the spec's (``safegbpo report``,
which ``safegbpo reproduce`` runs next): this package never imports ``spec``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from safegbpo.experiments.cells import measure_cells, render_markdown
from safegbpo.experiments.checks import checks_passed, evaluate_checks
from safegbpo.experiments.executors import DEFAULT_TRAINER, PoolExecutor, make_executor
from safegbpo.experiments.grid import expand, file_sha256, group_populations, load_grid
from safegbpo.experiments.monitor import MONITOR
from safegbpo.experiments.profiles import get_profile
from safegbpo.experiments.store import ResultsStore
from safegbpo.safesets import resolve_safe_sets
from safegbpo.tasks import get_task

__all__ = ["CELLS_FILE", "checks_passed", "default_results_dir", "describe_safe_sets",
           "reproduce", "resolve_env_options"]

CELLS_FILE = "cells.json"


def describe_safe_sets(paths: Mapping[str, str | None]) -> dict[str, dict[str, Any]]:
    """Per task: ``source`` (the file or 'project'), ``path``, ``sha256``, state-set ``volume``,
    ``certification`` (the set's label, e.g. "verified by sampling, not certified")."""
    out: dict[str, dict[str, Any]] = {}
    for task, path in paths.items():
        info: dict[str, Any] = {"path": path, "sha256": file_sha256(path) if path else None}
        try:
            if path is None:
                from safegbpo.safesets import get_safe_set

                safe_set = get_safe_set(task)
                info["source"] = f"project ({safe_set.source})" if safe_set.source else "project"
            else:
                from safegbpo.safesets import SafeSet

                safe_set = SafeSet.load(path)
                if safe_set.task != task:
                    raise ValueError(f"{path} is a safe set of task {safe_set.task!r}, "
                                     f"not {task!r}")
                info["source"] = f"file ({safe_set.source})" if safe_set.source else "file"
            info["volume"] = float(safe_set.volume())
            info["generators"] = int(safe_set.num_generators)
            info["certification"] = safe_set.certification  # e.g. "verified by sampling, ..."
        except Exception as err:  # describing only: a broken set fails the runs loudly
            info.setdefault("source", "project" if path is None else "file")
            info["volume"] = None
            info["error"] = f"safe set not loadable here: {type(err).__name__}: {err}"
        out[task] = info
    return out


def resolve_env_options(tasks: Iterable[str],
                        overrides: Mapping[str, Mapping[str, Any]] | None = None
                        ) -> dict[str, dict[str, Any]]:
    """Per task of ``tasks``: its env options for a reproduction -- the registry entry's
    ``reproduce_env_options`` under ``overrides[task]`` -- in canonical form
    (:meth:`safegbpo.envs.SafeVectorEnv.resolve_options`) and checked before any run starts
    (:meth:`~safegbpo.envs.SafeVectorEnv.check_options`).  Tasks without env options map to
    ``{}``.

    Raises:
        ValueError: ``overrides`` names a task that the grid does not train, or an invalid
            option (the message names it).
    """
    from safegbpo.envs import env_class

    tasks = list(tasks)
    overrides = dict(overrides or {})
    stray = sorted(set(overrides) - set(tasks))
    if stray:
        raise ValueError(f"env options for task(s) {stray} that the grid does not train "
                         f"(its tasks: {tasks})")
    out: dict[str, dict[str, Any]] = {}
    for task in tasks:
        cls = env_class(task)
        wanted = {**get_task(task).reproduce_env_options, **dict(overrides.get(task, {}))}
        options = cls.resolve_options(wanted)
        cls.check_options(options)
        out[task] = options
    return out


def describe_env_options(options: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per task with env options: ``{"options": the canonical overrides, name: {"source",
    ...}}`` (:meth:`safegbpo.envs.SafeVectorEnv.describe_options`), for the manifest."""
    from safegbpo.envs import env_class

    out: dict[str, dict[str, Any]] = {}
    for task, opts in options.items():
        if not get_task(task).env_options:
            continue
        out[task] = {"options": dict(opts), **env_class(task).describe_options(opts)}
    return out


def default_results_dir(profile: str) -> Path:
    """``results/<profile>`` (relative to the working directory)."""
    return Path("results") / profile


def reproduce(
    profile: str = "quick",
    *,
    jobs: int | None = None,
    executor: str = "pool",
    address: str | None = None,
    results: str | Path | None = None,
    safe_sets: str | Path | None = None,
    grid: str | Path | None = None,
    trainer: str = DEFAULT_TRAINER,
    population_trainer: str | None = None,
    population_size: int | None = None,
    device: str = "cpu",
    retry_failed: bool = False,
    monitor: bool | None = None,
    echo: Callable[[str], None] | None = None,
    env_options: Mapping[str, Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    """Run ``profile`` (or the grid file ``grid``) and write ``<results>/cells.json|.md``.

    Returns the measured cells (``cells.json`` content, including the profile's ``checks``).
    See the module docstring for the steps; arguments mirror ``safegbpo reproduce``'s options
    (``trainer``: ``'module:function'`` with the runner's signature, for tests and custom
    runners, and ``population_trainer`` its population form
    (:func:`~safegbpo.experiments.executors.population_trainer_for`); ``population_size``: at
    most this many seeds per population, default all seeds of a configuration; ``monitor``:
    override the profile's safety monitoring; ``env_options``: per task, env options over the
    registry's ``reproduce_env_options``, e.g. ``{"energy": {"profiles": "generated"}}``).
    """
    echo = echo or (lambda text: print(text, flush=True))
    if jobs is None and executor == "pool":
        jobs = os.cpu_count() or 1
    prof = get_profile(profile)
    grid_obj = load_grid(grid) if grid is not None else prof.load_grid()
    set_paths = resolve_safe_sets(safe_sets, grid_obj.tasks)
    task_options = resolve_env_options(grid_obj.tasks, env_options)
    specs = expand(grid_obj, safe_sets=set_paths, env_options=task_options)
    store = ResultsStore(results if results is not None else default_results_dir(prof.name))
    training = [s for s in specs if s.kind == "train"]
    timing = [s for s in specs if s.kind == "wallclock"]
    use_monitor = prof.monitor_safety if monitor is None else monitor
    safe_set_info = describe_safe_sets(set_paths)
    env_info = describe_env_options(task_options)
    meta = {
        "profile": prof.name,
        "grid": {"name": grid_obj.name, "source": grid_obj.source,
                 "description": grid_obj.description, "runs": len(specs)},
        "safe_sets": safe_set_info,
        "env_options": env_info,
        "executor": {"kind": executor, "jobs": jobs, "address": address,
                     "population_size": population_size},
        "results": str(store.root),
    }
    store.write_json("manifest.json", {**meta, "run_ids": [s.run_id for s in specs]})
    for task, info in safe_set_info.items():
        volume = info.get("volume")
        echo(f"safe set {task}: {info.get('source')} {info.get('path') or ''} "
             f"volume {volume if volume is None else f'{volume:.6g}'}"
             + (f" [{info['certification']}]" if info.get("certification") else ""))
    for task, described in env_info.items():
        for name, info in described.items():
            if isinstance(info, Mapping) and "source" in info:
                echo(f"{task} {name}: {info['source']}")

    pending = store.pending(training, retry_failed=retry_failed)
    echo(f"{prof.name}: {len(training)} training runs ({len(training) - len(pending)} done, "
         f"{len(pending)} to run in {len(group_populations(pending, population_size))} "
         f"populations), {len(timing)} timing runs -> {store.root}")
    done_count = [len(training) - len(pending)]

    def on_result(summary: Mapping[str, Any]) -> None:
        done_count[0] += 1
        safety = summary.get("safety") or {}
        extra = (f", {safety.get('violations')} of {safety.get('states')} realised states "
                 "outside S_s" if safety else "")
        seconds = summary.get("seconds")
        took = f" in {seconds:.1f} s" if seconds is not None else ""
        error = f" ({summary['error']})" if summary.get("error") else ""
        members = summary.get("population") or 1
        together = f" (population of {members})" if members > 1 else ""
        echo(f"[{done_count[0]}/{len(training)}] {summary['run_id']} {summary['status']}"
             f"{took}{together}{extra}{error}")

    if pending:
        runner = make_executor(executor, jobs=jobs, address=address, trainer=trainer,
                               population_trainer=population_trainer,
                               population_size=population_size, device=device,
                               monitor=MONITOR if use_monitor else None)
        runner.run(pending, store, on_result=on_result)
    pending_timing = store.pending(timing, retry_failed=retry_failed)
    if pending_timing:
        echo(f"timing {len(pending_timing)} runs of {timing[0].interactions} "
             f"{timing[0].task} interactions, one at a time")
        PoolExecutor(1, trainer=trainer, device=device, population_size=1).run(
            pending_timing, store,
            on_result=lambda s: echo(f"timing {s['run_id']} {s['status']}"
                                     + (f" in {s['seconds']:.1f} s" if s.get("seconds") else "")))

    records = store.records(s.run_id for s in specs)
    cells = measure_cells(specs, records, meta=meta)
    cells["checks"] = evaluate_checks(grid_obj, specs, records, cells)
    store.write_json(CELLS_FILE, cells)
    store.write_text("cells.md", render_markdown(cells))
    echo(f"cells: {store.root / CELLS_FILE} and cells.md")
    for name, result in cells["checks"].items():
        echo(f"check {name}: {'PASS' if result['passed'] else 'FAIL'} - {result['summary']}")
        for problem in result.get("problems", [])[:10]:
            echo(f"    {problem}")
    return cells
