"""``safegbpo safe-set compute|verify|box``: compute and verify certified safe sets.

Examples::

    safegbpo safe-set compute --task pendulum [--out pendulum.json]
    safegbpo safe-set verify --task quadrotor [--safe-set set.json] [--json report.json] \\
        [--samples 1000] [--seed 0] [--reference ref.json | --no-reference]
    safegbpo safe-set box --task energy --out box.json     # the state box S as a set file

``box`` writes the feasible state box ``S`` of a task as a set file without action part: the
energy task's reference implementation uses exactly this as its safe set ("one-step
feasibility"), and ``safe-set verify --task energy --safe-set box.json`` shows that it is not
robust control invariant (exit code 1, naming states from which no action keeps the next state
in ``S``).

Exit codes: 0 verified, 1 the set failed verification (a state without a safe action), 2 bad
input (unreadable or invalid set file, wrong task; raised as ``ValueError`` and turned into
exit code 2 by :func:`safegbpo.cli.main`).
"""

from __future__ import annotations

import argparse
import json
import math
from typing import Any

from rich.table import Table

from safegbpo.cli.options import add_safe_set_option, add_task_option
from safegbpo.console import make_console
from safegbpo.io import atomic_write_text
from safegbpo.tasks import get_task, same_task

__all__ = ["register"]


def register(subparsers: Any) -> None:
    """Add ``safe-set compute``, ``verify`` and ``box`` to ``safegbpo``'s subparsers."""
    parser = subparsers.add_parser(
        "safe-set", help="compute / verify certified robust control invariant safe sets",
        description="Compute the project's certified RCI safe sets (SPEC §7) and verify safe-set "
        "files on the nonlinear dynamics.")
    sub = parser.add_subparsers(dest="safe_set_command", metavar="ACTION", required=True)

    compute = sub.add_parser(
        "compute", help="compute (and verify) the certified safe set of a task",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        description="Solve the RCI program, verify the result and save it to --out (default: "
        "refresh the per-user cache used by get_safe_set).")
    add_task_option(compute)
    compute.add_argument("--out", default=None, help="output set file (safegbpo-safe-set/1)")
    _verification_options(compute)
    compute.add_argument("--verbose", action="store_true", help="print the search progress")
    compute.set_defaults(func=run_compute)

    verify = sub.add_parser(
        "verify", help="verify a safe set on the nonlinear dynamics",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        description="Check on sampled states of S_s ∩ S that the backup action (or an LP "
        "action) keeps the successor set inside S_s and S. Exit code 1 on a violation.")
    add_task_option(verify)
    add_safe_set_option(verify, help="set file to verify (default: the project's cached set)")
    _verification_options(verify)
    verify.set_defaults(func=run_verify)

    box = sub.add_parser(
        "box", help="write the feasible state box S of a task as a set file",
        description="Write the state box S as a safegbpo-safe-set/1 file without action part "
        "(the energy reference's safe set); verify it with 'safe-set verify --safe-set'.")
    add_task_option(box)
    box.add_argument("--out", required=True, help="output set file")
    box.set_defaults(func=run_box)


def _verification_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--samples", type=int, default=1000, help="random audited states")
    parser.add_argument("--seed", type=int, default=0, help="seed of the audited states")
    parser.add_argument("--reference", default=None,
                        help="reference set for the volume ratio (default: "
                        "../shared/reference/safe_sets/<task>.json when present)")
    parser.add_argument("--no-reference", action="store_true", help="no volume comparison")
    parser.add_argument("--json", default=None, metavar="OUT",
                        help="write the verification report as JSON")


def _reference(args: argparse.Namespace) -> Any:
    if args.no_reference:
        return None
    return args.reference if args.reference is not None else "auto"


def _print_report(report: Any, title: str, extra: dict[str, str] | None = None) -> None:
    from safegbpo.safesets.safe_set import CERTIFIED

    table = Table(title=title, show_header=False)
    table.add_column("quantity", style="bold")
    table.add_column("value")
    verdict = "[green]VERIFIED[/green]" if report.verdict else "[red]VIOLATED[/red]"
    table.add_row("verdict", verdict)
    certified = report.certification == CERTIFIED
    table.add_row("certification", f"[green]{report.certification}[/green]" if certified
                  else f"[yellow]{report.certification.upper()}[/yellow]")
    table.add_row("states checked", str(report.num_states))
    table.add_row("violations", str(report.num_violations))
    table.add_row("worst containment margin", _fmt(report.worst_margin))
    if report.has_action_set:
        table.add_row("backup-action failures", f"{report.num_backup_failures} "
                      f"({report.num_lp_rescued} with another safe action)")
    table.add_row("simulated successor violations", str(report.num_simulation_violations))
    table.add_row("volume", _fmt(report.volume))
    if report.state_box_fraction is not None:
        table.add_row("volume / volume of the state box S", _fmt(report.state_box_fraction))
    excess = max(report.feasible_excess) if report.feasible_excess else 0.0
    table.add_row("max feasible excess (outside S)", _fmt(excess))
    if report.volume_ratio is None:
        table.add_row("volume ratio this set / reference", "reference not available")
    else:
        table.add_row("volume ratio this set / reference", _fmt(report.volume_ratio))
        table.add_row("reference", f"{report.reference} (volume {_fmt(report.reference_volume)})")
    for key, value in (extra or {}).items():
        table.add_row(key, value)
    make_console().print(table)
    if report.certification != CERTIFIED:
        make_console().print(
            f"[yellow]note[/yellow]: this set is {report.certification!r}: its RCI certificate "
            "rests on a linearisation remainder estimated from samples (or it has none), so "
            "VERIFIED above means no counterexample among the sampled states, not a proof")
    names = _state_names(report.task)
    for v in report.violations[:3]:
        state = (", ".join(f"{n}={x:.6g}" for n, x in zip(names, v["state"], strict=True))
                 if len(names) == len(v["state"]) else str(v["state"]))
        make_console().print(f"[red]violation[/red] at state ({state}): {v['reason']}")


def _state_names(task: str) -> tuple[str, ...]:
    try:
        return tuple(get_task(task).model.state_names)
    except ValueError:
        return ()


def _fmt(x: float | None) -> str:
    if x is None:
        return "-"
    return str(x) if not math.isfinite(x) else f"{x:.6g}"


def _write_json(path: str, data: dict) -> None:
    atomic_write_text(path, json.dumps(data, indent=1) + "\n")


def run_compute(args: argparse.Namespace) -> int:
    from safegbpo.safesets.cache import get_safe_set
    from safegbpo.safesets.rci import compute_rci
    from safegbpo.safesets.verify import verify_safe_set

    get_task(args.task)
    if args.out is None:
        safe = get_safe_set(args.task, refresh=True, verbose=args.verbose)
    else:
        safe = compute_rci(args.task, verbose=args.verbose)
    report = verify_safe_set(safe, num_samples=args.samples, seed=args.seed,
                             reference=_reference(args))
    where = "cache"
    if args.out is not None and report.verdict:
        where = str(safe.save(args.out))
    elif args.out is not None:
        where = "not saved (verification failed)"
    meta = safe.metadata
    _print_report(report, f"{args.task} safe set (computed)", {
        "generators m": str(safe.num_generators),
        "certificate margins (LDI vertices)": ", ".join(
            f"{m:.6f}" for m in meta.get("certificate_margins", [])),
        "compute time (s)": str(meta.get("compute_seconds", "-")),
        "saved to": where,
    })
    if args.json:
        _write_json(args.json, report.to_dict())
    return 0 if report.verdict else 1


def run_verify(args: argparse.Namespace) -> int:
    from safegbpo.safesets.cache import get_safe_set
    from safegbpo.safesets.safe_set import SafeSet
    from safegbpo.safesets.verify import verify_safe_set

    get_task(args.task)
    if args.safe_set is not None:
        safe = SafeSet.load(args.safe_set)
        if not same_task(safe.task, args.task):
            raise ValueError(f"{args.safe_set} is a {safe.task!r} set, but --task is "
                             f"{args.task!r}")
    else:
        safe = get_safe_set(args.task)
    if args.samples < 0:
        raise ValueError(f"--samples must be >= 0, got {args.samples}")
    report = verify_safe_set(safe, num_samples=args.samples, seed=args.seed,
                             reference=_reference(args))
    _print_report(report, f"{args.task} safe set: {args.safe_set or 'project set (cache)'}")
    if args.json:
        _write_json(args.json, report.to_dict())
    return 0 if report.verdict else 1


def run_box(args: argparse.Namespace) -> int:
    from safegbpo.safesets.safe_set import NOT_CERTIFIED, SafeSet
    from safegbpo.sets import Zonotope

    model = get_task(args.task).model
    low, high = model.state_bounds()
    box = SafeSet(task=args.task, state=Zonotope.from_box(low, high), action=None,
                  source=f"feasible state box S of {args.task} (no action set)",
                  metadata={"kind": "state box", "low": low.tolist(), "high": high.tolist()},
                  certification=NOT_CERTIFIED)
    path = box.save(args.out)
    ranges = ", ".join(f"{n} in [{lo:g}, {hi:g}]" for n, lo, hi in
                       zip(model.state_names, low.tolist(), high.tolist(), strict=True))
    make_console().print(f"wrote {path}: the state box S of {args.task} ({ranges})")
    return 0
