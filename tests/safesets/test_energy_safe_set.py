"""The energy task's safe sets (SPEC §7, §10): the project's certified RCI set, and the
reference's choice -- the state box -- failing verification."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from safegbpo.cli import main
from safegbpo.safesets import CACHE_ENV_VAR, SafeSet, verify_safe_set
from safegbpo.safesets.rci import certificate_margins, default_config, linear_enclosure
from safegbpo.sets import Zonotope
from safegbpo.tasks import get_model
from tests.safesets import project_set, session_cache_dir

F64 = torch.float64
BOX_VOLUME = 10.0 * 6.0 * 90.0


@pytest.fixture(scope="module")
def safe_set(tmp_path_factory) -> SafeSet:
    return project_set(tmp_path_factory, "energy")


def test_certified_rci_set(safe_set):
    meta = safe_set.metadata
    assert safe_set.task == "energy" and safe_set.action is not None
    assert max(meta["certificate_margins"]) <= 1.0
    assert meta["verification"]["worst_margin"] <= 1.0 + 1e-6
    # independent re-certification (Eq 6 LPs) on the exact (linear) enclosure
    enc = linear_enclosure("energy", 3.0)
    assert enc.num_vertices == 1 and not enc.remainder_radius.any()
    c, G = (a[0] for a in safe_set.state.numpy())
    cu, Gu = (a[0] for a in safe_set.action.numpy())
    assert np.all(certificate_margins(enc, c, G, cu, Gu) <= 1.0)
    # inside S and A
    assert float(safe_set.feasible_excess.max()) <= 1e-7
    assert np.all(np.abs(cu) + np.abs(Gu).sum(axis=1) <= 1.0 + 1e-7)
    # few generators: verification checks every sign vertex (a complete proof, see below)
    assert safe_set.num_generators == default_config("energy").num_directions <= 8
    volume = safe_set.volume()
    assert 0.25 * BOX_VOLUME < volume < BOX_VOLUME


def test_verification_is_complete_for_the_linear_task(safe_set):
    """With ``m <= 8`` the audit covers all ``2^m`` sign vertices of the factor cube; the
    dynamics and the paired backup action are affine in the factor and in ``t_out``, so the
    vertices' successor segments (Eq 6 is exact for one noise generator) inside ``S_s`` prove
    invariance of the whole set."""
    report = verify_safe_set(safe_set, num_samples=200, seed=1, reference=None)
    assert report.verdict and report.num_violations == 0
    assert report.num_states >= 200 + 2**safe_set.num_generators
    assert report.num_backup_failures == 0 and report.num_simulation_violations == 0
    assert report.state_box_fraction == pytest.approx(safe_set.volume() / BOX_VOLUME)


def test_rci_by_simulation_with_random_outside_temperatures(safe_set):
    """Independent of every LP: states of S_s, their backup actions, random t_out in W ->
    successors stay in S_s and S (membership by the factor LP, Eq 5)."""
    model = get_model("energy")
    gen = torch.Generator().manual_seed(0)
    c, G = safe_set.state.center[0], safe_set.state.generators[0]
    m = G.shape[1]
    b = 2 * torch.rand(400, m, generator=gen, dtype=F64) - 1
    b[:64] = torch.sign(b[:64])  # vertices
    states = c + b @ G.T
    actions = safe_set.backup_action(states)
    t_out = -10.0 + 50.0 * torch.rand(400, 1, generator=gen, dtype=F64)
    t_out[:32] = -10.0
    t_out[32:64] = 40.0
    nxt = model.dynamics(states, actions, t_out)
    assert bool(safe_set.contains(nxt, tol=1e-7).all())
    low, high = model.state_bounds()
    assert bool(((nxt >= low - 1e-9) & (nxt <= high + 1e-9)).all())


def test_state_box_is_not_invariant(tmp_path, capsys):
    """The reference's safe set (the state box S) fails: from t_in at its bounds no action keeps
    t_in' in [18, 24] (the action does not enter t_in')."""
    box = tmp_path / "box.json"
    assert main(["safe-set", "box", "--task", "energy", "--out", str(box)]) == 0
    loaded = SafeSet.load(box)
    assert loaded.action is None and loaded.volume() == pytest.approx(BOX_VOLUME)
    report_path = tmp_path / "report.json"
    code = main(["safe-set", "verify", "--task", "energy", "--safe-set", str(box), "--samples",
                 "50", "--json", str(report_path)])
    assert code == 1
    report = json.loads(report_path.read_text())
    assert report["verdict"] is False and report["num_violations"] > 0
    states = [v["state"] for v in report["violations"]]
    assert [0.0, 24.0, 100.0] in states or [10.0, 24.0, 100.0] in states
    reasons = " ".join(v["reason"] for v in report["violations"])
    assert "no action in A keeps the successor set inside S" in reasons
    assert "t_in' spans" in reasons and "whatever the action" in reasons
    out = capsys.readouterr().out
    assert "VIOLATED" in out and "violation at state (soc=" in out


def test_verify_names_the_coordinate_no_action_can_keep_in_s():
    """A hand-made set near t_in = 24 with a hot floor: t_in' leaves S whatever the action, and
    every violation says so (unit check of the diagnostic)."""
    corner = SafeSet(task="energy",
                     state=Zonotope(torch.tensor([5.0, 23.9, 90.0]),
                                    torch.diag(torch.tensor([1.0, 0.05, 5.0]))),
                     action=None, source="corner")
    report = verify_safe_set(corner, num_samples=20, reference=None)
    assert not report.verdict
    assert all("t_in' spans" in v["reason"] for v in report.violations)


def test_cli_verify_project_set_exits_0(safe_set, tmp_path_factory, monkeypatch, tmp_path):
    monkeypatch.setenv(CACHE_ENV_VAR, str(session_cache_dir(tmp_path_factory)))
    out = tmp_path / "r.json"
    assert main(["safe-set", "verify", "--task", "energy", "--samples", "30", "--json",
                 str(out)]) == 0
    assert json.loads(out.read_text())["verdict"] is True
