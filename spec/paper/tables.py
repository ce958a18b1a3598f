"""The paper's Tables 2–6 next to ours: paper values, our cells, the archive, deltas, verdicts
and H1/H2 -- computed once, here.

:func:`build_tables` reads the measured cells of a reproduction (``<results>/cells.json``,
:mod:`safegbpo.experiments.cells`) and lines every row up with the paper's value
(:mod:`spec.paper.values`), the same metrics computed from the reference implementation's
archived curves (:mod:`spec.paper.archive`), the delta ``ours - paper`` and the verdict of the
comparison rules (:mod:`spec.paper.rules`); it evaluates H1/H2 (:mod:`spec.paper.hypotheses`)
on our cells and on the archive.  :func:`render_markdown` renders the result
(``reports/tables.md``, written by the compliance report).

The tables document (format ``safegbpo-paper-tables-vs-ours/1``)::

    {"format", "profile", "safe_sets", "definitions",
     "tables": {"table2".."table6": {"title", "quantities", "note",
                "rows": [{"task", "algo", "variant", "label", "backend", "judged",
                          "ours": {steps, reward, ci, stuck, runs, fallbacks, uncertified,
                                   ..., comparable} | null,
                          "paper": {quantity: value} | null, "archive": {...} | null,
                          "delta": {quantity: ours - paper} | null, "note"}]}},
     "verdicts": {table: [CellComparison.to_dict()]},   (every paper value: pass/fail/not run)
     "archive_tables": {task: {"title", "label", "quantities", "archive", "rows": [{"task",
                        "algo", "variant", "ours", "archive", "delta", "note"}]}},
     "pcrpo": {"title", "audit_note", "tasks": {task: {"label", "rows": [...]}}},
     "hypotheses": {"H1": {...}, "H2": {...}}, "hypotheses_note",
     "archive_check": {...}}

``archive_tables`` covers every registered task that the paper's tables do not (the journal
version's energy system, SPEC §10): its reference values are the metrics of the archived curves
(there is no printed value to judge against, so there are deltas but no verdicts).  H1/H2 stay
on the paper's tasks (:data:`spec.paper.hypotheses.TASKS`).

``pcrpo`` is the soft-constraint baseline next to the safeguards (SPEC §12,
:mod:`spec.paper.pcrpo`): PCRPO vs PPO unsafe / BP / RM and SHAC with its best safeguard,
with the monitor's unsafe states and the wall clock; no paper values, no verdicts.

``comparable`` is false when our budget differs from the task's (the paper's) budget (the quick
profile): the deltas and verdicts are then shown but do not measure reproduction.

Safeguard backends: a cell of ours names the ``backend`` of its safeguarded runs.  Table 6 shows
one row per timed backend; the verdict judges the backend that runs the paper's own programs
(:data:`safegbpo.safeguards.PAPER_BACKEND`, Eq 6 through cvxpylayers) when it was timed, else
the one that was (``judged`` marks the row), since the paper's ratios time its implementation.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from safegbpo.experiments.cells import (
    backend_sort_key,
    cell_sort_key,
    env_options_lines,
    json_safe,
    safe_sets_lines,
)
from safegbpo.experiments.cells import format_reward as _reward_with_ci
from safegbpo.experiments.cells import format_value as _fmt
from safegbpo.safeguards import PAPER_BACKEND
from safegbpo.tasks import get_task, task_names
from spec.paper.archive import Archive, archive_check
from spec.paper.hypotheses import evaluate_h1, evaluate_h2
from spec.paper.pcrpo import pcrpo_table, pcrpo_table_lines
from spec.paper.rules import CellComparison, compare_tables
from spec.paper.values import (
    TABLES,
    Key,
    paper_tasks,
    paper_values,
    table_variants,
    timed_interactions,
)

__all__ = ["TABLES_FORMAT", "archive_check_lines", "archive_table_lines", "build_tables",
           "paper_hypotheses", "render_markdown"]

TABLES_FORMAT = "safegbpo-paper-tables-vs-ours/1"


def _comparable(cell: Mapping[str, Any]) -> bool:
    """Our cell ran the task's (the paper's) budget with every seed's record (a cell measured
    from the records: :func:`safegbpo.experiments.campaign.measure_record_cells`' ``complete``);
    timing cells are ratios of equal interaction counts and always comparable."""
    if cell.get("kind") == "wallclock":
        return True
    if "complete" in cell:  # measured from run records: seeds, budget, protocol, none running
        return bool(cell["complete"])
    if cell.get("missing_runs"):  # a partial campaign: seeds of the cell without a record
        return False
    try:
        return cell.get("interactions") == get_task(cell["task"]).budget
    except ValueError:
        return False


def _ours_by_table(cells_doc: Mapping[str, Any] | None
                   ) -> dict[str, dict[Key, list[dict[str, Any]]]]:
    """Our cells per table tag (``h2`` included) and key, each with ``comparable`` added; a key
    has several cells only in a table that times several backends (Table 6), judged one
    first (module docstring), then in backend order."""
    out: dict[str, dict[Key, list[dict[str, Any]]]] = {}
    for cell in (cells_doc or {}).get("cells", []):
        ours = {**cell, "comparable": _comparable(cell)}
        for table in cell.get("tables", []):
            out.setdefault(table, {}).setdefault(
                (cell["task"], cell["algo"], cell["variant"]), []).append(ours)
    for cells in out.values():
        for same_key in cells.values():
            same_key.sort(key=lambda c: (c.get("backend") != PAPER_BACKEND,
                                         backend_sort_key(c.get("backend"))))
    return out


def _judged(ours_by_table: Mapping[str, Mapping[Key, list[dict[str, Any]]]], table: str
            ) -> dict[Key, dict[str, Any]]:
    """The cell of ours the verdicts of ``table`` judge, per key (module docstring)."""
    return {key: cells[0] for key, cells in ours_by_table.get(table, {}).items()}


def _backend_note(cell: Mapping[str, Any], judged: bool, alternatives: int) -> str | None:
    """Why a Table 6 row is or is not judged when several backends were timed."""
    backend = cell.get("backend")
    if alternatives < 2 or backend is None:
        return None
    if judged:
        return (f"backend {backend}" + (" (the paper's Eq 6 programs)"
                                        if backend == PAPER_BACKEND else "") + ": judged")
    return f"backend {backend}: shown, not judged (the paper timed its Eq 6 programs)"


def _delta(ours: Mapping[str, Any] | None, paper: Mapping[str, Any] | None,
           quantities: Iterable[str]) -> dict[str, Any] | None:
    if not ours or not paper:
        return None
    out = {}
    for q in quantities:
        a, b = ours.get(q), paper.get(q)
        out[q] = (a - b) if isinstance(a, int | float) and isinstance(b, int | float) else None
    return out


def _hypotheses(h1_cells: Mapping[Key, Mapping[str, Any]],
                h2_cells: Mapping[Key, Mapping[str, Any]]) -> dict[str, Any]:
    def usable(cells: Mapping[Key, Mapping[str, Any]]) -> dict[Key, Mapping[str, Any]]:
        return {k: v for k, v in cells.items() if v.get("reward") is not None}

    return {"H1": json_safe(evaluate_h1(usable(h1_cells)).to_dict()),
            "H2": json_safe(evaluate_h2(usable(h2_cells)).to_dict())}


def _archive_row(archive: Archive | None, table: str, key: Key) -> dict[str, Any] | None:
    if archive is None:
        return None
    if table == "table6":
        values = archive.wallclock.get(key)
        return dict(values) if values else None
    metrics = archive.cells.get(key)
    if metrics is None:
        return None
    return {"steps": metrics.steps, "reward": metrics.reward,
            "ci": list(metrics.ci) if metrics.ci else None, "stuck": metrics.stuck,
            "runs": metrics.runs}


_TRAINING_QUANTITIES = ("steps", "reward", "stuck")


def _hypothesis_cells(ours_by_table: Mapping[str, Mapping[Key, list[dict[str, Any]]]],
                      tables: Iterable[str]) -> dict[Key, dict[str, Any]]:
    """The cells H1/H2 are decided on: per key, of the judged cells of ``tables`` the one
    closest to the paper's experiment -- comparable (the paper's budget) first, then the most
    runs, then the longest budget -- so a hypothesis is "not run" only when a cell is missing
    from every table (e.g. the SHAC BP/RM cells of a Tables 2-3 campaign decide H2 (a))."""
    out: dict[Key, dict[str, Any]] = {}

    def rank(cell: Mapping[str, Any]) -> tuple[bool, int, int]:
        return (cell.get("comparable") is not False, int(cell.get("runs") or 0),
                int(cell.get("interactions") or 0))

    for table in tables:
        for key, cell in _judged(ours_by_table, table).items():
            if key not in out or rank(cell) > rank(out[key]):
                out[key] = cell
    return out


def _longest_training_cells(cells_doc: Mapping[str, Any] | None) -> dict[Key, dict[str, Any]]:
    """Our training cells by ``(task, algo, variant)``; of several budgets the longest."""
    out: dict[Key, dict[str, Any]] = {}
    for cell in (cells_doc or {}).get("cells", []):
        if cell.get("kind") != "train":
            continue
        key = (cell["task"], cell["algo"], cell["variant"])
        if (cell.get("interactions") or 0) >= (out.get(key, {}).get("interactions") or 0):
            out[key] = {**cell, "comparable": _comparable(cell)}
    return out


def _archive_tables(cells_doc: Mapping[str, Any] | None, archive: Archive | None,
                    paper: Mapping[str, Mapping[Key, Any]]) -> dict[str, Any]:
    """Archived values next to ours for the registered tasks the paper's tables do not cover
    (module docstring); a task appears when the archive or our results have a cell of it."""
    covered = {key[0] for cells in paper.values() for key in cells} | set(paper_tasks())
    ours = _longest_training_cells(cells_doc)
    archived = archive.cells if archive is not None else {}
    out: dict[str, Any] = {}
    for task in task_names():
        if task in covered:
            continue
        keys = sorted({k for k in (*archived, *ours) if k[0] == task},
                      key=lambda k: cell_sort_key(*k))
        if not keys:
            continue
        spec = get_task(task)
        rows = []
        for key in keys:
            mine = ours.get(key)
            reference = _archive_row(archive, "table2", key)
            notes = []
            if reference is None:
                notes.append("not in the archive" if archive is not None
                             else "archive not present")
            if mine is None:
                notes.append("not run in this profile")
            elif mine.get("comparable") is False:
                notes.append(f"budget {mine['interactions']} interactions (the archive's "
                             f"{spec.budget}): deltas do not measure reproduction")
            rows.append({"task": task, "algo": key[1], "variant": key[2], "ours": mine,
                         "archive": reference,
                         "delta": _delta(mine, reference, _TRAINING_QUANTITIES),
                         "note": "; ".join(notes) or None})
        out[task] = {
            "title": f"{spec.label}: the reference's archived curves next to ours",
            "label": spec.label,
            "quantities": list(_TRAINING_QUANTITIES),
            "archive": (f"{archive.curves_path} ('{spec.archive_label}')" if archive is not None
                        else "not present"),
            "rows": rows,
        }
    return out


def build_tables(
    cells_doc: Mapping[str, Any] | None,
    *,
    archive: Archive | None = None,
    paper: Mapping[str, Mapping[Key, Mapping[str, Any]]] | None = None,
) -> dict[str, Any]:
    """The tables document (module docstring) of the measured cells ``cells_doc`` (``None``:
    nothing of ours was run; every row reads "not run").

    Args:
        cells_doc: the content of ``cells.json``.
        archive: the reference archive (:func:`spec.paper.archive.load_reference_archive`);
            ``None`` skips the archive columns, the archive check and the archive's H1/H2.
        paper: the paper's values (default: :func:`spec.paper.values.paper_values`).
    """
    paper = paper_values() if paper is None else paper
    ours_by_table = _ours_by_table(cells_doc)
    alternatives = archive.cell_dicts() if archive is not None else None
    tables_out: dict[str, Any] = {}
    verdicts: dict[str, list[dict[str, Any]]] = {}
    for table, layout in TABLES.items():
        quantities = layout["quantities"]
        paper_cells = paper.get(table, {})
        shown = table_variants(table)
        ours_all = {k: v for k, v in ours_by_table.get(table, {}).items() if k[2] in shown}
        ours_table = {k: v for k, v in _judged(ours_by_table, table).items() if k[2] in shown}
        comparisons: list[CellComparison] = compare_tables(ours_table, alternatives=alternatives,
                                                           tables=[table])
        verdicts[table] = [c.to_dict() for c in comparisons]
        keys = sorted(set(paper_cells) | set(ours_table), key=lambda k: cell_sort_key(*k))
        rows = []
        for key in keys:
            paper_values_ = paper_cells.get(key)
            paper_row = ({q: paper_values_[q] for q in quantities if q in paper_values_}
                         if paper_values_ else None)
            candidates: list[dict[str, Any] | None] = [*ours_all.get(key, [])] or [None]
            for index, ours in enumerate(candidates):
                note = (paper_values_ or {}).get("note")
                if ours is None:
                    note = "; ".join(filter(None, [note, "not run in this profile"]))
                else:
                    note = "; ".join(filter(None, [
                        note, _backend_note(ours, index == 0, len(candidates))]))
                    if ours.get("comparable") is False:
                        note = "; ".join(filter(None, [
                            note, f"budget {ours['interactions']} interactions (paper "
                                  f"{get_task(key[0]).budget}): deltas do not measure "
                                  "reproduction"]))
                rows.append({
                    "task": key[0], "algo": key[1], "variant": key[2],
                    "label": (paper_values_ or {}).get("label") or key[2],
                    "backend": (ours or {}).get("backend"), "judged": index == 0,
                    "ours": ours, "paper": paper_row,
                    "archive": _archive_row(archive, table, key),
                    "delta": _delta(ours, paper_row, quantities),
                    "note": note or None,
                })
        tables_out[table] = {"title": layout["title"], "quantities": list(quantities),
                             "rows": rows}
    wallclock = (cells_doc or {}).get("wallclock")
    if wallclock:
        paper_timed = timed_interactions()
        tables_out["table6"]["interactions"] = wallclock["interactions"]
        tables_out["table6"]["note"] = (
            f"measured on {wallclock['interactions']} {wallclock['task']} interactions per run"
            + ("" if wallclock["interactions"] == paper_timed else
               f" (the paper timed {paper_timed}; scaled down to fit the profile's budget: "
               "ratios of equal interaction counts)"))

    h1_cells = _hypothesis_cells(ours_by_table, ("table2", "table3"))
    h2_cells = _hypothesis_cells(ours_by_table, ("h2", "table2", "table3", "table4",
                                                 "table5"))
    check = archive_check(archive, paper)
    if archive is not None:
        archived = {k: {"reward": v.reward, "stuck": v.stuck, "steps": v.steps}
                    for k, v in archive.cells.items()}
        check["hypotheses"] = _hypotheses(archived, archived)
    doc = cells_doc or {}
    return json_safe({
        "format": TABLES_FORMAT,
        "profile": doc.get("profile"),
        "safe_sets": doc.get("safe_sets"),
        "env_options": doc.get("env_options"),
        "definitions": doc.get("definitions", {}),
        "tables": tables_out,
        "verdicts": verdicts,
        "archive_tables": _archive_tables(cells_doc, archive, paper),
        "pcrpo": pcrpo_table(cells_doc),
        "hypotheses": _hypotheses(h1_cells, h2_cells),
        "hypotheses_note": (
            "computed from cells whose budget is below the paper's: these verdicts are not "
            "evidence about the paper's claims"
            if any(c.get("comparable") is False for c in (*h1_cells.values(),
                                                           *h2_cells.values())) else None),
        "archive_check": check,
    })


# --------------------------------------------------------------------------------------------
# markdown
# --------------------------------------------------------------------------------------------
def _signed(value: Any, kind: str = "") -> str:
    if value is None:
        return "–"
    text = _fmt(value, kind)
    return text if text.startswith("-") else "+" + text


def _short(values: Mapping[str, Any] | None) -> str:
    if not values:
        return "–"
    return "{" + ", ".join(f"{k}: {_fmt(values.get(k))}" for k in ("steps", "reward", "stuck")
                           if k in values) + "}"


def _table_lines(table_id: str, table: Mapping[str, Any]) -> list[str]:
    lines = [f"## {table['title']}", ""]
    if table.get("note"):
        lines += [f"_{table['note']}_", ""]
    if table_id == "table6":
        lines += ["| Algorithm | Safeguard | Backend | ours | paper | Δ | archive | ours seconds | "
                  "note |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for row in table["rows"]:
            ours, paper, arch = row["ours"] or {}, row["paper"] or {}, row["archive"] or {}
            delta = (row["delta"] or {}).get("wallclock_ratio")
            lines.append(
                f"| {row['algo'].upper()} | {row['variant']} | {row.get('backend') or '–'} | "
                f"{_fmt(ours.get('wallclock_ratio'), 'ratio')} | "
                f"{_fmt(paper.get('wallclock_ratio'), 'ratio')} | {_signed(delta, 'ratio')} | "
                f"{_fmt(arch.get('wallclock_ratio'), 'ratio')} | {_fmt(ours.get('seconds'))} | "
                f"{row.get('note') or ''} |")
        return [*lines, ""]
    lines += [
        "| Task | Algorithm | Variant | Steps | Reward [95% CI] | Stuck | Stalled | "
        "Fallbacks | Uncertified | "
        "paper Steps | paper Reward | paper Stuck | Δ Steps | Δ Reward | Δ Stuck | note |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in table["rows"]:
        ours, paper = row["ours"], row["paper"] or {}
        delta = row["delta"] or {}
        runs = f" / {ours.get('runs')}" if ours and ours.get("runs") else ""
        lines.append(
            f"| {row['task']} | {row['algo'].upper()} | {row['label']} | "
            f"{_fmt((ours or {}).get('steps'), 'steps')} | {_reward_with_ci(ours)} | "
            f"{_fmt((ours or {}).get('stuck'))}{runs} | {_fmt((ours or {}).get('stalled'))} | "
            f"{_fmt((ours or {}).get('fallbacks'))} | {_fmt((ours or {}).get('uncertified'))} | "
            f"{_fmt(paper.get('steps'), 'steps')} | {_fmt(paper.get('reward'))} | "
            f"{_fmt(paper.get('stuck'))} | {_signed(delta.get('steps'), 'steps')} | "
            f"{_signed(delta.get('reward'))} | {_signed(delta.get('stuck'))} | "
            f"{row.get('note') or ''} |")
    return [*lines, ""]


def archive_table_lines(table: Mapping[str, Any], heading: str = "##") -> list[str]:
    """Markdown of one table of ``archive_tables`` (a task beyond the paper's tables)."""
    lines = [f"{heading} {table['title']}", "",
             f"_Reference values: the metrics of the archived curves ({table['archive']}); the "
             "paper prints none for this task, so there are deltas but no verdicts._", "",
             "| Algorithm | Variant | Steps | Reward [95% CI] | Stuck | archive Steps | "
             "archive Reward | archive Stuck | Δ Steps | Δ Reward | Δ Stuck | note |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for row in table["rows"]:
        ours, arch = row["ours"] or {}, row["archive"] or {}
        delta = row["delta"] or {}
        runs = f" / {ours.get('runs')}" if ours.get("runs") else ""
        lines.append(
            f"| {row['algo'].upper()} | {row['variant']} | {_fmt(ours.get('steps'), 'steps')} | "
            f"{_reward_with_ci(ours or None)} | {_fmt(ours.get('stuck'))}{runs} | "
            f"{_fmt(arch.get('steps'), 'steps')} | {_reward_with_ci(arch or None)} | "
            f"{_fmt(arch.get('stuck'))} | {_signed(delta.get('steps'), 'steps')} | "
            f"{_signed(delta.get('reward'))} | {_signed(delta.get('stuck'))} | "
            f"{row.get('note') or ''} |")
    return [*lines, ""]


def archive_check_lines(check: Mapping[str, Any]) -> list[str]:
    """Markdown of the archive check (the metric definitions on the paper's archived curves)."""
    lines = ["## Metric definitions on the paper's archived curves", ""]
    if not check.get("available"):
        return [*lines, f"Not available: {check.get('reason')}.", ""]
    lines += [
        f"The metric definitions, applied to the reference implementation's archived curves "
        f"({check['path']}), reproduce {check['matching']} of {check['cells']} paper cells "
        f"exactly ({check['rule']}).", "",
    ]
    if check.get("mismatches"):
        lines += ["Mismatches (reported, not hidden):", ""]
        for m in check["mismatches"]:
            lines.append(
                f"- {m['table']} {m['task']}/{m['algo']}/{m['variant']}: paper "
                f"{m['paper']}, archive {_short(m['archive'])}"
                + (f" — {m['note']}" if m.get("note") else ""))
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
    return [*lines, ""]


def render_markdown(tables: Mapping[str, Any]) -> str:
    """Markdown rendering of :func:`build_tables`' output."""
    lines = [f"# The paper's tables next to ours ({tables.get('profile') or 'no'} profile)", ""]
    lines += safe_sets_lines(tables.get("safe_sets") or {})
    lines += env_options_lines(tables.get("env_options") or {})
    if tables.get("definitions"):
        lines += ["Definitions:", ""]
        lines += [f"- **{name}**: {text}" for name, text in tables["definitions"].items()]
        lines.append("")
    for table_id, table in tables.get("tables", {}).items():
        lines += _table_lines(table_id, table)
    for table in (tables.get("archive_tables") or {}).values():
        lines += archive_table_lines(table)
    if tables.get("pcrpo"):
        lines += pcrpo_table_lines(tables["pcrpo"])
    lines += ["## Hypotheses", ""]
    if tables.get("hypotheses_note"):
        lines += [f"_{tables['hypotheses_note']}_", ""]
    for name, verdict in (tables.get("hypotheses") or {}).items():
        lines.append(f"- **{name}** ({verdict.get('statement', '')}): "
                     f"**{verdict.get('verdict')}**"
                     + (f"; missing cells: {', '.join(verdict['missing'])}"
                        if verdict.get("missing") else ""))
    lines.append("")
    lines += archive_check_lines(tables.get("archive_check") or {})
    return "\n".join(lines)


def paper_hypotheses(archive: Archive | None) -> tuple[dict[str, Any], str]:
    """H1/H2 on the paper's own data -- the archived curves when present (they cover the
    modifications, which the text reports only as # Stuck), else the text tables -- and the
    name of that source: a sanity check of the decision rules."""
    cells: Mapping[Key, Mapping[str, Any]]
    if archive is not None:
        cells = archive.cell_dicts()
        source = "archived curves"
    else:
        merged: dict[Key, dict[str, Any]] = {}
        for table in paper_values().values():
            for key, values in table.items():
                merged.setdefault(key, {}).update(values)
        cells, source = merged, "paper text tables"
    return _hypotheses(cells, cells), source
