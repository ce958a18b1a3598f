"""The PCRPO table of the report (SPEC §12): rows per task, the best safeguarded SHAC cell,
the monitor's unsafe states next to the safeguarded runs', and the audit statement."""

from __future__ import annotations

from spec.paper.pcrpo import AUDIT_NOTE, pcrpo_summary, pcrpo_table, pcrpo_table_lines
from spec.paper.tables import build_tables, render_markdown


def _cell(task, algo, variant, reward, unsafe, interactions=1000, **extra):
    return {"task": task, "algo": algo, "variant": variant, "kind": "train",
            "tables": ["x"], "interactions": interactions, "seeds": [0, 1], "runs": 2,
            "steps": 500, "reward": reward, "ci": [reward - 1.0, reward + 1.0], "stuck": 0,
            "unsafe_states": unsafe, "monitored_states": 400, "training_seconds": 3.5,
            **extra}


PCRPO_INFO = {"mode_counts": {"reward": 1, "both": 2, "cost": 3}, "cos_mean": -0.25,
              "conflict_fraction": 0.5, "cost_limit": 2.0, "slack_upper": 1.0,
              "slack_lower": -1.0}
DOC = {"format": "safegbpo-cells/1", "cells": [
    _cell("pendulum", "pcrpo", "No Safeguard", -50.0, 37, pcrpo=PCRPO_INFO),
    _cell("pendulum", "ppo", "No Safeguard", -60.0, 120),
    _cell("pendulum", "ppo", "BP", -20.0, 0),
    _cell("pendulum", "shac", "No Safeguard", -5.0, 80),  # unsafe: never the "best safeguard"
    _cell("pendulum", "shac", "BP", -12.0, 0),
    _cell("pendulum", "shac", "RM", -9.0, 0),
    _cell("pendulum", "shac", "RM", -30.0, 0, interactions=100),  # shorter budget: ignored
    _cell("quadrotor", "shac", "RM", -300.0, 0),  # no PCRPO cell: no quadrotor table
]}


def test_rows_pick_the_best_safeguarded_shac_cell_and_name_missing_ones():
    table = pcrpo_table(DOC)
    assert list(table["tasks"]) == ["pendulum"]
    rows = table["tasks"]["pendulum"]["rows"]
    assert [(r["role"], r["variant"]) for r in rows] == [
        ("PCRPO (soft constraint)", "No Safeguard"), ("PPO", "No Safeguard"),
        ("PPO + BP", "BP"), ("PPO + RM", "RM"), ("SHAC + best safeguard", "RM")]
    assert rows[-1]["ours"]["reward"] == -9.0 and rows[-1]["ours"]["interactions"] == 1000
    assert rows[3]["ours"] is None and "not run" in rows[3]["note"]
    assert [r["safeguarded"] for r in rows] == [False, False, True, True, True]
    assert "reward/both/cost = 1/2/3" in rows[0]["note"] and "50%" in rows[0]["note"]


def test_markdown_shows_unsafe_states_wall_clock_ci_and_the_audit_statement():
    lines = "\n".join(pcrpo_table_lines(pcrpo_table(DOC)))
    assert AUDIT_NOTE in lines
    assert "| PCRPO (soft constraint) | No Safeguard | 1000 | 2 | 500 | -50.00 [-51.00, -49.00] " \
           "| 0 / 2 | 37 / 400 | 3.500 |" in lines
    assert "| SHAC + best safeguard | RM | 1000 | 2 | 500 | -9.000 [-10.00, -8.000] | 0 / 2 " \
           "| 0 / 400 |" in lines


def test_summary_row_and_the_tables_document():
    summary = pcrpo_summary(pcrpo_table(DOC))
    assert summary["status"] == "REPORTED"
    assert "PCRPO 37 of 400" in summary["why"] and "safeguarded runs shown: 0 of 800" in \
        summary["why"]
    assert pcrpo_summary(pcrpo_table(None))["status"] == "NOT RUN"
    tables = build_tables(DOC)
    assert tables["pcrpo"]["tasks"]["pendulum"]["rows"][0]["ours"]["unsafe_states"] == 37
    assert "Soft-constraint baseline: PCRPO" in render_markdown(tables)
