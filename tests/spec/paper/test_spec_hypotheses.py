"""H1 and H2 (SPEC §9): the decision rules on constructed cells and on the paper's archive."""

from __future__ import annotations

import pytest

from spec.paper.archive import load_archive
from spec.paper.hypotheses import MODIFICATIONS, evaluate_h1, evaluate_h2
from tests.helpers import reference_file


def _cells(shac_bp=-8.4, shac_rm=-8.4, others=-10.0, unsafe=-8.8, unsafe_stuck=1, bp_stuck=2,
           mod=-8.5):
    cells = {}
    for task in ("pendulum", "quadrotor"):
        for base, shac in (("BP", shac_bp), ("RM", shac_rm)):
            cells[(task, "shac", base)] = {"reward": shac, "stuck": bp_stuck if base == "BP"
                                           else 0}
            cells[(task, "ppo", base)] = {"reward": others}
            cells[(task, "sac", base)] = {"reward": others}
        cells[(task, "shac", "No Safeguard")] = {"reward": unsafe, "stuck": unsafe_stuck}
        for m in MODIFICATIONS:
            cells[(task, "shac", m)] = {"reward": mod if m == "BP Regularisation" else -50.0}
    return cells


def test_h1_rules():
    assert evaluate_h1(_cells()).verdict == "supported"
    assert evaluate_h1(_cells(shac_bp=-20.0, shac_rm=-20.0)).verdict == "not supported"
    assert evaluate_h1(_cells(shac_bp=-20.0)).verdict == "partially supported"
    assert evaluate_h1({}).verdict == "not run"
    partial = {k: v for k, v in _cells().items() if k[0] == "pendulum"}
    assert evaluate_h1(partial).verdict == "supported (incomplete)"


def test_h2_rules():
    assert evaluate_h2(_cells()).verdict == "supported"
    # base safeguards do not impede and the modification is worse than unsafe training
    not_h2 = _cells(shac_bp=-8.0, shac_rm=-8.0, bp_stuck=0, mod=-20.0)
    assert evaluate_h2(not_h2).verdict == "not supported"
    assert evaluate_h2({}).verdict == "not run"
    some = {k: v for k, v in _cells().items() if k[2] != "RM Regularisation"}
    assert evaluate_h2(some).verdict == "supported (incomplete)"


@pytest.mark.reproduction
def test_hypotheses_hold_on_the_papers_archive():
    path = reference_file("paper_learning_curves.json")

    archive = {k: v.to_dict() for k, v in load_archive(path).items()}
    assert evaluate_h1(archive).verdict == "supported"
    assert evaluate_h2(archive).verdict == "supported"
