"""Why does a cell of ours differ from the paper's?  A small, ordered rule table of measured
facts (SPEC §9, §13).

Every rule looks at one compared quantity of one cell (our cell from the records,
:mod:`safegbpo.experiments.campaign`; the paper's value; the archived curves' metrics; the
safe-set volumes measured by the code) and either states a fact, with its numbers, or stays
silent.  The *most likely reason* of a difference is the first rule that fires, in this order;
the others are listed after it.  No rule guesses: each one only reports what was measured.

=====================  =========================================================================
rule                   fires when (quantities)
=====================  =========================================================================
runs in progress       some seeds of the configuration have a run directory but no record
budget not reached     our interactions < the paper's budget (all)
fewer seeds            fewer finished-or-failed runs than the paper's 10 seeds (all)
protocol difference    episode length, evaluation grid or hyper-parameters differ from the
                       paper's (SPEC §8, §13) (all)
stuck runs             some of our seeds are stuck; their recorded reasons (stuck)
initial reward differs the seed-mean reward at the first evaluation differs from the archived
                       curves' by more than a factor 2: the evaluation episodes are not the
                       paper's (initial state, episode length, SPEC §13) (reward)
tight band             # Steps: the 5% band of the final value is narrower than the seed-mean
                       curve's own fluctuation (std over its last third), so the threshold
                       crossing is decided by noise (steps)
safe-set volume        our safe state set's volume differs from the set's the paper used by more
                       than 10% (measured: ``SafeSet.volume``); reset states are drawn from it
                       (reward, steps)
=====================  =========================================================================

When no rule fires the reason reads "no rule applies (unexplained)", so an unexplained
difference is visible as such.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["REASON_RULES", "UNEXPLAINED", "ReasonRule", "explain", "reason_table_lines",
           "short_count"]

UNEXPLAINED = "no rule applies (unexplained)"

Context = Mapping[str, Any]


@dataclass(frozen=True)
class ReasonRule:
    """One row of the rule table: ``name``, the ``quantities`` it speaks about, the condition
    (``when``, for the report) and ``fact(ctx) -> str | None``."""

    name: str
    quantities: tuple[str, ...]
    when: str
    fact: Callable[[Context], str | None]


def short_count(n: Any) -> str:
    """An interaction count for the report: ``100000 -> '100k'``, ``46080 -> '46.1k'``."""
    n = int(n)
    if n < 1000:
        return str(n)
    return f"{n / 1000:.1f}".rstrip("0").rstrip(".") + "k"


def _in_progress(ctx: Context) -> str | None:
    running = ctx["cell"].get("running") or []
    return f"{len(running)} seed(s) still running (no record yet)" if running else None


def _budget(ctx: Context) -> str | None:
    cell = ctx["cell"]
    done, budget = cell.get("interactions"), cell.get("budget")
    if done is None or budget is None or done >= budget:
        return None
    return (f"ran {short_count(done)} of the paper's {short_count(budget)} interactions "
            f"({done / budget:.0%})")


def _seeds(ctx: Context) -> str | None:
    cell = ctx["cell"]
    runs, wanted = int(cell.get("runs") or 0), int(cell.get("paper_seeds") or 10)
    return f"{runs} of the paper's {wanted} seeds" if runs < wanted else None


def _protocol(ctx: Context) -> str | None:
    diffs = ctx["cell"].get("protocol_differences") or []
    return "; ".join(diffs) if diffs else None


def _stuck(ctx: Context) -> str | None:
    reasons = ctx["cell"].get("stuck_reasons") or []
    return f"{len(reasons)} stuck: " + "; ".join(reasons[:3]) if reasons else None


def _initial_reward(ctx: Context) -> str | None:
    ours = ctx["cell"].get("mean_curve") or []
    archive = (ctx.get("archive") or {}).get("mean_curve") or []
    if not ours or not archive:
        return None
    a, b = float(ours[0]), float(archive[0])
    if a == 0 or b == 0 or (a > 0) != (b > 0):
        return None
    ratio = a / b
    if 0.5 <= ratio <= 2.0:
        return None
    return (f"first evaluation: ours {a:.4g}, archived curves {b:.4g} (x{ratio:.3g}): the "
            "evaluation episodes differ from the paper's (initial state, episode length)")


def _volume(ctx: Context) -> str | None:
    mine, theirs = ctx.get("volume"), ctx.get("paper_volume")
    if not mine or not theirs:
        return None
    ratio = float(mine) / float(theirs)
    if 1 / 1.1 <= ratio <= 1.1:
        return None
    return (f"safe state set volume {float(mine):.4g} vs the paper's set {float(theirs):.4g} "
            f"(x{ratio:.3g}, measured by the code)")


def _tight_band(ctx: Context) -> str | None:
    curve = np.asarray(ctx["cell"].get("mean_curve") or [], dtype=float)
    if curve.size < 6:
        return None
    final = curve[-1]
    band = 0.05 * abs(final)
    tail = curve[-max(3, curve.size // 3):]
    spread = float(np.std(tail))
    if spread <= band:
        return None
    return (f"the 5% band of the final value is {band:.3g} wide, the seed-mean curve "
            f"fluctuates by {spread:.3g} (std over its last third): the crossing is noise")


REASON_RULES: tuple[ReasonRule, ...] = (
    ReasonRule("runs in progress", ("steps", "reward", "stuck"),
               "seeds with a run directory but no record", _in_progress),
    ReasonRule("budget not reached", ("steps", "reward", "stuck"),
               "our interactions < the paper's budget", _budget),
    ReasonRule("fewer seeds", ("steps", "reward", "stuck"),
               "fewer runs than the paper's 10 seeds", _seeds),
    ReasonRule("protocol difference", ("steps", "reward", "stuck"),
               "episode length / evaluation grid / hyper-parameters differ (SPEC §8, §13)",
               _protocol),
    ReasonRule("stuck runs", ("stuck",), "some of our seeds are stuck", _stuck),
    ReasonRule("initial reward differs", ("reward",),
               "first-evaluation seed mean differs from the archive's by > x2", _initial_reward),
    ReasonRule("tight band", ("steps",),
               "5% band of the final value < std of the seed-mean curve's last third",
               _tight_band),
    ReasonRule("safe-set volume", ("reward", "steps"),
               "our safe set's volume differs from the paper's set's by > 10%", _volume),
)
"""The rule table, in order of precedence (module docstring)."""


def explain(quantity: str, cell: Mapping[str, Any], *, archive: Mapping[str, Any] | None = None,
            volume: float | None = None, paper_volume: float | None = None
            ) -> tuple[str, list[str]]:
    """``(most likely reason, other reasons)`` for ``quantity`` of our ``cell`` (each
    ``"rule: fact"``); ``(UNEXPLAINED, [])`` when no rule fires.

    Args:
        quantity: ``'steps'``, ``'reward'`` or ``'stuck'``.
        cell: our cell (:func:`safegbpo.experiments.campaign.measure_record_cells`).
        archive: the archived curves' metrics of the same cell (``mean_curve``), if any.
        volume, paper_volume: the state-set volumes of our run's set and of the paper's set
            (only for a cell on another set than the paper's).
    """
    ctx = {"cell": cell, "archive": archive, "volume": volume, "paper_volume": paper_volume}
    found = []
    for rule in REASON_RULES:
        if quantity not in rule.quantities:
            continue
        fact = rule.fact(ctx)
        if fact:
            found.append(f"{rule.name}: {fact}")
    if not found:
        return UNEXPLAINED, []
    return found[0], found[1:]


def reason_table_lines() -> list[str]:
    """The rule table as markdown (printed in the report next to the reasons)."""
    lines = ["| order | rule | quantities | fires when |", "|---|---|---|---|"]
    lines += [f"| {i} | {r.name} | {', '.join(r.quantities)} | {r.when} |"
              for i, r in enumerate(REASON_RULES, 1)]
    return lines
