"""The campaign section of the report: paper -> ours (own sets) -> ours (paper's sets), reasons,
H1/H2 from the records (spec.paper.campaign, spec.paper.reasons)."""

from __future__ import annotations

import json

import pytest

from safegbpo.experiments.grid import RunSpec, file_sha256
from safegbpo.experiments.store import RECORD_FORMAT, ResultsStore
from safegbpo.safeguards.variants import get_variant
from spec.paper.campaign import build_campaign, campaign_lines, coverage
from spec.paper.hypotheses import DECISION_RULES
from spec.paper.reasons import REASON_RULES, UNEXPLAINED, explain, reason_table_lines

VOLUMES = {"pendulum": {"own": 88.0, "paper": 66.0}}


def _spec(variant, seed, *, interactions=100_000, safe_set=None, sha=None):
    return RunSpec(task="pendulum", algo="shac", variant=variant, seed=seed,
                   variant_fields=get_variant(variant).train_fields, interactions=interactions,
                   eval_every=2560, tables=("table2", "table3"), safe_set=safe_set,
                   safe_set_sha256=sha)


def _write(store, spec, rewards):
    store.write_record({"format": RECORD_FORMAT, "run_id": spec.run_id, "spec": spec.to_dict(),
                        "status": "finished",
                        "curve": [{"step": 2560 * (i + 1), "reward": r}
                                  for i, r in enumerate(rewards)]})


@pytest.fixture()
def campaign(tmp_path):
    ref = tmp_path / "reference"
    (ref / "safe_sets").mkdir(parents=True)
    paper_set = ref / "safe_sets" / "pendulum.json"
    paper_set.write_text(json.dumps({"task": "pendulum"}))
    store = ResultsStore(tmp_path / "results")
    # own sets: ten seeds at the paper's budget; unsafe matches the paper (-8.78), BP is far off
    for seed in range(10):
        _write(store, _spec("No Safeguard", seed), [-500.0, -20.0, -8.8, -8.78])
        _write(store, _spec("BP", seed), [-500.0, -100.0, -60.0, -40.0])
    # RM: three seeds of a shorter budget (a miniature): shown, not judged
    for seed in range(3):
        _write(store, _spec("RM", seed, interactions=40960), [-500.0, -30.0, -9.0, -8.5])
        _write(store, _spec("No Safeguard", seed, safe_set=str(paper_set),
                            sha=file_sha256(paper_set)), [-400.0, -10.0, -9.0, -8.7])
    store.prepare_run_dir(_spec("RM Orthogonal", 0))  # in progress: no record yet
    return build_campaign(store.root, reference=ref, volumes=VOLUMES)


def _row(section, variant, quantity):
    return next(r for r in section["rows"] if r["variant"] == variant
                and r["quantity"] == quantity)


def test_complete_cells_get_verdicts_and_others_are_marked_with_what_they_ran(campaign):
    unsafe = _row(campaign, "No Safeguard", "reward")
    assert unsafe["paper"] == pytest.approx(-8.78)
    assert unsafe["own"]["verdict"] == "pass" and unsafe["own"]["ran"] == "10/10 seeds, 100k/100k"
    assert unsafe["own"]["reason"] is None
    bp = _row(campaign, "BP", "reward")
    assert bp["own"]["verdict"] == "fail"
    assert bp["own"]["delta"] == pytest.approx(-40.0 + 8.402)
    assert bp["own"]["relative"] == pytest.approx((-40.0 + 8.402) / 8.402)
    # a complete cell on our set: the budget/seeds rules are silent, the volume rule speaks
    assert bp["own"]["reason"].startswith("safe-set volume: safe state set volume 88")
    rm = _row(campaign, "RM", "reward")
    assert rm["own"]["verdict"] == "n/c" and rm["own"]["ran"] == "3/10 seeds, 41k/100k"
    assert rm["own"]["reason"].startswith("budget not reached: ran 41k of the paper's 100k")
    assert any(a.startswith("fewer seeds: 3 of the paper's 10") for a in rm["own"]["also"])
    paper_sets = _row(campaign, "No Safeguard", "reward")["paper_sets"]
    assert paper_sets["verdict"] == "n/c" and paper_sets["ran"].startswith("3/10 seeds")
    assert _row(campaign, "BP", "reward")["paper_sets"] is None
    assert "pendulum/ppo/No Safeguard" in campaign["not_run"]
    assert ("pendulum/shac/RM Orthogonal (1 seeds of 100k running on the own sets, no record "
            "yet)") in campaign["not_run"]


def test_hypotheses_are_decided_from_the_campaign_cells(campaign):
    h2 = campaign["hypotheses"]["own"]["H2"]
    # part (a) is decided from the SHAC No Safeguard / BP / RM cells (BP impedes SHAC); the
    # modifications are missing, so the verdict is incomplete, not "not run"
    assert h2["verdict"].startswith("supported") and "(incomplete)" in h2["verdict"]
    assert any(r.get("part") == "a" and r["variant"] == "BP" and r["impeded"]
               for r in h2["comparisons"])
    assert h2["rule"] == DECISION_RULES["H2"]
    assert any("RM" in c for c in h2["incomplete_cells"])
    assert campaign["hypotheses"]["own"]["H1"]["verdict"] == "not run"


def test_markdown_states_rules_reasons_and_coverage(campaign):
    md = "\n".join(campaign_lines(campaign))
    assert "ours (own sets)" in md and "ours (paper's sets)" in md
    assert "10/10 seeds, 100k/100k" in md and "3/10 seeds, 41k/100k" in md
    assert "most likely reason" in md and "budget not reached" in md
    assert DECISION_RULES["H1"] in md
    assert "| 1 | runs in progress |" in md
    assert "Not available" in "\n".join(campaign_lines(build_campaign(None)))


def test_reason_rules_fire_on_measured_facts_only():
    base = {"interactions": 100_000, "budget": 100_000, "runs": 10, "paper_seeds": 10,
            "mean_curve": [-100.0, -10.0, -9.0]}
    assert explain("reward", base) == (UNEXPLAINED, [])
    reason, _ = explain("reward", base, archive={"mean_curve": [-20.0, -9.0]})
    assert reason.startswith("initial reward differs: first evaluation: ours -100")
    assert explain("reward", base, volume=1.0, paper_volume=1.05) == (UNEXPLAINED, [])
    noisy = {**base, "mean_curve": [-100.0, -1.0, -0.2, -1.5, -0.3, -1.2, -0.25]}
    assert explain("steps", noisy)[0].startswith("tight band")
    stuck = {**base, "stuck_reasons": ["seed 3: did not finish"]}
    assert explain("stuck", stuck)[0] == "stuck runs: 1 stuck: seed 3: did not finish"
    assert explain("stuck", {**base, "running": [4]})[0].startswith("runs in progress")
    assert len(reason_table_lines()) == len(REASON_RULES) + 2


def test_coverage_text():
    cell = {"runs": 3, "paper_seeds": 10, "interactions": 46080, "budget": 100_000,
            "running": [4], "protocol_differences": ["x"]}
    assert coverage(cell) == "3/10 seeds, 46.1k/100k, 1 running, protocol differs"


def test_campaign_curves_figure_with_and_without_the_archive(campaign, tmp_path):
    from spec.figures import plot_campaign_curves

    cells = campaign["cells"]
    archived = {("pendulum", "shac", "BP"): {"eval_steps": [2560, 5120],
                                             "mean_curve": [-500.0, -8.4]}}
    (path,) = plot_campaign_curves(cells, archived, tmp_path / "with")
    assert path.name == "campaign_curves_pendulum.png" and path.stat().st_size > 0
    assert plot_campaign_curves(cells, {}, tmp_path / "without")[0].is_file()
    assert plot_campaign_curves([], {}, tmp_path / "none") == []
