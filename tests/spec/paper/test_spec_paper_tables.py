"""Tables 2-6: our measured cells (safegbpo.experiments.cells) next to the paper's values, the
archive check and H1/H2 (spec.paper.tables)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from safegbpo.experiments.cells import measure_cells, wallclock_seconds
from safegbpo.experiments.grid import RunSpec
from safegbpo.experiments.store import RECORD_FORMAT
from safegbpo.safeguards.variants import get_variant
from spec.paper.archive import archive_check, load_reference_archive
from spec.paper.tables import build_tables as build_from_cells
from spec.paper.tables import render_markdown
from spec.paper.values import paper_values


def build_tables(specs, records, *, archive=None, meta=None):
    """The chain: run records -> measured cells (experiments) -> tables (spec)."""
    return build_from_cells(measure_cells(specs, records, meta=meta), archive=archive)


def _spec(task, algo, variant, seed, tables=("table2", "table3"), kind="train",
          interactions=100_000, eval_every=2560):
    return RunSpec(task=task, algo=algo, variant=variant, seed=seed,
                   variant_fields=get_variant(variant).train_fields, interactions=interactions,
                   eval_every=eval_every, kind=kind, tables=tables)


def _record(spec, rewards, status="finished", wallclock=None):
    steps = [spec.eval_every * (i + 1) for i in range(len(rewards))]
    return {"format": RECORD_FORMAT, "run_id": spec.run_id, "spec": spec.to_dict(),
            "status": status,
            "curve": [{"step": s, "reward": r} for s, r in zip(steps, rewards, strict=True)],
            "wallclock": wallclock or {}}


@pytest.fixture()
def grid_and_records():
    specs, records = [], {}
    finals = {"shac": -8.0, "ppo": -12.0, "sac": -20.0}
    for task in ("pendulum", "quadrotor"):
        for algo, final in finals.items():
            for variant in ("No Safeguard", "BP", "RM"):
                for seed in range(3):
                    spec = _spec(task, algo, variant, seed)
                    specs.append(spec)
                    curve = [final * 30, final * 3, final * 1.02, final * (1 + 0.01 * seed)]
                    records[spec.run_id] = _record(spec, curve)
    # one stuck SHAC + BP seed on the pendulum (training raised)
    stuck = _spec("pendulum", "shac", "BP", 3)
    specs.append(stuck)
    records[stuck.run_id] = {**_record(stuck, []), "status": "failed",
                             "error": {"message": "non-finite policy loss"}}
    # Table 6 timing runs: seconds per algorithm and variant
    for algo in finals:
        for variant, seconds in (("No Safeguard", 10.0), ("BP", 50.0), ("RM", 90.0)):
            spec = _spec("pendulum", algo, variant, 0, tables=("table6",), kind="wallclock",
                         interactions=2048, eval_every=2048)
            specs.append(spec)
            records[spec.run_id] = _record(
                spec, [-1.0], wallclock={"rollout": seconds * 0.7, "update": seconds * 0.3,
                                         "eval": 123.0})
    return specs, records


def _row(tables, table, task, algo, variant):
    rows = [r for r in tables["tables"][table]["rows"]
            if (r["task"], r["algo"], r["variant"]) == (task, algo, variant)]
    assert len(rows) == 1
    return rows[0]


def test_cells_paper_values_and_deltas(grid_and_records):
    specs, records = grid_and_records
    tables = build_tables(specs, records, meta={"profile": "test"})
    json.dumps(tables, allow_nan=False)  # strict JSON for the report
    row = _row(tables, "table3", "pendulum", "shac", "BP")
    ours, paper = row["ours"], row["paper"]
    assert ours["stuck"] == 1 and ours["runs"] == 4 and ours["converged"] == 3
    assert ours["reward"] == pytest.approx(np.mean([-8.0, -8.08, -8.16]))
    assert ours["steps"] == 3 * 2560  # the seed mean reaches final - 5% at the third evaluation
    assert ours["ci"][0] <= ours["reward"] <= ours["ci"][1]
    assert ours["comparable"] is True
    assert paper == {"steps": 25600, "reward": -8.402, "stuck": 2}  # spec/paper/paper_tables.json
    assert isinstance(paper["steps"], int) and isinstance(row["delta"]["steps"], int)
    assert row["delta"]["steps"] == 3 * 2560 - 25600
    assert row["delta"]["reward"] == pytest.approx(ours["reward"] + 8.402)
    assert row["delta"]["stuck"] == -1
    assert "seed 3" in ours["stuck_reasons"][0]
    unsafe = _row(tables, "table2", "quadrotor", "sac", "No Safeguard")
    assert "inconsistency" in unsafe["note"]
    # Table 4 rows exist for every paper cell even when this grid did not run them
    row4 = _row(tables, "table4", "quadrotor", "shac", "RM Passthrough Gradient")
    assert row4["ours"] is None and "not run" in row4["note"]


def test_wallclock_ratios(grid_and_records):
    specs, records = grid_and_records
    tables = build_tables(specs, records)
    for algo in ("shac", "ppo", "sac"):
        assert _row(tables, "table6", "pendulum", algo, "BP")["ours"]["wallclock_ratio"] == \
            pytest.approx(5.0)
        assert _row(tables, "table6", "pendulum", algo, "RM")["ours"]["wallclock_ratio"] == \
            pytest.approx(9.0)
    assert "2048" in tables["tables"]["table6"]["note"] and "10000" in \
        tables["tables"]["table6"]["note"]
    # evaluation phases are not training time; resumed runs without phases have no timing
    assert wallclock_seconds({"wallclock": {"rollout": 2.0, "eval": 5.0}}) == 2.0
    assert wallclock_seconds({"wallclock": {}, "attempt": {"seconds": 3.0, "resumed": True}}) \
        is None


def test_hypotheses_are_judged(grid_and_records):
    specs, records = grid_and_records
    tables = build_tables(specs, records)
    h1 = tables["hypotheses"]["H1"]
    assert h1["verdict"] == "supported"  # SHAC has the best reward in every cell
    assert len(h1["comparisons"]) == 4
    # H2 is decided from the SHAC cells of Tables 2-3 (no h2/table4 tag in this grid): part (a)
    # on both tasks, the modifications are missing -> incomplete, never "not run"
    h2 = tables["hypotheses"]["H2"]
    assert h2["verdict"] != "not run" and "(incomplete)" in h2["verdict"]
    assert {(r["task"], r["variant"]) for r in h2["comparisons"] if r["part"] == "a"} == {
        (t, v) for t in ("pendulum", "quadrotor") for v in ("BP", "RM")}


def test_hypothesis_cells_prefer_the_paper_budget():
    from spec.paper.tables import _hypothesis_cells

    key = ("pendulum", "shac", "RM")
    short = {"task": "pendulum", "reward": -1.0, "runs": 3, "interactions": 1024,
             "comparable": False}
    full = {**short, "reward": -9.0, "runs": 10, "interactions": 100_000, "comparable": True}
    cells = _hypothesis_cells({"h2": {key: [short]}, "table3": {key: [full]}}, ("h2", "table3"))
    assert cells[key]["reward"] == -9.0


def test_markdown_rendering(grid_and_records):
    specs, records = grid_and_records
    tables = build_tables(specs, records, meta={"profile": "test"})
    text = render_markdown(tables)
    for title in ("Table 2", "Table 3", "Table 4", "Table 5", "Table 6", "Hypotheses"):
        assert title in text
    assert "| pendulum | SHAC | BP | 7680 |" in text
    assert "| 25600 | -8.402 | 2 | -17920 |" in text  # counts print as integers
    assert "Not available" in text  # archive skipped
    # issue 10: fallbacks and uncertified steps of our runs next to the metrics ("–": the
    # records of this fixture do not report them)
    assert "| Stalled | Fallbacks | Uncertified | paper Steps |" in text


def test_tables_show_fallbacks_and_uncertified_steps(grid_and_records):
    specs, records = grid_and_records
    records = {k: {**r, "fallbacks": 2, "uncertified": 1} for k, r in records.items()}
    tables = build_tables(specs, records)
    row = _row(tables, "table3", "pendulum", "shac", "BP")
    assert row["ours"]["fallbacks"] > 0 and row["ours"]["uncertified"] > 0
    runs = len(row["ours"]["uncertified_per_run"])
    assert f"| {2 * runs} | {runs} | " in render_markdown(tables)


def test_paper_values_use_the_project_variant_names():
    paper = paper_values()
    assert ("pendulum", "shac", "No Safeguard") in paper["table2"]
    assert paper["table5"][("quadrotor", "shac", "RM Orthogonal")]["steps"] == 5504
    assert paper["table6"][("pendulum", "ppo", "RM")]["wallclock_ratio"] == pytest.approx(8.1)


@pytest.mark.reproduction
def test_archive_check_reproduces_the_paper_and_reports_the_inconsistency():
    archive = load_reference_archive()
    if archive is None:
        pytest.skip("../shared/reference not present: paper_learning_curves.json")
    check = archive_check(archive)
    assert check["available"]
    assert check["matching"] == check["cells"] - 1
    [mismatch] = check["mismatches"]
    assert (mismatch["task"], mismatch["algo"], mismatch["variant"]) == \
        ("quadrotor", "sac", "No Safeguard")
    assert mismatch["archive"]["steps"] == 90144
    assert round(mismatch["archive"]["reward"], 1) == -1046.7
    # Table 6: the archived seconds give the paper's SHAC ratios exactly; PPO/SAC differ by
    # up to 3% (reported in the tables, not hidden)
    assert len(check["wallclock"]) == 6
    for w in check["wallclock"]:
        assert w["match"] == (w["algo"] == "shac")
        assert w["archive"] == pytest.approx(w["paper"], rel=0.05)
    tables = build_tables([], {}, archive=archive)
    assert tables["archive_check"]["hypotheses"]["H1"]["verdict"] == "supported"
    text = render_markdown(tables)
    assert "quadrotor/sac/No Safeguard" in text and "inconsistency" in text
    row = _row(tables, "table3", "pendulum", "sac", "BP")
    assert row["archive"]["steps"] == row["paper"]["steps"] == 2504


def test_archive_check_without_archive(tmp_path: Path):
    assert load_reference_archive(tmp_path) is None
    assert archive_check(load_reference_archive(tmp_path))["available"] is False
    assert archive_check(None)["available"] is False


def test_table6_shows_every_timed_backend_and_judges_the_papers_programs():
    specs, records = [], {}
    seconds = {None: 10.0, "exact": 12.0, "cvxpylayers": 50.0}
    for variant in ("No Safeguard", "BP"):
        for backend in ("exact", "cvxpylayers"):
            spec = replace(_spec("pendulum", "shac", variant, 0, tables=("table6",),
                                 kind="wallclock", interactions=2048, eval_every=2048),
                           backend=backend)
            if spec.run_id not in records:  # the unsafe baseline is one run
                specs.append(spec)
                records[spec.run_id] = _record(spec, [-1.0],
                                               wallclock={"rollout": seconds[spec.backend]})
    assert len(specs) == 3
    tables = build_tables(specs, records)
    rows = [r for r in tables["tables"]["table6"]["rows"]
            if (r["algo"], r["variant"]) == ("shac", "BP")]
    assert [(r["backend"], r["judged"]) for r in rows] == [("cvxpylayers", True),
                                                            ("exact", False)]
    assert [r["ours"]["wallclock_ratio"] for r in rows] == [pytest.approx(5.0),
                                                            pytest.approx(1.2)]
    assert rows[0]["delta"]["wallclock_ratio"] == pytest.approx(5.0 - 5.089)
    assert "judged" in rows[0]["note"] and "not judged" in rows[1]["note"]
    [verdict] = [v for v in tables["verdicts"]["table6"]
                 if (v["algo"], v["variant"]) == ("shac", "BP")]
    assert verdict["ours"] == pytest.approx(5.0) and verdict["status"] == "pass"
    text = render_markdown(tables)
    assert "| SHAC | BP | cvxpylayers | 5.000 | 5.089 |" in text
    assert "| SHAC | BP | exact | 1.200 | 5.089 |" in text


def test_partial_cells_are_not_comparable():
    from spec.paper.tables import _comparable

    full = {"task": "pendulum", "kind": "train", "interactions": 100_000}
    assert _comparable(full)
    assert not _comparable({**full, "missing_runs": ["pendulum-shac-bp-s9-x"]})
    assert not _comparable({**full, "complete": False})
    assert _comparable({**full, "complete": True})
