"""The report's exact-vs-Eq 6 safe action set comparison (SPEC §11), measured at report time.

Eq 6 is a sufficient containment test only, so the paper's safe action set is a subset of the
exact one (:mod:`safegbpo.safeguards.compare`).  :func:`measure_set_comparison` measures how
much larger the exact set is -- size ratio exact / Eq 6 (interval length on the pendulum, polygon
area on the quadrotor) on ``states`` states drawn uniformly (seed 0) from the safe state set --
for every paper task, on the project's own certified set and, when ``../shared/reference`` is
present, on the paper's set.  It is computed when the report is written (one LP per state and
direction), never read from a file, and the report says so with the numbers of states and
directions.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

from safegbpo.reference import reference_path

__all__ = ["DEFAULT_DIRECTIONS", "DEFAULT_STATES", "measure_set_comparison",
           "set_comparison_lines"]

DEFAULT_STATES = 16
"""States per task and set (the report's default: about a minute on 2 cores)."""
DEFAULT_DIRECTIONS = 32
"""Support directions of the 2-D Eq 6 sets (their hull is an inner approximation)."""


def measure_set_comparison(states: int = DEFAULT_STATES, *, directions: int = DEFAULT_DIRECTIONS,
                           seed: int = 0, tasks: tuple[str, ...] | None = None,
                           progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Rows ``{task, set, ...compare_safe_action_sets...}`` (module docstring); ``states == 0``:
    ``{"computed": False}``.  A failing set is reported with its error, not raised."""
    if states <= 0:
        return {"computed": False, "reason": "skipped (--set-comparison-states 0)"}
    from safegbpo.envs import make_vec
    from safegbpo.safeguards import compare_safe_action_sets
    from spec.paper.values import paper_tasks

    rows = []
    for task in tasks or paper_tasks():
        sets: list[tuple[str, str | None]] = [("own", None)]
        ref = reference_path("safe_sets", f"{task}.json")
        if ref is not None:
            sets.append(("paper's", str(ref)))
        for name, path in sets:
            if progress:
                progress(f"exact vs Eq 6 safe action sets: {task}, {name} set, {states} states")
            start = time.perf_counter()
            try:
                env = make_vec(task, num_envs=1, seed=seed, safe_set=path)
                result = compare_safe_action_sets(env, num_states=states, seed=seed,
                                                  directions=directions)
                rows.append({"task": task, "set": name, **result,
                             "seconds": time.perf_counter() - start})
            except Exception as err:  # noqa: BLE001 - one broken set must not hide the others
                rows.append({"task": task, "set": name, "error": f"{type(err).__name__}: {err}"})
    return {"computed": True, "states": states, "directions": directions, "seed": seed,
            "rows": rows}


def _g(value: Any) -> str:
    return "–" if value is None else f"{float(value):.4g}"


def set_comparison_lines(doc: Mapping[str, Any], heading: str = "##") -> list[str]:
    """Markdown of :func:`measure_set_comparison`'s result."""
    lines = [f"{heading} Exact vs Eq 6 safe action sets (SPEC §11)", ""]
    if not doc.get("computed"):
        return [*lines, f"Not computed: {doc.get('reason', 'not requested')}.", ""]
    lines += [
        f"Computed when this report was written (`spec/set_comparison.py`, "
        f"`safegbpo.safeguards.compare_safe_action_sets`) on {doc['states']} states per task "
        f"and set, drawn uniformly (seed {doc['seed']}) from the safe state set; size = "
        f"interval length (1-D actions) or polygon area (2-D, Eq 6 from "
        f"{doc['directions']} support directions: an inner approximation). Ratio = exact / "
        "Eq 6 over the states where the Eq 6 set is not empty; containment = Eq 6 support "
        "points outside the exact set (must be 0).", "",
        "| task | set | measure | mean ratio | median | min | max | mean exact | mean Eq 6 | "
        "Eq 6 empty | containment violations | seconds |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in doc.get("rows", []):
        if "error" in r:
            lines.append(f"| {r['task']} | {r['set']} | failed: {r['error']} |"
                         + " |" * 9)
            continue
        lines.append(
            f"| {r['task']} | {r['set']} | {r['measure']} | {_g(r['mean_ratio'])} | "
            f"{_g(r['median_ratio'])} | {_g(r['min_ratio'])} | {_g(r['max_ratio'])} | "
            f"{_g(r['mean_exact'])} | {_g(r['mean_eq6'])} | {r['eq6_empty_states']} of "
            f"{r['states']} | {r['containment_violations']} | {r['seconds']:.0f} |")
    return [*lines, ""]
