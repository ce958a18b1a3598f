"""Cells of a results directory measured from its run records alone (no grid, no retraining).

A reproduction campaign (``safegbpo reproduce --profile paper``, possibly spread over several
sessions and several ``--safe-sets`` choices) leaves one record per finished run in
``<results>/records/`` (:mod:`.store`).  ``cells.json`` describes only the last invocation, so
the report of a campaign measures its cells from the records themselves:
:func:`measure_record_cells` groups the training records by *configuration* -- everything in a
run's identity except its seed (task, algorithm, variant, backend, budget, evaluation grid,
episode length, hyper-parameters, safe-set content, env options) -- and aggregates each group with
the metric definitions of :mod:`.metrics` (# Steps, Reward with its bootstrap CI, # Stuck), plus
a per-step band of the seed mean (``curve_band``: the same percentile bootstrap at every
evaluation step) for the learning-curve figures.

Each cell says which safe set it ran on (``safe_set_kind``):

* ``'own'`` -- the project's certified set (no ``--safe-sets``);
* ``'paper'`` -- the reference implementation's set: the record's ``safe_set_sha256`` equals the
  SHA-256 of ``<reference>/safe_sets/<task>.json`` (read at run time; without the reference
  directory no cell can be recognised as such and it is ``'file'``);
* ``'file'`` -- any other set file.

and how much of the paper's protocol it ran: ``runs`` of the paper's ten seeds, ``interactions``
of the task's budget, the SPEC §13 episode length and the paper's evaluation grid
(``protocol_differences`` lists what differs).  Runs of the configuration that have a directory
but no record yet (a campaign in progress) are counted in ``running``; they never enter the
metrics.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from safegbpo.experiments.cells import backend_sort_key, cell_sort_key, json_safe
from safegbpo.experiments.grid import RunSpec, file_sha256
from safegbpo.experiments.metrics import (
    BOOTSTRAP_RESAMPLES,
    CI_LEVEL,
    cell_metrics_from_records,
    cell_rng,
    stuck_reason,
)
from safegbpo.tasks import get_task

__all__ = ["CAMPAIGN_FORMAT", "PAPER_SEEDS", "SAFE_SET_KINDS", "as_cells_document", "curve_band",
           "has_records",
           "load_records", "measure_record_cells", "reference_set_hashes"]

CAMPAIGN_FORMAT = "safegbpo-record-cells/1"
PAPER_SEEDS = 10
"""Seeds per configuration in the paper (SPEC §9)."""
SAFE_SET_KINDS = ("own", "paper", "file")

_BAND_RESAMPLES = 2000  # per evaluation step; the final value's CI uses BOOTSTRAP_RESAMPLES


def has_records(results: str | Path) -> bool:
    """``results/records`` holds at least one run record."""
    records = Path(results) / "records"
    return records.is_dir() and any(records.glob("*.json"))


def load_records(results: str | Path) -> list[dict[str, Any]]:
    """Every record of ``<results>/records`` (sorted by run id); unreadable files raise with the
    file named."""
    out = []
    for path in sorted((Path(results) / "records").glob("*.json")):
        try:
            out.append(json.loads(path.read_text()))
        except (OSError, ValueError) as err:
            raise ValueError(f"{path}: not a readable run record ({err})") from err
    return out


def reference_set_hashes(reference: str | Path | None) -> dict[str, str]:
    """``task -> SHA-256`` of the reference implementation's safe-set files
    (``<reference>/safe_sets/<task>.json``); empty without the directory."""
    if reference is None:
        return {}
    folder = Path(reference) / "safe_sets"
    if not folder.is_dir():
        return {}
    return {p.stem: file_sha256(p) for p in sorted(folder.glob("*.json"))}


def curve_band(curves: Any, *, key: str, level: float = CI_LEVEL,
               resamples: int = _BAND_RESAMPLES) -> tuple[list[float], list[float]]:
    """Per evaluation step, the percentile-bootstrap CI of the seed mean of ``curves``
    ``(seeds, T)`` (the seeds resampled jointly, seeded by ``key``); one seed: the curve."""
    arr = np.asarray(curves, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[0] == 0:
        raise ValueError(f"curves must have shape (seeds, T) with seeds >= 1, got {arr.shape}")
    if arr.shape[0] == 1:
        return arr[0].tolist(), arr[0].tolist()
    idx = cell_rng(key + "/band").integers(0, arr.shape[0], size=(resamples, arr.shape[0]))
    means = arr[idx].mean(axis=1)  # (resamples, T)
    low, high = np.quantile(means, [(1.0 - level) / 2.0, (1.0 + level) / 2.0], axis=0)
    return low.tolist(), high.tolist()


def _configuration(spec: RunSpec) -> str:
    identity = {k: v for k, v in spec.identity().items() if k != "seed"}
    return json.dumps({**identity, "variant_label": spec.variant}, sort_keys=True)


def _protocol_differences(spec: RunSpec) -> list[str]:
    """What differs from the paper's protocol other than seeds and budget (SPEC §8, §13)."""
    task = get_task(spec.task)
    out = []
    length = spec.episode_length if spec.episode_length is not None else task.episode_length
    if length != task.episode_length:
        out.append(f"{length}-step episodes (SPEC §13: {task.episode_length})")
    paper_every = task.eval_every.get(spec.algo)
    if paper_every is not None and spec.eval_every != paper_every:
        out.append(f"evaluated every {spec.eval_every} interactions (paper {paper_every})")
    if spec.hyper:
        out.append("hyper-parameters changed: " + ", ".join(f"{k}={v}" for k, v in
                                                            sorted(spec.hyper.items())))
    return out


def _safe_set_kind(spec: RunSpec, reference_hashes: Mapping[str, str]) -> str:
    if spec.safe_set_sha256 is None:
        return "own"
    if reference_hashes.get(spec.task) == spec.safe_set_sha256:
        return "paper"
    return "file"


def _running(results: Path, recorded: set[str]
             ) -> tuple[dict[str, list[int]], dict[str, RunSpec]]:
    """Per configuration, seeds with a run directory but no record (in progress/interrupted),
    and one spec of each such configuration."""
    out: dict[str, list[int]] = {}
    specs: dict[str, RunSpec] = {}
    runs_dir = results / "runs"
    if not runs_dir.is_dir():
        return out, specs
    for path in sorted(runs_dir.glob("*/spec.json")):
        run_id = path.parent.name
        if run_id in recorded:
            continue
        try:
            spec = RunSpec.from_dict(json.loads(path.read_text()))
        except (OSError, ValueError, TypeError):
            continue  # a directory of another layout: not a run of this store
        if spec.kind != "train":
            continue
        out.setdefault(_configuration(spec), []).append(spec.seed)
        specs.setdefault(_configuration(spec), spec)
    return out, specs


def measure_record_cells(results: str | Path, *, reference: str | Path | None = None,
                         records: Sequence[Mapping[str, Any]] | None = None
                         ) -> dict[str, Any]:
    """The training cells of every configuration in ``results`` (module docstring).

    Args:
        results: a results directory (``records/``, ``runs/``).
        reference: the reference-data directory (recognises the paper's safe sets); ``None``:
            none is recognised.
        records: the records to use (default: :func:`load_records`).

    Returns:
        ``{"format", "results", "reference_sets": {task: sha256}, "cells": [...]}``; each cell
        has ``task, algo, variant, backend, kind='train', tables, interactions, budget,
        eval_every, episode_length, seeds, run_ids, runs, running, paper_seeds,
        safe_set_kind, safe_set_sha256, protocol_differences, complete`` and the metrics of
        :class:`~safegbpo.experiments.metrics.CellMetrics` plus ``ci_low_curve`` /
        ``ci_high_curve`` (per-step band).  ``complete``: the paper's seeds, budget and
        protocol, every run finished -- the only cells whose deltas measure reproduction.
        ``running_only``: configurations with run directories but no record yet (``task,
        algo, variant, interactions, safe_set_kind, running``).
    """
    root = Path(results)
    records = load_records(root) if records is None else list(records)
    hashes = reference_set_hashes(reference)
    groups: dict[str, list[tuple[RunSpec, Mapping[str, Any]]]] = {}
    for record in records:
        spec_dict = record.get("spec")
        if not isinstance(spec_dict, Mapping):
            continue
        spec = RunSpec.from_dict(spec_dict)
        if spec.kind != "train":
            continue
        groups.setdefault(_configuration(spec), []).append((spec, record))
    running, running_specs = _running(root, {str(r.get("run_id")) for r in records})
    cells = []
    for config, members in groups.items():
        members.sort(key=lambda m: m[0].seed)
        first = members[0][0]
        key = "/".join((*first.cell, first.backend or "-", first.safe_set_sha256 or "own",
                        str(first.interactions)))
        metrics = cell_metrics_from_records([r for _, r in members], key=key).to_dict()
        finished = [r for _, r in members if stuck_reason(r) is None]
        band: tuple[list[float], list[float]] = ([], [])
        if finished:
            curves = [[float(p["reward"]) for p in r["curve"]] for r in finished]
            band = curve_band(curves, key=key)
        task = get_task(first.task)
        differences = _protocol_differences(first)
        tables = sorted({t for s, _ in members for t in s.tables})
        cells.append({
            "task": first.task, "algo": first.algo, "variant": first.variant,
            "backend": first.backend, "kind": "train", "tables": tables,
            "interactions": first.interactions, "budget": task.budget,
            "eval_every": first.eval_every, "episode_length": first.episode_length,
            "seeds": [s.seed for s, _ in members], "run_ids": [s.run_id for s, _ in members],
            "running": sorted(running.get(config, [])), "paper_seeds": PAPER_SEEDS,
            "safe_set_kind": _safe_set_kind(first, hashes),
            "safe_set_sha256": first.safe_set_sha256,
            "protocol_differences": differences,
            "complete": (len(members) >= PAPER_SEEDS and first.interactions >= task.budget
                         and not differences and not running.get(config)),
            **metrics,
            "ci_low_curve": band[0], "ci_high_curve": band[1],
        })
    cells.sort(key=lambda c: (*cell_sort_key(c["task"], c["algo"], c["variant"]),
                              SAFE_SET_KINDS.index(c["safe_set_kind"]),
                              -(c["interactions"] or 0), backend_sort_key(c["backend"])))
    only_running = [{"task": spec.task, "algo": spec.algo, "variant": spec.variant,
                     "interactions": spec.interactions,
                     "safe_set_kind": _safe_set_kind(spec, hashes),
                     "running": sorted(running[config])}
                    for config, spec in running_specs.items() if config not in groups]
    return json_safe({"format": CAMPAIGN_FORMAT, "results": str(root.resolve()),
                      "reference_sets": hashes, "bootstrap_resamples": BOOTSTRAP_RESAMPLES,
                      "cells": cells, "running_only": only_running})


def as_cells_document(campaign: Mapping[str, Any], *, kinds: Iterable[str] = ("own",)
                      ) -> dict[str, Any]:
    """A ``cells.json``-shaped document (``safegbpo-cells/1``, training cells only, no checks)
    of the campaign's cells on the safe sets ``kinds`` -- for a results directory whose
    reproduction has not written ``cells.json`` yet (a campaign in progress)."""
    from safegbpo.experiments.cells import CELLS_FORMAT, DEFINITIONS

    wanted = set(kinds)
    return {"format": CELLS_FORMAT, "profile": "records", "results": campaign.get("results"),
            "definitions": DEFINITIONS,
            "cells": [c for c in campaign.get("cells", []) if c["safe_set_kind"] in wanted],
            "wallclock": None, "checks": {}}
