"""Executing runs: the worker function, the process pool (spawn) and Ray.

The runs here use :func:`fake_train`, a stand-in with the training runner's contract
(``train(config, out_dir, *, progress) -> result``, checkpoint/resume in ``out_dir``) whose
learning curve is a deterministic function of the config, so the executors' bookkeeping is
tested without the cost of real training (the real runner is exercised in test_reproduce.py).
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
    execute_run,
    make_executor,
)
from safegbpo.experiments.grid import RunSpec
from safegbpo.experiments.store import ResultsStore

FAKE_TRAINER = f"{__name__}:fake_train"
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


class _FakeWatcher:
    def __init__(self) -> None:
        self.calls = 0

    def report(self) -> dict[str, Any]:
        return {"monitored": True, "states": 7, "violations": 0}


@contextmanager
def fake_monitor(spec: RunSpec, run_dir: Path):
    yield _FakeWatcher()


def _spec(seed: int, interactions: int = 4096, variant: str = "No Safeguard") -> RunSpec:
    fields = {"safeguard": None, "regularisation": 0.0}
    return RunSpec(task="pendulum", algo="shac", variant=variant, seed=seed,
                   variant_fields=fields, interactions=interactions, eval_every=1024)


def _executed(store: ResultsStore, spec: RunSpec) -> list[int]:
    log = store.run_dir(spec.run_id) / "executed.log"
    return [int(x) for x in log.read_text().split()] if log.is_file() else []


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
