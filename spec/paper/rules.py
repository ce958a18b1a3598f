"""The rules that decide whether our numbers reproduce the paper's (SPEC §9).

:func:`compare_tables` lines every paper value (:mod:`spec.paper.values`) up with ours (a
mapping with the same keys whose values hold the same quantities, e.g.
:class:`safegbpo.experiments.metrics.CellMetrics` as a dict) and decides each quantity with a
:class:`Rule`.  The tolerances are deliberately explicit: a reproduction on a different safe set
(we compute our own RCI set, SPEC §7), other hardware and other seeds cannot match the paper
digit for digit; the rules say how far is still "the same result", and why.

Default rules (per quantity) and per-cell overrides live in :data:`DEFAULT_RULES` and
:data:`CELL_RULES`; every tolerance has its justification in a comment.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from safegbpo.tasks import get_task
from spec.paper.values import PAPER_SEEDS, Key, paper_cells

__all__ = [
    "Rule",
    "DEFAULT_RULES",
    "CELL_RULES",
    "CellComparison",
    "rule_for",
    "steps_floor",
    "compare_value",
    "compare_tables",
]


@dataclass(frozen=True)
class Rule:
    """How one quantity of one cell is compared.

    Attributes:
        kind: ``"abs_rel"``: pass iff ``|ours - paper| <= rel * |paper| + abs_ + ci_half``
            (``ci_half`` = half-width of our 95% CI when ``use_ci``);
            ``"ratio"``: pass iff ``1/factor <= ours/paper <= factor`` (same sign required);
            ``"fraction"``: pass iff ``|ours/runs - paper/10| <= rel`` (counts out of the seeds).
        rel, abs_, factor, use_ci: parameters of the kind.
        why: the justification, printed next to the verdict in the report.
    """

    kind: str
    rel: float = 0.0
    abs_: float = 0.0
    factor: float = 1.0
    use_ci: bool = False
    why: str = ""

    def describe(self) -> str:
        if self.kind == "abs_rel":
            parts = []
            if self.rel:
                parts.append(f"{self.rel:.0%} of |paper|")
            if self.abs_:
                parts.append(f"{self.abs_:g}")
            if self.use_ci:
                parts.append("our CI half-width")
            return "|delta| <= " + " + ".join(parts or ["0"])
        if self.kind == "ratio":
            return f"ours/paper in [1/{self.factor:g}, {self.factor:g}]"
        if self.kind == "fraction":
            return f"|ours/runs - paper/{PAPER_SEEDS}| <= {self.rel:g}"
        return self.kind


DEFAULT_RULES: dict[str, Rule] = {
    # Reward: the final seed-mean evaluation reward.  It depends on the safe state set (reset
    # states are uniform in it, so a larger set means larger initial deviations) and on the
    # evaluation episodes; our RCI set is computed by us (SPEC §7), not the paper's.  25% of the
    # paper's value plus our own 95% bootstrap CI half-width (seed noise) is "the same
    # performance level"; anything beyond is reported as a difference.
    "reward": Rule("abs_rel", rel=0.25, use_ci=True,
                   why="different safe set and seeds: 25% of |paper| + our CI half-width"),
    # # Steps: a threshold-crossing time of a noisy seed-mean curve, quantised to the
    # evaluation grid (SHAC pendulum evaluates every 2560 interactions, PPO quadrotor every
    # 22400).  Half the paper's value, but at least two evaluation intervals of the coarsest
    # grid of the task (PPO: 13600 pendulum, 22400 quadrotor; SPEC §8), absorbs grid and seed
    # noise.
    "steps": Rule("abs_rel", rel=0.5,
                  why="threshold crossing on an evaluation grid: 50% of paper, >= 2 PPO "
                      "evaluation intervals"),
    # # Stuck: a count out of 10 seeds with a small rate p (<= 0.2 in every cell).  Its binomial
    # standard deviation sqrt(10 p (1-p)) is <= 1.3 seeds, so two seeds (a rate difference of
    # 0.2) is within the sampling noise of two independent 10-seed experiments.
    "stuck": Rule("fraction", rel=0.2,
                  why="binomial count out of 10 seeds: rate difference <= 0.2 (2 seeds)"),
    # Table 6, wall clock relative to unsafe training: the ratio cancels the machine's speed but
    # not the relative cost of our solver stack (cvxpylayers 1.2, Clarabel/diffcp, batched
    # problems) versus the paper's; the paper's claims are about the order ("at least
    # fourfold", "almost double"), so a factor of 2 either way counts as reproduced.
    "wallclock_ratio": Rule("ratio", factor=2.0,
                            why="solver stack and hardware differ; same order: factor 2"),
}

def steps_floor(task: str) -> int:
    """Two evaluation intervals of the task's coarsest grid (PPO, SPEC §8: 27200 pendulum, 44800
    quadrotor; the task registry's ``eval_every``), the floor of the Steps tolerance (see
    DEFAULT_RULES['steps']); 0 for a task that is not registered."""
    try:
        return 2 * max(get_task(task).eval_every.values())
    except ValueError:
        return 0

CELL_RULES: dict[tuple[str, str, str, str], Rule] = {
    # PPO has not converged within the budget in unsafe training (paper Table 2; the archived
    # pendulum curves still end below -4000 for a seed): the final seed mean is dominated by the
    # slowest seeds and spans orders of magnitude between seed sets; only its order is
    # meaningful.
    ("pendulum", "ppo", "No Safeguard", "reward"): Rule(
        "ratio", factor=3.0, why="PPO unconverged at the budget: heavy-tailed seed mean, "
                                 "compare the order (factor 3)"),
    ("quadrotor", "ppo", "No Safeguard", "reward"): Rule(
        "ratio", factor=3.0, why="PPO unconverged at the budget: heavy-tailed seed mean, "
                                 "compare the order (factor 3)"),
    # SAC with uninformed safeguarding on the pendulum first reaches near-optimal rewards and
    # then diverges (paper §6.2, continuously divergent critic); the final value measures how
    # far the divergence went, and its "# Steps" of 2504 is the first evaluation (an artefact of
    # the inferior final policy).  Compare the order of the reward only; Steps keeps the
    # default rule (it must still be early).
    ("pendulum", "sac", "BP", "reward"): Rule(
        "ratio", factor=3.0, why="SAC diverges under safeguarding (paper §6.2): order only"),
    ("pendulum", "sac", "RM", "reward"): Rule(
        "ratio", factor=3.0, why="SAC diverges under safeguarding (paper §6.2): order only"),
}
"""Per-cell overrides keyed by ``(task, algo, variant, quantity)``."""


@dataclass(frozen=True)
class CellComparison:
    """One quantity of one cell: paper vs ours, the rule and the verdict.

    ``status`` is ``"pass"``, ``"fail"`` or ``"not run"`` (no result of ours).
    """

    table: str
    task: str
    algo: str
    variant: str
    quantity: str
    paper: float
    ours: float | None
    delta: float | None
    tolerance: str
    why: str
    status: str
    note: str = ""
    comparable: bool = True

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def rule_for(task: str, algo: str, variant: str, quantity: str) -> Rule:
    """The override of :data:`CELL_RULES` for this cell and quantity, else the default."""
    return CELL_RULES.get((task, algo, variant, quantity), DEFAULT_RULES[quantity])


def _ci_half(ours: Mapping[str, Any]) -> float:
    ci = ours.get("ci")
    if not ci or ci[0] is None or ci[1] is None:
        return 0.0
    return 0.5 * abs(float(ci[1]) - float(ci[0]))


def compare_value(rule: Rule, paper: float, ours: float, *, task: str = "",
                  quantity: str = "", runs: int | None = None, ci_half: float = 0.0) -> bool:
    """Apply ``rule`` to one value (see :class:`Rule`)."""
    if not math.isfinite(ours):
        return False
    if rule.kind == "abs_rel":
        tol = rule.rel * abs(paper) + rule.abs_ + (ci_half if rule.use_ci else 0.0)
        if quantity == "steps":
            tol = max(tol, steps_floor(task))
        return abs(ours - paper) <= tol
    if rule.kind == "ratio":
        if paper == 0 or ours == 0 or (paper > 0) != (ours > 0):
            return ours == paper
        ratio = ours / paper
        return 1.0 / rule.factor <= ratio <= rule.factor
    if rule.kind == "fraction":
        n = runs if runs else PAPER_SEEDS
        return abs(ours / n - paper / PAPER_SEEDS) <= rule.rel + 1e-12
    raise ValueError(f"unknown rule kind {rule.kind!r}")


def compare_tables(
    ours: Mapping[Key, Mapping[str, Any]],
    data: Mapping[str, Any] | None = None,
    alternatives: Mapping[Key, Mapping[str, Any]] | None = None,
    tables: Iterable[str] | None = None,
) -> list[CellComparison]:
    """Every quantity of every paper cell against ``ours[(task, algo, variant)]``.

    Args:
        ours: our cells; each value may hold ``steps``, ``reward``, ``ci`` (two floats),
            ``stuck``, ``runs`` and ``wallclock_ratio``.  Missing cells/quantities are
            ``"not run"``.
        data: the paper tables (default: :func:`spec.paper.values.load_paper_tables`).
        alternatives: second reference values per cell (the archived curves' metrics), used
            for cells with a known inconsistency between the paper text and its archive (a
            ``note`` in the data): such a cell passes if ours matches either reference.
        tables: restrict to these table ids (default: all).

    A cell of ours with ``comparable: false`` (e.g. a shorter budget than the paper's) is
    still judged, and flagged ``comparable=False`` so readers do not take the verdict as a
    reproduction result.
    """
    out = []
    wanted = None if tables is None else set(tables)
    for cell in paper_cells(data):
        if wanted is not None and cell.table not in wanted:
            continue
        mine = ours.get(cell.key)
        for quantity, paper_value in cell.values.items():
            rule = rule_for(cell.task, cell.algo, cell.variant, quantity)
            tolerance = rule.describe()
            if quantity == "steps" and rule.kind == "abs_rel":
                tolerance += f" (at least {steps_floor(cell.task)})"
            if mine is None or mine.get(quantity) is None:
                out.append(CellComparison(cell.table, cell.task, cell.algo, cell.variant,
                                          quantity, paper_value, None, None, tolerance,
                                          rule.why, "not run", cell.note))
                continue
            value = float(mine[quantity])
            comparable = mine.get("comparable") is not False
            runs = mine.get("runs")
            ok = compare_value(rule, paper_value, value, task=cell.task, quantity=quantity,
                               runs=runs, ci_half=_ci_half(mine))
            note = cell.note
            alt = (alternatives or {}).get(cell.key)
            if not ok and cell.note and alt is not None and alt.get(quantity) is not None:
                alt_value = float(alt[quantity])
                if compare_value(rule, alt_value, value, task=cell.task, quantity=quantity,
                                 runs=runs, ci_half=_ci_half(mine)):
                    ok = True
                    note = f"{cell.note}; matches the archived value {alt_value:g}"
            out.append(CellComparison(cell.table, cell.task, cell.algo, cell.variant, quantity,
                                      paper_value, value, value - paper_value, tolerance,
                                      rule.why, "pass" if ok else "fail", note, comparable))
    return out
