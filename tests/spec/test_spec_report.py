"""The compliance report (spec/report.py) and ``safegbpo report``."""

from __future__ import annotations

import json
import os

import pytest

from safegbpo.cli import main as safegbpo_main
from safegbpo.experiments.cells import CELLS_FORMAT
from spec.checks.results import AuditResult, CheckResult
from spec.report import render_markdown, write_report


def _spec_doc(p1_holds: bool = True) -> dict:
    def checks(p2_expected=True, p2_holds=True):
        return [
            CheckResult("P1", "safe", p1_holds, {"violations": 0 if p1_holds else 3},
                        "details P1", expected=True, required=True),
            CheckResult("P2", "lipschitz", p2_holds, {}, "jump found" if not p2_holds else "",
                        expected=p2_expected, expectation="continuous", required=True),
            CheckResult("P3", "rank", False, {}, "rank deficient", expected=False),
            CheckResult("P4", "rare", True, {}, "", expected=True),
            CheckResult("P5", "fast", True, {}, "", expected=True),
        ]
    audits = [AuditResult("pendulum", "bp", {}, "BP", 0, {"states": 8, "actions": 32},
                          checks()),
              AuditResult("pendulum", "rm", {"centre": "orthogonal"}, "RM Orthogonal", 0,
                          {"states": 8, "actions": 32}, checks(False, False))]
    lemma = CheckResult("Lemma 1", "projector", True, {"max": 1e-5}, "ok", expected=True)
    doc = {"format": "safegbpo-spec/1", "settings": {"seed": 0},
           "audits": [a.to_dict() for a in audits], "lemmas": [lemma.to_dict()]}
    from spec.checks.audit import summarise

    doc["summary"] = summarise(doc)
    return doc


def _tables_doc() -> dict:
    """A reproduction's measured cells (``cells.json``): a short budget (7680 interactions,
    the paper's is 100000), so the cells are not comparable."""
    curve = {"eval_steps": [2560, 5120, 7680], "mean_curve": [-50.0, -12.0, -9.0]}
    ours = {"steps": 5120, "reward": -9.0, "ci": [-9.5, -8.5], "stuck": 0, "runs": 3,
            "interactions": 7680, "seeds": [0, 1, 2], **curve}
    return {
        "format": CELLS_FORMAT, "profile": "quick",
        "cells": [{"task": "pendulum", "algo": "shac", "variant": "No Safeguard",
                   "kind": "train", "tables": ["table2"], **ours},
                  {"task": "pendulum", "algo": "shac", "variant": "BP", "kind": "train",
                   "tables": ["table3"], **ours, "reward": -30.0}],
        "checks": {"safety": {"passed": True, "summary": "2 safeguarded runs, 0 outside",
                              "problems": []}},
    }


def _write(tmp_path, spec_doc=None, tables=None, **kwargs):
    spec_path = tmp_path / "spec.json"
    spec_path.write_text(json.dumps(spec_doc or _spec_doc()))
    results = None
    if tables is not None:
        results = tmp_path / "results"
        results.mkdir()
        (results / "cells.json").write_text(json.dumps(tables))
    kwargs.setdefault("figures", False)
    kwargs.setdefault("set_comparison_states", 0)
    return write_report(results=results, out=tmp_path / "reports", spec=spec_path,
                        archive=None, **kwargs)


def test_report_without_results_says_not_run(tmp_path):
    outcome = _write(tmp_path)
    report = json.loads(outcome["json"].read_text())
    md = outcome["markdown"].read_text()
    assert report["format"] == "safegbpo-compliance/1"
    summary = {row["area"].split(":")[0]: row for row in report["summary"]}
    assert summary["P1 safety"]["status"] == "PASS"
    # the orthogonal ray mask's P2 failure is predicted (Eq 54): not a required failure, but the
    # summary must not hide it behind a blanket PASS
    assert summary["P2 subdifferentiable (required)"]["status"] == "PARTIAL"
    assert "fails, as predicted" in summary["P2 subdifferentiable (required)"]["why"]
    assert summary["Paper Tables 2-6 vs ours"]["status"] == "NOT RUN"
    assert all(c["status"] == "not run" for t in report["tables"].values() for c in t)
    assert outcome["failed_required"] == []
    assert md.index("## Summary") < md.index("## Environment") < md.index("## Spec checks")
    overview = md.split("## Spec checks")[1].split("###")[0]
    assert "not run" in md and "✗ *expected*" in overview and "✗ **UNEXPECTED**" not in overview
    assert report["metadata"]["git"]["commit"] is None or len(report["metadata"]["git"]
                                                                ["commit"]) == 40


def test_report_flags_a_p1_failure_as_required(tmp_path):
    outcome = _write(tmp_path, spec_doc=_spec_doc(p1_holds=False))
    assert any(f.startswith("P1 of BP") for f in outcome["failed_required"])
    md = outcome["markdown"].read_text()
    assert "Required checks failing" in md and "❌ FAIL" in md


def test_report_compares_our_tables(tmp_path):
    outcome = _write(tmp_path, tables=_tables_doc())
    report = outcome["report"]
    t2 = {c["quantity"]: c for c in report["tables"]["table2"]
          if (c["task"], c["algo"], c["variant"]) == ("pendulum", "shac", "No Safeguard")}
    assert t2["reward"]["status"] == "pass" and t2["reward"]["comparable"] is False
    assert t2["reward"]["delta"] == pytest.approx(-9.0 - -8.780)
    t3 = [c for c in report["tables"]["table3"] if c["quantity"] == "reward"
          and (c["task"], c["algo"], c["variant"]) == ("pendulum", "shac", "BP")]
    assert t3[0]["status"] == "fail"
    row = next(r for r in report["summary"] if r["area"].startswith("Paper Tables"))
    assert row["status"] == "PARTIAL" and "not comparable" in row["why"]
    safety = next(r for r in report["summary"] if r["area"].startswith("Training safety"))
    assert safety["status"] == "PASS"
    assert "(n/c)" in outcome["markdown"].read_text()
    assert report["hypotheses"]["H1"]["ours"]["verdict"] == "not run"


def test_report_fails_when_the_training_monitor_saw_unsafe_states(tmp_path):
    tables = _tables_doc()
    tables["checks"]["safety"] = {"passed": False, "summary": "3 states outside S_s",
                                  "problems": ["run x: 3 realised states outside S_s"]}
    outcome = _write(tmp_path, tables=tables)
    assert any("safety monitor" in f for f in outcome["failed_required"])


def test_report_figures(tmp_path):
    outcome = _write(tmp_path, tables=_tables_doc(), figures=True)
    figures = outcome["report"]["figures"]
    names = {p.rsplit("/", 1)[-1] for p in figures}
    assert {"learning_curves_pendulum.png", "safe_set_pendulum.png",
            "safe_set_quadrotor.png"} <= names, outcome["report"]["figure_errors"]
    md = outcome["markdown"].read_text()
    assert "](figures/safe_set_pendulum.png)" in md
    for p in figures:
        assert (tmp_path / "reports" / "figures" / p.rsplit("/", 1)[-1]).stat().st_size > 1000


def test_report_cli_exit_code(tmp_path, capsys):
    bad = tmp_path / "spec.json"
    bad.write_text(json.dumps(_spec_doc(p1_holds=False)))
    args = ["report", "--out", str(tmp_path / "r"), "--spec", str(bad), "--no-figures",
            "--set-comparison-states", "0"]
    assert safegbpo_main(args) == 1
    assert "required checks failing" in capsys.readouterr().out
    good = tmp_path / "good.json"
    good.write_text(json.dumps(_spec_doc()))
    assert safegbpo_main(["report", "--out", str(tmp_path / "r2"), "--spec", str(good),
                          "--no-figures", "--set-comparison-states", "0"]) == 0
    assert safegbpo_main(["report", "--out", str(tmp_path / "r3"), "--no-run-spec",
                          "--no-figures", "--set-comparison-states", "0"]) == 0
    assert "not run" in (tmp_path / "r3" / "compliance.md").read_text()


def test_markdown_renders_from_json(tmp_path):
    outcome = _write(tmp_path)
    report = json.loads(outcome["json"].read_text())
    assert render_markdown(report, tmp_path / "reports") == outcome["markdown"].read_text()


def test_report_command_defaults_to_the_newest_results(tmp_path):
    from spec.cli import default_results_dir

    assert default_results_dir(tmp_path / "results") is None
    for name in ("paper", "quick"):
        (tmp_path / "results" / name).mkdir(parents=True)
        (tmp_path / "results" / name / "cells.json").write_text("{}")
    newest = tmp_path / "results" / "paper" / "cells.json"
    os.utime(newest, (newest.stat().st_atime, newest.stat().st_mtime + 10))
    assert default_results_dir(tmp_path / "results") == tmp_path / "results" / "paper"


def test_report_command_prefers_the_paper_campaign_with_records(tmp_path):
    from spec.cli import default_results_dir

    root = tmp_path / "results"
    (root / "quick").mkdir(parents=True)
    (root / "quick" / "cells.json").write_text("{}")
    (root / "paper" / "records").mkdir(parents=True)
    assert default_results_dir(root) == root / "quick"  # paper has no record yet
    (root / "paper" / "records" / "pendulum-shac-x.json").write_text("{}")
    assert default_results_dir(root) == root / "paper"
    # without a paper campaign: the newest of cells.json or records
    (root / "paper" / "records" / "pendulum-shac-x.json").unlink()
    (root / "other" / "records").mkdir(parents=True)
    record = root / "other" / "records" / "r.json"
    record.write_text("{}")
    os.utime(record, (record.stat().st_atime, (root / "quick" / "cells.json").stat().st_mtime
                      + 10))
    assert default_results_dir(root) == root / "other"
