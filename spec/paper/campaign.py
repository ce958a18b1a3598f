"""The campaign view of the report: paper -> ours (own sets) -> ours (paper's sets), per cell.

:func:`build_campaign` reads a results directory's run records
(:func:`safegbpo.experiments.campaign.measure_record_cells`: no grid, no retraining, so a campaign
spread over sessions and ``--safe-sets`` choices is reported as a whole) and lines every cell of
the paper's Tables 2-5 that we ran up with

* the paper's value and the comparison rule (:mod:`spec.paper.rules`);
* ours on the project's own certified sets and ours on the paper's sets (runs made with
  ``--safe-sets ../shared/reference/safe_sets``, recognised by the sets' content hash): value,
  bootstrap CI (Reward), what the cell ran ("3/10 seeds, 46k/100k"), the delta and the relative
  delta, and a verdict -- only for a *complete* cell (the paper's 10 seeds and budget, the SPEC
  §13 protocol, no run in progress); every other cell reads ``n/c`` and its delta is shown, not
  judged;
* where we differ (a failed or non-comparable value), the most likely reason from the rule table
  of :mod:`spec.paper.reasons` (measured facts: budget, seeds, protocol, safe-set volumes,
  initial rewards, band width);

and decides H1/H2 (:mod:`spec.paper.hypotheses`) from our cells on each kind of set.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from safegbpo.experiments.campaign import has_records, measure_record_cells
from safegbpo.experiments.cells import cell_sort_key, json_safe
from safegbpo.reference import reference_dir
from spec.paper.archive import Archive
from spec.paper.hypotheses import DECISION_RULES, evaluate_h1, evaluate_h2
from spec.paper.reasons import explain, reason_table_lines, short_count
from spec.paper.rules import _ci_half, compare_value, rule_for, steps_floor
from spec.paper.values import Key, paper_values

__all__ = ["SET_KINDS", "build_campaign", "campaign_lines", "coverage"]

SET_KINDS = {"own": "ours (own sets)", "paper": "ours (paper's sets)"}
_QUANTITIES = ("stuck", "steps", "reward")
_TRAINING_TABLES = ("table2", "table3", "table4", "table5")


def coverage(cell: Mapping[str, Any]) -> str:
    """What a cell ran, e.g. ``"3/10 seeds, 46k/100k"`` (+ ``", 2 running"``)."""
    text = (f"{cell.get('runs', 0)}/{cell.get('paper_seeds', 10)} seeds, "
            f"{short_count(cell['interactions'])}/{short_count(cell['budget'])}")
    if cell.get("running"):
        text += f", {len(cell['running'])} running"
    if cell.get("protocol_differences"):
        text += ", protocol differs"
    return text


def _pick(cells: list[dict[str, Any]]) -> dict[str, Any]:
    """Of several configurations of one cell: complete first, then most runs, longest budget."""
    return max(cells, key=lambda c: (bool(c.get("complete")), int(c.get("runs") or 0),
                                     int(c.get("interactions") or 0)))


def _paper_cells() -> dict[Key, dict[str, Any]]:
    """The paper's training values per cell, merged over Tables 2-5 (a cell shown in two
    tables has the same values in both)."""
    out: dict[Key, dict[str, Any]] = {}
    for table, cells in paper_values().items():
        if table not in _TRAINING_TABLES:
            continue
        for key, values in cells.items():
            entry = out.setdefault(key, {"tables": [], "note": values.get("note")})
            entry["tables"].append(table)
            for q in _QUANTITIES:
                if q in values and q not in entry:
                    entry[q] = values[q]
    return out


def _volumes(tasks: list[str], reference: Path | None) -> dict[str, dict[str, float | None]]:
    """State-set volumes (measured by :meth:`SafeSet.volume`) of the project's set and of the
    paper's set per task."""
    from safegbpo.experiments.reproduce import describe_safe_sets

    out: dict[str, dict[str, float | None]] = {}
    for task in tasks:
        own = describe_safe_sets({task: None})[task].get("volume")
        path = reference / "safe_sets" / f"{task}.json" if reference is not None else None
        theirs = (describe_safe_sets({task: str(path)})[task].get("volume")
                  if path is not None and path.is_file() else None)
        out[task] = {"own": own, "paper": theirs}
    return out


def _side(quantity: str, key: Key, paper: Mapping[str, Any], cell: Mapping[str, Any] | None,
          archive_cell: Mapping[str, Any] | None, volume: float | None,
          paper_volume: float | None) -> dict[str, Any] | None:
    if cell is None:
        return None
    value = cell.get(quantity)
    out: dict[str, Any] = {"ran": coverage(cell), "value": value,
                           "ci": cell.get("ci") if quantity == "reward" else None,
                           "complete": bool(cell.get("complete"))}
    if value is None:
        return {**out, "verdict": "no value", "delta": None, "relative": None,
                "reason": "every seed stuck" if cell.get("runs") else "no run", "also": []}
    reference = float(paper[quantity])
    delta = float(value) - reference
    out["delta"] = delta
    out["relative"] = delta / abs(reference) if reference else None
    rule = rule_for(*key, quantity)
    ok = compare_value(rule, reference, float(value), task=key[0], quantity=quantity,
                       runs=cell.get("runs"), ci_half=_ci_half(cell))
    if not ok and paper.get("note") and archive_cell and archive_cell.get(quantity) is not None:
        ok = compare_value(rule, float(archive_cell[quantity]), float(value), task=key[0],
                           quantity=quantity, runs=cell.get("runs"), ci_half=_ci_half(cell))
    out["within_tolerance"] = ok
    out["verdict"] = ("pass" if ok else "fail") if cell.get("complete") else "n/c"
    if out["verdict"] == "pass" or delta == 0:
        out["reason"], out["also"] = None, []
    else:
        out["reason"], out["also"] = explain(quantity, cell, archive=archive_cell,
                                             volume=volume, paper_volume=paper_volume)
    return out


def _hypotheses(picked: Mapping[Key, Mapping[str, Any]]) -> dict[str, Any]:
    usable = {k: v for k, v in picked.items() if v.get("reward") is not None}
    out = {}
    for name, evaluate in (("H1", evaluate_h1), ("H2", evaluate_h2)):
        verdict = evaluate(usable).to_dict()
        used = [c for c in verdict.get("comparisons", [])]
        keys = {k for k in usable if any(k[0] == r.get("task") for r in used)}
        incomplete = sorted("/".join(k) + f" ({coverage(usable[k])})" for k in keys
                            if not usable[k].get("complete"))
        verdict["rule"] = DECISION_RULES[name]
        verdict["incomplete_cells"] = incomplete
        out[name] = verdict
    return out


def build_campaign(results: str | Path | None, *, archive: Archive | None = None,
                   reference: str | Path | None = "default",
                   volumes: Mapping[str, Mapping[str, float | None]] | None = None
                   ) -> dict[str, Any]:
    """The campaign section (module docstring) of ``results``; ``{"available": False,
    "reason"}`` without records.

    Args:
        results: the results directory.
        archive: the reference archive (for the archived curves' initial rewards).
        reference: the reference directory (recognises the paper's sets, measures their
            volume); ``'default'``: :func:`safegbpo.reference.reference_dir`.
        volumes: per task ``{"own", "paper"}`` state-set volumes (default: measured now).
    """
    if results is None or not has_records(results):
        return {"available": False,
                "reason": f"no run records in {results}/records" if results is not None
                else "no --results directory"}
    ref = reference_dir() if reference == "default" else (Path(reference) if reference else None)
    measured = measure_record_cells(results, reference=ref)
    cells = [c for c in measured["cells"] if c["safe_set_kind"] in SET_KINDS]
    by_kind: dict[str, dict[Key, list[dict[str, Any]]]] = {k: {} for k in SET_KINDS}
    for c in cells:
        by_kind[c["safe_set_kind"]].setdefault((c["task"], c["algo"], c["variant"]), []).append(c)
    picked = {kind: {k: _pick(v) for k, v in cells_of.items()}
              for kind, cells_of in by_kind.items()}
    tasks = sorted({c["task"] for c in cells}, key=lambda t: cell_sort_key(t, "", "")[0])
    vols = dict(volumes) if volumes is not None else _volumes(tasks, ref)
    archived = archive.cell_dicts() if archive is not None else {}
    paper = _paper_cells()
    in_progress: dict[Key, list[str]] = {}
    for entry in measured.get("running_only", []):
        if entry["safe_set_kind"] in SET_KINDS:
            in_progress.setdefault((entry["task"], entry["algo"], entry["variant"]), []).append(
                f"{len(entry['running'])} seeds of {short_count(entry['interactions'])} "
                f"running on the {entry['safe_set_kind']} sets, no record yet")
    rows, not_run = [], []
    for key in sorted(paper, key=lambda k: cell_sort_key(*k)):
        ours = {kind: picked[kind].get(key) for kind in SET_KINDS}
        if not any(ours.values()):
            not_run.append("/".join(key) + (f" ({'; '.join(in_progress[key])})"
                                            if key in in_progress else ""))
            continue
        values = paper[key]
        vol = vols.get(key[0]) or {}
        for quantity in _QUANTITIES:
            if quantity not in values:
                continue
            rule = rule_for(*key, quantity)
            tolerance = rule.describe() + (f" (at least {steps_floor(key[0])})"
                                           if quantity == "steps" else "")
            rows.append({
                "tables": values["tables"], "task": key[0], "algo": key[1], "variant": key[2],
                "quantity": quantity, "paper": values[quantity], "note": values.get("note"),
                "tolerance": tolerance, "why": rule.why,
                "own": _side(quantity, key, values, ours["own"], archived.get(key),
                             vol.get("own"), vol.get("paper")),
                "paper_sets": _side(quantity, key, values, ours["paper"], archived.get(key),
                                    None, None),
            })
    extra = sorted({"/".join(k) for kind in picked.values() for k in kind if k not in paper})
    return json_safe({
        "available": True,
        "results": measured["results"],
        "records": sum(len(c["run_ids"]) for c in measured["cells"]),
        "reference_sets": measured["reference_sets"],
        "volumes": vols,
        "rows": rows,
        "not_run": not_run,
        "beyond_paper": extra,
        "cells": cells,
        "other_sets": [c for c in measured["cells"] if c["safe_set_kind"] not in SET_KINDS],
        "hypotheses": {kind: _hypotheses(picked[kind]) for kind in SET_KINDS},
    })


# --------------------------------------------------------------------------------------------
# markdown
# --------------------------------------------------------------------------------------------
def _fmt(value: Any, quantity: str) -> str:
    if value is None:
        return "–"
    if quantity in ("steps", "stuck"):
        return f"{float(value):.0f}"
    return f"{float(value):.4g}"


def _side_text(side: Mapping[str, Any] | None, quantity: str) -> str:
    if side is None:
        return "not run"
    text = _fmt(side.get("value"), quantity)
    ci = side.get("ci")
    if ci and ci[0] is not None and ci[0] != ci[1]:
        text += f" [{_fmt(ci[0], quantity)}, {_fmt(ci[1], quantity)}]"
    if side.get("delta") is not None:
        rel = side.get("relative")
        text += f" (Δ {side['delta']:+.4g}" + (f", {rel:+.0%}" if rel is not None else "") + ")"
    mark = {"pass": "✅", "fail": "❌", "n/c": "n/c"}.get(side.get("verdict", ""), "")
    return f"{text} {mark} · {side['ran']}"


def campaign_lines(section: Mapping[str, Any], heading: str = "##") -> list[str]:
    """Markdown of :func:`build_campaign`'s section."""
    lines = [f"{heading} Campaign: paper → ours (own sets) → ours (paper's sets)", ""]
    if not section.get("available"):
        return [*lines, f"Not available: {section.get('reason')}.", ""]
    lines += [
        f"Measured from {section['records']} run records in `{section['results']}` (no "
        "retraining). Each value reads `ours [95% bootstrap CI] (Δ = ours - paper, relative to "
        "|paper|)` and what the cell ran (seeds of the paper's 10, interactions of the paper's "
        "budget). ✅/❌ is the verdict of the cell's tolerance rule; it is given only for a "
        "complete cell (10 seeds, the paper's budget and SPEC §13 protocol, no run in "
        "progress); `n/c` = not comparable: the delta is shown, not judged. The paper's sets "
        "are the runs with `--safe-sets ../shared/reference/safe_sets`, recognised by the "
        "sets' SHA-256.", ""]
    vols = section.get("volumes") or {}
    if vols:
        lines += ["State-set volumes (measured by the code): " + "; ".join(
            f"{t}: own {_fmt(v.get('own'), '')}, paper's {_fmt(v.get('paper'), '')}"
            for t, v in vols.items()) + ".", ""]
    lines += ["| cell | quantity | paper | ours (own sets) | ours (paper's sets) | rule |",
              "|---|---|---|---|---|---|"]
    for r in section["rows"]:
        lines.append(
            f"| {r['task']} {r['algo'].upper()} {r['variant']} ({', '.join(r['tables'])}) | "
            f"{r['quantity']} | {_fmt(r['paper'], r['quantity'])} | "
            f"{_side_text(r['own'], r['quantity'])} | "
            f"{_side_text(r['paper_sets'], r['quantity'])} | {r['tolerance']} — {r['why']} |")
    if section.get("not_run"):
        lines += ["", "Paper cells without a run of ours: " + ", ".join(section["not_run"])
                  + "."]
    lines += ["", f"{heading}# Where we differ, by how much and the most likely reason", "",
              "For every value that failed its rule or is not comparable: the delta, the "
              "relative delta and the first rule of the table below that fires (measured "
              "facts only; the others follow as 'also').", "",
              "| cell | quantity | sets | Δ | Δ relative | most likely reason | also |",
              "|---|---|---|---|---|---|---|"]
    for r in section["rows"]:
        for kind, name in (("own", "own"), ("paper_sets", "paper's")):
            side = r.get(kind)
            if not side or not side.get("reason"):
                continue
            rel = side.get("relative")
            lines.append(
                f"| {r['task']} {r['algo'].upper()} {r['variant']} | {r['quantity']} | {name} | "
                f"{_fmt(side.get('delta'), r['quantity'])} | "
                f"{'–' if rel is None else f'{rel:+.0%}'} | {side['reason']} | "
                f"{'; '.join(side.get('also') or []) or '–'} |")
    lines += ["", "Rule table (`spec/paper/reasons.py`, first match is the most likely reason):",
              "", *reason_table_lines(), ""]
    lines += [f"{heading}# H1 and H2 from the campaign's cells", ""]
    for kind, name in SET_KINDS.items():
        for hyp, verdict in (section.get("hypotheses") or {}).get(kind, {}).items():
            lines.append(f"- **{hyp}**, {name}: **{verdict.get('verdict')}**"
                         + (f"; missing cells: {', '.join(verdict['missing'])}"
                            if verdict.get("missing") else "")
                         + (f"; decided from incomplete cells: "
                            f"{', '.join(verdict['incomplete_cells'])}"
                            if verdict.get("incomplete_cells") else ""))
    lines += ["", "Decision rules:", ""]
    lines += [f"- **{name}**: {text}" for name, text in DECISION_RULES.items()]
    return [*lines, ""]
