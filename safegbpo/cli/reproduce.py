"""``safegbpo reproduce``: the paper's experiments, then the compliance report.

    safegbpo reproduce [--profile quick|paper] [--jobs N] [--population-size P]
                       [--executor pool|ray] [--address A] [--results DIR] [--safe-sets DIR]
                       [--grid FILE] [--retry-failed] [--no-monitor] [--no-report]
                       [--env-option TASK.KEY=VALUE ...]

Two steps, one per half of the chain: :func:`safegbpo.experiments.reproduce.reproduce` runs the
grid and writes the measured cells (``<results>/cells.json``, ``cells.md``); then, unless
``--no-report``, the ``report`` command (``safegbpo report --results <results>``: the spec's
paper comparison and compliance report, plugged in through the ``safegbpo.commands``
entry point) runs on them.  The command is resumable: re-running it skips finished runs and
resumes interrupted ones from their checkpoints (the results store,
:mod:`safegbpo.experiments.store`).  Exit status 0 when every check of the profile passed, 1
otherwise, 2 on a usage error.

Env options: each task's environment runs with its registry entry's ``reproduce_env_options``
(the energy task: ``profiles=auto``, the reference implementation's hourly profiles when
``../shared`` is present, else the project's generated year -- the command prints which);
``--env-option energy.profiles=generated`` (or ``=FILE``) overrides them.  They are recorded in
``manifest.json`` and enter the run ids.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

from safegbpo.cli.options import (
    add_env_option_option,
    add_safe_sets_option,
    parse_task_key_values,
    positive_int,
)
from safegbpo.experiments.profiles import PROFILES

__all__ = ["register"]


def register(subparsers: Any) -> None:
    """Add the ``reproduce`` subcommand to ``safegbpo``'s subparsers."""
    profiles = "; ".join(f"{p.name}: {p.description}" for p in PROFILES.values())
    parser = subparsers.add_parser(
        "reproduce",
        help="run the paper's experiment grid, then write the compliance report",
        description="Run a reproduction profile's grid (resumable), measure the cells of "
                    "Tables 2-6 and the profile's checks, then run `safegbpo report` on them "
                    f"(the paper's values, deltas, H1/H2). Profiles: {profiles}.",
    )
    parser.add_argument("--profile", choices=sorted(PROFILES), default="quick",
                        help="which grid to run (default: quick)")
    parser.add_argument("--jobs", type=positive_int, default=None,
                        help="parallel processes, each training one population of seeds "
                             f"(default: the number of CPUs, {os.cpu_count()})")
    parser.add_argument("--population-size", type=positive_int, default=None, metavar="P",
                        help="train at most P seeds of a configuration together in one process "
                             "(default: all its seeds; 1: every seed in its own task)")
    parser.add_argument("--executor", choices=("pool", "ray"), default="pool",
                        help="local process pool (default) or Ray (pip install 'safegbpo[ray]')")
    parser.add_argument("--address", default=None,
                        help="Ray cluster address (default: start a local Ray instance)")
    parser.add_argument("--results", default=None,
                        help="results directory (default: results/<profile>)")
    add_safe_sets_option(parser)
    add_env_option_option(parser, per_task=True)
    parser.add_argument("--grid", default=None, metavar="FILE",
                        help="run this grid file (format safegbpo-grid/1) instead of the "
                             "profile's")
    parser.add_argument("--device", default="cpu", help="torch device of the runs")
    parser.add_argument("--retry-failed", action="store_true",
                        help="re-run runs whose record is a failure (default: keep them, they "
                             "count as stuck)")
    parser.add_argument("--no-monitor", action="store_true",
                        help="do not monitor realised states against the safe set")
    parser.add_argument("--no-report", action="store_true",
                        help="do not run `safegbpo report` on the results")
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from safegbpo.cli import command_names, main
    from safegbpo.experiments.reproduce import checks_passed, reproduce

    if not args.no_report and "report" not in command_names():
        raise ValueError("the `report` command is not installed (entry point "
                         "safegbpo.commands:report of the spec package); reinstall the package "
                         "(pip install -e .) or pass --no-report")
    cells = reproduce(
        args.profile,
        jobs=args.jobs,
        executor=args.executor,
        address=args.address,
        results=args.results,
        safe_sets=args.safe_sets,
        grid=args.grid,
        population_size=args.population_size,
        device=args.device,
        retry_failed=args.retry_failed,
        monitor=False if args.no_monitor else None,
        env_options=parse_task_key_values(args.env_option),
    )
    if not args.no_report:
        main(["report", "--results", str(cells["results"])])
    return 0 if checks_passed(cells) else 1
