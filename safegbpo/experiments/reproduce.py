"""``safegbpo reproduce``: run a profile's grid, compute the tables, check, and report.

:func:`reproduce` is the whole pipeline:

1. load the profile's grid (:mod:`.profiles`, :mod:`.grid`), resolve the safe sets
   (``--safe-sets DIR`` -> ``DIR/<task>.json``; otherwise the project's own certified sets) and
   describe them (source, SHA-256, state-set volume);
2. run every training run without a record (:mod:`.executors`; the results store makes the
   command resumable: finished runs are skipped, interrupted ones resume from their checkpoint),
   each under the independent :class:`SafetyMonitor`;
3. run the Table 6 timing runs one at a time in a single local worker (no concurrent run
   competes for the CPU; no monitor, whose cost would be timed);
4. compute the tables (:mod:`.tables`) and the profile's checks (:func:`evaluate_checks`) and
   write ``<results>/tables.json`` and ``tables.md``;
5. call the compliance report (``spec.report``) if it is importable.

Safety monitor (independent of the safeguard and of the runner): while a run trains, every
``SafeVectorEnv.step`` of the worker process is wrapped; after each step the *realised* next
state of every environment (``info['final_state']`` on truncation, else ``info['state']``) is
tested for membership in the env's safe state zonotope ``S_s = <c, G>`` (Eq 5): a state is
inside when a factor ``b`` with ``G b = s - c`` and ``||b||_inf <= 1 + 1e-7`` exists -- first the
minimum-norm factor ``pinv(G)(s - c)`` is tried as a certificate, otherwise the exact LP gauge
(batched, :func:`safegbpo.sets.containment.min_inf_norm_factors`) decides.  Training and
evaluation environments are both monitored.  Counters are flushed to
``runs/<id>/safety_monitor.json`` at every episode end and accumulate over resumed attempts
(steps replayed after a resume are checked again).
"""

from __future__ import annotations

import importlib
import json
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from safegbpo.experiments.executors import DEFAULT_TRAINER, PoolExecutor, make_executor
from safegbpo.experiments.grid import (
    Grid,
    RunSpec,
    expand,
    file_sha256,
    load_grid,
    resolve_safe_sets,
)
from safegbpo.experiments.io import atomic_write_text
from safegbpo.experiments.metrics import seed_mean_curve, stuck_reason
from safegbpo.experiments.profiles import get_profile
from safegbpo.experiments.store import ResultsStore
from safegbpo.experiments.tables import build_tables, render_markdown

__all__ = [
    "MONITOR",
    "SAFETY_TOLERANCE",
    "SafetyMonitor",
    "describe_safe_sets",
    "evaluate_checks",
    "checks_passed",
    "reproduce",
    "safety_monitor",
]

MONITOR = "safegbpo.experiments.reproduce:safety_monitor"
SAFETY_TOLERANCE = 1e-7
"""Slack on the gauge ``||b||_inf <= 1 + tol`` (solver tolerance of the safeguards' programs)."""

_MONITOR_FILE = "safety_monitor.json"
_MAX_EXAMPLES = 5


# --------------------------------------------------------------------------------------------
# the independent safe-state monitor
# --------------------------------------------------------------------------------------------
class SafetyMonitor:
    """Counts realised states outside the safe state zonotope (module docstring).

    Use :func:`safety_monitor` (a context manager that installs and removes the hook).
    """

    def __init__(self, spec: RunSpec, run_dir: Path | None = None,
                 tol: float = SAFETY_TOLERANCE) -> None:
        self.spec = spec
        self.path = None if run_dir is None else Path(run_dir) / _MONITOR_FILE
        self.tol = float(tol)
        self.env_steps = 0
        self.states = 0
        self.violations = 0
        self.lp_checks = 0
        self.max_gauge = 0.0
        self.examples: list[dict[str, Any]] = []
        self.attempts = 1
        self._sets: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        if self.path is not None and self.path.is_file():
            previous = json.loads(self.path.read_text())
            self.env_steps = int(previous.get("env_steps", 0))
            self.states = int(previous.get("states", 0))
            self.violations = int(previous.get("violations", 0))
            self.lp_checks = int(previous.get("lp_checks", 0))
            self.max_gauge = float(previous.get("max_gauge", 0.0))
            self.examples = list(previous.get("examples", []))
            self.attempts = int(previous.get("attempts", 1)) + 1

    def _set_of(self, env: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        key = id(env)
        if key not in self._sets:
            zonotope = env.safe_set.state
            c = zonotope.center.detach().cpu().numpy()[0].astype(np.float64)
            G = zonotope.generators.detach().cpu().numpy()[0].astype(np.float64)
            self._sets[key] = (c, G, np.linalg.pinv(G))
        return self._sets[key]

    def gauges(self, env: Any, states: np.ndarray) -> np.ndarray:
        """Gauge of each realised state ``(B, n) -> (B,)`` w.r.t. the env's ``S_s``: the
        pseudo-inverse factor's inf-norm when it certifies membership, else the LP's."""
        from safegbpo.sets.containment import min_inf_norm_factors

        c, G, pinv = self._set_of(env)
        v = states - c
        factors = v @ pinv.T
        exact = np.abs(factors @ G.T - v).max(axis=1) <= 1e-9 * (1.0 + np.abs(v).max(axis=1))
        out = np.abs(factors).max(axis=1)
        undecided = np.flatnonzero(~exact | (out > 1.0 + self.tol))
        if undecided.size:
            self.lp_checks += int(undecided.size)
            out[undecided] = np.abs(min_inf_norm_factors(G, v[undecided])).max(axis=1)
        return out

    def observe(self, env: Any, info: Mapping[str, Any]) -> None:
        """Check the realised states of one ``env.step`` (its ``info``)."""
        realised = info.get("final_state", info.get("state"))
        if realised is None:
            raise ValueError("env.step info has neither 'final_state' nor 'state'")
        states = realised.detach().cpu().numpy().astype(np.float64)
        states = states.reshape(states.shape[0], -1)
        gauges = self.gauges(env, states)
        self.env_steps += 1
        self.states += states.shape[0]
        finite = np.isfinite(gauges)
        if finite.any():
            self.max_gauge = max(self.max_gauge, float(gauges[finite].max()))
        bad = np.flatnonzero(~finite | (gauges > 1.0 + self.tol))
        self.violations += int(bad.size)
        for i in bad[: max(0, _MAX_EXAMPLES - len(self.examples))]:
            self.examples.append({"env_step": self.env_steps, "env": int(i),
                                  "state": states[i].tolist(), "gauge": float(gauges[i])})
        if "final_state" in info:
            self.flush()

    def report(self) -> dict[str, Any]:
        return {
            "monitored": True,
            "rule": f"realised state in S_s: gauge <= 1 + {self.tol:g} (pinv certificate or LP)",
            "safeguarded": self.spec.variant_fields.get("safeguard") is not None,
            "env_steps": self.env_steps,
            "states": self.states,
            "violations": self.violations,
            "max_gauge": self.max_gauge,
            "lp_checks": self.lp_checks,
            "examples": self.examples,
            "attempts": self.attempts,
        }

    def flush(self) -> None:
        if self.path is None:
            return
        atomic_write_text(self.path, json.dumps(self.report(), indent=1))


@contextmanager
def safety_monitor(spec: RunSpec, run_dir: Path | None = None) -> Iterator[SafetyMonitor]:
    """Monitor every ``SafeVectorEnv.step`` of this process while the block runs."""
    from safegbpo.envs.base import SafeVectorEnv

    monitor = SafetyMonitor(spec, run_dir)
    original = SafeVectorEnv.step

    def step(self: Any, actions: Any) -> Any:
        out = original(self, actions)
        monitor.observe(self, out[4])
        return out

    SafeVectorEnv.step = step  # type: ignore[method-assign]
    try:
        yield monitor
    finally:
        SafeVectorEnv.step = original  # type: ignore[method-assign]
        monitor.flush()


# --------------------------------------------------------------------------------------------
# safe sets
# --------------------------------------------------------------------------------------------
def describe_safe_sets(paths: Mapping[str, str | None]) -> dict[str, dict[str, Any]]:
    """Per task: ``source`` (the file or 'project'), ``path``, ``sha256``, state-set ``volume``."""
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
        except Exception as err:  # describing only: a broken set fails the runs loudly
            info.setdefault("source", "project" if path is None else "file")
            info["volume"] = None
            info["error"] = f"safe set not loadable here: {type(err).__name__}: {err}"
        out[task] = info
    return out


# --------------------------------------------------------------------------------------------
# profile checks
# --------------------------------------------------------------------------------------------
def _check_safety(specs: Sequence[RunSpec], records: Mapping[str, Mapping[str, Any]],
                  options: Mapping[str, Any]) -> dict[str, Any]:
    experiments = set(options.get("experiments") or [])
    runs = [s for s in specs if s.kind == "train" and s.variant_fields.get("safeguard")
            and (not experiments or experiments & set(s.experiments))]
    rows, problems = [], []
    for spec in runs:
        record = records.get(spec.run_id)
        safety = (record or {}).get("safety") or {}
        row = {"run_id": spec.run_id, "task": spec.task, "variant": spec.variant,
               "status": (record or {}).get("status", "missing"),
               "states": safety.get("states", 0), "violations": safety.get("violations"),
               "max_gauge": safety.get("max_gauge")}
        rows.append(row)
        if record is None:
            problems.append(f"{spec.run_id}: no record")
        elif record.get("status") != "finished":
            problems.append(f"{spec.run_id}: {stuck_reason(record)}")
        elif not safety.get("monitored") or not safety.get("states"):
            problems.append(f"{spec.run_id}: no monitored states")
        elif safety.get("violations"):
            problems.append(f"{spec.run_id}: {safety['violations']} realised states outside S_s")
    unsafe = [records[s.run_id].get("safety") or {} for s in specs
              if s.kind == "train" and not s.variant_fields.get("safeguard")
              and s.run_id in records]
    cells = sorted({(s.task, s.variant) for s in runs})
    return {
        "passed": bool(runs) and not problems,
        "summary": (f"{len(runs)} safeguarded runs ({len(cells)} task x variant cells), "
                    f"{sum(r['states'] or 0 for r in rows)} realised states checked, "
                    f"{sum(r['violations'] or 0 for r in rows)} outside the safe state set"
                    + (f"; unsafe runs for comparison: "
                       f"{sum(u.get('violations') or 0 for u in unsafe)} of "
                       f"{sum(u.get('states') or 0 for u in unsafe)} states outside"
                       if unsafe else "")),
        "problems": problems,
        "runs": rows,
    }


def _check_improvement(specs: Sequence[RunSpec], records: Mapping[str, Mapping[str, Any]],
                       options: Mapping[str, Any]) -> dict[str, Any]:
    gain = float(options.get("min_relative_gain", 0.5))
    experiments = set(options.get("experiments") or [])
    wanted = [tuple(c) for c in options.get("cells", [])]
    rows, problems = [], []
    for task, algo, variant in wanted:
        cell_specs = [s for s in specs if s.kind == "train" and s.cell == (task, algo, variant)
                      and (not experiments or experiments & set(s.experiments))]
        done = [records[s.run_id] for s in cell_specs if s.run_id in records]
        good = [r for r in done if stuck_reason(r) is None]
        name = f"{task}/{algo}/{variant}"
        if not cell_specs:
            problems.append(f"{name}: not in the grid")
            continue
        if len(good) != len(cell_specs):
            problems.append(f"{name}: {len(cell_specs) - len(good)} of {len(cell_specs)} runs "
                            "missing or stuck")
            continue
        mean = seed_mean_curve([[p["reward"] for p in r["curve"]] for r in good])
        first, final = float(mean[0]), float(mean[-1])
        target = first + gain * abs(first)
        ok = final >= target
        rows.append({"cell": name, "seeds": len(good), "first": first, "final": final,
                     "required": target, "passed": ok,
                     "steps": [p["step"] for p in good[0]["curve"]],
                     "mean_curve": mean.tolist()})
        if not ok:
            problems.append(f"{name}: seed-mean reward {first:.4g} -> {final:.4g}, needs "
                            f">= {target:.4g}")
    return {
        "passed": bool(wanted) and not problems,
        "summary": (f"seed-mean final reward >= first + {gain:g}|first| for "
                    + ", ".join("/".join(c) for c in wanted)
                    + "".join(f"; {r['cell']}: {r['first']:.4g} -> {r['final']:.4g}"
                              for r in rows)),
        "problems": problems,
        "cells": rows,
    }


def _check_completed(specs: Sequence[RunSpec], records: Mapping[str, Mapping[str, Any]],
                     options: Mapping[str, Any]) -> dict[str, Any]:
    experiments = set(options.get("experiments") or [])
    runs = [s for s in specs if not experiments or experiments & set(s.experiments)]
    problems = []
    for spec in runs:
        record = records.get(spec.run_id)
        reason = "no record" if record is None else stuck_reason(record)
        if reason is not None:
            problems.append(f"{spec.run_id}: {reason}")
    cells = sorted({(s.task, s.algo, s.variant) for s in runs})
    return {"passed": bool(runs) and not problems,
            "summary": f"{len(runs) - len(problems)} of {len(runs)} runs finished with a finite "
                       f"learning curve ({len(cells)} task x algorithm x variant cells)",
            "problems": problems}


def _check_wallclock(tables: Mapping[str, Any]) -> dict[str, Any]:
    rows = (tables.get("tables", {}).get("table6") or {}).get("rows", [])
    measured = [r for r in rows if (r.get("ours") or {}).get("wallclock_ratio") is not None]
    expected = [r for r in rows if r.get("ours") is not None]
    problems = [f"{r['algo']}/{r['variant']}: no ratio" for r in expected
                if r not in measured]
    return {"passed": bool(expected) and not problems,
            "summary": ", ".join(f"{r['algo'].upper()} {r['variant']} "
                                 f"{r['ours']['wallclock_ratio']:.2f}" for r in measured)
                       or "no timing runs",
            "problems": problems}


CHECKS: dict[str, Callable[..., dict[str, Any]]] = {
    "safety": _check_safety,
    "improvement": _check_improvement,
    "completed": _check_completed,
}


def evaluate_checks(grid: Grid, specs: Sequence[RunSpec],
                    records: Mapping[str, Mapping[str, Any]],
                    tables: Mapping[str, Any]) -> dict[str, Any]:
    """The grid's declared checks (``checks`` of the grid file) on the records and tables."""
    out: dict[str, Any] = {}
    for name, options in (grid.checks or {}).items():
        if name == "wallclock":
            out[name] = _check_wallclock(tables)
        elif name in CHECKS:
            out[name] = CHECKS[name](specs, records, options or {})
        else:
            raise ValueError(f"{grid.source}: unknown check {name!r}; expected one of "
                             f"{sorted([*CHECKS, 'wallclock'])}")
    return out


# --------------------------------------------------------------------------------------------
# the pipeline
# --------------------------------------------------------------------------------------------
def _default_results(profile: str) -> Path:
    return Path("results") / profile


def _call_report(results: Path, echo: Callable[[str], None]) -> Any:
    """``spec.report.write_report(results=...)`` (the compliance report) if it is importable."""
    try:
        report = importlib.import_module("spec.report")
    except ModuleNotFoundError as err:
        if err.name in ("spec", "spec.report"):
            echo("compliance report not available yet (spec.report is not importable)")
            return None
        raise
    write_report = getattr(report, "write_report", None)
    if not callable(write_report):
        echo("compliance report not available yet (spec.report has no write_report)")
        return None
    written = write_report(results=results, progress=echo)
    echo(f"compliance report: {written['markdown']} and {written['json']}")
    for failure in written.get("failed_required", []):
        echo(f"    required check failing: {failure}")
    return written


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
    device: str = "cpu",
    retry_failed: bool = False,
    monitor: bool | None = None,
    report: bool = True,
    archive_dir: str | Path | None = "default",
    echo: Callable[[str], None] | None = None,
    profiles: str | Path | None = "auto",
) -> dict[str, Any]:
    """Run ``profile`` (or the grid file ``grid``) and write ``<results>/tables.json|.md``.

    Returns the tables (``tables.json`` content, including ``checks``).  See the module
    docstring for the steps; arguments mirror ``safegbpo reproduce``'s options
    (``trainer``: ``'module:function'`` with the runner's signature, for tests and custom
    runners; ``monitor``: override the profile's safety monitoring; ``profiles``: the energy
    task's hourly profiles, ``'auto'`` = the reference's CSV from ``../shared`` when present, else
    the project's generated year (``None`` / ``'generated'``), or a CSV path).
    """
    echo = echo or (lambda text: print(text, flush=True))
    if jobs is None and executor == "pool":
        jobs = os.cpu_count() or 1
    prof = get_profile(profile)
    grid_obj = load_grid(grid) if grid is not None else prof.load_grid()
    tasks = [t for e in grid_obj.experiments for t in e["tasks"]]
    if grid_obj.wallclock:
        tasks.append(grid_obj.wallclock["task"])
    set_paths = resolve_safe_sets(safe_sets, tasks)
    profile_path = _resolve_profiles(profiles) if "energy" in tasks else None
    specs = expand(grid_obj, safe_sets=set_paths, profiles=profile_path)
    store = ResultsStore(results if results is not None else _default_results(prof.name))
    training = [s for s in specs if s.kind == "train"]
    timing = [s for s in specs if s.kind == "wallclock"]
    use_monitor = prof.monitor_safety if monitor is None else monitor
    safe_set_info = describe_safe_sets(set_paths)
    meta = {
        "profile": prof.name,
        "grid": {"name": grid_obj.name, "source": grid_obj.source,
                 "description": grid_obj.description, "runs": len(specs)},
        "safe_sets": safe_set_info,
        **({"energy_profiles": _describe_profiles(profile_path)} if "energy" in tasks else {}),
        "executor": {"kind": executor, "jobs": jobs, "address": address},
        "results": str(store.root),
    }
    store.write_json("manifest.json", {**meta, "run_ids": [s.run_id for s in specs]})
    if "energy" in tasks:
        echo(f"energy profiles: {meta['energy_profiles']['source']}")
    for task, info in safe_set_info.items():
        volume = info.get("volume")
        echo(f"safe set {task}: {info.get('source')} {info.get('path') or ''} "
             f"volume {volume if volume is None else f'{volume:.6g}'}")

    pending = store.pending(training, retry_failed=retry_failed)
    echo(f"{prof.name}: {len(training)} training runs ({len(training) - len(pending)} done), "
         f"{len(timing)} timing runs -> {store.root}")
    done_count = [len(training) - len(pending)]

    def on_result(summary: Mapping[str, Any]) -> None:
        done_count[0] += 1
        safety = summary.get("safety") or {}
        extra = (f", {safety.get('violations')} of {safety.get('states')} realised states "
                 "outside S_s" if safety else "")
        seconds = summary.get("seconds")
        took = f" in {seconds:.1f} s" if seconds is not None else ""
        error = f" ({summary['error']})" if summary.get("error") else ""
        echo(f"[{done_count[0]}/{len(training)}] {summary['run_id']} {summary['status']}"
             f"{took}{extra}{error}")

    if pending:
        runner = make_executor(executor, jobs=jobs, address=address, trainer=trainer,
                               device=device, monitor=MONITOR if use_monitor else None)
        runner.run(pending, store, on_result=on_result)
    pending_timing = store.pending(timing, retry_failed=retry_failed)
    if pending_timing:
        echo(f"timing {len(pending_timing)} runs of {timing[0].interactions} "
             f"{timing[0].task} interactions, one at a time")
        PoolExecutor(1, trainer=trainer, device=device).run(
            pending_timing, store,
            on_result=lambda s: echo(f"timing {s['run_id']} {s['status']}"
                                     + (f" in {s['seconds']:.1f} s" if s.get("seconds") else "")))

    records = store.records(s.run_id for s in specs)
    tables = build_tables(specs, records, archive_dir=archive_dir, meta=meta)
    tables["checks"] = evaluate_checks(grid_obj, specs, records, tables)
    store.write_json("tables.json", tables)
    store.write_text("tables.md", render_markdown(tables))
    echo(f"tables: {store.root / 'tables.json'} and tables.md")
    for name, result in tables["checks"].items():
        echo(f"check {name}: {'PASS' if result['passed'] else 'FAIL'} - {result['summary']}")
        for problem in result.get("problems", [])[:10]:
            echo(f"    {problem}")
    if report:
        _call_report(store.root, echo)
    return tables


def _resolve_profiles(profiles: str | Path | None) -> str | None:
    """The energy profile CSV of a reproduction (see :func:`reproduce`), ``None`` = generated."""
    from safegbpo.tasks.energy_profiles import reference_profiles_path

    if profiles is None or profiles == "generated":
        return None
    if profiles == "auto":
        path = reference_profiles_path()
        return None if path is None else str(path)
    path = Path(profiles).expanduser().resolve()
    if not path.is_file():
        raise FileNotFoundError(f"energy profiles: no such file {path}")
    return str(path)


def _describe_profiles(path: str | None) -> dict[str, Any]:
    """Which energy profiles a reproduction used (recorded in the manifest, echoed)."""
    from safegbpo.tasks.energy_profiles import reference_profiles_path, resolve_profiles

    profiles = resolve_profiles(path)
    reference = reference_profiles_path()
    if path is None:
        source = f"{profiles.source}: the project's generated year (no reference CSV found)"
    elif reference is not None and Path(path) == reference:
        source = f"reference {path}"
    else:
        source = f"file {path}"
    return {"source": source, "path": path, "summary": profiles.describe()}


def checks_passed(tables: Mapping[str, Any]) -> bool:
    """All profile checks of a :func:`reproduce` result passed."""
    return all(c.get("passed") for c in (tables.get("checks") or {}).values())
