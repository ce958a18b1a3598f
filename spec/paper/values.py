"""The paper's Tables 2–6 as data (``paper_tables.json``, transcribed from SPEC §9) and their
layout.

Each cell is keyed by ``(task, algo, variant)`` -- the task and algorithm keys of the
registries, the variant's report label (:mod:`safegbpo.safeguards.variants`, ``"No Safeguard"``
for unsafe training) -- and carries some of ``steps``, ``reward``, ``stuck``,
``wallclock_ratio``.  The budgets the paper's cells were measured with are the tasks' registry
entries (:attr:`safegbpo.tasks.TaskSpec.budget`); a cell of ours with another budget is not
comparable.

:data:`TABLES` is the layout of the comparison: the quantities of each table and which variants
its rows show (a run tagged for a table by the grid feeds only the rows of its variant).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from safegbpo.safeguards.variants import UNSAFE, get_variant, variants

__all__ = [
    "PAPER_SEEDS",
    "PAPER_TABLES_PATH",
    "QUANTITIES",
    "TABLES",
    "Key",
    "PaperCell",
    "load_paper_tables",
    "paper_cells",
    "paper_tasks",
    "paper_values",
    "table_variants",
    "timed_interactions",
]

PAPER_TABLES_PATH = Path(str(resources.files("spec.paper") / "paper_tables.json"))
QUANTITIES: tuple[str, ...] = ("steps", "reward", "stuck", "wallclock_ratio")
PAPER_SEEDS = 10

Key = tuple[str, str, str]

_TRAINING = ("steps", "reward", "stuck")

TABLES: dict[str, dict[str, Any]] = {
    "table2": {"title": "Table 2 - unsafe training", "quantities": _TRAINING,
               "variants": ("none",)},
    "table3": {"title": "Table 3 - safeguarded training", "quantities": _TRAINING,
               "variants": "safeguarded"},
    "table4": {"title": "Table 4 - SHAC, # Stuck per modification (unsafe row for reference)",
               "quantities": _TRAINING, "variants": "all"},
    "table5": {"title": "Table 5 - SHAC, ray mask centre approximation",
               "quantities": _TRAINING, "variants": ("rm", "rm-orthogonal")},
    "table6": {"title": "Table 6 - wall clock relative to unsafe training (pendulum)",
               "quantities": ("wallclock_ratio",), "variants": "safeguarded"},
}
"""Per table id (as in ``paper_tables.json``): title, quantities and the variants whose rows it
shows -- registry keys, ``"all"`` or ``"safeguarded"`` (every registered variant but unsafe
training), resolved when the tables are built so newly registered variants appear."""


def table_variants(table: str) -> tuple[str, ...]:
    """Report labels of the variants ``table`` shows (:data:`TABLES`)."""
    chosen = TABLES[table]["variants"]
    if chosen == "all":
        return tuple(v.label for v in variants())
    if chosen == "safeguarded":
        return tuple(v.label for v in variants() if v.key != UNSAFE.key)
    return tuple(get_variant(key).label for key in chosen)


@dataclass(frozen=True)
class PaperCell:
    """One cell of one of the paper's tables."""

    table: str
    task: str
    algo: str
    variant: str
    values: Mapping[str, float]
    label: str = ""
    note: str = ""

    @property
    def key(self) -> Key:
        return (self.task, self.algo, self.variant)


def load_paper_tables(path: str | Path = PAPER_TABLES_PATH) -> dict[str, Any]:
    """The JSON of ``paper_tables.json`` (validated: format and required fields)."""
    data = json.loads(Path(path).read_text())
    if data.get("format") != "safegbpo-paper-tables/1":
        raise ValueError(f"{path}: not a safegbpo-paper-tables/1 file")
    for name, table in data["tables"].items():
        for cell in table["cells"]:
            missing = {"task", "algo", "variant"} - set(cell)
            if missing:
                raise ValueError(f"{path}: {name} has a cell without {sorted(missing)}")
            if not set(QUANTITIES) & set(cell):
                raise ValueError(f"{path}: {name} cell {cell} has no quantity")
    return data


def paper_cells(data: Mapping[str, Any] | None = None) -> list[PaperCell]:
    """All cells of all tables, in table order."""
    data = load_paper_tables() if data is None else data
    cells = []
    for name, table in data["tables"].items():
        for c in table["cells"]:
            cells.append(PaperCell(
                table=name, task=c["task"], algo=c["algo"], variant=c["variant"],
                values={q: float(c[q]) for q in QUANTITIES if q in c},
                label=c.get("label", ""), note=c.get("note", "")))
    return cells


def paper_values(data: Mapping[str, Any] | None = None
                 ) -> dict[str, dict[Key, dict[str, Any]]]:
    """``{table: {(task, algo, variant): {quantity: value, 'label', 'note'}}}`` with the values
    as printed (ints stay ints: Steps and Stuck are counts)."""
    data = load_paper_tables() if data is None else data
    out: dict[str, dict[Key, dict[str, Any]]] = {}
    for name, table in data["tables"].items():
        for c in table["cells"]:
            entry = {k: v for k, v in c.items() if k not in ("task", "algo", "variant")}
            out.setdefault(name, {})[(c["task"], c["algo"], c["variant"])] = entry
    return out


def paper_tasks(data: Mapping[str, Any] | None = None) -> tuple[str, ...]:
    """The tasks of the paper's tables, in order of appearance."""
    return tuple(dict.fromkeys(c.task for c in paper_cells(data)))


def timed_interactions(data: Mapping[str, Any] | None = None) -> int:
    """The interactions per run the paper's Table 6 timed (10000)."""
    data = load_paper_tables() if data is None else data
    return int(data["tables"]["table6"]["interactions"])
