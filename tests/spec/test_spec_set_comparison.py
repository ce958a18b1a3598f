"""The report's exact-vs-Eq 6 safe action set comparison (spec.set_comparison)."""

from __future__ import annotations

from spec.set_comparison import measure_set_comparison, set_comparison_lines


def test_skipped_with_zero_states():
    doc = measure_set_comparison(0)
    assert doc["computed"] is False
    assert "Not computed" in "\n".join(set_comparison_lines(doc))


def test_pendulum_rows_are_measured_now(monkeypatch):
    monkeypatch.setattr("spec.set_comparison.reference_path", lambda *parts: None)
    doc = measure_set_comparison(3, tasks=("pendulum",))
    assert doc["computed"] and doc["states"] == 3
    (row,) = doc["rows"]
    assert row["task"] == "pendulum" and row["set"] == "own" and row["measure"] == "length"
    # Eq 6 is sufficient only: its interval lies inside the exact one (ratio >= 1)
    assert row["containment_violations"] == 0
    assert row["min_ratio"] >= 1.0 - 1e-6
    assert row["mean_exact"] >= row["mean_eq6"] * (1 - 1e-6)  # LP accuracy
    md = "\n".join(set_comparison_lines(doc))
    assert "Computed when this report was written" in md and "| pendulum | own | length |" in md


def test_a_broken_set_is_reported_not_raised(monkeypatch, tmp_path):
    bad = tmp_path / "pendulum.json"
    bad.write_text("{}")
    monkeypatch.setattr("spec.set_comparison.reference_path", lambda *parts: bad)
    measured = {"states": 1, "dimension": 1, "measure": "length", "mean_ratio": 1.0,
                "median_ratio": 1.0, "min_ratio": 1.0, "max_ratio": 1.0, "mean_exact": 1.0,
                "mean_eq6": 1.0, "eq6_empty_states": 0, "containment_violations": 0}
    monkeypatch.setattr("safegbpo.safeguards.compare_safe_action_sets",
                        lambda env, **kw: measured)
    doc = measure_set_comparison(1, tasks=("pendulum",))
    errors = [r for r in doc["rows"] if "error" in r]
    assert [r["set"] for r in errors] == ["paper's"]
    assert "failed:" in "\n".join(set_comparison_lines(doc))
