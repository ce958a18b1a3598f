"""Cells measured from a results directory's records alone (safegbpo.experiments.campaign)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from safegbpo.experiments.campaign import (
    as_cells_document,
    curve_band,
    has_records,
    measure_record_cells,
    reference_set_hashes,
)
from safegbpo.experiments.grid import RunSpec, file_sha256
from safegbpo.experiments.store import RECORD_FORMAT, ResultsStore
from safegbpo.safeguards.variants import get_variant


def _spec(variant="No Safeguard", seed=0, interactions=100_000, safe_set=None, sha=None,
          episode_length=None, eval_every=2560):
    return RunSpec(task="pendulum", algo="shac", variant=variant, seed=seed,
                   variant_fields=get_variant(variant).train_fields, interactions=interactions,
                   eval_every=eval_every, tables=("table2", "table3"), safe_set=safe_set,
                   safe_set_sha256=sha, episode_length=episode_length)


def _write(store, spec, rewards, status="finished"):
    steps = [spec.eval_every * (i + 1) for i in range(len(rewards))]
    store.write_record({"format": RECORD_FORMAT, "run_id": spec.run_id, "spec": spec.to_dict(),
                        "status": status,
                        "curve": [{"step": s, "reward": r} for s, r in zip(steps, rewards,
                                                                          strict=True)]})


@pytest.fixture()
def reference(tmp_path):
    ref = tmp_path / "reference"
    (ref / "safe_sets").mkdir(parents=True)
    (ref / "safe_sets" / "pendulum.json").write_text(json.dumps({"task": "pendulum", "x": 1}))
    return ref


def test_records_are_grouped_by_configuration_and_safe_set(tmp_path, reference):
    store = ResultsStore(tmp_path / "results")
    paper_set = str(reference / "safe_sets" / "pendulum.json")
    sha = file_sha256(paper_set)
    for seed in range(10):
        _write(store, _spec(seed=seed), [-100.0, -10.0, -9.0 - 0.1 * seed])
    for seed in range(3):
        _write(store, _spec(seed=seed, safe_set=paper_set, sha=sha), [-50.0, -20.0, -8.0])
        _write(store, _spec("BP", seed=seed, interactions=40960, episode_length=200),
               [-60.0, -30.0, -7.0])
    # a seed of the BP configuration still running: a run directory without a record
    running = _spec("BP", seed=3, interactions=40960, episode_length=200)
    store.prepare_run_dir(running)
    doc = measure_record_cells(store.root, reference=reference)
    cells = {(c["variant"], c["safe_set_kind"]): c for c in doc["cells"]}
    assert set(cells) == {("No Safeguard", "own"), ("No Safeguard", "paper"), ("BP", "own")}
    own = cells[("No Safeguard", "own")]
    assert own["runs"] == 10 and own["complete"] and own["running"] == []
    assert own["reward"] == pytest.approx(np.mean([-9.0 - 0.1 * s for s in range(10)]))
    assert own["ci"][0] <= own["reward"] <= own["ci"][1]
    assert all(lo <= m <= hi for lo, m, hi in zip(own["ci_low_curve"], own["mean_curve"],
                                                  own["ci_high_curve"], strict=True))
    paper = cells[("No Safeguard", "paper")]
    assert paper["runs"] == 3 and not paper["complete"]
    assert paper["safe_set_sha256"] == sha
    bp = cells[("BP", "own")]
    assert bp["running"] == [3] and not bp["complete"]
    assert bp["protocol_differences"] == ["200-step episodes (SPEC §13: 3000)"]
    # without the reference directory the paper's set is just "a file"
    kinds = {c["safe_set_kind"] for c in measure_record_cells(store.root)["cells"]}
    assert kinds == {"own", "file"}
    # the cells.json-shaped view keeps the own-set cells
    view = as_cells_document(doc)
    assert view["format"] == "safegbpo-cells/1"
    assert {c["safe_set_kind"] for c in view["cells"]} == {"own"}


def test_stuck_runs_are_counted_not_averaged(tmp_path):
    store = ResultsStore(tmp_path / "results")
    for seed in range(3):
        _write(store, _spec(seed=seed), [-100.0, -10.0])
    _write(store, _spec(seed=3), [-100.0, float("nan")])
    cell = measure_record_cells(store.root)["cells"][0]
    assert cell["runs"] == 4 and cell["stuck"] == 1 and cell["reward"] == pytest.approx(-10.0)
    assert len(cell["ci_low_curve"]) == 2


def test_has_records_and_reference_hashes(tmp_path, reference):
    assert not has_records(tmp_path)
    store = ResultsStore(tmp_path / "r")
    assert not has_records(store.root)
    _write(store, _spec(), [-1.0])
    assert has_records(store.root)
    assert reference_set_hashes(None) == {}
    assert reference_set_hashes(reference) == {
        "pendulum": file_sha256(reference / "safe_sets" / "pendulum.json")}


def test_curve_band_brackets_the_mean_and_is_seeded():
    curves = np.random.default_rng(0).normal(size=(5, 7))
    low, high = curve_band(curves, key="a")
    assert np.all(np.asarray(low) <= curves.mean(0)) and np.all(curves.mean(0) <= high)
    assert curve_band(curves, key="a") == (low, high)
    assert curve_band(curves[:1], key="a") == (curves[0].tolist(), curves[0].tolist())
    with pytest.raises(ValueError, match="seeds, T"):
        curve_band(np.zeros(3), key="a")


def test_unreadable_record_is_named(tmp_path):
    store = ResultsStore(tmp_path / "r")
    (store.records_dir / "broken.json").write_text("{")
    with pytest.raises(ValueError, match="broken.json"):
        measure_record_cells(store.root)


def test_configurations_without_records_are_listed_as_running(tmp_path):
    store = ResultsStore(tmp_path / "results")
    _write(store, _spec(seed=0), [-1.0])
    for seed in range(2):
        store.prepare_run_dir(_spec("RM", seed=seed))
    doc = measure_record_cells(store.root)
    assert [(c["variant"], c["running"]) for c in doc["running_only"]] == [("RM", [0, 1])]
    assert [c["variant"] for c in doc["cells"]] == ["No Safeguard"]
