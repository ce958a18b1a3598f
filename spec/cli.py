"""``safegbpo audit`` and ``safegbpo report`` (registered by :mod:`safegbpo.cli`).

``safegbpo audit --task T --safeguard NAME|module:Class [--mapping M] [--centre C]
[--passthrough] [--backend B] [--option key=value ...] [--samples N] [--seed S] [--json OUT]
[--require P3 ...]`` prints a table of the P1–P5 verdicts of one safeguard on one task and
exits 0 iff P1, P2 and every required property hold (1 otherwise, 2 on bad input).

``safegbpo report [--results DIR] [--out reports/] [--spec reports/spec.json]`` writes the
compliance report (:mod:`spec.report`).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from safegbpo.console import make_console
from spec.defaults import DEFAULT_SAMPLES, TASKS
from spec.expectations import PROPERTIES

__all__ = ["register", "parse_options"]


def parse_options(items: list[str] | None) -> dict[str, Any]:
    """``['key=value', ...]`` -> dict; values parsed as JSON when possible (``1e-6``, ``true``,
    ``"x"``), else kept as strings."""
    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--option expects key=value, got {item!r}")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def _audit(args: argparse.Namespace) -> int:

    from spec.audit import audit
    from spec.console import print_audit

    options = parse_options(args.option)
    if args.mapping is not None:
        options["mapping"] = args.mapping
    if args.centre is not None:
        options["centre"] = args.centre
    if args.passthrough:
        options["passthrough"] = True
    if args.backend is not None:
        options["backend"] = args.backend
    console = make_console()
    with console.status(f"auditing {args.safeguard} on {args.task}") as status:
        result = audit(args.task, args.safeguard, options=options, samples=args.samples,
                       seed=args.seed, tol=args.tol, required=args.require or (),
                       safe_set=args.safe_set, progress=lambda msg: status.update(msg))
    print_audit(result, console)
    if args.json:
        from spec.metadata import collect_metadata

        args.json.parent.mkdir(parents=True, exist_ok=True)
        doc = {"format": "safegbpo-audit/1", "metadata": collect_metadata({"audit": args.seed}),
               "audit": result.to_dict()}
        args.json.write_text(json.dumps(doc, indent=1))
        console.print(f"wrote {args.json}")
    return 0 if result.passed else 1


def default_results_dir(root: Path = Path("results")) -> Path | None:
    """The most recently written reproduction results under ``root`` (a directory holding
    ``tables.json``), or ``None`` when there are none."""
    candidates = sorted(root.glob("*/tables.json"), key=lambda p: p.stat().st_mtime)
    return candidates[-1].parent if candidates else None


def _report(args: argparse.Namespace) -> int:
    from spec.report import write_report

    results = args.results if args.results is not None else default_results_dir()
    if results is not None:
        print(f"reproduction results: {results}")
    outcome = write_report(results=results, out=args.out, spec=args.spec,
                           run_spec=not args.no_run_spec, samples=args.samples,
                           figures=not args.no_figures)
    print(f"wrote {outcome['markdown']} and {outcome['json']}")
    if outcome["failed_required"]:
        print("required checks failing: " + "; ".join(outcome["failed_required"]))
    return 1 if outcome["failed_required"] else 0


def register(subparsers: Any) -> None:
    """Add ``audit`` and ``report`` to ``safegbpo``'s subcommands."""
    p = subparsers.add_parser(
        "audit", help="audit a safeguard against the safety spec (P1-P5)",
        description="Audit a safeguard (built-in or module:Class) on a task against P1-P5 of "
                    "the spec, on the bare map and on the SafeguardActionWrapper path training "
                    "uses. Exit code 0 iff P1, P2 and every --require'd property hold.")
    p.add_argument("--task", required=True, choices=TASKS)
    p.add_argument("--safeguard", required=True,
                   help="'bp', 'rm' or a user class 'package.module:Class'")
    p.add_argument("--mapping", choices=("linear", "hyperbolic"), help="ray-mask mapping")
    p.add_argument("--centre", choices=("zonotopic", "orthogonal"), help="ray-mask centre")
    p.add_argument("--passthrough", action="store_true", help="straight-through gradient")
    p.add_argument("--backend", choices=("exact", "cvxpylayers"), default=None,
                   help="built-in safeguards' backend (default: exact)")
    p.add_argument("--option", action="append", metavar="KEY=VALUE",
                   help="further safeguard option (JSON value), repeatable")
    p.add_argument("--samples", type=int, default=DEFAULT_SAMPLES,
                   help=f"audited states (default {DEFAULT_SAMPLES})")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tol", type=float, default=1e-6, help="P1 tolerance (default 1e-6)")
    p.add_argument("--safe-set", dest="safe_set", help="safe-set file (default: the project's)")
    p.add_argument("--require", nargs="+", choices=PROPERTIES, metavar="P",
                   help="properties that must hold besides P1 and P2 (e.g. P3)")
    p.add_argument("--json", type=Path, help="write the audit as JSON")
    p.set_defaults(func=_audit)

    r = subparsers.add_parser(
        "report", help="write the compliance report (reports/compliance.md|.json)",
        description="Compliance report: environment, every spec check, the paper's tables next "
                    "to ours, H1/H2, learning curves and safe-set figures. Exit code 1 when a "
                    "required check fails.")
    r.add_argument("--results", type=Path, help="reproduction results directory "
                                                "(with tables.json); default: the newest "
                                                "results/<profile>, if any")
    r.add_argument("--out", type=Path, default=Path("reports"), help="output directory")
    r.add_argument("--spec", type=Path, help="spec document (default: <out>/spec.json)")
    r.add_argument("--no-run-spec", action="store_true",
                   help="do not run the audits when the spec document is missing")
    r.add_argument("--samples", type=int, default=DEFAULT_SAMPLES,
                   help="states per audit when the audits are run")
    r.add_argument("--no-figures", action="store_true", help="skip the figures")
    r.set_defaults(func=_report)
