"""The spec's commands: ``safegbpo audit``, ``safegbpo report`` and ``python -m spec``.

``safegbpo audit`` and ``safegbpo report`` are plugged into the ``safegbpo`` command through the
``safegbpo.commands`` entry-point group (``pyproject.toml``: ``audit = spec.cli:register_audit``,
``report = spec.cli:register_report``), so the library never imports ``spec``.  They use the
library's option vocabulary (:mod:`safegbpo.cli.options`).

``safegbpo audit --task T --safeguard NAME|module:Class [--mapping M] [--centre C]
[--passthrough] [--backend B] [--option key=value ...] [--samples N] [--seed S]
[--safe-set FILE] [--json OUT] [--require P3 ...] [--p1-actions N]`` prints a table of the
P1–P5 verdicts of one safeguard on one task and exits 0 iff P1, P2 and every required property
hold (1 otherwise, 2 on bad input).

``safegbpo report [--results DIR] [--out reports/] [--spec reports/spec.json]`` writes the
compliance report (:mod:`spec.report`).

``python -m spec --all [--tasks T ...] [--variants KEY ...] [--safe-sets DIR] [--backend B]
[--p1-actions N] [--json OUT]``
audits every registered safeguard map on every task (P1–P5 against Table 1), checks Lemmas 1–3,
prints the verdicts and writes the JSON document of :func:`spec.checks.audit.run_all` (what
``nox -s spec`` runs).  Exit code 0 iff every verdict agrees with its expectation
(:func:`spec.checks.audit.spec_exit_code`).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from safegbpo.cli.options import (
    add_backend_option,
    add_safe_set_option,
    add_safe_sets_option,
    add_task_option,
    add_tasks_option,
    parse_key_values,
    positive_int,
    resolve_tasks,
)
from safegbpo.console import make_console
from safegbpo.io import atomic_write_json
from spec.checks.defaults import DEFAULT_SAMPLES, PROPERTIES
from spec.set_comparison import DEFAULT_STATES

__all__ = ["build_spec_parser", "default_results_dir", "register_audit", "register_report",
           "spec_main"]


# --------------------------------------------------------------------------------------------
# safegbpo audit
# --------------------------------------------------------------------------------------------
def register_audit(subparsers: Any) -> None:
    """Add ``audit`` to ``safegbpo``'s subcommands (entry point ``safegbpo.commands``)."""
    from safegbpo.safeguards import CENTRES, MAPPINGS

    p = subparsers.add_parser(
        "audit", help="audit a safeguard against the safety spec (P1-P5)",
        description="Audit a safeguard (built-in or module:Class) on a task against P1-P5 of "
                    "the spec, on the bare map and on the SafeguardActionWrapper path training "
                    "uses. Exit code 0 iff P1, P2 and every --require'd property hold.")
    add_task_option(p)
    p.add_argument("--safeguard", required=True,
                   help="'bp', 'rm' or a user class 'package.module:Class'")
    p.add_argument("--mapping", choices=MAPPINGS, help="ray-mask mapping")
    p.add_argument("--centre", choices=CENTRES, help="ray-mask centre")
    p.add_argument("--passthrough", action="store_true", help="straight-through gradient")
    add_backend_option(p, default=None)
    p.add_argument("--option", action="append", metavar="KEY=VALUE",
                   help="further safeguard option (JSON value), repeatable")
    p.add_argument("--samples", type=positive_int, default=DEFAULT_SAMPLES,
                   help=f"audited states (default {DEFAULT_SAMPLES})")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tol", type=float, default=1e-6, help="P1 tolerance (default 1e-6)")
    p.add_argument("--p1-actions", type=int, default=0, metavar="N",
                   help="also check P1 on N actions (states inside/on/outside S_s, actions up "
                        "to 1e6) with the vectorised exact oracle, e.g. 1000000 (default 0: "
                        "skip); the count and wall clock are reported")
    add_safe_set_option(p)
    p.add_argument("--require", nargs="+", choices=PROPERTIES, metavar="P",
                   help="properties that must hold besides P1 and P2 (e.g. P3)")
    p.add_argument("--json", type=Path, help="write the audit as JSON")
    p.set_defaults(func=_audit)


def _audit(args: argparse.Namespace) -> int:
    from spec.checks.audit import audit
    from spec.checks.console import print_audit
    from spec.metadata import collect_metadata

    options = parse_key_values(args.option)
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
                       safe_set=args.safe_set, progress=lambda msg: status.update(msg),
                       p1_actions=args.p1_actions)
    print_audit(result, console)
    if args.json:
        doc = {"format": "safegbpo-audit/1", "metadata": collect_metadata({"audit": args.seed}),
               "audit": result.to_dict()}
        atomic_write_json(args.json, doc)
        console.print(f"wrote {args.json}")
    return 0 if result.passed else 1


# --------------------------------------------------------------------------------------------
# safegbpo report
# --------------------------------------------------------------------------------------------
def default_results_dir(root: Path = Path("results")) -> Path | None:
    """The results ``safegbpo report`` reads by default: ``root/paper`` when it holds run
    records (the paper campaign, even while it runs), else the most recently written
    reproduction under ``root`` (a directory with ``cells.json`` or run records), else
    ``None``."""
    from safegbpo.experiments.campaign import has_records

    if has_records(root / "paper"):
        return root / "paper"

    def written(directory: Path) -> float:
        files = [directory / "cells.json", *(directory / "records").glob("*.json")]
        return max((f.stat().st_mtime for f in files if f.is_file()), default=-1.0)

    candidates = [d for d in root.glob("*") if d.is_dir() and written(d) >= 0]
    return max(candidates, key=written) if candidates else None


def register_report(subparsers: Any) -> None:
    """Add ``report`` to ``safegbpo``'s subcommands (entry point ``safegbpo.commands``)."""
    r = subparsers.add_parser(
        "report", help="write the compliance report (reports/compliance.md|.json)",
        description="Compliance report: environment, every spec check, the paper's tables next "
                    "to ours, H1/H2, learning curves and safe-set figures. Exit code 1 when a "
                    "required check fails.")
    r.add_argument("--results", type=Path, help="reproduction results directory "
                                                "(cells.json and/or run records); default: "
                                                "results/paper when it has records, else the "
                                                "newest results/<profile>, if any")
    r.add_argument("--out", type=Path, default=Path("reports"), help="output directory")
    r.add_argument("--spec", type=Path, help="spec document (default: <out>/spec.json)")
    r.add_argument("--no-run-spec", action="store_true",
                   help="do not run the audits when the spec document is missing")
    r.add_argument("--samples", type=positive_int, default=DEFAULT_SAMPLES,
                   help="states per audit when the audits are run")
    r.add_argument("--no-figures", action="store_true", help="skip the figures")
    r.add_argument("--set-comparison-states", type=int, default=DEFAULT_STATES, metavar="N",
                   help="states per task and set of the exact-vs-Eq 6 safe action set "
                        f"comparison computed for the report (default {DEFAULT_STATES}; 0 skips)")
    r.set_defaults(func=_report)


def _report(args: argparse.Namespace) -> int:
    from spec.report import write_report

    results = args.results if args.results is not None else default_results_dir()
    if results is not None:
        print(f"reproduction results: {results}")
    outcome = write_report(results=results, out=args.out, spec=args.spec,
                           run_spec=not args.no_run_spec, samples=args.samples,
                           figures=not args.no_figures,
                           set_comparison_states=args.set_comparison_states,
                           progress=lambda msg: print(f"report: {msg}", flush=True))
    print(f"wrote {outcome['markdown']}, {outcome['json']} and {outcome['tables']}")
    if outcome["failed_required"]:
        print("required checks failing: " + "; ".join(outcome["failed_required"]))
    return 1 if outcome["failed_required"] else 0


# --------------------------------------------------------------------------------------------
# python -m spec
# --------------------------------------------------------------------------------------------
def build_spec_parser() -> argparse.ArgumentParser:
    """The parser of ``python -m spec``."""
    from spec.checks.expectations import audited_variants

    parser = argparse.ArgumentParser(
        prog="python -m spec",
        description="The executable specification: audit every registered safeguard map on "
                    "every task against P1-P5 (Table 1) and check Lemmas 1-3.")
    parser.add_argument("--all", action="store_true",
                        help="audit every registered variant on every task and check the "
                             "lemmas")
    add_tasks_option(parser)
    parser.add_argument("--variants", nargs="+", choices=[v.key for v in audited_variants()],
                        metavar="KEY", help="variants to audit (registry keys; default: all)")
    add_safe_sets_option(parser)
    add_backend_option(parser, default=None)
    parser.add_argument("--no-lemmas", action="store_true", help="skip Lemmas 1-3")
    parser.add_argument("--samples", type=positive_int, default=DEFAULT_SAMPLES,
                        help=f"states per audit (default {DEFAULT_SAMPLES})")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tol", type=float, default=1e-6, help="P1 tolerance")
    parser.add_argument("--p1-actions", type=int, default=0, metavar="N",
                        help="P1 at scale: N actions per audit with the vectorised exact "
                             "oracle (nox -s spec: 10000)")
    parser.add_argument("--json", type=Path, help="write the spec document here")
    parser.add_argument("--quiet", action="store_true", help="summary only")
    return parser


def spec_main(argv: Sequence[str] | None = None) -> int:
    """``python -m spec``; returns the exit code (2 on bad input)."""
    from safegbpo.safesets import resolve_safe_sets
    from spec.checks.audit import run_all, spec_exit_code
    from spec.checks.console import print_audit, print_checks, print_summary
    from spec.checks.results import AuditResult, CheckResult

    parser = build_spec_parser()
    args = parser.parse_args(argv)
    if not args.all and not args.variants:
        parser.error("give --all or --variants")
    try:
        tasks = resolve_tasks(args.tasks)
        safe_sets = resolve_safe_sets(args.safe_sets, tasks)
    except (ValueError, FileNotFoundError) as err:
        print(f"python -m spec: error: {err}")
        return 2
    console = make_console()
    with console.status("running the specification") as status:
        doc = run_all(tasks=tasks, variants=args.variants, samples=args.samples,
                      seed=args.seed, tol=args.tol, lemmas=not args.no_lemmas,
                      safe_sets=safe_sets, backend=args.backend,
                      progress=lambda msg: status.update(msg), p1_actions=args.p1_actions)
    if not args.quiet:
        for a in doc["audits"]:
            print_audit(AuditResult.from_dict(a), console)
        if doc["lemmas"]:
            print_checks([CheckResult.from_dict(c) for c in doc["lemmas"]], "Lemmas 1-3",
                         console)
    print_summary(doc, console)
    if args.json:
        atomic_write_json(args.json, doc)
        console.print(f"wrote {args.json}")
    return spec_exit_code(doc)
