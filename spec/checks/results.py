"""Structured results of the executable specification.

A :class:`CheckResult` is one verdict (a property P1–P5 of SPEC §3, a lemma of SPEC §4–§5, or a
check of the training path) with the numbers it was decided on and the expectation of the
paper's Table 1 it is compared with.  An :class:`AuditResult` collects the checks of one
safeguard on one task.  Both serialise to plain JSON via ``to_dict()`` and back via
``from_dict()`` (the compliance report reads ``reports/spec.json``).

Vocabulary (used verbatim in tables and JSON):

* ``verdict`` — ``"holds"``, ``"fails"`` or ``"not evaluated"`` (``holds is None``; the reason is
  in ``details``);
* ``outcome`` — the verdict against the expectation: ``"as expected"``, ``"UNEXPECTED"``, or
  ``"no expectation"`` when Table 1 makes no statement.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["AS_EXPECTED", "UNEXPECTED", "NO_EXPECTATION", "CheckResult", "AuditResult",
           "jsonable"]

AS_EXPECTED = "as expected"
UNEXPECTED = "UNEXPECTED"
NO_EXPECTATION = "no expectation"


def jsonable(value: Any) -> Any:
    """``value`` with numpy/torch scalars and arrays turned into plain Python, non-finite floats
    into the strings ``"nan"``, ``"inf"``, ``"-inf"`` (strict JSON has no NaN)."""
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if hasattr(value, "detach"):  # torch tensor
        value = value.detach().cpu().numpy()
    if hasattr(value, "tolist"):  # numpy array / scalar
        return jsonable(value.tolist())
    if isinstance(value, bool) or value is None or isinstance(value, int | str):
        return value
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return value
    return str(value)


@dataclass
class CheckResult:
    """One verdict with its evidence.

    Attributes:
        check: short id, e.g. ``"P1"``, ``"P1 (training path)"``, ``"Lemma 1"``.
        title: one-line statement of what was checked.
        holds: ``True``/``False``, or ``None`` when the check could not be evaluated.
        measured: the numbers the verdict was decided on (JSON-serialisable after
            :func:`jsonable`).
        details: one or two sentences: why it holds/fails (the first counterexample, the
            tolerance used, ...).
        expected: Table 1's expectation for this safeguard (``None``: no statement).
        expectation: the expectation in words (e.g. ``"rank <= d-1 for unsafe actions"``).
        required: the property is required (P1, P2, or named with ``--require``): a failure
            makes the audit fail.
    """

    check: str
    title: str
    holds: bool | None
    measured: dict[str, Any] = field(default_factory=dict)
    details: str = ""
    expected: bool | None = None
    expectation: str = ""
    required: bool = False

    @property
    def verdict(self) -> str:
        if self.holds is None:
            return "not evaluated"
        return "holds" if self.holds else "fails"

    @property
    def outcome(self) -> str:
        if self.expected is None or self.holds is None:
            return NO_EXPECTATION
        return AS_EXPECTED if self.holds == self.expected else UNEXPECTED

    @property
    def failed_requirement(self) -> bool:
        """A required check that does not hold (not evaluated counts as failed)."""
        return self.required and self.holds is not True

    def to_dict(self) -> dict[str, Any]:
        return {
            "check": self.check,
            "title": self.title,
            "holds": self.holds,
            "verdict": self.verdict,
            "expected": self.expected,
            "expectation": self.expectation,
            "outcome": self.outcome,
            "required": self.required,
            "measured": jsonable(self.measured),
            "details": self.details,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CheckResult:
        return cls(check=data["check"], title=data.get("title", ""), holds=data.get("holds"),
                   measured=dict(data.get("measured", {})), details=data.get("details", ""),
                   expected=data.get("expected"), expectation=data.get("expectation", ""),
                   required=bool(data.get("required", False)))


@dataclass
class AuditResult:
    """All checks of one safeguard on one task.

    Attributes:
        task: a registered task (``"explicit"`` for task-free lemma checks).
        safeguard: the name given to :func:`safegbpo.safeguards.make_safeguard` (or a label).
        options: the safeguard options (mapping, centre, passthrough, ...).
        label: the variant's row label (SPEC §5), e.g. ``"RM Hyperbolic"``.
        seed: seed of every random draw of the audit.
        samples: the sample sizes used.
        checks: the :class:`CheckResult` list, in the order they were run.
        seconds: wall-clock duration of the audit.
        safe_set: the audited safe set's ``source`` and ``certification`` (``{}`` for
            task-free checks): an audit on a set "verified by sampling, not certified" is
            reported as such, never as a proof.
    """

    task: str
    safeguard: str
    options: dict[str, Any]
    label: str
    seed: int
    samples: dict[str, int]
    checks: list[CheckResult]
    seconds: float = 0.0
    safe_set: dict[str, str] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        """P1 and P2 hold, and so does every other check marked required."""
        return not any(c.failed_requirement for c in self.checks)

    @property
    def unexpected(self) -> list[CheckResult]:
        """Checks whose verdict contradicts the expectation."""
        return [c for c in self.checks if c.outcome == UNEXPECTED]

    def get(self, check: str) -> CheckResult:
        for c in self.checks:
            if c.check == check:
                return c
        raise KeyError(f"no check {check!r} in the audit of {self.label} on {self.task}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "safeguard": self.safeguard,
            "options": jsonable(self.options),
            "label": self.label,
            "seed": self.seed,
            "samples": dict(self.samples),
            "passed": self.passed,
            "unexpected": [c.check for c in self.unexpected],
            "seconds": self.seconds,
            "safe_set": dict(self.safe_set),
            "checks": [c.to_dict() for c in self.checks],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AuditResult:
        return cls(task=data["task"], safeguard=data["safeguard"],
                   options=dict(data.get("options", {})), label=data.get("label", ""),
                   seed=int(data.get("seed", 0)), samples=dict(data.get("samples", {})),
                   checks=[CheckResult.from_dict(c) for c in data.get("checks", [])],
                   seconds=float(data.get("seconds", 0.0)),
                   safe_set=dict(data.get("safe_set", {})))
