"""The reference implementation's archive: the metric definitions reproduce the paper's numbers
from the archived curves (and the known inconsistency is reported)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from safegbpo.experiments.metrics import seed_mean_curve, steps_to_converge
from safegbpo.safeguards.variants import get_variant
from spec.paper.archive import load_archive
from spec.paper.values import PAPER_TABLES_PATH
from tests.helpers import reference_file

PAPER_TABLES = PAPER_TABLES_PATH


def _archive_or_skip() -> Path:
    return reference_file("paper_learning_curves.json")


# -- the paper's numbers from the archived curves ------------------------------------------------
@pytest.mark.reproduction
def test_definitions_reproduce_paper_tables_from_archive():
    """# Steps, Reward and # Stuck of every paper cell from the archived curves: all equal the
    paper's printed values except the documented Quadrotor SAC unsafe inconsistency."""
    archive = load_archive(_archive_or_skip())
    paper = json.loads(PAPER_TABLES.read_text())
    mismatches = []
    checked = 0
    for name, table in paper["tables"].items():
        if name == "table6":
            continue
        for cell in table["cells"]:
            variant = "No Safeguard" if cell["variant"] == "Unsafe" else cell["variant"]
            mine = archive[(cell["task"], cell["algo"], variant)]
            checked += 1
            ok = True
            if "steps" in cell:
                ok &= mine.steps == cell["steps"]
            if "reward" in cell:
                ok &= math.isclose(mine.reward, cell["reward"], rel_tol=1e-3)
            if "stuck" in cell:
                ok &= mine.stuck == cell["stuck"]
            if not ok:
                mismatches.append((name, cell["task"], cell["algo"], variant,
                                   (mine.steps, round(mine.reward, 1), mine.stuck)))
    assert checked >= 30
    assert mismatches == [("table2", "quadrotor", "sac", "No Safeguard", (90144, -1046.7, 0))]


@pytest.mark.reproduction
def test_per_seed_steps_match_archived_steps_to_converge():
    data = json.loads(_archive_or_skip().read_text())
    compared = 0
    for task in ("Pendulum", "Quadrotor"):
        for variants in data["results"][task].values():
            for label, entry in variants.items():
                assert get_variant(label).archive_label == label
                for curve, expected in zip(entry["eval_reward_per_converged_seed"],
                                           entry["steps_to_converge_per_seed"], strict=True):
                    assert steps_to_converge(entry["eval_steps"], curve) == expected
                    compared += 1
    assert compared > 250


@pytest.mark.reproduction
def test_two_sided_reading_would_not_reproduce_the_paper():
    """The reason for the one-sided definition: |curve - final| <= 5% misses Pendulum SAC BP."""
    data = json.loads(_archive_or_skip().read_text())
    entry = data["results"]["Pendulum"]["SAC"]["Boundary Projection Base"]
    mean = seed_mean_curve(entry["eval_reward_per_converged_seed"])
    steps = np.asarray(entry["eval_steps"])
    two_sided = steps[np.argmax(np.abs(mean - mean[-1]) <= 0.05 * abs(mean[-1]))]
    assert steps_to_converge(steps, mean) == 2504  # the paper's Table 3 value
    assert two_sided != 2504
