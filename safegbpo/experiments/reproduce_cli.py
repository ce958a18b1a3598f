"""``safegbpo reproduce``: the paper's experiments, tables and compliance report.

    safegbpo reproduce [--profile quick|paper] [--jobs N] [--executor pool|ray] [--address A]
                       [--results DIR] [--safe-sets DIR] [--grid FILE] [--retry-failed]
                       [--no-monitor] [--no-report]

The command is resumable: re-running it skips finished runs and resumes interrupted ones from
their checkpoints (the results store, :mod:`safegbpo.experiments.store`).  Exit status 0 when
every check of the profile passed, 1 otherwise, 2 on a usage error.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

from safegbpo.experiments.profiles import PROFILES

__all__ = ["register"]


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def register(subparsers: Any) -> None:
    """Add the ``reproduce`` subcommand to ``safegbpo``'s subparsers."""
    profiles = "; ".join(f"{p.name}: {p.description}" for p in PROFILES.values())
    parser = subparsers.add_parser(
        "reproduce",
        help="run the paper's experiment grid, write the tables and the compliance report",
        description="Run a reproduction profile's grid (resumable), compute Tables 2-6 next to "
                    "the paper's values, run the profile's checks and write the compliance "
                    f"report. Profiles: {profiles}.",
    )
    parser.add_argument("--profile", choices=sorted(PROFILES), default="quick",
                        help="which grid to run (default: quick)")
    parser.add_argument("--jobs", type=_positive_int, default=None,
                        help=f"parallel runs (default: the number of CPUs, {os.cpu_count()})")
    parser.add_argument("--executor", choices=("pool", "ray"), default="pool",
                        help="local process pool (default) or Ray (pip install 'safegbpo[ray]')")
    parser.add_argument("--address", default=None,
                        help="Ray cluster address (default: start a local Ray instance)")
    parser.add_argument("--results", default=None,
                        help="results directory (default: results/<profile>)")
    parser.add_argument("--safe-sets", default=None, metavar="DIR",
                        help="use DIR/<task>.json as safe sets instead of the project's own "
                             "(e.g. ../shared/reference/safe_sets)")
    parser.add_argument("--profiles", default="auto", metavar="FILE",
                        help="energy task's hourly profiles: 'auto' (the reference's CSV from "
                             "../shared when present, else the generated year), 'generated' or "
                             "a CSV file")
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
                        help="do not call the compliance report")
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from safegbpo.experiments.reproduce import checks_passed, reproduce

    tables = reproduce(
        args.profile,
        jobs=args.jobs,
        executor=args.executor,
        address=args.address,
        results=args.results,
        safe_sets=args.safe_sets,
        grid=args.grid,
        device=args.device,
        retry_failed=args.retry_failed,
        monitor=False if args.no_monitor else None,
        report=not args.no_report,
        profiles=args.profiles,
    )
    return 0 if checks_passed(tables) else 1
