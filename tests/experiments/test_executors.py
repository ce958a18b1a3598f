"""Executing runs: the worker function, population tasks, the process pool (spawn) and Ray.

The runs here use :func:`fake_train`, a stand-in with the training runner's contract
(``train(config, out_dir, *, progress) -> result``, checkpoint/resume in ``out_dir``) whose
learning curve is a deterministic function of the config, and its population form
:func:`fake_train_population`, so the executors' bookkeeping is tested without the cost of real
training (the real runner, populations included, is exercised in test_reproduce.py).
"""

from __future__ import annotations

import json
import os
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from safegbpo.experiments.executors import (
    PoolExecutor,
    RayExecutor,
    execute_population,
    execute_run,
    make_executor,
)
from safegbpo.experiments.grid import RunSpec
from safegbpo.experiments.store import ResultsStore

FAKE_TRAINER = f"{__name__}:fake_train"
FAKE_POPULATION_TRAINER = f"{__name__}:fake_train_population"
FAKE_MONITOR = f"{__name__}:fake_monitor"
FAIL_SEED = 99


def _atomic_json(path: Path, data: Any) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)


def fake_train(config: Any, out_dir: Path, *, progress: bool = True) -> dict[str, Any]:
    """Runner stand-in: one 'iteration' per evaluation, checkpointed; resumes from it.

    Reward after ``k`` evaluations: ``-100 / k * (1 + seed / 10)``.  ``FAKE_TRAIN_SLEEP``
    seconds per iteration; seed 99 raises (a diverged run).  Every executed iteration is
    appended to ``out_dir/executed.log``.
    """
    out_dir = Path(out_dir)
    if config.seed == FAIL_SEED:
        raise FloatingPointError("non-finite policy loss")
    ckpt = out_dir / "checkpoint.json"
    state = json.loads(ckpt.read_text()) if ckpt.is_file() else {"curve": []}
    total = config.interactions // config.eval_every
    sleep = float(os.environ.get("FAKE_TRAIN_SLEEP", "0"))
    for k in range(len(state["curve"]) + 1, total + 1):
        time.sleep(sleep)
        with open(out_dir / "executed.log", "a") as log:
            log.write(f"{k}\n")
        state["curve"].append({"step": k * config.eval_every,
                               "reward": -100.0 / k * (1 + config.seed / 10)})
        _atomic_json(ckpt, state)
        _atomic_json(out_dir / "result.json", {"status": "running", **state})
    result = {"config": {"seed": config.seed}, "curve": state["curve"], "interventions": 0,
              "fallbacks": 0, "wallclock": {"rollout": 0.01 * total}, "status": "finished"}
    _atomic_json(out_dir / "result.json", result)
    return result


def fake_train_population(configs: list[Any], out_dirs: list[Path], *,
                          progress: bool = True) -> list[dict[str, Any]]:
    """Population form of :func:`fake_train`: raises before any work if a seed is 99 (like a
    real population, one diverging seed stops all); logs the population's seeds in every
    member's ``population.log``."""
    seeds = [c.seed for c in configs]
    if FAIL_SEED in seeds:
        raise FloatingPointError(f"non-finite policy loss in the population {seeds}")
    for out_dir in out_dirs:
        with open(Path(out_dir) / "population.log", "a") as log:
            log.write(json.dumps(seeds) + "\n")
    results = [fake_train(c, d, progress=progress) for c, d in zip(configs, out_dirs,
                                                                     strict=True)]
    return [{**r, "population": {"seeds": seeds, "members": len(seeds)}} for r in results]


class _FakeWatcher:
    def __init__(self, member: int, members: int) -> None:
        self.member, self.members = member, members

    def report(self) -> dict[str, Any]:
        if self.members == 1:
            return {"monitored": True, "states": 7, "violations": 0}
        return {"monitored": True, "states": 7, "violations": 0, "member": self.member,
                "members": self.members}


@contextmanager
def fake_monitor(spec: RunSpec, run_dir: Path, *, member: int = 0, members: int = 1):
    yield _FakeWatcher(member, members)


def _spec(seed: int, interactions: int = 4096, variant: str = "No Safeguard") -> RunSpec:
    fields = {"safeguard": None if variant == "No Safeguard" else "bp", "regularisation": 0.0}
    return RunSpec(task="pendulum", algo="shac", variant=variant, seed=seed,
                   variant_fields=fields, interactions=interactions, eval_every=1024)


def _executed(store: ResultsStore, spec: RunSpec) -> list[int]:
    log = store.run_dir(spec.run_id) / "executed.log"
    return [int(x) for x in log.read_text().split()] if log.is_file() else []


def _populations(store: ResultsStore, spec: RunSpec) -> list[list[int]]:
    """The seeds of every population the fake population trainer trained ``spec`` in."""
    log = store.run_dir(spec.run_id) / "population.log"
    return [json.loads(line) for line in log.read_text().splitlines()] if log.is_file() else []


def test_execute_run_records_and_skips_finished_runs(tmp_path):
    store = ResultsStore(tmp_path)
    spec = _spec(1)
    summary = execute_run(spec.to_dict(), str(tmp_path), FAKE_TRAINER, monitor=FAKE_MONITOR)
    assert summary["status"] == "finished"
    record = store.load_record(spec.run_id)
    assert [p["reward"] for p in record["curve"]] == pytest.approx(
        [-110.0, -55.0, -110.0 / 3, -27.5])
    assert record["safety"] == {"monitored": True, "states": 7, "violations": 0}
    assert record["spec"]["run_id"] == spec.run_id and "config" not in record
    assert record["attempt"]["resumed"] is False
    execute_run(spec.to_dict(), str(tmp_path), FAKE_TRAINER)
    assert _executed(store, spec) == [1, 2, 3, 4]  # the second call did not train again


def test_execute_run_resumes_from_the_checkpoint(tmp_path):
    store = ResultsStore(tmp_path)
    spec = _spec(2)
    partial = _spec(2, interactions=2048)  # same seed: the first two iterations are identical
    run_dir = store.prepare_run_dir(spec)
    fake_train(partial.train_config(), run_dir)  # an attempt interrupted after two iterations
    execute_run(spec.to_dict(), str(tmp_path), FAKE_TRAINER)
    record = store.load_record(spec.run_id)
    assert _executed(store, spec) == [1, 2, 3, 4]  # 1-2 before the interruption, 3-4 after
    assert record["attempt"]["resumed"] is True
    fresh = ResultsStore(tmp_path / "fresh")
    execute_run(spec.to_dict(), str(fresh.root), FAKE_TRAINER)
    assert fresh.load_record(spec.run_id)["curve"] == record["curve"]


def test_failed_training_is_recorded_but_bad_specs_raise(tmp_path):
    store = ResultsStore(tmp_path)
    spec = _spec(FAIL_SEED)
    summary = execute_run(spec.to_dict(), str(tmp_path), FAKE_TRAINER)
    assert summary["status"] == "failed" and "non-finite" in summary["error"]
    record = store.load_record(spec.run_id)
    assert record["error"]["type"] == "FloatingPointError" and record["curve"] == []
    with pytest.raises(ValueError, match="does not match"):
        execute_run({**spec.to_dict(), "run_id": "pendulum-shac-x-s0-0"}, str(tmp_path),
                    FAKE_TRAINER)


def test_pool_executor_runs_every_spec_in_spawned_workers(tmp_path):
    store = ResultsStore(tmp_path)
    specs = [_spec(s) for s in (0, 1, 2, FAIL_SEED)]
    seen: list[str] = []
    results = PoolExecutor(2, trainer=FAKE_TRAINER).run(
        specs, store, on_result=lambda s: seen.append(s["run_id"]))
    assert sorted(seen) == sorted(s.run_id for s in specs) == sorted(r["run_id"] for r in results)
    statuses = {r["run_id"]: r["status"] for r in results}
    assert statuses.pop(_spec(FAIL_SEED).run_id) == "failed"
    assert set(statuses.values()) == {"finished"}
    assert store.pending(specs) == []
    for spec in specs[:3]:
        assert store.load_record(spec.run_id)["curve"][-1]["reward"] == \
            pytest.approx(-25.0 * (1 + spec.seed / 10))
    assert PoolExecutor(1, trainer=FAKE_TRAINER).run([], store) == []


def test_make_executor_validates_options():
    assert isinstance(make_executor("pool", jobs=2, trainer=FAKE_TRAINER), PoolExecutor)
    with pytest.raises(ValueError, match="unknown executor"):
        make_executor("dask")
    with pytest.raises(ValueError, match="--address"):
        make_executor("pool", address="127.0.0.1:6379")
    with pytest.raises(ValueError, match="positive"):
        PoolExecutor(0, trainer=FAKE_TRAINER)
    with pytest.raises(ValueError, match="module:function"):
        PoolExecutor(1, trainer="no_colon")
    with pytest.raises(ValueError, match="no attribute"):
        PoolExecutor(1, trainer=f"{__name__}:missing")


def test_ray_executor_runs_the_same_grid(tmp_path):
    pytest.importorskip("ray", reason="Ray is not installed (pip install 'safegbpo[ray]')")
    store = ResultsStore(tmp_path)
    specs = [_spec(0, interactions=2048), _spec(3, interactions=2048)]
    results = RayExecutor(None, 2, trainer=FAKE_TRAINER).run(specs, store)
    assert sorted(r["run_id"] for r in results) == sorted(s.run_id for s in specs)
    assert all(r["status"] == "finished" for r in results)
    pool_store = ResultsStore(tmp_path / "pool")
    PoolExecutor(1, trainer=FAKE_TRAINER).run(specs, pool_store)
    for spec in specs:
        assert store.load_record(spec.run_id)["curve"] == \
            pool_store.load_record(spec.run_id)["curve"]


# -- population tasks ----------------------------------------------------------------------------
def test_a_population_task_trains_its_pending_seeds_together_and_records_each(tmp_path):
    store = ResultsStore(tmp_path)
    specs = [_spec(s) for s in (0, 1, 2, 3)]
    execute_run(specs[2].to_dict(), str(tmp_path), FAKE_TRAINER)  # finished earlier, alone
    summaries = execute_population([s.to_dict() for s in specs], str(tmp_path), FAKE_TRAINER,
                                   monitor=FAKE_MONITOR,
                                   population_trainer=FAKE_POPULATION_TRAINER)
    assert [s["run_id"] for s in summaries] == [s.run_id for s in specs]
    assert [s["population"] for s in summaries] == [3, 3, None, 3]
    for member, spec in enumerate([specs[0], specs[1], specs[3]]):
        assert _populations(store, spec) == [[0, 1, 3]]  # the finished seed was skipped
        record = store.load_record(spec.run_id)
        assert record["trainer"] == FAKE_POPULATION_TRAINER and record["status"] == "finished"
        assert record["safety"] == {"monitored": True, "states": 7, "violations": 0,
                                    "member": member, "members": 3}
        alone = ResultsStore(tmp_path / f"alone-{spec.seed}")
        execute_run(spec.to_dict(), str(alone.root), FAKE_TRAINER)
        assert record["curve"] == alone.load_record(spec.run_id)["curve"]
    assert _executed(store, specs[2]) == [1, 2, 3, 4] and _populations(store, specs[2]) == []
    # everything recorded: a repeated task trains nothing
    execute_population([s.to_dict() for s in specs], str(tmp_path), FAKE_TRAINER,
                       population_trainer=FAKE_POPULATION_TRAINER)
    assert all(len(_populations(store, s)) <= 1 for s in specs)
    with pytest.raises(ValueError, match="not one population"):
        execute_population([_spec(5).to_dict(), _spec(6, interactions=2048).to_dict()],
                           str(tmp_path), FAKE_TRAINER)


def test_a_failing_population_is_retried_seed_by_seed(tmp_path):
    """One diverging seed stops its population; each seed then resumes alone, so only the
    diverging seed is recorded as failed (a stuck run) and the others finish as they would
    alone."""
    store = ResultsStore(tmp_path)
    specs = [_spec(s) for s in (1, 2, FAIL_SEED)]
    summaries = execute_population([s.to_dict() for s in specs], str(tmp_path), FAKE_TRAINER,
                                   monitor=FAKE_MONITOR,
                                   population_trainer=FAKE_POPULATION_TRAINER)
    assert [s["status"] for s in summaries] == ["finished", "finished", "failed"]
    for spec in specs[:2]:
        record = store.load_record(spec.run_id)
        assert record["trainer"] == FAKE_TRAINER  # the retry: a population of one
        assert record["attempt"]["resumed"] is False and _executed(store, spec) == [1, 2, 3, 4]
        assert record["safety"] == {"monitored": True, "states": 7, "violations": 0}
        assert record["curve"][-1]["reward"] == pytest.approx(-25.0 * (1 + spec.seed / 10))
    failed = store.load_record(specs[2].run_id)
    assert failed["error"]["type"] == "FloatingPointError" and failed["curve"] == []


def test_a_trainer_without_population_form_trains_the_seeds_one_after_another(tmp_path):
    store = ResultsStore(tmp_path)
    specs = [_spec(s) for s in (0, 1)]
    summaries = execute_population([s.to_dict() for s in specs], str(tmp_path), FAKE_TRAINER,
                                   monitor=FAKE_MONITOR)
    assert [s["status"] for s in summaries] == ["finished", "finished"]
    for spec in specs:
        record = store.load_record(spec.run_id)
        assert record["trainer"] == FAKE_TRAINER and _populations(store, spec) == []
        assert record["safety"] == {"monitored": True, "states": 7, "violations": 0}


def test_pool_executor_schedules_one_task_per_population(tmp_path):
    """2 configurations x 3 seeds -> 2 population tasks (or 6 with population_size=1), one
    record per run either way, with the same curves."""
    store = ResultsStore(tmp_path / "populations")
    specs = [_spec(s, variant=v) for v in ("No Safeguard", "BP") for s in (0, 1, 2)]
    seen: list[str] = []
    executor = PoolExecutor(2, trainer=FAKE_TRAINER, population_trainer=FAKE_POPULATION_TRAINER)
    results = executor.run(specs, store, on_result=lambda s: seen.append(s["run_id"]))
    assert sorted(seen) == sorted(s.run_id for s in specs) == sorted(r["run_id"] for r in results)
    for spec in specs:
        assert _populations(store, spec) == [[0, 1, 2]]
    single = ResultsStore(tmp_path / "single")
    PoolExecutor(2, trainer=FAKE_TRAINER, population_trainer=FAKE_POPULATION_TRAINER,
                 population_size=1).run(specs, single)
    for spec in specs:
        assert _populations(single, spec) == []  # a population of one is the single trainer
        assert single.load_record(spec.run_id)["curve"] == \
            store.load_record(spec.run_id)["curve"]
    capped = ResultsStore(tmp_path / "capped")
    PoolExecutor(1, trainer=FAKE_TRAINER, population_trainer=FAKE_POPULATION_TRAINER,
                 population_size=2).run(specs, capped)
    assert [_populations(capped, s) for s in specs[:3]] == [[[0, 1]], [[0, 1]], []]
    with pytest.raises(ValueError, match="--population-size"):
        PoolExecutor(1, trainer=FAKE_TRAINER, population_size=0)
    assert make_executor("pool", jobs=1, population_size=3, trainer=FAKE_TRAINER
                         ).population_size == 3


def test_ray_executor_schedules_population_tasks(tmp_path):
    pytest.importorskip("ray", reason="Ray is not installed (pip install 'safegbpo[ray]')")
    store = ResultsStore(tmp_path)
    specs = [_spec(s, interactions=2048) for s in (0, 1, 2)]
    results = RayExecutor(None, 2, trainer=FAKE_TRAINER,
                          population_trainer=FAKE_POPULATION_TRAINER).run(specs, store)
    assert sorted(r["run_id"] for r in results) == sorted(s.run_id for s in specs)
    assert {r["population"] for r in results} == {3}
    for spec in specs:
        assert _populations(store, spec) == [[0, 1, 2]]
