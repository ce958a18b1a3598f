"""Registered tasks beyond the paper's tables (the journal version's energy system, SPEC §10):
the archived curves' metrics next to ours, in the tables document, tables.md, the compliance
report and the learning-curve figures -- picked up from the task registry, nothing else."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from safegbpo.experiments.cells import CELLS_FORMAT
from safegbpo.experiments.metrics import cell_metrics
from spec.paper.archive import Archive, load_reference_archive
from spec.paper.hypotheses import TASKS as HYPOTHESIS_TASKS
from spec.paper.tables import build_tables, render_markdown
from spec.paper.values import paper_tasks
from spec.report import write_report

STEPS = [13200, 26400, 39600]


def _archive(tmp_path: Path) -> Archive:
    """A synthetic archive with two energy cells and one pendulum cell."""
    cells = {
        ("energy", "shac", "No Safeguard"): cell_metrics(
            STEPS, [[-60000.0, -10400.0, -10000.0]] * 9, stuck=1, key="e/shac/none"),
        ("energy", "shac", "BP"): cell_metrics(
            STEPS, [[-50000.0, -11000.0, -10500.0]] * 10, stuck=0, key="e/shac/bp"),
        ("pendulum", "shac", "BP"): cell_metrics(
            [2560, 5120], [[-20.0, -8.4]] * 8, stuck=2, key="p/shac/bp"),
    }
    return Archive(tmp_path, cells, {})


def _cells_doc() -> dict:
    """Our cells: energy SHAC unsafe at a short budget (twice: the longer one counts), and the
    pendulum."""
    def cell(task, variant, interactions, reward, tables=("table4",)):
        return {"task": task, "algo": "shac", "variant": variant, "kind": "train",
                "tables": list(tables), "interactions": interactions, "steps": 768,
                "reward": reward, "ci": [reward - 1, reward + 1], "stuck": 0, "runs": 1,
                "seeds": [0], "eval_steps": [384, 768], "mean_curve": [2 * reward, reward]}
    return {"format": CELLS_FORMAT, "profile": "quick",
            "env_options": {"energy": {"options": {}, "profiles": {
                "source": "generated (seed 0): the project's generated year"}}},
            "cells": [cell("energy", "No Safeguard", 384, -90000.0),
                      cell("energy", "No Safeguard", 768, -80000.0, ("h2",)),
                      cell("pendulum", "BP", 1024, -40.0)]}


def test_archive_table_of_the_energy_system(tmp_path):
    tables = build_tables(_cells_doc(), archive=_archive(tmp_path))
    assert "energy" not in paper_tasks() and "energy" not in HYPOTHESIS_TASKS
    assert set(tables["archive_tables"]) == {"energy"}  # the paper's tasks have their tables
    table = tables["archive_tables"]["energy"]
    assert table["label"] == "Energy System" and "Energy System" in table["archive"]
    rows = {(r["algo"], r["variant"]): r for r in table["rows"]}
    assert list(rows) == [("shac", "No Safeguard"), ("shac", "BP")]  # registry order
    unsafe = rows[("shac", "No Safeguard")]
    assert unsafe["archive"]["steps"] == 26400 and unsafe["archive"]["stuck"] == 1
    assert unsafe["ours"]["interactions"] == 768  # the longest of our budgets
    assert unsafe["ours"]["comparable"] is False
    assert unsafe["delta"]["reward"] == pytest.approx(-80000.0 - (-10000.0))
    assert "budget 768 interactions (the archive's 1000000)" in unsafe["note"]
    bp = rows[("shac", "BP")]
    assert bp["ours"] is None and bp["delta"] is None and "not run" in bp["note"]
    # no verdicts: the paper prints no energy values
    assert all(c["task"] != "energy" for cs in tables["verdicts"].values() for c in cs)
    md = render_markdown(tables)
    assert "## Energy System: the reference's archived curves next to ours" in md
    assert "| SHAC | No Safeguard | 768 |" in md
    assert "energy profiles: generated (seed 0)" in md


def test_archive_table_without_archive_shows_our_cells(tmp_path):
    tables = build_tables(_cells_doc(), archive=None)
    table = tables["archive_tables"]["energy"]
    assert table["archive"] == "not present"
    (row,) = table["rows"]
    assert row["archive"] is None and "archive not present" in row["note"]
    assert build_tables(None, archive=None)["archive_tables"] == {}


def test_compliance_report_includes_the_energy_system(tmp_path):
    results = tmp_path / "results"
    results.mkdir()
    (results / "cells.json").write_text(json.dumps(_cells_doc()))
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"format": "safegbpo-spec/1", "settings": {"seed": 0},
                                "audits": [], "lemmas": [],
                                "summary": {"unexpected": [], "failed_audits": []}}))
    outcome = write_report(results=results, out=tmp_path / "reports", spec=spec,
                           archive=None, figures=True, run_spec=False,
                           set_comparison_states=0)
    md = outcome["markdown"].read_text()
    assert "## Tasks beyond the paper's tables" in md
    assert "### Energy System: the reference's archived curves next to ours" in md
    assert "H1 and H2 are decided on the paper's tasks (pendulum, quadrotor)" in md
    assert "| energy profiles | generated (seed 0)" in md
    names = {Path(p).name for p in outcome["report"]["figures"]}
    assert {"learning_curves_energy.png", "learning_curves_energy_shac_modifications.png",
            "learning_curves_pendulum_shac_modifications.png"} <= names, \
        outcome["report"]["figure_errors"]
    assert (tmp_path / "reports" / "tables.md").read_text().count("Energy System") >= 1


@pytest.mark.reproduction
def test_the_reference_archive_gives_the_energy_table(tmp_path):
    archive = load_reference_archive()
    if archive is None:
        pytest.skip("../shared/reference/paper_learning_curves.json not present")
    tables = build_tables(None, archive=archive)
    rows = tables["archive_tables"]["energy"]["rows"]
    assert len(rows) == 15  # SHAC x 9 variants, PPO and SAC x 3
    assert all(r["archive"] is not None and r["ours"] is None for r in rows)
    shac_bp = next(r for r in rows if (r["algo"], r["variant"]) == ("shac", "BP"))
    assert shac_bp["archive"]["steps"] % 13200 == 0  # the SHAC evaluation grid (SPEC §10)
