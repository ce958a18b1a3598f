"""Benchmark of seed populations: wall clock of a ``P``-seed population vs one seed (SHAC).

For every task and safeguard (``none``, ``bp``, ``rm``) it builds a SHAC population of one
seed and one of ``P`` seeds (10 by default) with the paper's hyper-parameters (the task
registry's presets, :func:`safegbpo.experiments.config.preset`) and the task's number of
environments per seed, warms both up with one window, then alternates ``repeats`` measurements
of ``windows`` SHAC windows (training iterations: rollout through the simulator and safeguard,
policy update, critic fit) of each.  Alternating and taking medians keeps the ratio meaningful
on a machine shared with other jobs; the process CPU time is reported next to the wall clock
because it is much less sensitive to that sharing.

Reported per configuration: seconds per window (median; and per phase: rollout, safeguard,
update), the ratio ``population / one seed`` (the target: <= 2.5 for ``P = 10``) and the
throughput gain per seed ``P / ratio`` (how many times more seed-interactions per second a
population delivers than single-seed runs).  Evaluation, checkpoints and setup are excluded
(one seed or ``P``, they are the same code paths as training; the runner times them).

Usage::

    python benchmarks/bench_populations.py [--members 10] [--tasks pendulum quadrotor]
        [--safeguards none bp rm] [--windows N] [--repeats 3]
        [--out reports/bench_populations.json]

The safeguards of the current backend solve one conic program per row, so a safeguard call for
``P x N`` rows costs about ``P`` times one for ``N`` rows; the exact backend of SPEC §11 changes
that (rerun this benchmark after it lands).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
import warnings
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.table import Table

from safegbpo.algorithms import SHAC, PhaseTimer, population_env
from safegbpo.experiments.config import TrainConfig, preset
from safegbpo.safeguards import make_safeguard
from safegbpo.safesets import get_safe_set


def build(task: str, members: int, safeguard: str | None) -> tuple[SHAC, PhaseTimer]:
    """A SHAC population of ``members`` seeds on ``task`` (paper presets), warmed up."""
    config = TrainConfig(task=task, algo="shac", safeguard=safeguard)
    env = population_env(task, [config.num_envs] * members, safe_set=get_safe_set(task))
    guard = None if safeguard is None else make_safeguard(safeguard, env,
                                                          **config.safeguard_options(0))
    timer = PhaseTimer()
    seeds = list(range(members))
    algo = SHAC(env, preset(task, "shac"), seeds=seeds, env_seeds=seeds, safeguard=guard,
                timer=timer)
    algo.iterate()  # warm-up (allocations, solver set-up)
    return algo, timer


def measure(algo: SHAC, timer: PhaseTimer, windows: int) -> dict[str, float]:
    """Seconds per window: wall clock, process CPU time and the phases."""
    timer.seconds.clear()
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(windows):
        algo.iterate()
    out = {"wall": (time.perf_counter() - wall) / windows,
           "cpu": (time.process_time() - cpu) / windows}
    out.update({phase: seconds / windows for phase, seconds in timer.seconds.items()})
    return out


def bench(task: str, safeguard: str | None, members: int, windows: int,
          repeats: int) -> dict[str, Any]:
    single, single_timer = build(task, 1, safeguard)
    population, population_timer = build(task, members, safeguard)
    runs: dict[str, list[dict[str, float]]] = {"single": [], "population": []}
    for _ in range(repeats):
        runs["single"].append(measure(single, single_timer, windows))
        runs["population"].append(measure(population, population_timer, windows))

    def median(kind: str, key: str) -> float:
        return statistics.median(r.get(key, 0.0) for r in runs[kind])

    keys = ("wall", "cpu", "rollout", "safeguard", "update")
    result: dict[str, Any] = {
        "task": task,
        "safeguard": safeguard or "none",
        "members": members,
        "envs_per_seed": single.num_envs,
        "interactions_per_window_per_seed": single.interactions_per_iteration,
        "windows": windows,
        "repeats": repeats,
        "single": {k: median("single", k) for k in keys},
        "population": {k: median("population", k) for k in keys},
        "raw": runs,
    }
    result["ratio_wall"] = result["population"]["wall"] / result["single"]["wall"]
    result["ratio_cpu"] = result["population"]["cpu"] / result["single"]["cpu"]
    # per-repeat ratios (each pair measured back to back): their median is robust to load drift
    result["ratio_wall_paired"] = statistics.median(
        p["wall"] / s["wall"] for s, p in zip(runs["single"], runs["population"], strict=True))
    result["throughput_gain"] = members / result["ratio_wall_paired"]
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--members", type=int, default=10)
    parser.add_argument("--tasks", nargs="+", default=["pendulum", "quadrotor"])
    parser.add_argument("--safeguards", nargs="+", default=["none", "bp", "rm"])
    parser.add_argument("--windows", type=int, default=None,
                        help="SHAC windows per measurement (default: 3 unsafe, 1 safeguarded)")
    parser.add_argument("--repeats", type=int, default=3, help="alternating measurements")
    parser.add_argument("--out", default="reports/bench_populations.json")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)  # as the training runner
    warnings.simplefilter("ignore", RuntimeWarning)  # fallback warnings of the safeguards
    console = Console(stderr=True)
    results = []
    for task in args.tasks:
        for name in args.safeguards:
            safeguard = None if name == "none" else name
            console.print(f"[bold]{task} SHAC {name}[/]: 1 vs {args.members} seeds ...")
            windows = args.windows or (3 if safeguard is None else 1)
            results.append(bench(task, safeguard, args.members, windows, args.repeats))
    table = Table(title=f"SHAC window time: {args.members} seeds vs 1 (median of "
                        f"{args.repeats} measurements, 1 thread)")
    for column in ("task", "safeguard", "1 seed [s]", f"{args.members} seeds [s]",
                   "ratio (wall)", "ratio (cpu)", "per-seed gain", "rollout 1/P [s]",
                   "safeguard 1/P [s]", "update 1/P [s]"):
        table.add_column(column, justify="right")
    for r in results:
        s, p = r["single"], r["population"]
        table.add_row(
            r["task"], r["safeguard"], f"{s['wall']:.3f}", f"{p['wall']:.3f}",
            f"{r['ratio_wall_paired']:.2f}", f"{r['ratio_cpu']:.2f}",
            f"{r['throughput_gain']:.2f}x",
            f"{s['rollout']:.3f} / {p['rollout']:.3f}",
            f"{s['safeguard']:.3f} / {p['safeguard']:.3f}",
            f"{s['update']:.3f} / {p['update']:.3f}")
    Console(width=200).print(table)
    report = {
        "benchmark": "populations",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "host": platform.node(),
        "machine": platform.machine(),
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "command": " ".join(["python", "benchmarks/bench_populations.py", *(argv or sys.argv[1:])]),
        "results": results,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1))
    console.print(f"written {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
