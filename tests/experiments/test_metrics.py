"""Metrics of SPEC §9 (# Steps, Reward + bootstrap CI, # Stuck) and their reproduction of the
paper's numbers from the archived reference curves."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from safegbpo.experiments.metrics import (
    bootstrap_ci,
    cell_metrics,
    cell_metrics_from_records,
    cell_rng,
    is_stalled,
    seed_mean_curve,
    steps_to_converge,
    stuck_reason,
)


# -- # Steps -----------------------------------------------------------------------------------
def test_steps_to_converge_is_one_sided():
    steps = [10, 20, 30, 40]
    # reaches -10.4 >= -10 - 0.5 at step 10 already, then gets much worse and recovers
    curve = [-10.4, -500.0, -300.0, -10.0]
    assert steps_to_converge(steps, curve) == 10
    # a curve that approaches from below converges when it enters the band
    assert steps_to_converge(steps, [-100.0, -20.0, -10.4, -10.0]) == 30
    # a curve above its final value counts as converged (reached at least final - 5%)
    assert steps_to_converge(steps, [-5.0, -9.0, -12.0, -10.0]) == 10


def test_steps_to_converge_tolerance_and_final_point():
    steps = [1, 2, 3]
    assert steps_to_converge(steps, [-200.0, -150.0, -100.0], tolerance=0.0) == 3
    assert steps_to_converge(steps, [-200.0, -104.0, -100.0]) == 2
    assert steps_to_converge(steps, [-200.0, -106.0, -100.0]) == 3
    # positive rewards: band is below the final value as well
    assert steps_to_converge(steps, [50.0, 96.0, 100.0]) == 2


@pytest.mark.parametrize(
    "steps, curve, match",
    [
        ([], [], "non-empty"),
        ([2, 1], [0.0, 0.0], "strictly increasing"),
        ([1, 2], [0.0], "does not match"),
        ([1, 2], [0.0, float("nan")], "NaN"),
    ],
)
def test_steps_to_converge_rejects_bad_input(steps, curve, match):
    with pytest.raises(ValueError, match=match):
        steps_to_converge(steps, curve)


@pytest.mark.property
@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(-1e4, -1e-3, allow_nan=False), min_size=1, max_size=30))
def test_steps_to_converge_is_within_band(values):
    steps = np.arange(1, len(values) + 1) * 7
    result = steps_to_converge(steps, values)
    i = int(np.flatnonzero(steps == result)[0])
    final = values[-1]
    assert values[i] >= final - 0.05 * abs(final)
    assert all(v < final - 0.05 * abs(final) for v in values[:i])


# -- Reward CI -----------------------------------------------------------------------------------
def test_bootstrap_ci_is_seeded_and_brackets_the_mean():
    values = np.random.default_rng(5).normal(-9.0, 1.0, size=10)
    low, high = bootstrap_ci(values, rng=cell_rng("pendulum/shac/BP"))
    again = bootstrap_ci(values, rng=cell_rng("pendulum/shac/BP"))
    assert (low, high) == again
    assert low < values.mean() < high
    assert values.min() <= low and high <= values.max()
    other = bootstrap_ci(values, rng=cell_rng("pendulum/shac/RM"))
    assert other != (low, high)  # independent streams per cell


def test_bootstrap_ci_single_seed_and_errors():
    assert bootstrap_ci([-3.0], rng=np.random.default_rng(0)) == (-3.0, -3.0)
    with pytest.raises(ValueError, match="non-empty"):
        bootstrap_ci([], rng=np.random.default_rng(0))
    with pytest.raises(ValueError, match="Generator"):
        bootstrap_ci([1.0, 2.0], rng=0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="level"):
        bootstrap_ci([1.0, 2.0], rng=np.random.default_rng(0), level=1.5)


def test_bootstrap_ci_coverage_is_roughly_nominal():
    """Percentile bootstrap of the mean of 10 normal seeds covers the true mean ~90-95%."""
    rng = np.random.default_rng(123)
    covered = 0
    trials = 200
    for t in range(trials):
        sample = rng.normal(0.0, 1.0, size=10)
        low, high = bootstrap_ci(sample, rng=np.random.default_rng(t), resamples=2000)
        covered += low <= 0.0 <= high
    assert 0.82 <= covered / trials <= 0.99


# -- # Stuck -----------------------------------------------------------------------------------
def _record(rewards, status="finished", seed=0, steps=None):
    steps = steps or [100 * (i + 1) for i in range(len(rewards))]
    return {"status": status, "spec": {"seed": seed},
            "curve": [{"step": s, "reward": r} for s, r in zip(steps, rewards, strict=True)]}


def test_stuck_reason_rule():
    assert stuck_reason(_record([-5.0, -3.0])) is None
    # a flat, poor curve is *not* stuck (the archive keeps such seeds), only stalled
    flat = _record([-374.0] * 5)
    assert stuck_reason(flat) is None
    assert is_stalled([r["reward"] for r in flat["curve"]])
    assert "did not finish" in stuck_reason({"status": "failed", "curve": [],
                                             "error": {"message": "non-finite loss"}})
    assert "non-finite" in stuck_reason(_record([-5.0, float("nan")]))
    assert "no evaluation" in stuck_reason({"status": "finished", "curve": []})


def test_cell_metrics_from_records_excludes_stuck_runs():
    records = [
        _record([-100.0, -20.0, -10.0], seed=0),
        _record([-120.0, -10.0, -12.0], seed=1),
        {"status": "failed", "curve": [], "spec": {"seed": 2}, "error": {"message": "NaN"}},
    ]
    cell = cell_metrics_from_records(records, key="pendulum/shac/RM")
    assert cell.stuck == 1 and cell.runs == 3 and cell.converged == 2
    assert cell.reward == pytest.approx(-11.0)
    assert cell.steps == 300  # mean curve -110, -15, -11: only -11 >= -11 - 0.55
    assert cell.stuck_reasons and cell.stuck_reasons[0].startswith("seed 2")
    mean = seed_mean_curve([[-100.0, -20.0, -10.0], [-120.0, -10.0, -12.0]])
    np.testing.assert_allclose(mean, [-110.0, -15.0, -11.0])


def test_cell_metrics_all_stuck_and_mismatched_grids():
    failed = {"status": "failed", "curve": [], "spec": {"seed": 0}}
    cell = cell_metrics_from_records([failed], key="x")
    assert cell.steps is None and cell.reward is None and cell.ci is None and cell.stuck == 1
    with pytest.raises(ValueError, match="different steps"):
        cell_metrics_from_records([_record([-1.0, -2.0]), _record([-1.0, -2.0], steps=[1, 2])],
                                  key="x")
    with pytest.raises(ValueError, match="NaN"):
        seed_mean_curve([[1.0, float("nan")]])


def test_cell_metrics_is_json_serialisable():
    cell = cell_metrics([1, 2], [[-3.0, -2.0], [-4.0, -2.5]], key="k")
    json.dumps(cell.to_dict(), allow_nan=False)
