"""The soft-constraint baseline next to the safeguards (SPEC §12): PCRPO vs PPO (unsafe), PPO
with the boundary projection / ray mask, and SHAC with its best safeguard, per task.

:func:`pcrpo_table` reads the measured cells (``cells.json``, :mod:`safegbpo.experiments.cells`)
and lines up, per registered task with a PCRPO cell: Reward (with its bootstrap CI), # Steps,
# Stuck, the realised states outside ``S_s`` during the runs (training and evaluation episodes,
counted by the reproduction's independent safety monitor, the same membership test that gives
PCRPO its cost) and the mean training wall clock.  "SHAC with the best safeguard" is the SHAC
cell with a safeguard (any variant of the registry whose ``safeguard`` is set) with the highest
Reward; of several budgets of one cell the longest is shown.  Nothing here is a verdict: there
is no paper value for PCRPO.  PCRPO has no safeguard, so the safeguard audit (``safegbpo
audit``, P1–P5) does not apply to it; its safety is what the monitor measured during training.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from safegbpo.experiments.cells import cell_sort_key, json_safe
from safegbpo.experiments.cells import format_reward as _reward_with_ci
from safegbpo.experiments.cells import format_value as _fmt
from safegbpo.safeguards.variants import UNSAFE, get_variant
from safegbpo.tasks import get_task, task_names

__all__ = ["AUDIT_NOTE", "pcrpo_summary", "pcrpo_table", "pcrpo_table_lines"]

AUDIT_NOTE = ("PCRPO has no safeguard, so the safeguard audit (`safegbpo audit`, P1–P5) does not "
              "apply to it: a soft constraint gives no per-step guarantee to audit.  Its safety "
              "is measured instead: the realised states outside the safe state set during its "
              "runs, counted by the same independent monitor as every safeguarded run.")

_Key = tuple[str, str, str]


def _safeguarded(variant: str) -> bool:
    try:
        return get_variant(variant).train_fields.get("safeguard") is not None
    except (ValueError, TypeError):
        return False


def _longest(cells_doc: Mapping[str, Any] | None) -> dict[_Key, dict[str, Any]]:
    out: dict[_Key, dict[str, Any]] = {}
    for cell in (cells_doc or {}).get("cells", []):
        if cell.get("kind") != "train":
            continue
        key = (cell["task"], cell["algo"], cell["variant"])
        if (cell.get("interactions") or 0) >= (out.get(key, {}).get("interactions") or 0):
            out[key] = dict(cell)
    return out


def _row(role: str, key: _Key, cell: Mapping[str, Any] | None, note: str | None = None
         ) -> dict[str, Any]:
    return {"role": role, "task": key[0], "algo": key[1], "variant": key[2],
            "safeguarded": _safeguarded(key[2]), "ours": dict(cell) if cell else None,
            "note": note if cell else "; ".join(filter(None, [note, "not run in this profile"]))}


def pcrpo_table(cells_doc: Mapping[str, Any] | None) -> dict[str, Any]:
    """``{"title", "audit_note", "tasks": {task: {"label", "rows": [...]}}}`` (module
    docstring); a row: ``role``, ``task``, ``algo``, ``variant``, ``safeguarded``, ``ours``
    (the measured cell or ``None``), ``note``."""
    cells = _longest(cells_doc)
    tasks: dict[str, Any] = {}
    for task in task_names():
        pcrpo_key = (task, "pcrpo", UNSAFE.label)
        if pcrpo_key not in cells:
            continue
        pcrpo = cells[pcrpo_key]
        info = pcrpo.get("pcrpo") or {}
        modes = info.get("mode_counts") or {}
        cos = info.get("cos_mean")
        conflict = info.get("conflict_fraction")
        pcrpo_note = (
            f"cost limit b = {_fmt(info.get('cost_limit'))}, slack h+ = "
            f"{_fmt(info.get('slack_upper'))}, h- = {_fmt(info.get('slack_lower'))} unsafe "
            f"states per episode; iterations in mode reward/both/cost = "
            f"{modes.get('reward', 0)}/{modes.get('both', 0)}/{modes.get('cost', 0)}; mean "
            f"cos(g_r, g_c) = {_fmt(cos)}"
            + (f", conflicting in {conflict:.0%} of the mini-batches"
               if conflict is not None else "")) if info else None
        rows = [_row("PCRPO (soft constraint)", pcrpo_key, pcrpo, pcrpo_note)]
        for variant in (UNSAFE.label, "BP", "RM"):
            key = (task, "ppo", variant)
            rows.append(_row("PPO" if variant == UNSAFE.label else f"PPO + {variant}", key,
                             cells.get(key)))
        shac = [(k, c) for k, c in cells.items() if k[0] == task and k[1] == "shac"
                and _safeguarded(k[2]) and c.get("reward") is not None]
        if shac:
            key, best = max(shac, key=lambda kc: (kc[1]["reward"],
                                                  -cell_sort_key(*kc[0])[1]))
            rows.append(_row("SHAC + best safeguard", key, best,
                             f"highest Reward of {len(shac)} safeguarded SHAC cells"))
        else:
            rows.append(_row("SHAC + best safeguard", (task, "shac", "–"), None))
        tasks[task] = {"label": get_task(task).label, "rows": rows}
    return json_safe({
        "title": "Soft-constraint baseline: PCRPO vs the safeguards (SPEC §12)",
        "audit_note": AUDIT_NOTE,
        "tasks": tasks,
    })


def pcrpo_summary(table: Mapping[str, Any]) -> dict[str, str]:
    """A summary row of the compliance report: what the table shows, no verdict."""
    parts = []
    for task, entry in (table.get("tasks") or {}).items():
        rows = entry["rows"]
        pcrpo = rows[0]["ours"] or {}
        guarded = [r["ours"] for r in rows if r["safeguarded"] and r["ours"]
                   and r["ours"].get("unsafe_states") is not None]
        parts.append(f"{task}: PCRPO {_fmt(pcrpo.get('unsafe_states'))} of "
                     f"{_fmt(pcrpo.get('monitored_states'))} monitored states outside S_s; "
                     f"safeguarded runs shown: {sum(g['unsafe_states'] for g in guarded)} of "
                     f"{sum(g.get('monitored_states') or 0 for g in guarded)}")
    if not parts:
        return {"status": "NOT RUN", "why": "no PCRPO cell in the results"}
    return {"status": "REPORTED", "why": "; ".join(parts) + " (no safeguard: audit n/a)"}


def pcrpo_table_lines(table: Mapping[str, Any], heading: str = "##") -> list[str]:
    """Markdown of :func:`pcrpo_table`."""
    lines = [f"{heading} {table['title']}", "", table["audit_note"], ""]
    if not table.get("tasks"):
        return [*lines, "Not run: no PCRPO cell in the results.", ""]
    lines += ["Unsafe states: realised states outside S_s during the cell's runs (training and "
              "evaluation episodes, all seeds), by the independent safety monitor; wall clock: "
              "mean training seconds per seed (evaluation excluded; a seed trained in a "
              "population of P seeds is charged 1/P of the population's wall clock).", ""]
    for entry in table["tasks"].values():
        lines += [f"{heading}# {entry['label']}", "",
                  "| Method | Variant | Interactions | Seeds | Steps | Reward [95% CI] | Stuck | "
                  "Unsafe states / monitored | Wall clock (s) | note |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for row in entry["rows"]:
            ours = row["ours"] or {}
            runs = f" / {ours.get('runs')}" if ours.get("runs") else ""
            unsafe = ("–" if ours.get("unsafe_states") is None else
                      f"{ours['unsafe_states']} / {ours.get('monitored_states')}")
            lines.append(
                f"| {row['role']} | {row['variant']} | {_fmt(ours.get('interactions'))} | "
                f"{len(ours.get('seeds') or [])} | {_fmt(ours.get('steps'), 'steps')} | "
                f"{_reward_with_ci(ours or None)} | {_fmt(ours.get('stuck'))}{runs} | "
                f"{unsafe} | {_fmt(ours.get('training_seconds'))} | {row.get('note') or ''} |")
        lines.append("")
    return lines
