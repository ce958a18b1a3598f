"""Result records and the expectations of Table 1 (per registered variant)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from spec.checks.expectations import audited_variants, expectations_for, get_variant, variant_for
from spec.checks.results import (
    AS_EXPECTED,
    NO_EXPECTATION,
    UNEXPECTED,
    AuditResult,
    CheckResult,
    jsonable,
)


def test_check_verdict_and_outcome():
    c = CheckResult("P3", "t", holds=False, expected=False)
    assert (c.verdict, c.outcome) == ("fails", AS_EXPECTED)
    c = CheckResult("P1", "t", holds=False, expected=True, required=True)
    assert (c.verdict, c.outcome, c.failed_requirement) == ("fails", UNEXPECTED, True)
    c = CheckResult("P5", "t", holds=None, expected=True)
    assert (c.verdict, c.outcome) == ("not evaluated", NO_EXPECTATION)
    assert CheckResult("P1", "t", holds=None, required=True).failed_requirement


def test_jsonable_handles_numpy_and_non_finite():
    out = jsonable({"a": np.float64(1.5), "b": np.array([1, 2]), "c": math.inf, "d": math.nan,
                    (1, 2): [np.int64(3)]})
    assert out == {"a": 1.5, "b": [1, 2], "c": "inf", "d": "nan", "(1, 2)": [3]}
    json.dumps(out, allow_nan=False)


def test_audit_round_trip_and_pass_rule():
    checks = [CheckResult("P1", "t", True, {"x": 1.0}, required=True, expected=True),
              CheckResult("P2", "t", True, required=True, expected=True),
              CheckResult("P3", "t", False, expected=True)]
    audit = AuditResult("pendulum", "bp", {}, "BP", 0, {"states": 8}, checks, 1.0)
    assert audit.passed and [c.check for c in audit.unexpected] == ["P3"]
    again = AuditResult.from_dict(json.loads(json.dumps(audit.to_dict())))
    assert again.to_dict() == audit.to_dict()
    checks[2].required = True
    assert not audit.passed


def test_table1_expectations_of_the_builtins():
    bp = expectations_for("bp")
    assert bp["P3"].holds is False and bp["P4"].holds is True
    rm = expectations_for("rm", {"mapping": "linear"})
    assert rm["P3"].holds is True and rm["P4"].holds is False
    for variant in audited_variants():
        exp = variant.expectations
        assert exp["P1"].holds is True, variant.key
        assert set(exp) == {"P1", "P2", "P3", "P4", "P5"}
    assert expectations_for("rm", {"centre": "orthogonal"})["P2"].holds is False
    custom = expectations_for("my.module:Guard")
    assert custom["P1"].holds is True and custom["P3"].holds is None


def test_variant_lookup():
    assert variant_for("bp").key == "bp"
    assert variant_for("bp", {"centre": "orthogonal"}) is None
    assert variant_for("rm", {"mapping": "hyperbolic"}).key == "rm-hyperbolic"
    assert variant_for("rm", {"passthrough": True}).key == "rm-passthrough"
    assert variant_for("rm", {"mapping": "hyperbolic", "passthrough": True}) is None
    assert variant_for("x:Y") is None
    with pytest.raises(ValueError, match="unknown safeguard variant"):
        get_variant("nope")
