"""The paper's Tables 2-6 from our run records, next to the paper's values, plus H1/H2.

:func:`build_tables` computes every cell our grid ran (:mod:`.metrics` definitions) and lines it
up with the paper's value (``spec/paper_tables.json``) and with the same metrics computed from
the reference implementation's archived curves (``../shared/reference``), with deltas
``ours - paper``.  :func:`archive_check` shows that the metric definitions reproduce the paper's
numbers from the archived curves (and reports the known Quadrotor SAC unsafe inconsistency).
:func:`render_markdown` renders the result.

``<results>/tables.json`` (format ``safegbpo-tables/1``), read by the compliance report::

    {"format", "profile", "grid", "safe_sets": {task: {source, path, sha256, volume}},
     "definitions": {steps, reward, stuck, stalled, wallclock_ratio},
     "tables": {"table2".."table6": {"title", "quantities", "note",
                "rows": [{"task", "algo", "variant", "label",
                          "ours": {steps, reward, ci, stuck, runs, converged, stalled,
                                   interactions, eval_every, comparable, stuck_reasons,
                                   wallclock_ratio, seconds, ...} | null,
                          "paper": {steps, reward, stuck | wallclock_ratio} | null,
                          "archive": {...} | null,
                          "delta": {quantity: ours - paper} | null,
                          "note"}]}},
     "cells": [{"task", "algo", "variant", **ours}]   (flat list of every cell of ours),
     "hypotheses": {"H1": {...}, "H2": {...}},       (spec.hypotheses verdicts)
     "archive_check": {...}, "checks": {...}}

``comparable`` is false when our budget differs from the paper's (the quick profile): the
deltas are then shown but do not measure reproduction.  Non-finite numbers are written as
``null``; Steps are environment interactions.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from safegbpo.experiments.grid import VARIANT_ORDER, RunSpec
from safegbpo.experiments.metrics import (
    CI_LEVEL,
    CONVERGENCE_TOLERANCE,
    CellMetrics,
    cell_metrics_from_records,
    load_archive,
)

__all__ = [
    "ARCHIVE_DIR",
    "PAPER_BUDGETS",
    "TABLES",
    "TABLES_FORMAT",
    "archive_check",
    "build_tables",
    "default_archive_dir",
    "load_paper_values",
    "render_markdown",
    "wallclock_seconds",
]

TABLES_FORMAT = "safegbpo-tables/1"

_SAFEGUARDED = tuple(v for v in VARIANT_ORDER if v != "No Safeguard")
TABLES: dict[str, dict[str, Any]] = {
    "table2": {"title": "Table 2 - unsafe training", "quantities": ("steps", "reward", "stuck"),
               "variants": ("No Safeguard",)},
    "table3": {"title": "Table 3 - safeguarded training",
               "quantities": ("steps", "reward", "stuck"), "variants": _SAFEGUARDED},
    "table4": {"title": "Table 4 - SHAC, # Stuck per modification (unsafe row for reference)",
               "quantities": ("steps", "reward", "stuck"), "variants": VARIANT_ORDER},
    "table5": {"title": "Table 5 - SHAC, ray mask centre approximation",
               "quantities": ("steps", "reward", "stuck"), "variants": ("RM", "RM Orthogonal")},
    "table6": {"title": "Table 6 - wall clock relative to unsafe training (pendulum)",
               "quantities": ("wallclock_ratio",), "variants": _SAFEGUARDED},
}
"""The tables this module produces (ids as in ``spec/paper_tables.json``) and the variants
whose rows each one shows (a run tagged for a table feeds only the rows of its variant)."""

PAPER_BUDGETS = {"pendulum": 100_000, "quadrotor": 200_000, "energy": 1_000_000}
"""Interactions of the paper's runs (SPEC §8); cells with another budget are not comparable."""

ARCHIVE_DIR = Path(__file__).resolve().parents[2] / ".." / "shared" / "reference"
"""The reference data next to the repository (read at run time, never copied)."""

_ALGO_ORDER = ("shac", "ppo", "sac")
_TASK_ORDER = ("pendulum", "quadrotor", "energy")
_LABELS = {"table5": {"RM": "Zonotopic", "RM Orthogonal": "Orthogonal"}}
_VARIANT_ALIASES = {"Unsafe": "No Safeguard"}
_REWARD_MATCH_REL = 1e-3
_NOT_TRAINING = ("eval", "checkpoint", "setup", "total")  # the paper prints 4 significant digits

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
    "wallclock_ratio": "training wall clock (evaluation excluded) of a safeguarded run divided by "
                       "that of the same algorithm without safeguard, same interactions",
}


def default_archive_dir() -> Path | None:
    """``../shared/reference`` relative to the repository, if present."""
    path = ARCHIVE_DIR.resolve()
    return path if path.is_dir() else None


def _finite(value: Any) -> Any:
    """JSON-safe: non-finite floats -> ``None`` (recursively)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


# --------------------------------------------------------------------------------------------
# paper values
# --------------------------------------------------------------------------------------------
def load_paper_values(path: str | Path | None = None) -> dict[str, dict[tuple, dict[str, Any]]]:
    """``{table: {(task, algo, variant): {quantity: value, 'label', 'note'}}}`` from the spec's
    ``paper_tables.json`` (``None``: the spec package's file; empty if it does not exist)."""
    if path is None:
        path = Path(__file__).resolve().parents[2] / "spec" / "paper_tables.json"
    path = Path(path)
    if not path.is_file():
        return {}
    data = json.loads(path.read_text())
    if data.get("format") != "safegbpo-paper-tables/1":
        raise ValueError(f"{path}: not a safegbpo-paper-tables/1 file")
    out: dict[str, dict[tuple, dict[str, Any]]] = {}
    for table, content in data["tables"].items():
        cells = out.setdefault(table, {})
        for cell in content["cells"]:
            variant = _VARIANT_ALIASES.get(cell["variant"], cell["variant"])
            key = (cell["task"], cell["algo"], variant)
            cells[key] = {k: v for k, v in cell.items() if k not in ("task", "algo", "variant")}
    return out


# --------------------------------------------------------------------------------------------
# our cells
# --------------------------------------------------------------------------------------------
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


def _sort_key(key: tuple[str, str, str]) -> tuple[int, int, int]:
    task, algo, variant = key
    order = list(VARIANT_ORDER)
    return (
        _TASK_ORDER.index(task) if task in _TASK_ORDER else 99,
        order.index(variant) if variant in order else 99,
        _ALGO_ORDER.index(algo) if algo in _ALGO_ORDER else 99,
    )


def _ours_training_cell(specs: Sequence[RunSpec], records: Mapping[str, Mapping[str, Any]],
                        key: str) -> dict[str, Any]:
    done = [records[s.run_id] for s in specs if s.run_id in records]
    first = specs[0]
    base = {
        "interactions": first.interactions,
        "eval_every": first.eval_every,
        "seeds": [s.seed for s in specs],
        "comparable": first.interactions == PAPER_BUDGETS.get(first.task),
        "missing_runs": [s.run_id for s in specs if s.run_id not in records],
    }
    if not done:
        return {**base, "runs": 0}
    metrics = cell_metrics_from_records(done, key=key)
    return {**base, **metrics.to_dict()}


def _delta(ours: Mapping[str, Any] | None, paper: Mapping[str, Any] | None,
           quantities: Iterable[str]) -> dict[str, Any] | None:
    if not ours or not paper:
        return None
    out = {}
    for q in quantities:
        a, b = ours.get(q), paper.get(q)
        out[q] = (a - b) if isinstance(a, int | float) and isinstance(b, int | float) else None
    return out


def _archive_values(metrics: CellMetrics | None) -> dict[str, Any] | None:
    if metrics is None:
        return None
    return {"steps": metrics.steps, "reward": metrics.reward,
            "ci": list(metrics.ci) if metrics.ci else None, "stuck": metrics.stuck,
            "runs": metrics.runs}


def _wallclock_rows(specs: Sequence[RunSpec], records: Mapping[str, Mapping[str, Any]]
                    ) -> dict[tuple[str, str, str], dict[str, Any]]:
    """Table 6 cells of ours: per algorithm, seconds of each variant / seconds unsafe."""
    timing = [s for s in specs if s.kind == "wallclock"]
    seconds: dict[tuple[str, str, str], float | None] = {}
    done: dict[tuple[str, str, str], int] = {}
    for spec in timing:
        record = records.get(spec.run_id)
        if record is not None and record.get("status") == "finished":
            seconds[spec.cell] = wallclock_seconds(record)
            # the runner stops at the first iteration boundary at or beyond the budget (a PPO
            # iteration of the paper's presets is 13600 pendulum interactions)
            done[spec.cell] = int(record.get("interactions") or spec.interactions)
    out = {}
    for spec in timing:
        if spec.variant == "No Safeguard":
            continue
        mine = seconds.get(spec.cell)
        base = seconds.get((spec.task, spec.algo, "No Safeguard"))
        ratio = mine / base if mine and base else None
        out[spec.cell] = {
            "wallclock_ratio": ratio,
            "seconds": mine,
            "baseline_seconds": base,
            "interactions": done.get(spec.cell, spec.interactions),
            "comparable": True,  # a ratio of equal interaction counts (same algorithm)
        }
    return out


def _archive_wallclock(archive_dir: Path | None) -> dict[tuple[str, str, str], dict[str, Any]]:
    if archive_dir is None:
        return {}
    path = archive_dir / "paper_wallclock_seconds.json"
    if not path.is_file():
        return {}
    data = json.loads(path.read_text())
    labels = {"Boundary Projection Base": "BP", "Ray Mask Base": "RM"}
    out = {}
    for task_label, algos in data.items():
        if not isinstance(algos, Mapping):
            continue
        for algo_label, values in algos.items():
            base = values.get("No Safeguard")
            for label, variant in labels.items():
                if base and label in values:
                    out[(task_label.lower(), algo_label.lower(), variant)] = {
                        "wallclock_ratio": values[label] / base,
                        "seconds": values[label],
                        "baseline_seconds": base,
                    }
    return out


# --------------------------------------------------------------------------------------------
# archive check: do the definitions reproduce the paper?
# --------------------------------------------------------------------------------------------
def archive_check(archive_dir: Path | None, paper: Mapping[str, Mapping[tuple, Mapping]] | None
                  = None) -> dict[str, Any]:
    """Metrics of the archived curves vs the paper's printed values, per paper cell.

    A cell *matches* when Steps and Stuck are equal and Reward agrees to the paper's printed
    precision (relative ``1e-3``).  Returns ``{"available": False, "reason"}`` without archive.
    """
    if archive_dir is None or not (archive_dir / "paper_learning_curves.json").is_file():
        return {"available": False,
                "reason": "../shared/reference/paper_learning_curves.json not present"}
    path = archive_dir / "paper_learning_curves.json"
    archive = load_archive(path)
    paper = load_paper_values() if paper is None else paper
    rows, mismatches = [], []
    for table, cells in paper.items():
        if table == "table6":
            continue
        for key, values in cells.items():
            mine = archive.get(key)
            row: dict[str, Any] = {"table": table, "task": key[0], "algo": key[1],
                                   "variant": key[2], "paper": {q: values.get(q) for q in
                                                                ("steps", "reward", "stuck")
                                                                if q in values},
                                   "archive": _archive_values(mine), "note": values.get("note")}
            if mine is None:
                row["match"] = None
                mismatches.append(row)
                rows.append(row)
                continue
            match = {}
            if "steps" in values:
                match["steps"] = mine.steps == values["steps"]
            if "reward" in values:
                match["reward"] = (mine.reward is not None and abs(mine.reward - values["reward"])
                                   <= _REWARD_MATCH_REL * abs(values["reward"]))
            if "stuck" in values:
                match["stuck"] = mine.stuck == values["stuck"]
            row["match"] = match
            if not all(match.values()):
                mismatches.append(row)
            rows.append(row)
    wall = []
    for key, values in _archive_wallclock(archive_dir).items():
        paper_ratio = (paper.get("table6", {}).get(key) or {}).get("wallclock_ratio")
        if paper_ratio is not None:
            wall.append({"task": key[0], "algo": key[1], "variant": key[2],
                         "archive": values["wallclock_ratio"], "paper": paper_ratio,
                         "match": abs(values["wallclock_ratio"] - paper_ratio)
                         <= _REWARD_MATCH_REL * paper_ratio})
    return {
        "available": True,
        "path": str(path.resolve()),
        "rule": "steps and stuck equal, reward within 1e-3 relative (4 printed digits)",
        "cells": len(rows),
        "matching": sum(1 for r in rows if r["match"] and all(r["match"].values())),
        "rows": rows,
        "mismatches": [
            {k: r[k] for k in ("table", "task", "algo", "variant", "paper", "archive", "note")}
            for r in mismatches
        ],
        "wallclock": wall,
        "archive_cells": {"/".join(k): m.to_dict() for k, m in archive.items()},
    }


# --------------------------------------------------------------------------------------------
# hypotheses
# --------------------------------------------------------------------------------------------
def _hypotheses(h1_cells: Mapping[tuple[str, str, str], Mapping[str, Any]],
                h2_cells: Mapping[tuple[str, str, str], Mapping[str, Any]]) -> dict[str, Any]:
    """H1/H2 verdicts with the spec's decision rules (``spec.hypotheses``), one source of truth
    for our results, the paper's and the archive's."""
    try:
        from spec.hypotheses import evaluate_h1, evaluate_h2
    except ImportError as err:  # pragma: no cover - spec is part of the distribution
        reason = f"spec.hypotheses not importable: {err}"
        return {h: {"verdict": "not available", "reason": reason} for h in ("H1", "H2")}

    def usable(cells: Mapping[tuple[str, str, str], Mapping[str, Any]]) -> dict:
        return {k: v for k, v in cells.items() if v.get("reward") is not None}

    return {"H1": _finite(evaluate_h1(usable(h1_cells)).to_dict()),
            "H2": _finite(evaluate_h2(usable(h2_cells)).to_dict())}


# --------------------------------------------------------------------------------------------
# assembling the tables
# --------------------------------------------------------------------------------------------
def build_tables(
    specs: Sequence[RunSpec],
    records: Mapping[str, Mapping[str, Any]],
    *,
    paper: Mapping[str, Mapping[tuple, Mapping[str, Any]]] | None = None,
    archive_dir: Path | None | str = "default",
    meta: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The ``tables.json`` content (see the module docstring) for the grid ``specs`` and their
    ``records`` (``run_id -> record``; runs without a record are listed as missing).

    ``archive_dir='default'`` uses :func:`default_archive_dir`; ``None`` skips the archive.
    """
    paper = load_paper_values() if paper is None else paper
    if archive_dir == "default":
        archive_dir = default_archive_dir()
    archive_dir = Path(archive_dir) if archive_dir is not None else None
    check = archive_check(archive_dir, paper)
    archive = {}
    if check.get("available"):
        archive = {tuple(k.split("/")): v for k, v in check["archive_cells"].items()}

    # every training cell of ours, per table
    by_table: dict[str, dict[tuple[str, str, str], list[RunSpec]]] = {}
    for spec in specs:
        if spec.kind != "train":
            continue
        for table in spec.tables:
            by_table.setdefault(table, {}).setdefault(spec.cell, []).append(spec)
    computed: dict[tuple[str, ...], dict[str, Any]] = {}  # run ids -> cell (shared by tables)
    ours_by_table: dict[str, dict[tuple[str, str, str], dict[str, Any]]] = {}
    for table, cells in by_table.items():
        for cell, cell_specs in cells.items():
            cell_specs = sorted(cell_specs, key=lambda s: s.seed)
            ids = tuple(s.run_id for s in cell_specs)
            if ids not in computed:
                value = _ours_training_cell(cell_specs, records, "/".join(cell))
                computed[ids] = {"task": cell[0], "algo": cell[1], "variant": cell[2],
                                 **value, "run_ids": list(ids)}
            ours_by_table.setdefault(table, {})[cell] = computed[ids]
    wallclock = _wallclock_rows(specs, records)
    if wallclock:
        ours_by_table.setdefault("table6", {}).update(wallclock)
    archive_wall = _archive_wallclock(archive_dir)

    tables_out: dict[str, Any] = {}
    for table, layout in TABLES.items():
        quantities = layout["quantities"]
        paper_cells = paper.get(table, {})
        ours_table = {k: v for k, v in ours_by_table.get(table, {}).items()
                      if k[2] in layout["variants"]}
        keys = sorted(set(paper_cells) | set(ours_table), key=_sort_key)
        rows = []
        for key in keys:
            ours = ours_table.get(key)
            paper_values = paper_cells.get(key)
            paper_row = ({q: paper_values[q] for q in quantities if q in paper_values}
                         if paper_values else None)
            if table == "table6":
                arch = archive_wall.get(key)
            else:
                arch = archive.get(key)
                arch = {q: arch.get(q) for q in ("steps", "reward", "ci", "stuck", "runs")} \
                    if arch else None
            note = (paper_values or {}).get("note")
            if ours is None:
                note = "; ".join(filter(None, [note, "not run in this profile"]))
            elif ours.get("comparable") is False:
                note = "; ".join(filter(None, [note, f"budget {ours['interactions']} interactions "
                                                     f"(paper {PAPER_BUDGETS[key[0]]}): deltas "
                                                     "do not measure reproduction"]))
            rows.append({
                "task": key[0], "algo": key[1], "variant": key[2],
                "label": _LABELS.get(table, {}).get(key[2], key[2]),
                "ours": ours, "paper": paper_row, "archive": arch,
                "delta": _delta(ours, paper_row, quantities),
                "note": note or None,
            })
        tables_out[table] = {"title": layout["title"], "quantities": list(quantities),
                             "rows": rows}
    if "table6" in tables_out:
        timing = [s for s in specs if s.kind == "wallclock"]
        if timing:
            tables_out["table6"]["interactions"] = timing[0].interactions
            tables_out["table6"]["note"] = (
                f"measured on {timing[0].interactions} pendulum interactions per run"
                + ("" if timing[0].interactions == 10000 else
                   " (the paper timed 10000; scaled down to fit the profile's budget: ratios of "
                   "equal interaction counts)")
            )

    h1_cells = {**ours_by_table.get("table2", {}), **ours_by_table.get("table3", {})}
    h2_cells = ours_by_table.get("h2") or {**ours_by_table.get("table2", {}),
                                           **ours_by_table.get("table4", {})}
    out = {
        "format": TABLES_FORMAT,
        **dict(meta or {}),
        "definitions": DEFINITIONS,
        "tables": tables_out,
        "cells": sorted(computed.values(),
                        key=lambda c: (*_sort_key((c["task"], c["algo"], c["variant"])),
                                       c.get("interactions") or 0)),
        "hypotheses": _hypotheses(h1_cells, h2_cells),
        "hypotheses_note": (
            "computed from cells whose budget is below the paper's: these verdicts are not "
            "evidence about the paper's claims"
            if any(c.get("comparable") is False for c in (*h1_cells.values(),
                                                           *h2_cells.values())) else None),
        "archive_check": {k: v for k, v in check.items() if k != "archive_cells"},
    }
    if check.get("available"):
        archived = {k: {"reward": v.get("reward"), "stuck": v.get("stuck"),
                        "steps": v.get("steps")} for k, v in archive.items()}
        out["archive_check"]["hypotheses"] = _hypotheses(archived, archived)
    return _finite(out)


# --------------------------------------------------------------------------------------------
# markdown
# --------------------------------------------------------------------------------------------
def _fmt(value: Any, kind: str = "") -> str:
    if value is None:
        return "–"
    if kind == "steps" or isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
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


def _reward_with_ci(cell: Mapping[str, Any] | None) -> str:
    if not cell or cell.get("reward") is None:
        return "–"
    ci = cell.get("ci")
    text = _fmt(cell["reward"])
    if ci and ci[0] is not None and ci[1] is not None and (ci[0] != ci[1]):
        text += f" [{_fmt(ci[0])}, {_fmt(ci[1])}]"
    return text


def _signed(value: Any, kind: str = "") -> str:
    if value is None:
        return "–"
    text = _fmt(value, kind)
    return text if text.startswith("-") else "+" + text


def render_markdown(tables: Mapping[str, Any]) -> str:
    """Markdown rendering of :func:`build_tables`' output."""
    lines = [f"# Reproduction tables ({tables.get('profile', 'custom')} profile)", ""]
    sets = tables.get("safe_sets") or {}
    if sets:
        lines += ["Safe sets used:", ""]
        for task, info in sets.items():
            volume = info.get("volume")
            lines.append(f"- {task}: {info.get('source')} ({info.get('path') or 'project cache'}), "
                         f"state-set volume {_fmt(volume) if volume is not None else 'n/a'}")
        lines.append("")
    lines += ["Definitions:", ""]
    for name, text in tables.get("definitions", {}).items():
        lines.append(f"- **{name}**: {text}")
    lines.append("")
    for table_id, table in tables.get("tables", {}).items():
        lines += [f"## {table['title']}", ""]
        if table.get("note"):
            lines += [f"_{table['note']}_", ""]
        if table_id == "table6":
            lines += ["| Algorithm | Safeguard | ours | paper | Δ | archive | ours seconds |",
                      "|---|---|---|---|---|---|---|"]
            for row in table["rows"]:
                ours, paper, arch = row["ours"] or {}, row["paper"] or {}, row["archive"] or {}
                delta = (row["delta"] or {}).get("wallclock_ratio")
                lines.append(
                    f"| {row['algo'].upper()} | {row['variant']} | "
                    f"{_fmt(ours.get('wallclock_ratio'), 'ratio')} | "
                    f"{_fmt(paper.get('wallclock_ratio'), 'ratio')} | {_signed(delta, 'ratio')} | "
                    f"{_fmt(arch.get('wallclock_ratio'), 'ratio')} | {_fmt(ours.get('seconds'))} |"
                )
            lines.append("")
            continue
        lines += [
            "| Task | Algorithm | Variant | Steps | Reward [95% CI] | Stuck | Stalled | "
            "paper Steps | paper Reward | paper Stuck | Δ Steps | Δ Reward | Δ Stuck | note |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for row in table["rows"]:
            ours, paper = row["ours"], row["paper"] or {}
            delta = row["delta"] or {}
            runs = f" / {ours.get('runs')}" if ours and ours.get("runs") else ""
            lines.append(
                f"| {row['task']} | {row['algo'].upper()} | {row['label']} | "
                f"{_fmt((ours or {}).get('steps'), 'steps')} | {_reward_with_ci(ours)} | "
                f"{_fmt((ours or {}).get('stuck'))}{runs} | {_fmt((ours or {}).get('stalled'))} | "
                f"{_fmt(paper.get('steps'), 'steps')} | {_fmt(paper.get('reward'))} | "
                f"{_fmt(paper.get('stuck'))} | {_signed(delta.get('steps'), 'steps')} | "
                f"{_signed(delta.get('reward'))} | {_signed(delta.get('stuck'))} | "
                f"{row.get('note') or ''} |"
            )
        lines.append("")
    lines += ["## Hypotheses", ""]
    if tables.get("hypotheses_note"):
        lines += [f"_{tables['hypotheses_note']}_", ""]
    for name, verdict in (tables.get("hypotheses") or {}).items():
        lines.append(f"- **{name}** ({verdict.get('statement', '')}): "
                     f"**{verdict.get('verdict')}**"
                     + (f"; missing cells: {', '.join(verdict['missing'])}"
                        if verdict.get("missing") else ""))
    lines.append("")
    check = tables.get("archive_check") or {}
    lines += ["## Metric definitions on the paper's archived curves", ""]
    if not check.get("available"):
        lines += [f"Not available: {check.get('reason')}.", ""]
    else:
        lines += [
            f"The metric definitions above, applied to the reference implementation's archived "
            f"curves ({check['path']}), reproduce {check['matching']} of {check['cells']} paper "
            f"cells exactly ({check['rule']}).", "",
        ]
        if check.get("mismatches"):
            lines += ["Mismatches (reported, not hidden):", ""]
            for m in check["mismatches"]:
                lines.append(
                    f"- {m['table']} {m['task']}/{m['algo']}/{m['variant']}: paper "
                    f"{m['paper']}, archive {_short(m['archive'])}"
                    + (f" — {m['note']}" if m.get("note") else "")
                )
            lines.append("")
        if check.get("wallclock"):
            ok = sum(1 for w in check["wallclock"] if w["match"])
            lines += [f"Table 6 from the archived timings (paper_wallclock_seconds.json): {ok} of "
                      f"{len(check['wallclock'])} ratios equal the paper's.", ""]
            lines += [f"- {w['algo'].upper()} {w['variant']}: archive {w['archive']:.3f}, paper "
                      f"{w['paper']:.3f}" for w in check["wallclock"] if not w["match"]]
            lines.append("")
        for name, verdict in (check.get("hypotheses") or {}).items():
            lines.append(f"- {name} on the archived curves: **{verdict.get('verdict')}**")
        lines.append("")
    checks = tables.get("checks") or {}
    if checks:
        lines += ["## Profile checks", ""]
        for name, result in checks.items():
            status = "PASS" if result.get("passed") else "FAIL"
            lines.append(f"- **{name}**: {status} — {result.get('summary', '')}")
        lines.append("")
    return "\n".join(lines)


def _short(values: Mapping[str, Any] | None) -> str:
    if not values:
        return "–"
    return "{" + ", ".join(f"{k}: {_fmt(values.get(k))}" for k in ("steps", "reward", "stuck")
                           if k in values) + "}"
