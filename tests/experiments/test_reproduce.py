"""``safegbpo reproduce`` end to end: resumable after SIGKILL, the safe-state monitor, checks."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from safegbpo.experiments.grid import RunSpec, load_grid, load_variants
from safegbpo.experiments.reproduce import (
    SafetyMonitor,
    checks_passed,
    evaluate_checks,
    reproduce,
    safety_monitor,
)
from safegbpo.experiments.store import RECORD_FORMAT
from safegbpo.sets.containment import gauge_lp

from .test_executors import FAKE_TRAINER

TESTS_DIR = Path(__file__).resolve().parents[1]
REFERENCE_SETS = Path(__file__).resolve().parents[2] / ".." / "shared" / "reference" / "safe_sets"


def _mini_grid(path: Path, *, experiments, budgets, seeds=(0, 1), checks=None,
               eval_episodes=None) -> Path:
    data = {"format": "safegbpo-grid/1", "name": "mini", "variants": load_variants(),
            "seeds": list(seeds), "budgets": budgets, "experiments": experiments}
    if checks is not None:
        data["checks"] = checks
    if eval_episodes is not None:
        data["eval_episodes"] = eval_episodes
    path.write_text(json.dumps(data))
    return path


def _stable(tables: dict) -> dict:
    """The deterministic part of tables.json (no paths, timings or monitor counters)."""
    return {k: tables[k] for k in ("tables", "cells", "hypotheses")}


def _reproduce_in_subprocess(grid: Path, results: Path, trainer: str, jobs: int,
                             env_extra: dict[str, str], safe_sets: Path | None) -> subprocess.Popen:
    code = (
        "from safegbpo.experiments.reproduce import reproduce;"
        f"reproduce('quick', grid={str(grid)!r}, results={str(results)!r}, trainer={trainer!r},"
        f" jobs={jobs}, safe_sets={None if safe_sets is None else str(safe_sets)!r},"
        " monitor=False, report=False, archive_dir=None)"
    )
    env = {**os.environ, **env_extra,
           "PYTHONPATH": os.pathsep.join([str(TESTS_DIR), os.environ.get("PYTHONPATH", "")])}
    return subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)


def _interrupted(results: Path) -> bool:
    """Some run has a record and another one is mid-way (it has completed a checkpoint --
    the runner writes result.json after the checkpoint -- but has no record)."""
    records = results / "records"
    if not records.is_dir() or not any(records.glob("*.json")):
        return False
    finished = {p.stem for p in records.glob("*.json")}
    return any((d / "result.json").is_file() and d.name not in finished
               for d in (results / "runs").iterdir())


def _kill_half_way_and_resume(grid: Path, tmp_path: Path, trainer: str, jobs: int, *,
                              env_extra: dict[str, str], total: int, timeout: float,
                              safe_sets: Path | None = None) -> dict:
    """Run, SIGKILL the whole session once one run has finished and another is mid-way,
    resume; return the resumed tables (the caller compares them with an uninterrupted run)."""
    results = tmp_path / "interrupted"
    proc = _reproduce_in_subprocess(grid, results, trainer, jobs, env_extra, safe_sets)
    records = results / "records"
    deadline = time.monotonic() + timeout
    try:
        while not _interrupted(results):
            assert proc.poll() is None, f"reproduce ended before the kill: {proc.stderr.read()}"
            if time.monotonic() > deadline:
                pytest.fail("no run reached the kill point before the timeout")
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGKILL)  # the session and its workers, mid-run
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    done = len(list(records.glob("*.json")))
    assert 1 <= done < total, f"kill landed after {done} of {total} runs"
    assert not (results / "tables.json").exists()
    tables = reproduce("quick", grid=grid, results=results, trainer=trainer, jobs=jobs,
                       safe_sets=safe_sets, monitor=False, report=False, archive_dir=None,
                       echo=lambda _: None)
    assert len(list(records.glob("*.json"))) == total
    resumed = [json.loads(p.read_text()) for p in records.glob("*.json")]
    assert any(r["attempt"]["resumed"] for r in resumed)  # one run continued its checkpoint
    assert json.loads((results / "tables.json").read_text())["tables"] == tables["tables"]
    assert (results / "tables.md").read_text().startswith("# Reproduction tables")
    return tables


def test_killed_reproduction_resumes_to_identical_tables_fake_runner(tmp_path):
    """Miniature grid with the runner stand-in (always available, fast)."""
    grid = _mini_grid(
        tmp_path / "grid.json",
        experiments=[{"name": "mini", "tables": ["table2", "table3", "table4"],
                      "tasks": ["pendulum", "quadrotor"], "algos": ["shac"],
                      "variants": ["No Safeguard", "BP"]}],
        budgets={"pendulum": {"interactions": 4096, "eval_every": {"shac": 1024}},
                 "quadrotor": {"interactions": 4096, "eval_every": {"shac": 1024}}},
    )
    env = {"FAKE_TRAIN_SLEEP": "0.15"}
    resumed = _kill_half_way_and_resume(grid, tmp_path, FAKE_TRAINER, 2, env_extra=env,
                                        total=8, timeout=60)
    os.environ["FAKE_TRAIN_SLEEP"] = "0"
    try:
        fresh = reproduce("quick", grid=grid, results=tmp_path / "fresh", trainer=FAKE_TRAINER,
                          jobs=2, monitor=False, report=False, archive_dir=None,
                          echo=lambda _: None)
    finally:
        del os.environ["FAKE_TRAIN_SLEEP"]
    assert _stable(resumed) == _stable(fresh)
    row = next(r for r in fresh["tables"]["table3"]["rows"]
               if (r["task"], r["algo"], r["variant"]) == ("quadrotor", "shac", "BP"))
    assert row["ours"]["runs"] == 2 and row["ours"]["reward"] == pytest.approx(-26.25)


def test_reproduce_writes_tables_and_skips_finished_runs(tmp_path):
    grid = _mini_grid(
        tmp_path / "grid.json",
        experiments=[{"name": "mini", "tables": ["table2"], "tasks": ["pendulum"],
                      "algos": ["shac"], "variants": ["No Safeguard"]}],
        budgets={"pendulum": {"interactions": 2048, "eval_every": {"shac": 1024}}},
        seeds=(0, 99),  # seed 99 fails in the stand-in: a stuck run
        checks={"completed": {}},
    )
    lines: list[str] = []
    tables = reproduce("quick", grid=grid, results=tmp_path / "r", trainer=FAKE_TRAINER, jobs=1,
                       monitor=False, report=False, archive_dir=None, echo=lines.append)
    row = tables["tables"]["table2"]["rows"][0]
    assert row["ours"]["stuck"] == 1 and "non-finite" in row["ours"]["stuck_reasons"][0]
    assert not checks_passed(tables)
    assert "non-finite" in tables["checks"]["completed"]["problems"][0]
    assert any("failed" in line for line in lines)
    lines.clear()
    again = reproduce("quick", grid=grid, results=tmp_path / "r", trainer=FAKE_TRAINER, jobs=1,
                      monitor=False, report=False, archive_dir=None, echo=lines.append)
    assert any("2 done" in line for line in lines)
    assert _stable(again) == _stable(tables)
    manifest = json.loads((tmp_path / "r" / "manifest.json").read_text())
    assert manifest["grid"]["name"] == "mini" and len(manifest["run_ids"]) == 2


# -- the independent safe-state monitor ------------------------------------------------------
def _pendulum_env():
    from safegbpo.envs import make_vec

    path = REFERENCE_SETS / "pendulum.json"
    return make_vec("pendulum", num_envs=4, seed=0,
                    safe_set=str(path) if path.is_file() else None)


def test_monitor_counts_states_outside_the_safe_set():
    from safegbpo.envs import make_vec

    env = make_vec("pendulum", num_envs=4, seed=0)  # the project's set lies inside S
    zonotope = env.safe_set.state
    c = zonotope.center[0]
    G = zonotope.generators[0]
    spec = RunSpec(task="pendulum", algo="shac", variant="BP", seed=0,
                   variant_fields={"safeguard": "bp"}, interactions=1, eval_every=1)
    monitor = SafetyMonitor(spec)
    b = torch.tensor(np.random.default_rng(0).uniform(-1, 1, (5, G.shape[1])))
    inside = c + b @ G.T
    direction = torch.tensor([0.3, -1.0], dtype=G.dtype)
    boundary = c + direction / gauge_lp(G.numpy(), direction.numpy())  # gauge 1: still safe
    outside = c + 1.5 * (boundary - c)
    monitor.observe(env, {"state": torch.cat([inside, boundary[None]])})
    assert monitor.violations == 0 and monitor.states == 6
    monitor.observe(env, {"state": outside[None], "final_state": outside[None]})
    report = monitor.report()
    assert report["violations"] == 1 and report["env_steps"] == 2
    assert report["max_gauge"] == pytest.approx(1.5, rel=1e-6)
    assert report["examples"][0]["gauge"] == pytest.approx(1.5, rel=1e-6)
    # the monitor also requires the box S (exact H-rep test, no LP)
    beyond = torch.tensor([[0.0, 8.5]], dtype=G.dtype)
    monitor.observe(env, {"state": beyond})
    assert monitor.violations == 2


def test_monitor_hooks_env_steps_and_restores(tmp_path):
    from safegbpo.envs.base import SafeVectorEnv

    env = _pendulum_env()
    original = SafeVectorEnv.step
    spec = RunSpec(task="pendulum", algo="shac", variant="No Safeguard", seed=0,
                   variant_fields={"safeguard": None}, interactions=1, eval_every=1)
    env.reset(seed=0)
    with safety_monitor(spec, tmp_path) as monitor:
        for _ in range(3):
            backup = env.safe_set.backup_action(env.state)  # the set's certified safe action
            env.step(backup)
    assert SafeVectorEnv.step is original
    report = monitor.report()
    assert report["env_steps"] == 3 and report["states"] == 12 and report["violations"] == 0
    assert json.loads((tmp_path / "safety_monitor.json").read_text())["states"] == 12
    # a resumed attempt accumulates
    with safety_monitor(spec, tmp_path) as again:
        env.step(env.safe_set.backup_action(env.state))
    assert again.report()["states"] == 16 and again.report()["attempts"] == 2


def test_safety_and_improvement_checks():
    variants = load_variants()
    grid = replace(load_grid("quick"), checks={
        "safety": {},
        "improvement": {"cells": [["pendulum", "shac", "No Safeguard"], ["pendulum", "shac", "RM"]],
                        "min_relative_gain": 0.5},
        "wallclock": {},
    })

    def spec(variant, seed, experiment):
        return RunSpec(task="pendulum", algo="shac", variant=variant, seed=seed,
                       variant_fields=variants[variant], interactions=2048, eval_every=1024,
                       experiments=(experiment,), tables=("table3",))

    specs = [spec("No Safeguard", 0, "improvement"), spec("RM", 0, "improvement"),
             spec("BP", 0, "safeguards")]
    records = {}
    for s, (first, last), violations in zip(specs, [(-900.0, -20.0), (-900.0, -700.0),
                                                    (-50.0, -40.0)], [3, 0, 2], strict=True):
        records[s.run_id] = {"format": RECORD_FORMAT, "run_id": s.run_id, "status": "finished",
                             "curve": [{"step": 1024, "reward": first},
                                       {"step": 2048, "reward": last}],
                             "safety": {"monitored": True, "states": 100,
                                        "violations": violations, "max_gauge": 1.2}}
    checks = evaluate_checks(grid, specs, records, {"tables": {}})
    assert not checks["safety"]["passed"]
    assert checks["safety"]["problems"] == [f"{specs[2].run_id}: 2 realised states outside S_s"]
    assert "3 of 100" in checks["safety"]["summary"]  # unsafe run reported for comparison
    improvement = checks["improvement"]
    assert not improvement["passed"]
    assert [c["passed"] for c in improvement["cells"]] == [True, False]
    assert not checks["wallclock"]["passed"]


def test_cli_parses_the_documented_options():
    from safegbpo.cli import build_parser

    args = build_parser().parse_args(
        ["reproduce", "--profile", "paper", "--jobs", "3", "--executor", "ray", "--address",
         "10.0.0.1:6379", "--results", "out", "--safe-sets", "sets", "--no-report"])
    assert (args.profile, args.jobs, args.executor, args.address, args.results,
            args.safe_sets, args.no_report) == ("paper", 3, "ray", "10.0.0.1:6379", "out",
                                                "sets", True)
    defaults = build_parser().parse_args(["reproduce"])
    assert defaults.profile == "quick" and defaults.executor == "pool"
    with pytest.raises(SystemExit):
        build_parser().parse_args(["reproduce", "--jobs", "0"])


def test_missing_safe_set_file_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="pendulum"):
        reproduce("quick", safe_sets=tmp_path, results=tmp_path / "r", report=False,
                  echo=lambda _: None)



@pytest.mark.slow
def test_killed_reproduction_resumes_to_identical_tables_real_runner(tmp_path):
    """Miniature grid with the real training runner: pendulum SHAC unsafe and with the boundary
    projection, three windows each; killed while the safeguarded run is mid-way."""
    sets = REFERENCE_SETS if (REFERENCE_SETS / "pendulum.json").is_file() else None
    grid = _mini_grid(
        tmp_path / "grid.json",
        experiments=[{"name": "mini", "tables": ["table2", "table3"], "tasks": ["pendulum"],
                      "algos": ["shac"], "variants": ["No Safeguard", "BP"]}],
        budgets={"pendulum": {"interactions": 1536, "eval_every": {"shac": 512}}},
        seeds=(0,), eval_episodes=2,
    )
    trainer = "safegbpo.experiments.runner:train"
    resumed = _kill_half_way_and_resume(grid, tmp_path, trainer, 2, env_extra={}, total=2,
                                        timeout=90, safe_sets=sets)
    fresh = reproduce("quick", grid=grid, results=tmp_path / "fresh", trainer=trainer, jobs=2,
                      safe_sets=sets, monitor=False, report=False, archive_dir=None,
                      echo=lambda _: None)
    assert _stable(resumed) == _stable(fresh)
    for variant in ("No Safeguard", "BP"):
        table = "table2" if variant == "No Safeguard" else "table3"
        row = next(r for r in fresh["tables"][table]["rows"]
                   if (r["task"], r["algo"], r["variant"]) == ("pendulum", "shac", variant))
        assert row["ours"]["runs"] == 1 and row["ours"]["stuck"] == 0
        assert row["ours"]["eval_steps"] == [512, 1024, 1536]
