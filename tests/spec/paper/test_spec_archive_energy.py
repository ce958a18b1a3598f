"""The archived reference curves of the energy system (``Energy System`` in
``../shared/reference/paper_learning_curves.json``) through the project's SPEC §9 metrics: the
task registry's archive label makes them part of the archive."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from safegbpo.safeguards.variants import get_variant
from safegbpo.tasks import task_names
from spec.paper.archive import archive_cell_metrics, load_archive
from tests.helpers import reference_file


@pytest.fixture(scope="module")
def path() -> Path:
    return reference_file("paper_learning_curves.json")


def _variant(archive_label: str) -> str:
    return get_variant(archive_label).label


@pytest.mark.reproduction
def test_energy_cells_load_and_reproduce_the_archived_per_seed_steps(path):
    cells = load_archive(path, tasks=("energy",))
    raw = json.loads(path.read_text())["results"]["Energy System"]
    expected = {(algo.lower(), _variant(label))
                for algo, variants in raw.items() for label in variants}
    assert {(algo, variant) for _, algo, variant in cells} == expected
    assert len(cells) == 15 and all(task == "energy" for task, _, _ in cells)
    for algo, variants in raw.items():
        for label, entry in variants.items():
            metrics = cells[("energy", algo.lower(), _variant(label))]
            # the one-sided # Steps rule reproduces every archived per-seed value
            assert list(metrics.per_seed_steps) == entry["steps_to_converge_per_seed"]
            assert metrics.stuck == 10 - len(entry["eval_reward_per_converged_seed"])
            assert metrics.eval_steps[0] == entry["eval_steps"][0]
            assert metrics.reward is not None and metrics.reward < 0


@pytest.mark.reproduction
def test_energy_stuck_counts_and_grids(path):
    cells = load_archive(path, tasks=("energy",))
    stuck = {(a, v): m.stuck for (_, a, v), m in cells.items() if m.stuck}
    assert stuck == {("shac", "No Safeguard"): 1, ("shac", "RM Passthrough Gradient"): 2,
                     ("ppo", "No Safeguard"): 2, ("ppo", "BP"): 3}
    # evaluation grids of SPEC §10: SHAC 13200, PPO 23040, SAC 10000 interactions
    assert cells[("energy", "shac", "BP")].eval_steps[:2] == (13200, 26400)
    assert cells[("energy", "ppo", "BP")].eval_steps[:2] == (23040, 46080)
    assert cells[("energy", "sac", "BP")].eval_steps[:2] == (10000, 20000)


@pytest.mark.reproduction
def test_default_archive_is_every_registered_task(path):
    tasks = {task for task, _, _ in load_archive(path)}
    assert tasks == {"pendulum", "quadrotor", "energy"} == set(task_names())
    assert {t for t, _, _ in load_archive(path, tasks=("pendulum", "quadrotor"))} == {
        "pendulum", "quadrotor"}
    with pytest.raises(ValueError, match="unknown archive task"):
        load_archive(path, tasks=("household",))


def test_archive_cell_metrics_of_a_synthetic_energy_entry():
    entry = {"eval_steps": [13200, 26400, 39600],
             "eval_reward_per_converged_seed": [[-600000.0, -10400.0, -10000.0]] * 9}
    metrics = archive_cell_metrics(entry, key="energy/shac/No Safeguard")
    assert metrics.stuck == 1 and metrics.steps == 26400 and metrics.reward == -10000.0
