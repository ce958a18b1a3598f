"""``python -m spec``: the executable specification (what ``nox -s spec`` runs).

    python -m spec --all --json reports/spec.json

audits every built-in safeguard variant on every task (P1–P5 against Table 1), checks Lemmas
1–3, prints the verdicts and writes the JSON document of :func:`spec.audit.run_all`.  Exit code 0
iff every verdict agrees with its expectation (see :func:`spec.audit.spec_exit_code`).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from safegbpo.console import make_console
from spec.audit import DEFAULT_SAMPLES, TASKS, run_all, spec_exit_code
from spec.console import print_audit, print_checks, print_summary
from spec.expectations import BUILTIN_VARIANTS
from spec.results import AuditResult, CheckResult


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m spec", description=__doc__.split("\n")[0])
    parser.add_argument("--all", action="store_true",
                        help="audit every built-in variant on every task and check the lemmas")
    parser.add_argument("--tasks", nargs="+", choices=TASKS, default=list(TASKS))
    parser.add_argument("--variants", nargs="+", choices=[v.key for v in BUILTIN_VARIANTS],
                        help="built-in variants to audit (default: all)")
    parser.add_argument("--no-lemmas", action="store_true", help="skip Lemmas 1-3")
    parser.add_argument("--samples", type=int, default=DEFAULT_SAMPLES,
                        help=f"states per audit (default {DEFAULT_SAMPLES})")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tol", type=float, default=1e-6, help="P1 tolerance")
    parser.add_argument("--json", type=Path, help="write the spec document here")
    parser.add_argument("--quiet", action="store_true", help="summary only")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not args.all and not args.variants:
        build_parser().error("give --all or --variants")
    console = make_console()
    with console.status("running the specification") as status:
        doc = run_all(tasks=args.tasks, variants=args.variants, samples=args.samples,
                      seed=args.seed, tol=args.tol, lemmas=not args.no_lemmas,
                      progress=lambda msg: status.update(msg))
    if not args.quiet:
        for a in doc["audits"]:
            print_audit(AuditResult.from_dict(a), console)
        if doc["lemmas"]:
            print_checks([CheckResult.from_dict(c) for c in doc["lemmas"]], "Lemmas 1-3",
                         console)
    print_summary(doc, console)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        tmp = args.json.with_suffix(args.json.suffix + ".tmp")
        tmp.write_text(json.dumps(doc, indent=1))
        tmp.replace(args.json)
        console.print(f"wrote {args.json}")
    return spec_exit_code(doc)


if __name__ == "__main__":
    sys.exit(main())
