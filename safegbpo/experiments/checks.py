"""The checks a reproduction profile declares (``checks`` of its grid file), run after training.

* ``safety`` -- every safeguarded run finished, its monitored realised states
  (:mod:`.monitor`) all lie in the safe state set, and its safeguard reported **no uncertified
  step** (a step with no certified safe action, :mod:`safegbpo.safeguards.recovery`; a run
  that does not report the counter fails too); fallbacks are listed per run (unsafe runs are
  reported for comparison);
* ``improvement`` -- the seed-mean reward of the named cells improved by at least
  ``min_relative_gain`` of its first value (the runs learn);
* ``level`` -- the seed-mean final reward of the named cells reaches ``min_final_reward`` (a
  level the grid states with its source, e.g. the paper's converged reward);
* ``completed`` -- every run finished with a finite learning curve;
* ``wallclock`` -- every Table 6 timing cell (every timed backend) has a ratio.

Each check returns ``{"passed", "summary", "problems", ...}``; :func:`evaluate_checks` runs the
grid's.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from safegbpo.experiments.grid import Grid, RunSpec
from safegbpo.experiments.metrics import seed_mean_curve, stuck_reason

__all__ = ["CHECKS", "checks_passed", "evaluate_checks"]


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
               "max_gauge": safety.get("max_gauge"),
               "fallbacks": (record or {}).get("fallbacks"),
               "uncertified": (record or {}).get("uncertified")}
        rows.append(row)
        if record is None:
            problems.append(f"{spec.run_id}: no record")
        elif record.get("status") != "finished":
            problems.append(f"{spec.run_id}: {stuck_reason(record)}")
        elif not safety.get("monitored") or not safety.get("states"):
            problems.append(f"{spec.run_id}: no monitored states")
        elif safety.get("violations"):
            problems.append(f"{spec.run_id}: {safety['violations']} realised states outside S_s")
        if record is not None and record.get("status") == "finished":
            uncertified = record.get("uncertified")
            if uncertified is None:
                problems.append(f"{spec.run_id}: the safeguard reports no 'uncertified' count")
            elif uncertified:
                problems.append(f"{spec.run_id}: {uncertified} uncertified safeguard steps (no "
                                f"certified safe action; best-effort recovery applied)")
    unsafe = [records[s.run_id].get("safety") or {} for s in specs
              if s.kind == "train" and not s.variant_fields.get("safeguard")
              and s.run_id in records]
    cells = sorted({(s.task, s.variant) for s in runs})
    return {
        "passed": bool(runs) and not problems,
        "summary": (f"{len(runs)} safeguarded runs ({len(cells)} task x variant cells), "
                    f"{sum(r['states'] or 0 for r in rows)} realised states checked, "
                    f"{sum(r['violations'] or 0 for r in rows)} outside the safe state set, "
                    f"{sum(r['fallbacks'] or 0 for r in rows)} safeguard fallbacks, "
                    f"{sum(r['uncertified'] or 0 for r in rows)} uncertified steps"
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


def _check_level(specs: Sequence[RunSpec], records: Mapping[str, Mapping[str, Any]],
                 options: Mapping[str, Any]) -> dict[str, Any]:
    """The named cells' seed-mean final reward is at least ``min_final_reward`` (its source in
    ``reference``), each cell's first crossing reported."""
    level = float(options["min_final_reward"])
    experiments = set(options.get("experiments") or [])
    wanted = [tuple(c) for c in options.get("cells", [])]
    rows, problems = [], []
    for task, algo, variant in wanted:
        name = f"{task}/{algo}/{variant}"
        cell_specs = [s for s in specs if s.kind == "train" and s.cell == (task, algo, variant)
                      and (not experiments or experiments & set(s.experiments))]
        good = [records[s.run_id] for s in cell_specs
                if s.run_id in records and stuck_reason(records[s.run_id]) is None]
        if not cell_specs or len(good) != len(cell_specs):
            problems.append(f"{name}: {len(cell_specs) - len(good)} of {len(cell_specs)} runs "
                            "missing or stuck" if cell_specs else f"{name}: not in the grid")
            continue
        mean = seed_mean_curve([[p["reward"] for p in r["curve"]] for r in good])
        steps = [int(p["step"]) for p in good[0]["curve"]]
        crossed = [step for step, value in zip(steps, mean, strict=True) if value >= level]
        final = float(mean[-1])
        rows.append({"cell": name, "seeds": len(good), "final": final,
                     "first_reached": crossed[0] if crossed else None,
                     "passed": final >= level})
        if final < level:
            problems.append(f"{name}: seed-mean final reward {final:.4g} < {level:.4g}")
    return {
        "passed": bool(wanted) and not problems,
        "summary": (f"seed-mean final reward >= {level:g} ({options.get('reference', 'level')})"
                    + "".join(f"; {r['cell']}: {r['final']:.4g} ({r['seeds']} seeds, first "
                              f"reached at {r['first_reached']})" for r in rows)),
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


def _check_wallclock(cells: Mapping[str, Any]) -> dict[str, Any]:
    timing = [c for c in cells.get("cells", []) if c.get("kind") == "wallclock"]
    measured = [c for c in timing if c.get("wallclock_ratio") is not None]

    def name(cell: Mapping[str, Any]) -> str:
        backend = f" ({cell['backend']})" if cell.get("backend") else ""
        return f"{cell['algo'].upper()} {cell['variant']}{backend}"

    problems = [f"{name(c)}: no ratio" for c in timing if c.get("wallclock_ratio") is None]
    return {"passed": bool(timing) and not problems,
            "summary": ", ".join(f"{name(c)} {c['wallclock_ratio']:.2f}" for c in measured)
                       or "no timing runs",
            "problems": problems}


CHECKS: dict[str, Callable[..., dict[str, Any]]] = {
    "safety": _check_safety,
    "improvement": _check_improvement,
    "level": _check_level,
    "completed": _check_completed,
}


def evaluate_checks(grid: Grid, specs: Sequence[RunSpec],
                    records: Mapping[str, Mapping[str, Any]],
                    cells: Mapping[str, Any]) -> dict[str, Any]:
    """The grid's declared checks (``checks`` of the grid file) on the records and the
    measured cells (:func:`.cells.measure_cells`)."""
    out: dict[str, Any] = {}
    for name, options in (grid.checks or {}).items():
        if name == "wallclock":
            out[name] = _check_wallclock(cells)
        elif name in CHECKS:
            out[name] = CHECKS[name](specs, records, options or {})
        else:
            raise ValueError(f"{grid.source}: unknown check {name!r}; expected one of "
                             f"{sorted([*CHECKS, 'wallclock'])}")
    return out


def checks_passed(doc: Mapping[str, Any]) -> bool:
    """All profile checks of a reproduction (``doc['checks']``) passed."""
    return all(c.get("passed") for c in (doc.get("checks") or {}).values())
