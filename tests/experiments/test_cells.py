"""The measured cells of a reproduction (cells.json): our metrics, nothing of the paper."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from safegbpo.experiments.cells import (
    CELLS_FORMAT,
    cell_sort_key,
    measure_cells,
    render_markdown,
)
from safegbpo.experiments.grid import RunSpec
from safegbpo.experiments.store import RECORD_FORMAT
from safegbpo.safeguards.variants import get_variant


def _spec(variant, seed, tables, interactions=2048, kind="train"):
    return RunSpec(task="pendulum", algo="shac", variant=variant, seed=seed,
                   variant_fields=get_variant(variant).train_fields, interactions=interactions,
                   eval_every=1024 if kind == "train" else interactions, kind=kind,
                   tables=tables)


def _record(spec, rewards, wallclock=None):
    return {"format": RECORD_FORMAT, "run_id": spec.run_id, "spec": spec.to_dict(),
            "status": "finished", "wallclock": wallclock or {},
            "curve": [{"step": spec.eval_every * (i + 1), "reward": r}
                      for i, r in enumerate(rewards)]}


def test_cells_report_fallbacks_and_uncertified_steps_per_run():
    """Issue 10: fallbacks and uncertified steps are in the cells (sums and per run) and in
    cells.md; a record without the counter gives ``None`` (not reported), never 0."""
    specs = [_spec("BP", s, ("table3",)) for s in (0, 1)]
    records = {s.run_id: {**_record(s, [-30.0, -10.0]), "fallbacks": 3 * i, "uncertified": i}
               for i, s in enumerate(specs)}
    doc = measure_cells(specs, records)
    (cell,) = [c for c in doc["cells"] if c["variant"] == "BP"]
    assert (cell["fallbacks"], cell["uncertified"]) == (3, 1)
    assert cell["fallbacks_per_run"] == [0, 3] and cell["uncertified_per_run"] == [0, 1]
    assert "fallbacks" in doc["definitions"] and "uncertified" in doc["definitions"]
    text = render_markdown(doc)
    assert "| Fallbacks | Uncertified |" in text and "| exact | 3 | 1 |" in text
    del records[specs[1].run_id]["uncertified"]
    (cell,) = [c for c in measure_cells(specs, records)["cells"] if c["variant"] == "BP"]
    assert cell["uncertified"] is None and cell["uncertified_per_run"] == [0, None]


def test_cells_are_measured_once_and_tagged_with_every_table():
    specs = [_spec("BP", s, ("table3", "table4")) for s in (0, 1)]
    specs += [_spec("No Safeguard", 0, ("table2",)),
              _spec("No Safeguard", 0, ("h2",), interactions=1024)]  # another budget
    records = {s.run_id: _record(s, [-30.0, -10.0]) for s in specs[:3]}
    doc = measure_cells(specs, records, meta={"profile": "test"})
    json.dumps(doc, allow_nan=False)
    assert doc["format"] == CELLS_FORMAT and doc["profile"] == "test"
    keys = {k for c in doc["cells"] for k in c} | set(doc)
    assert not {"paper", "delta", "hypotheses", "comparable"} & keys  # the spec's business
    bp = [c for c in doc["cells"] if c["variant"] == "BP"]
    assert len(bp) == 1 and bp[0]["tables"] == ["table3", "table4"]
    assert bp[0]["seeds"] == [0, 1] and bp[0]["reward"] == pytest.approx(-10.0)
    unsafe = [c for c in doc["cells"] if c["variant"] == "No Safeguard"]
    assert [(c["interactions"], c["tables"]) for c in unsafe] == [
        (1024, ["h2"]), (2048, ["table2"])]  # two budgets, two cells
    assert unsafe[0]["runs"] == 0 and unsafe[0]["missing_runs"] == [specs[3].run_id]
    assert cell_sort_key("pendulum", "shac", "No Safeguard") < cell_sort_key(
        "pendulum", "shac", "BP") < cell_sort_key("quadrotor", "shac", "No Safeguard")


def test_timing_cells_are_ratios_to_the_unsafe_run():
    specs = [_spec(v, 0, ("table6",), interactions=512, kind="wallclock")
             for v in ("No Safeguard", "RM")]
    records = {s.run_id: _record(s, [-1.0], {"rollout": sec, "evaluation": 100.0})
               for s, sec in zip(specs, (2.0, 7.0), strict=True)}
    doc = measure_cells(specs, records)
    [timing] = [c for c in doc["cells"] if c["kind"] == "wallclock"]
    assert timing["variant"] == "RM" and timing["wallclock_ratio"] == pytest.approx(3.5)
    assert doc["wallclock"] == {"task": "pendulum", "interactions": 512}
    text = render_markdown({**doc, "checks": {"wallclock": {"passed": True, "summary": "ok"}}})
    assert text.startswith("# Reproduction cells") and "| SHAC | RM | 3.500 |" in text
    assert "**wallclock**: PASS" in text


def test_timing_cells_per_backend_share_the_unsafe_baseline():
    specs = [_spec("No Safeguard", 0, ("table6",), interactions=512, kind="wallclock")]
    specs += [replace(_spec("RM", 0, ("table6",), interactions=512, kind="wallclock"),
                      backend=b) for b in ("cvxpylayers", "exact")]
    seconds = {None: 2.0, "exact": 3.0, "cvxpylayers": 40.0}
    records = {s.run_id: _record(s, [-1.0], {"rollout": seconds[s.backend]}) for s in specs}
    doc = measure_cells(specs, records)
    timing = [c for c in doc["cells"] if c["kind"] == "wallclock"]
    assert [(c["backend"], c["wallclock_ratio"]) for c in timing] == [
        ("exact", pytest.approx(1.5)), ("cvxpylayers", pytest.approx(20.0))]  # BACKENDS order
    assert all(c["run_ids"][1] == specs[0].run_id for c in timing)
    text = render_markdown(doc)
    assert "| SHAC | RM | 1.500 | 3.000 | 2.000 | exact |" in text
    assert "| SHAC | RM | 20.000 | 40.00 | 2.000 | cvxpylayers |" in text
    # training cells name their backend too (none for unsafe runs)
    train = [_spec("BP", 0, ("table3",)), _spec("No Safeguard", 0, ("table2",))]
    cells = measure_cells(train, {s.run_id: _record(s, [-2.0]) for s in train})["cells"]
    assert {c["variant"]: c["backend"] for c in cells} == {"BP": "exact", "No Safeguard": None}


def test_training_cells_carry_monitor_counts_per_seed_seconds_and_pcrpo_modes():
    """Unsafe states summed over the seeds; training seconds per seed (a seed of a population
    of P is charged 1/P of the population's wall clock); PCRPO's mode counts summed and its
    cos(g_r, g_c) averaged over the seeds."""
    specs = [RunSpec(task="pendulum", algo="pcrpo", variant="No Safeguard", seed=s,
                     variant_fields={"safeguard": None}, interactions=2048, eval_every=1024,
                     tables=("pcrpo",)) for s in (0, 1, 2)]
    records = {}
    for s, spec in enumerate(specs):
        record = _record(spec, [-30.0, -10.0], {"rollout": 6.0, "update": 3.0,
                                               "evaluation": 50.0})
        # seeds 0 and 1 trained together (9 s for both), seed 2 alone (9 s)
        record["population"] = {"seeds": [0, 1] if s < 2 else [2], "members": 2 if s < 2 else 1}
        record["safety"] = {"monitored": True, "violations": 10 * (s + 1), "states": 100}
        record["algorithm_summary"] = {"pcrpo": {
            "mode_counts": {"reward": s, "both": 1, "cost": 0},
            "cos": {"mean": 0.1 * s, "conflict_fraction": 0.5},
            "cost_limit": 30.0, "slack_upper": 15.0, "slack_lower": -15.0}}
        records[spec.run_id] = record
    (cell,) = measure_cells(specs, records, meta={"profile": "test"})["cells"]
    assert cell["unsafe_states"] == 60 and cell["monitored_states"] == 300
    assert cell["monitored_runs"] == 3
    assert cell["training_seconds"] == pytest.approx((4.5 + 4.5 + 9.0) / 3)
    assert cell["pcrpo"]["mode_counts"] == {"reward": 3, "both": 3, "cost": 0}
    assert cell["pcrpo"]["cos_mean"] == pytest.approx(0.1)
    assert cell["pcrpo"]["cost_limit"] == 30.0


def test_the_safe_sets_used_carry_their_certification_label(tmp_path):
    """A set that is only verified by sampling (e.g. ``safe-set box``) is labelled as such in
    the reproduction's manifest and in every report's list of the safe sets used."""
    from safegbpo.experiments.cells import safe_sets_lines
    from safegbpo.experiments.reproduce import describe_safe_sets
    from safegbpo.safesets.safe_set import CERTIFIED, SafeSet
    from safegbpo.sets import Zonotope
    from safegbpo.tasks import get_task

    low, high = get_task("pendulum").model.state_bounds()
    path = SafeSet("pendulum", Zonotope.from_box(0.5 * low, 0.5 * high),
                   certification="not certified").save(tmp_path / "pendulum.json")
    info = describe_safe_sets({"pendulum": str(path)})
    assert info["pendulum"]["certification"] == "not certified"
    lines = safe_sets_lines(info)
    assert any("pendulum" in line and "**not certified**" in line for line in lines)
    assert "**" + CERTIFIED + "**" in safe_sets_lines(
        {"pendulum": {**info["pendulum"], "certification": CERTIFIED}})[2]
