"""Rich console rendering of audits and lemma checks (the ``safegbpo audit`` / ``python -m
spec`` output)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from rich.console import Console
from rich.table import Table

from safegbpo.console import make_console
from spec.checks.results import AS_EXPECTED, UNEXPECTED, AuditResult, CheckResult

__all__ = ["key_numbers", "print_audit", "print_checks", "print_summary"]

_VERDICT_STYLE = {"holds": "green", "fails": "red", "not evaluated": "yellow"}
_OUTCOME_STYLE = {AS_EXPECTED: "green", UNEXPECTED: "bold red"}


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def key_numbers(check: CheckResult | Mapping[str, Any]) -> str:
    """The two or three numbers that summarise a check (one line)."""
    c = check if isinstance(check, CheckResult) else CheckResult.from_dict(check)
    m = c.measured
    picks = {
        "P1": ("violations", "total_p1_samples", "flagged_uncertified", "worst_margin"),
        "P2": ("nonfinite_jacobians", "lipschitz_fd_max", "straddle_ratio_max"),
        "P3": ("full_rank_fraction", "gradcheck_agreement", "sigma_min_quantiles"),
        "P4": ("intervention_rate_uniform", "intervention_rate_safe_inputs"),
        "P5": ("median_forward_s", "env_steps_per_call"),
    }.get(c.check)
    if picks is None:
        picks = tuple(k for k, v in m.items() if isinstance(v, int | float))[:3]
    parts = []
    for key in picks:
        value = m.get(key)
        if key == "sigma_min_quantiles" and isinstance(value, Mapping):
            value = value.get("0.0")
            key = "sigma_min"
        if key == "straddle_ratio_max" and isinstance(value, Mapping):
            value = max(value.values(), default=0.0)
            key = "straddle"
        parts.append(f"{key}={_fmt(value)}")
    return ", ".join(parts)


def print_checks(checks: Iterable[CheckResult], title: str, console: Console | None = None,
                 show_details: bool = True) -> None:
    console = console or make_console()
    table = Table(title=title, show_lines=False, expand=False)
    table.add_column("check", no_wrap=True)
    table.add_column("verdict", no_wrap=True)
    table.add_column("expected (Table 1)")
    table.add_column("outcome", no_wrap=True)
    table.add_column("req.", no_wrap=True)
    table.add_column("numbers" if not show_details else "numbers / why")
    for c in checks:
        verdict = f"[{_VERDICT_STYLE.get(c.verdict, '')}]{c.verdict}[/]"
        outcome = c.outcome
        style = _OUTCOME_STYLE.get(outcome)
        outcome = f"[{style}]{outcome}[/]" if style else outcome
        expected = ("—" if c.expected is None else ("holds" if c.expected else "fails"))
        if c.expectation:
            expected += f": {c.expectation}"
        numbers = key_numbers(c)
        if show_details and c.details:
            numbers += f"\n[dim]{c.details}[/]"
        table.add_row(c.check, verdict, expected, outcome, "yes" if c.required else "",
                      numbers)
    console.print(table)


def print_audit(result: AuditResult, console: Console | None = None,
                show_details: bool = True) -> None:
    console = console or make_console()
    opts = ", ".join(f"{k}={v}" for k, v in result.options.items()) or "default options"
    title = (f"{result.label} ({result.safeguard}; {opts}) on {result.task}: "
             f"{result.samples.get('states')} states, {result.samples.get('actions')} actions, "
             f"seed {result.seed}, {result.seconds:.0f} s")
    print_checks(result.checks, title, console, show_details)
    certification = result.safe_set.get("certification")
    if certification:
        style = "green" if certification == "certified" else "yellow"
        console.print(f"safe set: [{style}]{certification}[/] ({result.safe_set.get('source')})")
        if certification != "certified":
            console.print("[yellow]note[/]: the safe set is not certified, so P1/P2 below hold "
                          "for a set whose invariance was only checked on samples")
    status = "[green]PASSED[/]" if result.passed else "[red]FAILED[/]"
    failed = [c.check for c in result.checks if c.failed_requirement]
    console.print(f"audit {status}" + (f" (required checks failing: {', '.join(failed)})"
                                       if failed else " (P1, P2 and every required check hold)"))


def print_summary(doc: Mapping[str, Any], console: Console | None = None) -> None:
    console = console or make_console()
    s = doc["summary"]
    table = Table(title="spec summary", show_lines=False)
    table.add_column("task")
    table.add_column("safeguard")
    for prop in ("P1", "P2", "P3", "P4", "P5"):
        table.add_column(prop, no_wrap=True)
    table.add_column("audit", no_wrap=True)
    for a in doc["audits"]:
        res = AuditResult.from_dict(a)
        cells = []
        for prop in ("P1", "P2", "P3", "P4", "P5"):
            try:
                c = res.get(prop)
            except KeyError:
                cells.append("")
                continue
            mark = {"holds": "✓", "fails": "✗"}.get(c.verdict, "?")
            style = "bold red" if c.outcome == UNEXPECTED else (
                "green" if c.holds else "yellow")
            cells.append(f"[{style}]{mark}{' !' if c.outcome == UNEXPECTED else ''}[/]")
        table.add_row(res.task, res.label, *cells,
                      "[green]passed[/]" if res.passed else "[red]failed[/]")
    console.print(table)
    console.print("✓ holds, ✗ fails; [yellow]yellow[/] = fails as Table 1 expects, "
                  "[bold red]! = UNEXPECTED[/]")
    console.print(f"lemmas holding: {s['lemmas_holding']}/{s['lemmas']}; audits passed "
                  f"(P1, P2): {s['audits_passed']}/{s['audits']}")
    if s["unexpected"]:
        console.print("[bold red]UNEXPECTED:[/] " + "; ".join(s["unexpected"]))
    else:
        console.print("[green]every verdict agrees with its expectation[/]")
