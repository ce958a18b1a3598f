"""The reference implementation's archive (``../shared/reference``), read at run time.

* ``paper_learning_curves.json`` -- the archived learning curves of the paper's runs (only the
  seeds that converged); :func:`load_archive` computes the project's metrics
  (:mod:`safegbpo.experiments.metrics`) of every entry, keyed by ``(task, algo, variant)`` in
  the registries' names (matched by their archive labels);
* ``paper_wallclock_seconds.json`` -- the archived Table 6 timings.

:func:`archive_check` shows that the metric definitions reproduce the paper's printed numbers
from the archived curves (and reports the known Quadrotor SAC unsafe inconsistency).  The
directory is :func:`safegbpo.reference.reference_dir`; without it every function here says
"not available" instead of failing.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from safegbpo.algorithms import algorithms
from safegbpo.experiments.metrics import CellMetrics, cell_metrics
from safegbpo.reference import reference_dir
from safegbpo.safeguards.variants import UNSAFE, get_variant
from safegbpo.tasks import tasks
from spec.paper.values import PAPER_SEEDS, Key, paper_values

__all__ = ["CURVES_FILE", "WALLCLOCK_FILE", "Archive", "archive_cell_metrics", "archive_check",
           "load_archive", "load_reference_archive"]

CURVES_FILE = "paper_learning_curves.json"
WALLCLOCK_FILE = "paper_wallclock_seconds.json"
_REWARD_MATCH_REL = 1e-3  # the paper prints 4 significant digits


@dataclass(frozen=True)
class Archive:
    """The loaded archive: metrics of every archived cell and the Table 6 ratios.

    Attributes:
        directory: the reference directory.
        cells: ``(task, algo, variant) -> CellMetrics`` of the archived curves.
        wallclock: ``(task, algo, variant) -> {wallclock_ratio, seconds, baseline_seconds}``.
    """

    directory: Path
    cells: Mapping[Key, CellMetrics]
    wallclock: Mapping[Key, Mapping[str, float]]

    @property
    def curves_path(self) -> Path:
        return self.directory / CURVES_FILE

    def cell_dicts(self) -> dict[Key, dict[str, Any]]:
        """The cells as plain dicts (``CellMetrics.to_dict``)."""
        return {k: v.to_dict() for k, v in self.cells.items()}


def archive_cell_metrics(entry: Mapping[str, Any], *, key: str,
                         seeds: int = PAPER_SEEDS) -> CellMetrics:
    """Metrics of one archived entry (``eval_steps``, ``eval_reward_per_converged_seed``): the
    archive keeps only converged seeds, so ``# Stuck = seeds - rows``."""
    curves = entry["eval_reward_per_converged_seed"]
    stuck = seeds - len(curves)
    if stuck < 0:
        raise ValueError(f"archive cell {key}: {len(curves)} seeds but {seeds} expected")
    return cell_metrics(entry["eval_steps"], curves, stuck=stuck, key=key)


def _labels() -> tuple[dict[str, str], dict[str, str]]:
    task_keys = {spec.archive_label: key for key, spec in tasks().items()}
    algo_keys = {spec.label: name for name, spec in algorithms().items()}
    return task_keys, algo_keys


def load_archive(path: str | Path, *, seeds: int = PAPER_SEEDS,
                 tasks: Iterable[str] | None = None) -> dict[Key, CellMetrics]:
    """Metrics of every entry of ``paper_learning_curves.json`` whose task is registered (or in
    ``tasks``, registered keys), keyed by ``(task, algo, variant)`` in the registries' names.

    Tasks, algorithms and variants are matched by their registries' archive labels (the
    journal version's third task is the energy system's ``'Energy System'``); entries of tasks
    that are not registered are skipped, an unknown algorithm or variant label raises
    ``ValueError``.

    Raises:
        ValueError: ``tasks`` names a task that is not registered, or an unknown label.
    """
    data = json.loads(Path(path).read_text())
    results = data.get("results")
    if not isinstance(results, Mapping):
        raise ValueError(f"{path}: no 'results' mapping (not a learning-curve archive)")
    task_keys, algo_keys = _labels()
    wanted = None if tasks is None else set(tasks)
    unknown = sorted((wanted or set()) - set(task_keys.values()))
    if unknown:
        raise ValueError(f"unknown archive task(s) {unknown}; expected some of "
                         f"{sorted(task_keys.values())}")
    out: dict[Key, CellMetrics] = {}
    for task_label, algos in results.items():
        task = task_keys.get(task_label)
        if task is None or (wanted is not None and task not in wanted):
            continue
        for algo_label, entries in algos.items():
            algo = algo_keys.get(algo_label)
            if algo is None:
                raise ValueError(f"{path}: unknown archived algorithm {algo_label!r}")
            for variant_label, entry in entries.items():
                try:
                    variant = get_variant(variant_label).label
                except ValueError:
                    raise ValueError(f"{path}: unknown archived variant {variant_label!r}") \
                        from None
                key = f"{task}/{algo}/{variant}"
                out[(task, algo, variant)] = archive_cell_metrics(entry, key=key, seeds=seeds)
    return out


def _load_wallclock(path: Path) -> dict[Key, dict[str, float]]:
    """Ratios of the archived timings: each safeguard's seconds over the unsafe seconds."""
    if not path.is_file():
        return {}
    data = json.loads(path.read_text())
    task_keys, algo_keys = _labels()
    out: dict[Key, dict[str, float]] = {}
    for task_label, algos in data.items():
        task = task_keys.get(task_label)
        if task is None or not isinstance(algos, Mapping):
            continue
        for algo_label, values in algos.items():
            algo = algo_keys.get(algo_label)
            base = values.get(UNSAFE.archive_label)
            if algo is None or not base:
                continue
            for label, seconds in values.items():
                if label == UNSAFE.archive_label:
                    continue
                variant = get_variant(label).label
                out[(task, algo, variant)] = {"wallclock_ratio": seconds / base,
                                              "seconds": seconds, "baseline_seconds": base}
    return out


def load_reference_archive(directory: str | Path | None = "default") -> Archive | None:
    """The archive in ``directory`` (``'default'``: :func:`safegbpo.reference.reference_dir`),
    or ``None`` when it has no ``paper_learning_curves.json``."""
    if directory == "default":
        directory = reference_dir()
    if directory is None:
        return None
    root = Path(directory).resolve()
    if not (root / CURVES_FILE).is_file():
        return None
    return Archive(root, load_archive(root / CURVES_FILE), _load_wallclock(root / WALLCLOCK_FILE))


def _archive_values(metrics: CellMetrics | None) -> dict[str, Any] | None:
    if metrics is None:
        return None
    return {"steps": metrics.steps, "reward": metrics.reward,
            "ci": list(metrics.ci) if metrics.ci else None, "stuck": metrics.stuck,
            "runs": metrics.runs}


def archive_check(archive: Archive | None,
                  paper: Mapping[str, Mapping[Key, Mapping[str, Any]]] | None = None
                  ) -> dict[str, Any]:
    """Metrics of the archived curves vs the paper's printed values, per paper cell.

    A cell *matches* when Steps and Stuck are equal and Reward agrees to the paper's printed
    precision (relative ``1e-3``).  Returns ``{"available": False, "reason"}`` without archive.
    """
    if archive is None:
        return {"available": False,
                "reason": f"../shared/reference/{CURVES_FILE} not present"}
    paper = paper_values() if paper is None else paper
    rows, mismatches = [], []
    for table, cells in paper.items():
        if table == "table6":
            continue
        for key, values in cells.items():
            mine = archive.cells.get(key)
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
    for key, values in archive.wallclock.items():
        paper_ratio = (paper.get("table6", {}).get(key) or {}).get("wallclock_ratio")
        if paper_ratio is not None:
            wall.append({"task": key[0], "algo": key[1], "variant": key[2],
                         "archive": values["wallclock_ratio"], "paper": paper_ratio,
                         "match": abs(values["wallclock_ratio"] - paper_ratio)
                         <= _REWARD_MATCH_REL * paper_ratio})
    return {
        "available": True,
        "path": str(archive.curves_path),
        "rule": "steps and stuck equal, reward within 1e-3 relative (4 printed digits)",
        "cells": len(rows),
        "matching": sum(1 for r in rows if r["match"] and all(r["match"].values())),
        "rows": rows,
        "mismatches": [
            {k: r[k] for k in ("table", "task", "algo", "variant", "paper", "archive", "note")}
            for r in mismatches
        ],
        "wallclock": wall,
    }
