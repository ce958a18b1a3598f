"""Benchmark of the safeguards (SPEC §3 P5): time of one batched call per variant and task.

For every registered task at the paper's batch size (the task's ``num_envs``: 8 pendulum,
16 quadrotor, 8 energy envs) and every safeguard map of the variant registry
(:func:`safegbpo.safeguards.variants.map_variants`, SPEC §5) plus the ray mask with a detached
centre it measures the median wall-clock time of

* ``forward``: one call ``g(action)`` at the envs' current states without autograd,
* ``forward+backward``: one call with autograd (action and state require grad, as in SHAC)
  followed by ``backward`` of the sum of the safe actions,

next to one *unsafe* environment step (forward, and forward+backward of the rewards).  The
actions are drawn uniformly from ``[-1.5, 1.5]^d`` (safe and unsafe ones) with a seeded
generator; states are the env's reset states.  Prints a rich table and writes JSON.

Usage::

    python benchmarks/bench_safeguards.py [--repeats 20] [--out reports/bench.json]
        [--tasks pendulum quadrotor energy] [--safe-sets DIR]

The first construction of the project's safe sets may take a while (they are cached).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.table import Table

from safegbpo.envs import make_vec
from safegbpo.safeguards import make_safeguard
from safegbpo.safeguards.variants import map_variants
from safegbpo.safesets import resolve_safe_sets
from safegbpo.tasks import get_task, task_names

#: A diagnostic beyond the registry's variants: the ray mask without the centre's gradient.
EXTRA_VARIANTS: tuple[tuple[str, str, dict[str, Any]], ...] = (
    ("RM detached centre", "rm", {"centre_gradient": False}),
)


def benchmarked_variants() -> list[tuple[str, str, dict[str, Any]]]:
    """(label, safeguard name, options): the registry's map variants, then the extras."""
    rows = [(v.label, str(v.safeguard), dict(v.options)) for v in map_variants()]
    return rows + list(EXTRA_VARIANTS)


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


def bench_task(task: str, repeats: int, safe_set: Any, seed: int = 0) -> list[dict[str, Any]]:
    env = make_vec(task, get_task(task).num_envs, seed=seed, safe_set=safe_set)
    env.reset(seed=seed)
    states = env.state.detach().clone()
    N, d = env.num_envs, env.model.action_dim
    gen = torch.Generator().manual_seed(seed)
    pool = [_actions(gen, N, d) for _ in range(repeats + 2)]
    rows: list[dict[str, Any]] = []

    def env_forward(i: int) -> None:
        env.reset(options={"state": states})
        with torch.no_grad():
            env.step(pool[i])

    def env_backward(i: int) -> None:
        env.reset(options={"state": states.clone().requires_grad_()})
        action = pool[i].clone().requires_grad_()
        _, reward, *_ = env.step(action)
        reward.sum().backward()

    rows.append({"task": task, "variant": "unsafe env step", "batch": N,
                 "forward_ms": _median_ms(env_forward, repeats),
                 "forward_backward_ms": _median_ms(env_backward, repeats), "fallbacks": 0})

    for label, name, options in benchmarked_variants():
        safeguard = make_safeguard(name, env, **options)

        def forward(i: int, safeguard=safeguard) -> None:
            with torch.no_grad():
                safeguard(pool[i], state=states)

        def forward_backward(i: int, safeguard=safeguard) -> None:
            state = states.clone().requires_grad_()
            action = pool[i].clone().requires_grad_()
            safeguard(action, state=state).sum().backward()

        rows.append({"task": task, "variant": label, "batch": N,
                     "forward_ms": _median_ms(forward, repeats),
                     "forward_backward_ms": _median_ms(forward_backward, repeats),
                     "fallbacks": safeguard.fallbacks})
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20, help="timed calls per entry")
    parser.add_argument("--out", type=Path, default=Path("reports/bench.json"),
                        help="JSON output (default reports/bench.json)")
    parser.add_argument("--tasks", nargs="+", default=list(task_names()),
                        choices=list(task_names()), metavar="TASK",
                        help=f"tasks to time (default: all: {', '.join(task_names())})")
    parser.add_argument("--safe-sets", type=Path, default=None, metavar="DIR",
                        help="directory with <task>.json safe-set files (default: the "
                             "project's certified sets)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be >= 1")

    torch.set_num_threads(1)
    rows: list[dict[str, Any]] = []
    safe_sets = resolve_safe_sets(args.safe_sets, args.tasks)  # None: the project's sets
    for task in args.tasks:
        rows += bench_task(task, args.repeats, safe_sets[task], args.seed)

    table = Table(title=f"Safeguard call time (median of {args.repeats}, ms)")
    for column in ("task", "variant", "batch", "forward", "forward+backward", "x env step",
                   "fallbacks"):
        table.add_column(column, justify="left" if column in ("task", "variant") else "right")
    for row in rows:
        base = next(r for r in rows if r["task"] == row["task"]
                    and r["variant"] == "unsafe env step")
        table.add_row(row["task"], row["variant"], str(row["batch"]),
                      f"{row['forward_ms']:.2f}", f"{row['forward_backward_ms']:.2f}",
                      f"{row['forward_backward_ms'] / base['forward_backward_ms']:.0f}",
                      str(row["fallbacks"]))
    console = Console(width=120)
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
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    console.print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
