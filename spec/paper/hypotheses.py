"""Verdicts on the paper's hypotheses H1 and H2 (SPEC §9) from a set of table cells.

The same functions judge our reproduction and — as a sanity check of the decision rules — the
paper's own numbers (text tables plus the archived curves for the modifications, which the text
reports only as # Stuck).

Cells are mappings ``(task, algo, variant) -> {"reward", "stuck", "steps", ...}`` with the
variant names of SPEC §5 (``"No Safeguard"`` for unsafe training).

* **H1** — *with safety guarantees, SHAC outperforms PPO and SAC*: for every task and base
  safeguard (BP, RM), SHAC's final reward is higher than both PPO's and SAC's.
* **H2** — *base safeguards can impede SHAC; the modifications reach equal or better performance
  than unsafe training*: (a) on some task a base safeguard impedes SHAC (its reward is more than
  the 5% band below unsafe training's, or it has more stuck seeds) and (b) on every task the best
  modification (BP Regularisation, RM Regularisation, RM Passthrough Gradient, RM Hyperbolic and
  Regularisation) is within the 5% band of unsafe training or better.  The 5% band is the
  paper's own notion of "reached" (# Steps, SPEC §9).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from safegbpo.safeguards.variants import UNSAFE as UNSAFE_VARIANT
from safegbpo.safeguards.variants import get_variant
from spec.paper.values import paper_tasks

__all__ = ["BAND", "DECISION_RULES", "MODIFICATIONS", "HypothesisVerdict", "evaluate_h1",
           "evaluate_h2"]

BAND = 0.05
"""Relative band of "equal performance" (the paper's 5% convergence band)."""

TASKS = paper_tasks()
"""The paper's tasks (those of its tables, ``paper_tables.json``)."""
BASES = tuple(get_variant(key).label for key in ("bp", "rm"))
"""The base safeguards (report labels of the variant registry)."""
MODIFICATIONS = tuple(get_variant(key).label
                      for key in ("bp-reg", "rm-reg", "rm-passthrough", "rm-hyperbolic-reg"))
"""The modifications H2 is about (SPEC §9: regularisation, passthrough, hyperbolic +
regularisation)."""
UNSAFE = UNSAFE_VARIANT.label

Cells = Mapping[tuple[str, str, str], Mapping[str, Any]]

DECISION_RULES = {
    "H1": "for every paper task (" + ", ".join(TASKS) + ") and base safeguard ("
          + ", ".join(BASES) + "), SHAC's final seed-mean reward is higher than both PPO's and "
          "SAC's; supported if every pair holds, not supported if none does, partially "
          "supported otherwise; pairs without all three cells are listed as missing "
          "('(incomplete)'), 'not run' when no pair has them",
    "H2": f"(a) on some task a base safeguard impedes SHAC: its final reward is below unsafe "
          f"training's minus {BAND:.0%} of |unsafe| or it has more stuck seeds; (b) on every "
          f"task the best modification ({', '.join(MODIFICATIONS)}) reaches at least unsafe "
          f"training's reward minus {BAND:.0%} of |unsafe|; supported if (a) and every (b) "
          "hold, not supported if none does, partially supported otherwise; missing cells are "
          "listed ('(incomplete)'), 'not run' when neither part can be evaluated",
}
"""The decision rules of H1 and H2 as the report states them."""


@dataclass
class HypothesisVerdict:
    """``verdict``: ``"supported"``, ``"not supported"``, ``"partially supported"`` or
    ``"not run"`` (cells missing); ``comparisons``: one row per comparison made."""

    hypothesis: str
    statement: str
    verdict: str
    comparisons: list[dict[str, Any]] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _reward(cells: Cells, key: tuple[str, str, str]) -> float | None:
    cell = cells.get(key)
    if cell is None or cell.get("reward") is None:
        return None
    return float(cell["reward"])


def _combine(results: list[bool]) -> str:
    if not results:
        return "not run"
    if all(results):
        return "supported"
    if not any(results):
        return "not supported"
    return "partially supported"


def evaluate_h1(cells: Cells) -> HypothesisVerdict:
    """H1 over both tasks and both base safeguards (module docstring)."""
    rows, missing, results = [], [], []
    for task in TASKS:
        for base in BASES:
            shac = _reward(cells, (task, "shac", base))
            maybe = {algo: _reward(cells, (task, algo, base)) for algo in ("ppo", "sac")}
            others = {algo: r for algo, r in maybe.items() if r is not None}
            if shac is None or len(others) != len(maybe):
                missing.append(f"{task}/{base}")
                continue
            best_other = max(others.values())
            ok = shac > best_other
            results.append(ok)
            rows.append({"task": task, "safeguard": base, "shac": shac, **others,
                         "holds": ok})
    verdict = _combine(results) if not missing else ("not run" if not results
                                                     else _combine(results) + " (incomplete)")
    return HypothesisVerdict("H1", "with safety guarantees, SHAC outperforms PPO and SAC "
                                   "(final reward, per task and base safeguard)",
                             verdict, rows, missing)


def evaluate_h2(cells: Cells) -> HypothesisVerdict:
    """H2 (a) and (b) over both tasks (module docstring)."""
    rows, missing = [], []
    impeded_any: list[bool] = []
    mitigated: list[bool] = []
    for task in TASKS:
        unsafe_cell = cells.get((task, "shac", UNSAFE)) or {}
        unsafe = _reward(cells, (task, "shac", UNSAFE))
        if unsafe is None:
            missing.append(f"{task}/shac/{UNSAFE}")
            continue
        floor = unsafe - BAND * abs(unsafe)
        unsafe_stuck = int(unsafe_cell.get("stuck") or 0)
        for base in BASES:
            cell = cells.get((task, "shac", base)) or {}
            reward = _reward(cells, (task, "shac", base))
            if reward is None:
                missing.append(f"{task}/shac/{base}")
                continue
            stuck = int(cell.get("stuck") or 0)
            impeded = reward < floor or stuck > unsafe_stuck
            impeded_any.append(impeded)
            rows.append({"part": "a", "task": task, "variant": base, "reward": reward,
                         "stuck": stuck, "unsafe_reward": unsafe, "unsafe_stuck": unsafe_stuck,
                         "impeded": impeded})
        mods = {m: _reward(cells, (task, "shac", m)) for m in MODIFICATIONS}
        present = {m: r for m, r in mods.items() if r is not None}
        missing.extend(f"{task}/shac/{m}" for m, r in mods.items() if r is None)
        if present:
            best = max(present, key=lambda m: present[m])
            ok = present[best] >= floor
            mitigated.append(ok)
            rows.append({"part": "b", "task": task, "variant": best, "reward": present[best],
                         "unsafe_reward": unsafe, "floor": floor, "holds": ok})
    if not impeded_any and not mitigated:
        verdict = "not run"
    else:
        parts = [any(impeded_any)] if impeded_any else []
        parts += mitigated
        verdict = _combine(parts)
        if missing:
            verdict += " (incomplete)"
    return HypothesisVerdict(
        "H2", "base safeguards can impede SHAC; the best modification reaches the 5% band of "
              "unsafe training or better on every task", verdict, rows, missing)
