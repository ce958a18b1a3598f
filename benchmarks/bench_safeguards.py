"""Benchmark of the safeguards (SPEC §3 P5, §11): both backends side by side, and SHAC.

**Safeguard calls.**  For every registered task at the paper's batch size (the task's
``num_envs``: 8 pendulum, 16 quadrotor, 8 energy envs), every safeguard map of the variant
registry (:func:`safegbpo.safeguards.variants.map_variants`, SPEC §5) plus the ray mask with a
detached centre, and both backends (``exact``, the default, and ``cvxpylayers``, the paper's
Eq 6 programs) it measures the median wall-clock time of

* ``forward``: one call ``g(action, state)`` without autograd,
* ``forward+backward``: one call with autograd (action and state require grad, as in SHAC)
  followed by ``backward`` of the sum of the safe actions,

including the linearisation, next to one *unsafe* environment step (forward, and
forward+backward of the rewards).  Every timed call gets *fresh* states (drawn uniformly from
the safe set by the env's seeded generator) and actions uniform in ``[-1.5, 1.5]^d`` (safe and
unsafe ones), so no call profits from the previous one's warm start more than in training.

**SHAC wall clock.**  ``safegbpo``'s training runner (``experiments.runner.train``) trains SHAC
unsafe, with BP and with RM for ``--shac-interactions`` (default: 4096 pendulum, 5504 quadrotor:
whole SHAC windows) per backend, one run after the other in this process (after an untimed
warm-up run of one window), and reports the
``wallclock`` phases of each run and the ratio safeguarded / unsafe *within this run* (total,
and training only = total - setup - evaluation).

Usage::

    python benchmarks/bench_safeguards.py [--repeats 20] [--out reports/bench.json]
        [--tasks pendulum quadrotor energy] [--backends exact cvxpylayers] [--no-shac]
        [--shac-backends exact cvxpylayers] [--shac-interactions N] [--safe-sets DIR]

Prints rich tables and writes JSON.  The first construction of the project's safe sets may take
a while (they are cached).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.table import Table

from safegbpo.envs import make_vec
from safegbpo.safeguards import BACKENDS, DEFAULT_BACKEND, make_safeguard
from safegbpo.safeguards.variants import map_variants
from safegbpo.safesets import resolve_safe_sets
from safegbpo.tasks import get_task, task_names

#: A diagnostic beyond the registry's variants: the ray mask without the centre's gradient.
EXTRA_VARIANTS: tuple[tuple[str, str, dict[str, Any]], ...] = (
    ("RM detached centre", "rm", {"centre_gradient": False}),
)
#: SHAC budget per run, in SHAC windows (len_traj x num_envs of the task's preset): 8 windows
#: are 4096 pendulum and 5504 quadrotor interactions.
SHAC_WINDOWS = 8
#: Tasks of the SHAC wall-clock part by default (the tasks of the paper's Table 6).
SHAC_TASKS = ("pendulum", "quadrotor")


def benchmarked_variants() -> list[tuple[str, str, dict[str, Any]]]:
    """(label, safeguard name, options): the registry's map variants, then the extras."""
    rows = [(v.label, str(v.safeguard), dict(v.options)) for v in map_variants()]
    return rows + list(EXTRA_VARIANTS)


def shac_interactions(task: str, windows: int = SHAC_WINDOWS) -> int:
    """``windows`` whole SHAC windows of ``task`` (its registry preset and ``num_envs``)."""
    from safegbpo.experiments.config import preset

    return windows * int(preset(task, "shac").len_traj) * get_task(task).num_envs


def _median_ms(fn: Callable[[int], Any], repeats: int, warmup: int = 2) -> float:
    for i in range(warmup):
        fn(-1 - i)
    times = []
    for i in range(repeats):
        start = time.perf_counter()
        fn(i)
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def _actions(generator: torch.Generator, num: int, dim: int) -> torch.Tensor:
    return (torch.rand(num, dim, generator=generator, dtype=torch.float64) * 2 - 1) * 1.5


def bench_task(task: str, repeats: int, safe_set: Any, backends: tuple[str, ...],
               seed: int = 0) -> list[dict[str, Any]]:
    env = make_vec(task, get_task(task).num_envs, seed=seed, safe_set=safe_set)
    env.reset(seed=seed)
    N, d = env.num_envs, env.model.action_dim
    gen = torch.Generator().manual_seed(seed)
    count = repeats + 2
    actions = [_actions(gen, N, d) for _ in range(count)]
    states = [env.sample_safe_states(N) for _ in range(count)]
    rows: list[dict[str, Any]] = []

    def env_forward(i: int) -> None:
        env.reset(options={"state": states[i]})
        with torch.no_grad():
            env.step(actions[i])

    def env_backward(i: int) -> None:
        env.reset(options={"state": states[i].clone().requires_grad_()})
        action = actions[i].clone().requires_grad_()
        _, reward, *_ = env.step(action)
        reward.sum().backward()

    rows.append({"task": task, "variant": "unsafe env step", "backend": "-", "batch": N,
                 "forward_ms": _median_ms(env_forward, repeats),
                 "forward_backward_ms": _median_ms(env_backward, repeats), "fallbacks": 0})

    for label, name, options in benchmarked_variants():
        for backend in backends:
            safeguard = make_safeguard(name, env, backend=backend, **options)

            def forward(i: int, safeguard=safeguard) -> None:
                with torch.no_grad():
                    safeguard(actions[i], state=states[i])

            def forward_backward(i: int, safeguard=safeguard) -> None:
                state = states[i].clone().requires_grad_()
                action = actions[i].clone().requires_grad_()
                safeguard(action, state=state).sum().backward()

            rows.append({"task": task, "variant": label, "backend": backend, "batch": N,
                         "forward_ms": _median_ms(forward, repeats),
                         "forward_backward_ms": _median_ms(forward_backward, repeats),
                         "fallbacks": safeguard.fallbacks})
    return rows


def bench_shac(task: str, backends: tuple[str, ...], interactions: int, safe_set: Any,
               seed: int = 0, echo: Callable[[str], None] = print) -> list[dict[str, Any]]:
    """Unsafe, BP and RM SHAC runs of ``interactions`` each (one process, one after the
    other); rows with the ``wallclock`` phases and the ratios to the unsafe run."""
    from safegbpo.experiments.config import TrainConfig
    from safegbpo.experiments.runner import train

    configs = [("none", None, "-")] + [(sg, sg, b) for b in backends for sg in ("bp", "rm")]
    rows = []
    with tempfile.TemporaryDirectory(prefix="safegbpo-bench-") as tmp:
        # warm-up (not timed): imports, safe-set loading and first-call costs of the process
        warm = TrainConfig(task=task, algo="shac", seed=seed, safe_set=safe_set)
        window = warm.hyper.len_traj * warm.num_envs
        train(TrainConfig(task=task, algo="shac", seed=seed, interactions=window,
                          eval_every=window, safe_set=safe_set).validate(),
              Path(tmp) / "warm-up", progress=False)
        for label, safeguard, backend in configs:
            config = TrainConfig(task=task, algo="shac", safeguard=safeguard,
                                 backend=DEFAULT_BACKEND if backend == "-" else backend,
                                 seed=seed,
                                 interactions=interactions, safe_set=safe_set).validate()
            out = Path(tmp) / f"{task}-{label}-{backend}"
            echo(f"SHAC {task} {label} ({backend}): {interactions} interactions ...")
            result = train(config, out, progress=False)
            clock = result["wallclock"]
            training = clock["total"] - clock.get("setup", 0.0) - clock.get("evaluation", 0.0)
            rows.append({"task": task, "safeguard": label, "backend": backend,
                         "interactions": result["interactions"], "wallclock": clock,
                         "total_s": clock["total"], "training_s": training,
                         "interventions": result["interventions"],
                         "fallbacks": result["fallbacks"]})
    base = rows[0]
    for row in rows:
        row["ratio_total"] = row["total_s"] / base["total_s"]
        row["ratio_training"] = row["training_s"] / base["training_s"]
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20, help="timed calls per entry")
    parser.add_argument("--out", type=Path, default=Path("reports/bench.json"),
                        help="JSON output (default reports/bench.json)")
    parser.add_argument("--tasks", nargs="+", default=list(task_names()),
                        choices=list(task_names()), metavar="TASK",
                        help=f"tasks to time (default: all: {', '.join(task_names())})")
    parser.add_argument("--backends", nargs="+", default=list(BACKENDS), choices=BACKENDS,
                        help="backends of the per-call benchmark")
    parser.add_argument("--no-shac", action="store_true", help="skip the SHAC wall clock")
    parser.add_argument("--shac-backends", nargs="+", default=list(BACKENDS), choices=BACKENDS)
    parser.add_argument("--shac-tasks", nargs="+", default=list(SHAC_TASKS),
                        choices=list(task_names()), metavar="TASK",
                        help="tasks of the SHAC wall clock (default: the paper's Table 6 tasks "
                             f"{', '.join(SHAC_TASKS)}; the energy system's SHAC windows take "
                             "minutes each with the paper's critic)")
    parser.add_argument("--shac-interactions", type=int, default=None,
                        help=f"interactions per SHAC run (default: {SHAC_WINDOWS} SHAC windows "
                             "of the task's preset: 4096 pendulum, 5504 quadrotor)")
    parser.add_argument("--safe-sets", type=Path, default=None, metavar="DIR",
                        help="directory with <task>.json safe-set files (default: the "
                             "project's certified sets)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be >= 1")

    torch.set_num_threads(1)
    console = Console(width=140)
    rows: list[dict[str, Any]] = []
    safe_sets = resolve_safe_sets(args.safe_sets, sorted({*args.tasks, *args.shac_tasks}))
    for task in args.tasks:
        rows += bench_task(task, args.repeats, safe_sets[task], tuple(args.backends),
                           args.seed)

    table = Table(title=f"Safeguard call time (median of {args.repeats}, ms; fresh states "
                  "every call)")
    for column in ("task", "variant", "backend", "batch", "forward", "forward+backward",
                   "x env step", "fallbacks"):
        table.add_column(column, justify="left" if column in ("task", "variant", "backend")
                         else "right")
    for row in rows:
        base = next(r for r in rows if r["task"] == row["task"]
                    and r["variant"] == "unsafe env step")
        table.add_row(row["task"], row["variant"], row["backend"], str(row["batch"]),
                      f"{row['forward_ms']:.2f}", f"{row['forward_backward_ms']:.2f}",
                      f"{row['forward_backward_ms'] / base['forward_backward_ms']:.1f}",
                      str(row["fallbacks"]))
    console.print(table)

    shac: list[dict[str, Any]] = []
    if not args.no_shac:
        for task in args.shac_tasks:
            if "shac" not in get_task(task).presets:
                console.print(f"SHAC wall clock: no SHAC preset for {task}, skipped")
                continue
            budget = args.shac_interactions or shac_interactions(task)
            shac += bench_shac(task, tuple(args.shac_backends), budget, safe_sets[task],
                               args.seed, echo=console.print)
        table = Table(title="SHAC wall clock (s), ratios to unsafe SHAC in the same run")
        for column in ("task", "safeguard", "backend", "interactions", "total", "training",
                       "safeguard phase", "ratio total", "ratio training", "fallbacks"):
            table.add_column(column, justify="left" if column in ("task", "safeguard",
                                                                  "backend") else "right")
        for row in shac:
            table.add_row(row["task"], row["safeguard"], row["backend"],
                          str(row["interactions"]), f"{row['total_s']:.1f}",
                          f"{row['training_s']:.1f}",
                          f"{row['wallclock'].get('safeguard', 0.0):.1f}",
                          f"{row['ratio_total']:.2f}", f"{row['ratio_training']:.2f}",
                          str(row["fallbacks"]))
        console.print(table)

    report = {
        "benchmark": "safeguards",
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "repeats": args.repeats,
        "seed": args.seed,
        "torch": torch.__version__,
        "python": sys.version.split()[0],
        "machine": platform.platform(),
        "threads": torch.get_num_threads(),
        "safe_sets": str(args.safe_sets) if args.safe_sets else "project (get_safe_set)",
        "results": rows,
        "shac": shac,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    console.print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
