"""The paper's learning metrics (SPEC §9): # Steps, Reward (with a bootstrap CI) and # Stuck.

A run's *learning curve* is its evaluation reward (deterministic policy, fixed seeded evaluation
episodes) at each evaluation step.  A *cell* of a table (task x algorithm x safeguard variant)
aggregates the curves of its seeds:

* **# Stuck** -- runs that did not converge within the budget; they are excluded from the two
  other columns (paper Section 6.1).  Precise rule used here, see :func:`stuck_reason`.
* **Reward** -- the final value of the seed-mean learning curve (mean over the non-stuck seeds),
  with a 95% percentile-bootstrap confidence interval of that mean over seeds
  (:func:`bootstrap_ci`, seeded ``np.random.Generator`` derived from the cell's key, so every
  cell's interval is reproducible on its own).
* **# Steps** -- the first evaluation step at which the seed-mean curve is within 5% of its
  final value (:func:`steps_to_converge`).

Two readings of "within 5%" are possible for a reward that is maximised.  The archived curves
of the reference implementation (``../shared/reference/paper_learning_curves.json``) decide
between them: the *one-sided* reading -- the first step at which the curve has *reached* at
least ``final - 0.05 |final|`` -- reproduces every # Steps entry of the paper's Tables 2, 3 and 5
and every archived per-seed ``steps_to_converge`` value, while the two-sided reading
``|curve - final| <= 0.05 |final|`` fails on Pendulum SAC BP/RM (paper 2504; two-sided 50080 and
99992) and Quadrotor SAC BP (paper 100160; two-sided 105168).  The one-sided reading is used.

# Stuck (rule inferred and documented here; the paper gives only "did not converge within the
maximum allowed simulation steps").  The archive marks non-converged seeds only by leaving
them out, and the seeds it keeps include curves that are completely flat for the whole budget
(Quadrotor SHAC RM, seeds stuck at -374) and curves that end at -4500 (Pendulum PPO unsafe): a
rule based on the *shape* of the curve (no improvement, poor final reward, outlier) would
therefore mark seeds as stuck that the paper counts as converged.  The rule that is consistent
with all archived data is one about the *run*: a run is stuck when it did not produce a finite
learning curve over its whole budget -- training stopped before the budget (raised, e.g.
non-finite loss or parameters, a failed solver), or an evaluation reward is NaN/inf (the policy
diverged).  Curves that stay flat are reported separately as *stalled* (a diagnostic column,
not excluded), because the paper's discussion calls such runs "stalled" while its tables keep
them.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "ARCHIVE_TASKS",
    "ARCHIVE_VARIANTS",
    "BOOTSTRAP_RESAMPLES",
    "CI_LEVEL",
    "CONVERGENCE_TOLERANCE",
    "CellMetrics",
    "archive_cell_metrics",
    "bootstrap_ci",
    "cell_metrics",
    "cell_metrics_from_records",
    "cell_rng",
    "is_stalled",
    "load_archive",
    "seed_mean_curve",
    "steps_to_converge",
    "stuck_reason",
]

CONVERGENCE_TOLERANCE = 0.05
"""Relative band of # Steps: converged once the curve reaches ``final - 5% |final|``."""

CI_LEVEL = 0.95
"""Level of the bootstrap confidence interval of Reward."""

BOOTSTRAP_RESAMPLES = 10_000
"""Number of bootstrap resamples of the seeds."""

ARCHIVE_VARIANTS: dict[str, str] = {
    "No Safeguard": "No Safeguard",
    "Boundary Projection Base": "BP",
    "Boundary Projection Regularised": "BP Regularisation",
    "Ray Mask Base": "RM",
    "Ray Mask Regularised": "RM Regularisation",
    "Ray Mask Passthrough": "RM Passthrough Gradient",
    "Hyperbolic Ray Mask Base": "RM Hyperbolic",
    "Hyperbolic Ray Mask Regularised": "RM Hyperbolic and Regularisation",
    "Ray Mask Orthogonal": "RM Orthogonal",
}
"""Labels of the archived reference curves -> the row names of SPEC §5's modification table."""

ARCHIVE_TASKS: dict[str, str] = {"Pendulum": "pendulum", "Quadrotor": "quadrotor",
                                 "Energy System": "energy"}
"""Task labels of the archived reference curves -> this project's task names."""

PAPER_TASKS: tuple[str, ...] = ("pendulum", "quadrotor")
"""The tasks of the paper's text (the journal version adds 'Energy System', SPEC §10)."""


# --------------------------------------------------------------------------------------------
# curve-level metrics
# --------------------------------------------------------------------------------------------
def _as_steps(steps: Any) -> np.ndarray:
    arr = np.asarray(steps, dtype=np.int64)
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"evaluation steps must be a non-empty 1-D sequence, got {arr.shape}")
    if np.any(np.diff(arr) <= 0):
        raise ValueError(f"evaluation steps must be strictly increasing, got {arr.tolist()}")
    return arr


def seed_mean_curve(curves: Any) -> np.ndarray:
    """Mean over seeds of learning curves ``(seeds, T) -> (T,)``.

    Raises:
        ValueError: no seeds, ragged curves, or non-finite rewards (stuck runs must be
            excluded before averaging).
    """
    try:
        arr = np.asarray(curves, dtype=np.float64)
    except ValueError as err:  # ragged input
        raise ValueError(f"curves of a cell must share one evaluation grid: {err}") from err
    if arr.ndim != 2 or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"expected curves of shape (seeds, T) with seeds, T >= 1, got {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError("learning curves contain NaN/inf: exclude stuck runs before averaging")
    return arr.mean(axis=0)


def steps_to_converge(
    steps: Any, curve: Any, tolerance: float = CONVERGENCE_TOLERANCE
) -> int:
    """# Steps (SPEC §9): first evaluation step at which ``curve`` is within ``tolerance`` of its
    final value, one-sided for a maximised reward: ``curve[t] >= final - tolerance * |final|``
    (see the module docstring for why the one-sided reading is the paper's).

    Args:
        steps: ``(T,)`` strictly increasing evaluation steps (environment interactions).
        curve: ``(T,)`` rewards, typically the seed-mean curve of :func:`seed_mean_curve`.
        tolerance: relative band, ``>= 0``.
    """
    steps_arr = _as_steps(steps)
    curve_arr = np.asarray(curve, dtype=np.float64)
    if curve_arr.shape != steps_arr.shape:
        raise ValueError(
            f"curve shape {curve_arr.shape} does not match evaluation steps {steps_arr.shape}"
        )
    if not np.all(np.isfinite(curve_arr)):
        raise ValueError("curve contains NaN/inf")
    if not tolerance >= 0.0:
        raise ValueError(f"tolerance must be >= 0, got {tolerance}")
    final = curve_arr[-1]
    reached = curve_arr >= final - tolerance * abs(final)
    return int(steps_arr[int(np.argmax(reached))])  # the final point always qualifies


def is_stalled(curve: Any, tolerance: float = CONVERGENCE_TOLERANCE) -> bool:
    """Diagnostic: the curve never leaves the ``tolerance`` band around its first evaluation
    (``max_t |r_t - r_0| <= tolerance |r_0|``): the policy did not learn (not an exclusion rule).
    """
    arr = np.asarray(curve, dtype=np.float64)
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"curve must be a non-empty 1-D sequence, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        return False
    return bool(np.max(np.abs(arr - arr[0])) <= tolerance * abs(arr[0]))


def cell_rng(key: str, base_seed: int = 0) -> np.random.Generator:
    """A ``np.random.Generator`` seeded from ``(base_seed, sha256(key))``: one independent,
    reproducible stream per table cell, whatever order the cells are computed in."""
    digest = hashlib.sha256(key.encode("utf-8")).digest()
    words = [int.from_bytes(digest[i : i + 4], "little") for i in range(0, 16, 4)]
    return np.random.default_rng(np.random.SeedSequence([int(base_seed), *words]))


def bootstrap_ci(
    values: Any,
    *,
    rng: np.random.Generator,
    level: float = CI_LEVEL,
    resamples: int = BOOTSTRAP_RESAMPLES,
) -> tuple[float, float]:
    """Percentile-bootstrap confidence interval of the mean of ``values`` (one per seed).

    Resamples the seeds with replacement ``resamples`` times and returns the
    ``(1 - level)/2`` and ``(1 + level)/2`` quantiles of the resampled means.  A single seed
    gives the degenerate interval ``(v, v)``.
    """
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"bootstrap needs a non-empty 1-D array of per-seed values, "
                         f"got {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError("bootstrap values contain NaN/inf")
    if not 0.0 < level < 1.0:
        raise ValueError(f"confidence level must lie in (0, 1), got {level}")
    if resamples < 1:
        raise ValueError(f"resamples must be >= 1, got {resamples}")
    if not isinstance(rng, np.random.Generator):
        raise ValueError("rng must be a numpy.random.Generator (seeded by the caller)")
    idx = rng.integers(0, arr.size, size=(resamples, arr.size))
    means = arr[idx].mean(axis=1)
    low, high = np.quantile(means, [(1.0 - level) / 2.0, (1.0 + level) / 2.0])
    return float(low), float(high)


# --------------------------------------------------------------------------------------------
# run-level rule: # Stuck
# --------------------------------------------------------------------------------------------
def stuck_reason(record: Mapping[str, Any]) -> str | None:
    """Why a finished-or-failed run record counts as *stuck* (``None`` if it converged).

    The record is the results store's per-run record (``status`` and ``curve`` as returned by
    the training runner).  Rule (module docstring): stuck iff the run did not complete its
    budget (``status != 'finished'``), has no evaluation, or has a non-finite evaluation reward.
    """
    status = record.get("status")
    if status != "finished":
        error = record.get("error") or {}
        detail = error.get("message") if isinstance(error, Mapping) else str(error)
        return f"did not finish (status {status!r}{': ' + detail if detail else ''})"
    curve = record.get("curve") or []
    if not curve:
        return "no evaluation recorded"
    rewards = [point.get("reward") for point in curve]
    if any(r is None or not math.isfinite(float(r)) for r in rewards):
        return "non-finite evaluation reward (diverged)"
    return None


# --------------------------------------------------------------------------------------------
# cell-level aggregation
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CellMetrics:
    """The three table columns of one cell plus the data behind them (JSON-serialisable)."""

    steps: int | None
    reward: float | None
    ci: tuple[float, float] | None
    stuck: int
    runs: int
    converged: int
    stalled: int = 0
    per_seed_steps: tuple[int, ...] = ()
    per_seed_final: tuple[float, ...] = ()
    eval_steps: tuple[int, ...] = ()
    mean_curve: tuple[float, ...] = ()
    stuck_reasons: tuple[str, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["ci"] = list(self.ci) if self.ci is not None else None
        for key in ("per_seed_steps", "per_seed_final", "eval_steps", "mean_curve",
                    "stuck_reasons"):
            out[key] = list(out[key])
        return out


def cell_metrics(
    eval_steps: Any,
    curves: Sequence[Any],
    *,
    stuck: int = 0,
    key: str,
    stuck_reasons: Sequence[str] = (),
    base_seed: int = 0,
) -> CellMetrics:
    """# Steps, Reward (+ 95% bootstrap CI) of the converged seeds' ``curves`` ``(seeds, T)`` on
    the shared ``eval_steps`` ``(T,)``; ``stuck`` excluded runs are only counted.

    ``key`` names the cell (e.g. ``"pendulum/shac/BP"``) and seeds its bootstrap generator
    (:func:`cell_rng`).  With no converged seed, Steps/Reward/CI are ``None``.
    """
    if stuck < 0:
        raise ValueError(f"stuck must be >= 0, got {stuck}")
    steps_arr = _as_steps(eval_steps)
    runs = len(curves) + stuck
    if not curves:
        return CellMetrics(None, None, None, stuck, runs, 0, stuck_reasons=tuple(stuck_reasons))
    arr = np.asarray([np.asarray(c, dtype=np.float64) for c in curves], dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] != steps_arr.size:
        raise ValueError(
            f"cell {key}: curves of shape {arr.shape} do not match {steps_arr.size} "
            "evaluation steps"
        )
    mean = seed_mean_curve(arr)
    finals = arr[:, -1]
    ci = bootstrap_ci(finals, rng=cell_rng(key, base_seed))
    return CellMetrics(
        steps=steps_to_converge(steps_arr, mean),
        reward=float(mean[-1]),
        ci=ci,
        stuck=stuck,
        runs=runs,
        converged=arr.shape[0],
        stalled=sum(is_stalled(c) for c in arr),
        per_seed_steps=tuple(steps_to_converge(steps_arr, c) for c in arr),
        per_seed_final=tuple(float(v) for v in finals),
        eval_steps=tuple(int(s) for s in steps_arr),
        mean_curve=tuple(float(v) for v in mean),
        stuck_reasons=tuple(stuck_reasons),
    )


def cell_metrics_from_records(
    records: Sequence[Mapping[str, Any]], *, key: str, base_seed: int = 0
) -> CellMetrics:
    """:func:`cell_metrics` of the seeds' run records (the runner's ``curve`` lists): stuck runs
    (:func:`stuck_reason`) are counted and excluded; the others must share one evaluation grid.
    """
    if not records:
        raise ValueError(f"cell {key}: no run records")
    curves: list[list[float]] = []
    grid: list[int] | None = None
    reasons: list[str] = []
    for record in records:
        reason = stuck_reason(record)
        if reason is not None:
            seed = (record.get("spec") or {}).get("seed", "?")
            reasons.append(f"seed {seed}: {reason}")
            continue
        steps = [int(p["step"]) for p in record["curve"]]
        if grid is None:
            grid = steps
        elif steps != grid:
            raise ValueError(
                f"cell {key}: seeds were evaluated at different steps ({grid} vs {steps})"
            )
        curves.append([float(p["reward"]) for p in record["curve"]])
    return cell_metrics(
        grid if grid is not None else [0],
        curves,
        stuck=len(reasons),
        key=key,
        stuck_reasons=reasons,
        base_seed=base_seed,
    )


# --------------------------------------------------------------------------------------------
# the archived reference curves
# --------------------------------------------------------------------------------------------
def archive_cell_metrics(entry: Mapping[str, Any], *, key: str, seeds: int = 10) -> CellMetrics:
    """Metrics of one archived entry (``eval_steps``, ``eval_reward_per_converged_seed``): the
    archive keeps only converged seeds, so ``# Stuck = seeds - rows``."""
    curves = entry["eval_reward_per_converged_seed"]
    stuck = seeds - len(curves)
    if stuck < 0:
        raise ValueError(f"archive cell {key}: {len(curves)} seeds but {seeds} expected")
    return cell_metrics(entry["eval_steps"], curves, stuck=stuck, key=key)


def load_archive(
    path: str | Path, *, seeds: int = 10, tasks: Sequence[str] = PAPER_TASKS
) -> dict[tuple[str, str, str], CellMetrics]:
    """Metrics of every entry of ``paper_learning_curves.json`` whose task is in ``tasks``, keyed
    by ``(task, algo, variant)`` in this project's names (:data:`ARCHIVE_TASKS`, lower-case
    algorithm, SPEC §5 rows).

    ``tasks`` defaults to the paper's two; the journal version's third task ('Energy System',
    ``"energy"``) is included when asked for (``tasks=("energy",)``).
    """
    data = json.loads(Path(path).read_text())
    results = data.get("results")
    if not isinstance(results, Mapping):
        raise ValueError(f"{path}: no 'results' mapping (not a learning-curve archive)")
    out: dict[tuple[str, str, str], CellMetrics] = {}
    unknown = sorted(set(tasks) - set(ARCHIVE_TASKS.values()))
    if unknown:
        raise ValueError(f"unknown archive task(s) {unknown}; expected some of "
                         f"{sorted(ARCHIVE_TASKS.values())}")
    for task_label, algos in results.items():
        task = ARCHIVE_TASKS.get(task_label, task_label.lower())
        if task not in tasks:
            continue
        for algo_label, variants in algos.items():
            algo = algo_label.lower()
            for variant_label, entry in variants.items():
                variant = ARCHIVE_VARIANTS.get(variant_label)
                if variant is None:
                    raise ValueError(f"{path}: unknown archived variant {variant_label!r}")
                key = f"{task}/{algo}/{variant}"
                out[(task, algo, variant)] = archive_cell_metrics(entry, key=key, seeds=seeds)
    return out
