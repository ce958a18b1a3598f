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

import pytest

from safegbpo.experiments.checks import checks_passed, evaluate_checks
from safegbpo.experiments.grid import RunSpec, load_grid
from safegbpo.experiments.reproduce import reproduce
from safegbpo.experiments.store import RECORD_FORMAT
from safegbpo.safeguards.variants import get_variant
from tests.helpers import reference_file_or_none

from .test_executors import FAKE_TRAINER

TESTS_DIR = Path(__file__).resolve().parents[1]


def _mini_grid(path: Path, *, experiments, budgets, seeds=(0, 1), checks=None,
               eval_episodes=None) -> Path:
    data = {"format": "safegbpo-grid/1", "name": "mini", "seeds": list(seeds),
            "budgets": budgets, "experiments": experiments}
    if checks is not None:
        data["checks"] = checks
    if eval_episodes is not None:
        data["eval_episodes"] = eval_episodes
    path.write_text(json.dumps(data))
    return path


def _stable(doc: dict) -> dict:
    """The deterministic part of cells.json (no paths, timings or monitor counters: a resumed
    run's replayed steps are monitored again)."""
    volatile = ("training_seconds", "monitored_states", "unsafe_states")
    return {"cells": [{k: v for k, v in c.items() if k not in volatile} for c in doc["cells"]],
            "checks": {k: v.get("passed") for k, v in doc.get("checks", {}).items()}}


def _cell(doc: dict, table: str, task: str, algo: str, variant: str) -> dict:
    """The measured cell of ``(task, algo, variant)`` feeding ``table``."""
    [cell] = [c for c in doc["cells"] if table in c["tables"]
              and (c["task"], c["algo"], c["variant"]) == (task, algo, variant)]
    return cell


def _reproduce_in_subprocess(grid: Path, results: Path, trainer: str, jobs: int,
                             env_extra: dict[str, str], safe_sets: Path | None) -> subprocess.Popen:
    code = (
        "from safegbpo.experiments.reproduce import reproduce;"
        f"reproduce('quick', grid={str(grid)!r}, results={str(results)!r}, trainer={trainer!r},"
        f" jobs={jobs}, safe_sets={None if safe_sets is None else str(safe_sets)!r},"
        " monitor=False)"
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
    assert not (results / "cells.json").exists()
    tables = reproduce("quick", grid=grid, results=results, trainer=trainer, jobs=jobs,
                       safe_sets=safe_sets, monitor=False,
                       echo=lambda _: None)
    assert len(list(records.glob("*.json"))) == total
    resumed = [json.loads(p.read_text()) for p in records.glob("*.json")]
    assert any(r["attempt"]["resumed"] for r in resumed)  # one run continued its checkpoint
    assert json.loads((results / "cells.json").read_text())["cells"] == tables["cells"]
    assert (results / "cells.md").read_text().startswith("# Reproduction cells")
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
                                        total=8, timeout=300)
    os.environ["FAKE_TRAIN_SLEEP"] = "0"
    try:
        fresh = reproduce("quick", grid=grid, results=tmp_path / "fresh", trainer=FAKE_TRAINER,
                          jobs=2, monitor=False,
                          echo=lambda _: None)
    finally:
        del os.environ["FAKE_TRAIN_SLEEP"]
    assert _stable(resumed) == _stable(fresh)
    cell = _cell(fresh, "table3", "quadrotor", "shac", "BP")
    assert cell["runs"] == 2 and cell["reward"] == pytest.approx(-26.25)


def test_reproduce_writes_cells_and_skips_finished_runs(tmp_path):
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
                       monitor=False, echo=lines.append)
    cell = _cell(tables, "table2", "pendulum", "shac", "No Safeguard")
    assert cell["stuck"] == 1 and "non-finite" in cell["stuck_reasons"][0]
    assert not checks_passed(tables)
    assert "non-finite" in tables["checks"]["completed"]["problems"][0]
    assert any("failed" in line for line in lines)
    lines.clear()
    again = reproduce("quick", grid=grid, results=tmp_path / "r", trainer=FAKE_TRAINER, jobs=1,
                      monitor=False, echo=lines.append)
    assert any("2 done" in line for line in lines)
    assert _stable(again) == _stable(tables)
    manifest = json.loads((tmp_path / "r" / "manifest.json").read_text())
    assert manifest["grid"]["name"] == "mini" and len(manifest["run_ids"]) == 2


def test_safety_and_improvement_checks():
    grid = replace(load_grid("quick"), checks={
        "safety": {},
        "improvement": {"cells": [["pendulum", "shac", "No Safeguard"], ["pendulum", "shac", "RM"]],
                        "min_relative_gain": 0.5},
        "level": {"cells": [["pendulum", "shac", "No Safeguard"], ["pendulum", "shac", "RM"],
                            ["quadrotor", "shac", "RM"]],
                  "min_final_reward": -30.0, "reference": "test level"},
        "wallclock": {},
    })

    def spec(variant, seed, experiment):
        return RunSpec(task="pendulum", algo="shac", variant=variant, seed=seed,
                       variant_fields=get_variant(variant).train_fields, interactions=2048,
                       eval_every=1024,
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
                                        "violations": violations, "max_gauge": 1.2},
                             "fallbacks": 0, "uncertified": 0}
    checks = evaluate_checks(grid, specs, records, {"cells": []})
    assert not checks["safety"]["passed"]
    assert checks["safety"]["problems"] == [f"{specs[2].run_id}: 2 realised states outside S_s"]
    assert "3 of 100" in checks["safety"]["summary"]  # unsafe run reported for comparison
    improvement = checks["improvement"]
    assert not improvement["passed"]
    assert [c["passed"] for c in improvement["cells"]] == [True, False]
    level = checks["level"]
    assert not level["passed"] and "test level" in level["summary"]
    assert [(c["cell"], c["passed"], c["first_reached"]) for c in level["cells"]] == [
        ("pendulum/shac/No Safeguard", True, 2048), ("pendulum/shac/RM", False, None)]
    assert level["problems"][-1] == "quadrotor/shac/RM: not in the grid"
    assert not checks["wallclock"]["passed"]


def test_any_uncertified_step_fails_the_safety_check():
    """Issue 10: a safeguarded run whose safeguard applied a best-effort (uncertified) action
    fails the reproduction's safety check even when no realised state left S_s; a record
    without the counter fails too (unverifiable); fallbacks are listed per run."""
    grid = replace(load_grid("quick"), checks={"safety": {}})
    specs = [RunSpec(task="pendulum", algo="shac", variant="BP", seed=seed,
                     variant_fields=get_variant("BP").train_fields, interactions=2048,
                     eval_every=1024, experiments=("safeguards",), tables=("table3",))
             for seed in (0, 1, 2)]
    counters = [{"fallbacks": 4, "uncertified": 0}, {"fallbacks": 5, "uncertified": 2}, {}]
    records = {s.run_id: {"format": RECORD_FORMAT, "run_id": s.run_id, "status": "finished",
                          "curve": [{"step": 1024, "reward": -1.0}],
                          "safety": {"monitored": True, "states": 10, "violations": 0,
                                     "max_gauge": 0.9}, **c}
               for s, c in zip(specs, counters, strict=True)}
    check = evaluate_checks(grid, specs, records, {"cells": []})["safety"]
    assert not check["passed"]
    assert check["problems"] == [
        f"{specs[1].run_id}: 2 uncertified safeguard steps (no certified safe action; "
        "best-effort recovery applied)",
        f"{specs[2].run_id}: the safeguard reports no 'uncertified' count"]
    assert [r["fallbacks"] for r in check["runs"]] == [4, 5, None]
    assert "9 safeguard fallbacks, 2 uncertified steps" in check["summary"]
    records[specs[1].run_id]["uncertified"] = 0
    records[specs[2].run_id].update(fallbacks=0, uncertified=0)
    assert evaluate_checks(grid, specs, records, {"cells": []})["safety"]["passed"]


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
        reproduce("quick", safe_sets=tmp_path, results=tmp_path / "r", echo=lambda _: None)



@pytest.mark.slow
def test_killed_reproduction_resumes_to_identical_tables_real_runner(tmp_path):
    """Miniature grid with the real training runner: pendulum SHAC unsafe and with the boundary
    projection, three windows each; killed while the safeguarded run is mid-way."""
    sets = reference_file_or_none("safe_sets")
    grid = _mini_grid(
        tmp_path / "grid.json",
        experiments=[{"name": "mini", "tables": ["table2", "table3"], "tasks": ["pendulum"],
                      "algos": ["shac"], "variants": ["No Safeguard", "BP"]}],
        budgets={"pendulum": {"interactions": 1536, "eval_every": {"shac": 512},
                              "episode_length": 200}},
        seeds=(0,), eval_episodes=2,
    )
    trainer = "safegbpo.experiments.runner:train"
    resumed = _kill_half_way_and_resume(grid, tmp_path, trainer, 2, env_extra={}, total=2,
                                        timeout=300, safe_sets=sets)
    fresh = reproduce("quick", grid=grid, results=tmp_path / "fresh", trainer=trainer, jobs=2,
                      safe_sets=sets, monitor=False,
                      echo=lambda _: None)
    assert _stable(resumed) == _stable(fresh)
    for variant in ("No Safeguard", "BP"):
        table = "table2" if variant == "No Safeguard" else "table3"
        cell = _cell(fresh, table, "pendulum", "shac", variant)
        assert cell["runs"] == 1 and cell["stuck"] == 0
        assert cell["eval_steps"] == [512, 1024, 1536]


def test_reproduce_command_runs_the_report_on_its_results(tmp_path, monkeypatch, capsys):
    """`safegbpo reproduce` = the library's measurement, then the spec's `report` command
    (reached through the command registry: the library never imports spec)."""
    import safegbpo.experiments.reproduce as library
    import spec.report
    from safegbpo.cli import main

    cells = {"results": str(tmp_path / "r"), "checks": {"completed": {"passed": True}}}
    monkeypatch.setattr(library, "reproduce", lambda *args, **kwargs: cells)
    calls = []

    def fake_write_report(**kwargs):
        calls.append(kwargs)
        return {"markdown": "m", "json": "j", "tables": "t", "failed_required": []}

    monkeypatch.setattr(spec.report, "write_report", fake_write_report)
    assert main(["reproduce"]) == 0
    assert [Path(c["results"]) for c in calls] == [tmp_path / "r"]
    assert main(["reproduce", "--no-report"]) == 0 and len(calls) == 1
    cells["checks"]["completed"]["passed"] = False
    assert main(["reproduce", "--no-report"]) == 1


# -- seed populations through the grid and the executors -----------------------------------------
TINY_SHAC = {"policy_hidden": [16, 16], "critic_hidden": [16, 16], "len_traj": 8,
             "vf_num_fits": 3}


def _records(results: Path) -> dict[str, dict]:
    return {p.stem: json.loads(p.read_text()) for p in (results / "records").glob("*.json")}


def _same_training(a: dict, b: dict) -> None:
    """Two records of one run hold the same training outcome (bitwise curves and counters)."""
    for key in ("curve", "eval_set_curve", "interventions", "fallbacks", "safeguard_steps",
                "interactions", "status"):
        assert a[key] == b[key], key
    assert [(h["step"], h["reward"], h["interventions"]) for h in a["history"]] == \
        [(h["step"], h["reward"], h["interventions"]) for h in b["history"]]


@pytest.mark.slow
def test_a_grid_of_populations_records_what_its_runs_record_alone(tmp_path):
    """2 configurations x 3 seeds run as 2 populations (one per configuration, in parallel)
    and write 6 records whose curves (bitwise), counters and per-seed safety-monitor counts are
    those of the same runs trained alone (``population_size=1``)."""
    sets = reference_file_or_none("safe_sets")
    grid = _mini_grid(
        tmp_path / "grid.json",
        experiments=[{"name": "mini", "tables": ["table2", "table3"], "tasks": ["pendulum"],
                      "algos": ["shac"], "variants": ["No Safeguard", "BP"],
                      "hyper": {"shac": TINY_SHAC}}],
        budgets={"pendulum": {"interactions": 256, "eval_every": {"shac": 128},
                              "episode_length": 40}},
        seeds=(0, 1, 2), eval_episodes=2,
    )
    lines: list[str] = []
    together = reproduce("quick", grid=grid, results=tmp_path / "together", jobs=2,
                         safe_sets=sets, monitor=True, echo=lines.append)
    assert any("6 to run in 2 populations" in line for line in lines)
    alone = reproduce("quick", grid=grid, results=tmp_path / "alone", jobs=2, safe_sets=sets,
                      monitor=True, population_size=1, echo=lambda _: None)
    assert _stable(together) == _stable(alone)
    records, singles = _records(tmp_path / "together"), _records(tmp_path / "alone")
    assert len(records) == 6 and records.keys() == singles.keys()
    for run_id, record in records.items():
        single = singles[run_id]
        assert record["population"] == {"seeds": [0, 1, 2], "members": 3}
        assert single["population"] == {"seeds": [record["spec"]["seed"]], "members": 1}
        _same_training(record, single)
        safety, expected = record["safety"], single["safety"]
        for key in ("env_steps", "states", "violations", "examples", "attempts"):
            assert safety[key] == expected[key], (run_id, key)
        assert safety["max_gauge"] == pytest.approx(expected["max_gauge"], rel=1e-12)
        # training (8 envs x 32 steps) and evaluation (1 + 2 episodes x 40 steps, twice)
        assert safety["states"] == 8 * 32 + 2 * 3 * 40
    assert {r["safety"]["violations"] for r in records.values()
            if r["spec"]["variant"] == "BP"} == {0}


def _both_mid_way(results: Path, total: int) -> bool:
    """Every run of the population has written a checkpoint (and its result.json) and none has
    a record yet."""
    runs = [d for d in (results / "runs").iterdir()] if (results / "runs").is_dir() else []
    records = results / "records"
    return (len(runs) == total and not (records.is_dir() and any(records.glob("*.json")))
            and all((d / "result.json").is_file() for d in runs))


@pytest.mark.slow
def test_a_killed_population_task_resumes_every_seed_to_the_same_records(tmp_path):
    """SIGKILL the session while a 2-seed population is mid-way; the resumed task finishes
    both seeds from their own checkpoints with the records of an uninterrupted single-seed
    run of each."""
    sets = reference_file_or_none("safe_sets")
    grid = _mini_grid(
        tmp_path / "grid.json",
        experiments=[{"name": "mini", "tables": ["table2"], "tasks": ["pendulum"],
                      "algos": ["shac"], "variants": ["No Safeguard"],
                      "hyper": {"shac": {"len_traj": 8, "vf_num_fits": 10}}}],
        budgets={"pendulum": {"interactions": 1536, "eval_every": {"shac": 256},
                              "episode_length": 40}},
        seeds=(0, 1), eval_episodes=2,
    )
    results = tmp_path / "interrupted"
    proc = _reproduce_in_subprocess(grid, results, "safegbpo.experiments.runner:train", 1, {},
                                    sets)
    deadline = time.monotonic() + 120
    try:
        while not _both_mid_way(results, 2):
            assert proc.poll() is None, f"reproduce ended before the kill: {proc.stderr.read()}"
            if time.monotonic() > deadline:
                pytest.fail("the population did not reach the kill point before the timeout")
            time.sleep(0.02)
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    killed = [json.loads((d / "result.json").read_text()) for d in (results / "runs").iterdir()]
    assert max(r["interactions"] for r in killed) < 1536, "the kill landed after training"
    assert all(r["population"]["members"] == 2 for r in killed)  # trained together
    reproduce("quick", grid=grid, results=results, jobs=1, safe_sets=sets, monitor=False,
              echo=lambda _: None)
    fresh = tmp_path / "fresh"
    reproduce("quick", grid=grid, results=fresh, jobs=1, safe_sets=sets, monitor=False,
              population_size=1, echo=lambda _: None)
    resumed, expected = _records(results), _records(fresh)
    assert len(resumed) == 2 and resumed.keys() == expected.keys()
    for run_id, record in resumed.items():
        assert record["attempt"]["resumed"] is True
        _same_training(record, expected[run_id])
