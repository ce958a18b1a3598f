"""The results store: one atomically written record per finished run, resumability, locks."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from safegbpo.experiments.grid import RunSpec
from safegbpo.experiments.store import RECORD_FORMAT, ResultsStore, RunLocked


def _spec(seed: int = 0) -> RunSpec:
    return RunSpec(task="pendulum", algo="shac", variant="BP", seed=seed,
                   variant_fields={"safeguard": "bp", "regularisation": 0.0},
                   interactions=1024, eval_every=512)


def _record(spec: RunSpec, status: str = "finished") -> dict:
    return {"format": RECORD_FORMAT, "run_id": spec.run_id, "spec": spec.to_dict(),
            "status": status, "curve": [{"step": 512, "reward": -3.0}]}


def test_records_round_trip_and_pending(tmp_path):
    store = ResultsStore(tmp_path / "results")
    specs = [_spec(0), _spec(1), _spec(2)]
    assert store.pending(specs) == specs
    store.write_record(_record(specs[0]))
    store.write_record(_record(specs[1], status="failed"))
    assert store.load_record(specs[0].run_id)["curve"][0]["reward"] == -3.0
    assert store.load_record(specs[2].run_id) is None
    assert store.pending(specs) == [specs[2]]  # failed runs are results (stuck) by default
    assert set(store.records(s.run_id for s in specs)) == {specs[0].run_id, specs[1].run_id}
    assert store.pending(specs, retry_failed=True) == [specs[1], specs[2]]
    assert not store.has_record(specs[1].run_id)  # the failure was forgotten
    # nothing but complete files in the records directory (no temporary leftovers)
    assert sorted(p.name for p in store.records_dir.iterdir()) == [f"{specs[0].run_id}.json"]


def test_invalid_records_are_rejected(tmp_path):
    store = ResultsStore(tmp_path)
    spec = _spec()
    with pytest.raises(ValueError, match="status"):
        store.write_record({**_record(spec), "status": "running"})
    with pytest.raises(ValueError, match="format"):
        store.write_record({**_record(spec), "format": "other"})
    store.record_path(spec.run_id).write_text("{not json")
    with pytest.raises(ValueError, match="corrupt"):
        store.load_record(spec.run_id)
    store.record_path(spec.run_id).write_text(json.dumps({**_record(_spec(5)), "run_id": "x"}))
    with pytest.raises(ValueError, match="not a"):
        store.load_record(spec.run_id)
    with pytest.raises(ValueError, match="invalid run id"):
        store.run_dir("../escape")
    (tmp_path / "file").write_text("")
    with pytest.raises(ValueError, match="not a directory"):
        ResultsStore(tmp_path / "file")


def test_run_dir_keeps_its_spec(tmp_path):
    store = ResultsStore(tmp_path)
    spec = _spec()
    path = store.prepare_run_dir(spec)
    assert json.loads((path / "spec.json").read_text())["run_id"] == spec.run_id
    assert store.prepare_run_dir(spec) == path  # idempotent
    other = store.run_dir(_spec(1).run_id)
    other.mkdir()
    (other / "spec.json").write_text(json.dumps({"run_id": spec.run_id}))
    with pytest.raises(ValueError, match="belongs to run"):
        store.prepare_run_dir(_spec(1))


def test_lock_excludes_other_processes_and_dies_with_them(tmp_path):
    store = ResultsStore(tmp_path)
    run_id = _spec().run_id
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import sys, time
            from safegbpo.experiments.store import ResultsStore
            with ResultsStore({str(tmp_path)!r}).lock({run_id!r}):
                print("locked", flush=True)
                time.sleep(60)
        """)],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(RunLocked):
            with store.lock(run_id, timeout=0.3):
                pass
    finally:
        holder.kill()
        holder.wait()
    with store.lock(run_id, timeout=5.0) as path:  # released when the holder died
        assert path == store.run_dir(run_id)


def test_whole_reproduction_files(tmp_path):
    store = ResultsStore(tmp_path)
    store.write_json("tables.json", {"a": [1, 2]})
    store.write_text("tables.md", "# t\n")
    assert store.read_json("tables.json") == {"a": [1, 2]}
    assert store.read_json("missing.json") is None
    assert (tmp_path / "tables.md").read_text() == "# t\n"
