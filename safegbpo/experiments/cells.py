"""The measured cells of a reproduction: metrics of our runs, grouped as the grid asks.

:func:`measure_cells` turns the grid's run specs and their records (the results store) into the
cells of ``<results>/cells.json`` (format ``safegbpo-cells/1``); :func:`render_markdown` renders
``cells.md``.  A *training cell* is one (task, algorithm, variant) of a table the grid tags runs
for (``table2`` ... ``table5``, ``h2``): the seeds' records aggregated by the metric definitions
of :mod:`.metrics`; a *timing cell* is a Table 6 wall-clock ratio (a safeguarded run's training
seconds over the same algorithm's unsafe run, equal interactions), one per safeguard backend
the grid times.  Every cell names the ``backend`` of its safeguarded runs (``null`` without
one).  Nothing here knows the paper: the paper's values, the deltas, the comparison rules and
H1/H2 are the spec's (``spec.paper``), which reads this file.

``cells.json``::

    {"format", "profile", "grid", "safe_sets": {task: {source, path, sha256, volume}},
     "executor", "results", "definitions": {steps, reward, stuck, stalled, wallclock_ratio},
     "cells": [{"task", "algo", "variant", "backend", "kind": "train", "tables", "interactions",
                "eval_every", "seeds", "run_ids", "missing_runs", "runs", "steps", "reward",
                "ci", "stuck", "converged", "stalled", "per_seed_steps", "per_seed_final",
                "eval_steps", "mean_curve", "stuck_reasons", "unsafe_states",
                "monitored_states", "monitored_runs", "training_seconds",
                "pcrpo": {mode_counts, cos_mean, conflict_fraction, cost_limit, slack_*}
                (PCRPO cells only)} |
               {"task", "algo", "variant", "backend", "kind": "wallclock", "tables", "interactions",
                "run_ids", "wallclock_ratio", "seconds", "baseline_seconds"}],
     "wallclock": {"task", "interactions"} | null, "checks": {...}}

Non-finite numbers are written as ``null``; Steps are environment interactions.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from safegbpo.algorithms import algorithm_names
from safegbpo.experiments.grid import RunSpec
from safegbpo.experiments.metrics import (
    CI_LEVEL,
    CONVERGENCE_TOLERANCE,
    cell_metrics_from_records,
)
from safegbpo.safeguards import BACKENDS
from safegbpo.safeguards.variants import UNSAFE, variant_labels
from safegbpo.tasks import task_names

__all__ = ["CELLS_FORMAT", "DEFINITIONS", "backend_sort_key", "cell_sort_key", "env_options_lines",
           "format_reward", "format_value", "json_safe", "measure_cells", "render_markdown",
           "safe_sets_lines", "safeguard_counts", "wallclock_seconds"]

CELLS_FORMAT = "safegbpo-cells/1"

_NOT_TRAINING = ("eval", "checkpoint", "setup", "total")

DEFINITIONS = {
    "steps": f"first evaluation step at which the seed-mean curve has reached its final value "
             f"within {CONVERGENCE_TOLERANCE:.0%} (curve >= final - "
             f"{CONVERGENCE_TOLERANCE:g}|final|), stuck runs excluded",
    "reward": f"final value of the seed-mean evaluation curve, {CI_LEVEL:.0%} percentile "
              f"bootstrap CI of the mean over seeds (seeded per cell), stuck runs excluded",
    "stuck": "runs that did not complete their budget with a finite learning curve (training "
             "raised, or an evaluation reward is NaN/inf)",
    "stalled": "diagnostic only: runs whose curve never left the 5% band of its first "
               "evaluation (kept in the other columns, as the paper's archive does)",
    "fallbacks": "safeguard steps (summed over the cell's runs, training and evaluation) that "
                 "did not return the safeguard's own map: a certified backup or a recovery "
                 "action (solver failure, inaccurate solve, uncertified output)",
    "uncertified": "safeguard steps (summed over the runs) at which no certified safe action "
                   "existed: the best-effort recovery action was applied and flagged "
                   "(safegbpo.safeguards.recovery); any uncertified step fails the safety check",
    "unsafe_states": "realised states outside the safe state set S_s during a cell's runs "
                     "(training and evaluation episodes), counted by the independent safety "
                     "monitor and summed over the seeds",
    "training_seconds": "mean over the finished seeds of the training wall clock (rollout, "
                        "safeguard and update phases; evaluation, checkpoints and setup "
                        "excluded) per seed: a seed trained in a population of P seeds is "
                        "charged 1/P of the population's wall clock",
    "wallclock_ratio": "training wall clock (evaluation excluded) of a safeguarded run divided by "
                       "that of the same algorithm without safeguard, same interactions",
}


def json_safe(value: Any) -> Any:
    """JSON-safe: non-finite floats -> ``None`` (recursively)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value


def _order(names: Sequence[str], name: str) -> int:
    return names.index(name) if name in names else len(names)


def cell_sort_key(task: str, algo: str, variant: str) -> tuple[int, int, int]:
    """Registry order: task, then variant (SPEC §5 row order), then algorithm."""
    return (_order(task_names(), task), _order(variant_labels(), variant),
            _order(algorithm_names(), algo))


def backend_sort_key(backend: str | None) -> int:
    """Order of the safeguard backends (:data:`safegbpo.safeguards.BACKENDS`; none first)."""
    return -1 if backend is None else _order(BACKENDS, backend)


def wallclock_seconds(record: Mapping[str, Any]) -> float | None:
    """Training wall clock of a run: the runner's per-phase seconds (``wallclock``) without the
    phases that are not training -- ``evaluation``, ``checkpoint`` (file writes), ``setup`` and
    the ``total`` -- i.e. rollout + safeguard + update.  Falls back to the attempt's duration
    when the runner reports no phases and the run was not resumed."""
    phases = record.get("wallclock")
    if isinstance(phases, Mapping) and phases:
        total = sum(
            float(v) for k, v in phases.items()
            if isinstance(v, int | float) and not k.startswith(_NOT_TRAINING)
        )
        return total if total > 0 else None
    attempt = record.get("attempt") or {}
    if attempt.get("resumed"):
        return None
    seconds = attempt.get("seconds")
    return float(seconds) if seconds is not None else None


def _training_cell(specs: Sequence[RunSpec], records: Mapping[str, Mapping[str, Any]]
                   ) -> dict[str, Any]:
    first = specs[0]
    done = [records[s.run_id] for s in specs if s.run_id in records]
    cell: dict[str, Any] = {
        "task": first.task, "algo": first.algo, "variant": first.variant,
        "backend": first.backend, "kind": "train", "tables": [],
        "interactions": first.interactions,
        "eval_every": first.eval_every,
        "seeds": [s.seed for s in specs],
        "run_ids": [s.run_id for s in specs],
        "missing_runs": [s.run_id for s in specs if s.run_id not in records],
    }
    if not done:
        return {**cell, "runs": 0}
    metrics = cell_metrics_from_records(done, key="/".join(first.cell))
    return {**cell, **metrics.to_dict(), **safeguard_counts(done),
            **_safety_and_time(done)}


def safeguard_counts(records: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """``fallbacks`` / ``uncertified`` of a cell: sums over the records and the per-run values
    (``None`` where a record does not report the counter, e.g. one written before it existed;
    the sum is then ``None`` too: "not reported", never a silent 0)."""
    out: dict[str, Any] = {}
    for key in ("fallbacks", "uncertified"):
        values: list[Any] = [r.get(key) for r in records]
        out[f"{key}_per_run"] = values
        out[key] = (None if any(v is None for v in values)
                    else sum(int(v) for v in values))
    return out


def _population_size(record: Mapping[str, Any]) -> int:
    """Seeds trained together with the run's seed (its ``population``; 1 for older records)."""
    population = record.get("population")
    members = population.get("members") if isinstance(population, Mapping) else None
    return int(members) if isinstance(members, int) and members >= 1 else 1


def _safety_and_time(done: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Unsafe states counted by the independent monitor (summed over the seeds; ``None`` when
    no run was monitored), the mean training wall clock of the finished runs, and -- for a
    soft-constraint baseline -- PCRPO's mode counts (summed) and ``cos(g_r, g_c)``."""
    monitored = [r["safety"] for r in done
                 if isinstance(r.get("safety"), Mapping) and r["safety"].get("monitored")]
    seconds = [t / _population_size(r) for r, t in
               ((r, wallclock_seconds(r)) for r in done if r.get("status") == "finished")
               if t is not None]
    out: dict[str, Any] = {
        "unsafe_states": sum(int(m.get("violations") or 0) for m in monitored)
        if monitored else None,
        "monitored_states": sum(int(m.get("states") or 0) for m in monitored),
        "monitored_runs": len(monitored),
        "training_seconds": sum(seconds) / len(seconds) if seconds else None,
    }
    pcrpo: list[Mapping[str, Any]] = [
        p for p in ((r.get("algorithm_summary") or {}).get("pcrpo") for r in done)
        if isinstance(p, Mapping)]
    if pcrpo:
        modes: dict[str, int] = {}
        for p in pcrpo:
            for mode, count in (p.get("mode_counts") or {}).items():
                modes[mode] = modes.get(mode, 0) + int(count)
        cos = [p["cos"]["mean"] for p in pcrpo if (p.get("cos") or {}).get("mean") is not None]
        conflicts = [p["cos"]["conflict_fraction"] for p in pcrpo
                     if (p.get("cos") or {}).get("conflict_fraction") is not None]
        first = pcrpo[0]
        out["pcrpo"] = {
            "mode_counts": modes,
            "cos_mean": sum(cos) / len(cos) if cos else None,
            "conflict_fraction": sum(conflicts) / len(conflicts) if conflicts else None,
            "cost_limit": first.get("cost_limit"), "slack_upper": first.get("slack_upper"),
            "slack_lower": first.get("slack_lower"),
        }
    return out


def _timing_cells(specs: Sequence[RunSpec], records: Mapping[str, Mapping[str, Any]]
                  ) -> list[dict[str, Any]]:
    """Table 6 cells: per algorithm and backend, seconds of each variant / seconds unsafe (the
    unsafe run has no backend: it is the baseline of every backend)."""
    timing = [s for s in specs if s.kind == "wallclock"]
    seconds: dict[tuple[str, str, str, str | None], float | None] = {}
    done: dict[tuple[str, str, str, str | None], int] = {}
    for spec in timing:
        record = records.get(spec.run_id)
        if record is not None and record.get("status") == "finished":
            seconds[(*spec.cell, spec.backend)] = wallclock_seconds(record)
            # the runner stops at the first iteration boundary at or beyond the budget (a PPO
            # iteration of the paper's presets is 13600 pendulum interactions)
            done[(*spec.cell, spec.backend)] = int(record.get("interactions")
                                                   or spec.interactions)
    out = []
    for spec in timing:
        if spec.variant == UNSAFE.label:
            continue
        key = (*spec.cell, spec.backend)
        mine = seconds.get(key)
        base = seconds.get((spec.task, spec.algo, UNSAFE.label, None))
        baseline = [s.run_id for s in timing if s.cell == (spec.task, spec.algo, UNSAFE.label)]
        out.append({
            "task": spec.task, "algo": spec.algo, "variant": spec.variant,
            "backend": spec.backend, "kind": "wallclock",
            "tables": list(spec.tables),
            "interactions": done.get(key, spec.interactions),
            "run_ids": [spec.run_id, *baseline],
            "wallclock_ratio": mine / base if mine and base else None,
            "seconds": mine,
            "baseline_seconds": base,
        })
    return out


def measure_cells(specs: Sequence[RunSpec], records: Mapping[str, Mapping[str, Any]], *,
                  meta: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The ``cells.json`` content (module docstring) for the grid ``specs`` and their
    ``records`` (``run_id -> record``; runs without a record are listed as missing).

    A training cell is computed once per set of runs: identical runs requested for two tables
    (e.g. SHAC + BP in Tables 3 and 4) give one cell tagged with both.
    """
    by_table: dict[str, dict[tuple[str, str, str], list[RunSpec]]] = {}
    for spec in specs:
        if spec.kind != "train":
            continue
        for table in spec.tables:
            by_table.setdefault(table, {}).setdefault(spec.cell, []).append(spec)
    computed: dict[tuple[str, ...], dict[str, Any]] = {}
    for table, cells_of_table in by_table.items():
        for cell_specs in cells_of_table.values():
            cell_specs = sorted(cell_specs, key=lambda s: s.seed)
            ids = tuple(s.run_id for s in cell_specs)
            if ids not in computed:
                computed[ids] = _training_cell(cell_specs, records)
            computed[ids]["tables"].append(table)
    training = sorted(computed.values(), key=lambda c: (
        *cell_sort_key(c["task"], c["algo"], c["variant"]), c.get("interactions") or 0,
        backend_sort_key(c["backend"])))
    timing_specs = [s for s in specs if s.kind == "wallclock"]
    timing = sorted(_timing_cells(specs, records),
                    key=lambda c: (*cell_sort_key(c["task"], c["algo"], c["variant"]),
                                   backend_sort_key(c["backend"])))
    return json_safe({
        "format": CELLS_FORMAT,
        **dict(meta or {}),
        "definitions": DEFINITIONS,
        "cells": [*training, *timing],
        "wallclock": ({"task": timing_specs[0].task,
                       "interactions": timing_specs[0].interactions}
                      if timing_specs else None),
    })


# --------------------------------------------------------------------------------------------
# markdown
# --------------------------------------------------------------------------------------------
def format_value(value: Any, kind: str = "") -> str:
    """A number as the tables print it (``kind``: ``'steps'`` or ``'ratio'``); ``–`` for
    ``None``."""
    if value is None:
        return "–"
    if kind == "steps" or isinstance(value, bool | int):
        return str(value)
    if isinstance(value, float):
        if kind == "ratio":
            return f"{value:.3f}"
        magnitude = abs(value)
        if magnitude >= 1000:
            return f"{value:.0f}"
        if magnitude >= 100:
            return f"{value:.1f}"
        if magnitude >= 10:
            return f"{value:.2f}"
        return f"{value:.3f}"
    return str(value)


def format_reward(cell: Mapping[str, Any] | None) -> str:
    """``reward [ci_low, ci_high]`` of a cell (``–`` without reward)."""
    if not cell or cell.get("reward") is None:
        return "–"
    ci = cell.get("ci")
    text = _fmt(cell["reward"])
    if ci and ci[0] is not None and ci[1] is not None and (ci[0] != ci[1]):
        text += f" [{_fmt(ci[0])}, {_fmt(ci[1])}]"
    return text


_fmt, _reward = format_value, format_reward


def safe_sets_lines(sets: Mapping[str, Any]) -> list[str]:
    """Markdown lines describing the safe sets a reproduction used (``meta['safe_sets']``)."""
    if not sets:
        return []
    lines = ["Safe sets used:", ""]
    for task, info in sets.items():
        volume = info.get("volume")
        certification = info.get("certification")
        lines.append(f"- {task}: {info.get('source')} ({info.get('path') or 'project cache'}), "
                     f"state-set volume {_fmt(volume) if volume is not None else 'n/a'}"
                     + (f", **{certification}**" if certification else ""))
    return [*lines, ""]


def env_options_lines(options: Mapping[str, Any]) -> list[str]:
    """Markdown lines naming the data the tasks' env options chose (``meta['env_options']``,
    e.g. the energy task's profiles)."""
    described = [(task, name, info) for task, entry in (options or {}).items()
                 for name, info in entry.items() if isinstance(info, Mapping) and "source" in info]
    if not described:
        return []
    lines = ["Task data used:", ""]
    lines += [f"- {task} {name}: {info['source']}" for task, name, info in described]
    return [*lines, ""]


def render_markdown(doc: Mapping[str, Any]) -> str:
    """``cells.md``: our measured cells (no paper values: those are in the compliance report)."""
    lines = [f"# Reproduction cells ({doc.get('profile', 'custom')} profile)", "",
             "Measured by this repository's runs; the paper's values, the deltas and the "
             "verdicts are in the compliance report (`safegbpo report`).", ""]
    lines += safe_sets_lines(doc.get("safe_sets") or {})
    lines += env_options_lines(doc.get("env_options") or {})
    lines += ["Definitions:", ""]
    for name, text in doc.get("definitions", {}).items():
        lines.append(f"- **{name}**: {text}")
    lines.append("")
    training = [c for c in doc.get("cells", []) if c.get("kind") == "train"]
    lines += ["## Training cells", "",
              "| Task | Algorithm | Variant | Tables | Interactions | Seeds | Steps | "
              "Reward [95% CI] | Stuck | Stalled | Backend | Fallbacks | Uncertified |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for cell in training:
        runs = f" / {cell.get('runs')}" if cell.get("runs") else ""
        lines.append(
            f"| {cell['task']} | {cell['algo'].upper()} | {cell['variant']} | "
            f"{', '.join(cell.get('tables', []))} | {_fmt(cell.get('interactions'))} | "
            f"{len(cell.get('seeds', []))} | {_fmt(cell.get('steps'), 'steps')} | "
            f"{_reward(cell)} | {_fmt(cell.get('stuck'))}{runs} | "
            f"{_fmt(cell.get('stalled'))} | {cell.get('backend') or '–'} | "
            f"{_fmt(cell.get('fallbacks'))} | {_fmt(cell.get('uncertified'))} |")
    lines.append("")
    timing = [c for c in doc.get("cells", []) if c.get("kind") == "wallclock"]
    if timing:
        wc = doc.get("wallclock") or {}
        lines += [f"## Wall clock relative to unsafe training ({wc.get('interactions')} "
                  f"{wc.get('task')} interactions per run)", "",
                  "| Algorithm | Safeguard | ratio | seconds | unsafe seconds | Backend |",
                  "|---|---|---|---|---|---|"]
        for cell in timing:
            lines.append(f"| {cell['algo'].upper()} | {cell['variant']} | "
                         f"{_fmt(cell.get('wallclock_ratio'), 'ratio')} | "
                         f"{_fmt(cell.get('seconds'))} | {_fmt(cell.get('baseline_seconds'))} | "
                         f"{cell.get('backend') or '–'} |")
        lines.append("")
    checks = doc.get("checks") or {}
    if checks:
        lines += ["## Profile checks", ""]
        for name, result in checks.items():
            status = "PASS" if result.get("passed") else "FAIL"
            lines.append(f"- **{name}**: {status} — {result.get('summary', '')}")
        lines.append("")
    return "\n".join(lines)
