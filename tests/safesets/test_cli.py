"""``safegbpo safe-set compute|verify``: exit codes and JSON output."""

from __future__ import annotations

import json

import pytest
import torch

from safegbpo.cli import main
from safegbpo.safesets import CACHE_ENV_VAR, SafeSet
from safegbpo.sets import Zonotope
from tests.safesets import project_sets, reference_file, session_cache_dir

F64 = torch.float64


@pytest.fixture()
def cache(tmp_path_factory, monkeypatch):
    """The session's sets (computed once) and their cache, visible to the CLI through the
    environment variable."""
    sets = project_sets(tmp_path_factory)
    monkeypatch.setenv(CACHE_ENV_VAR, str(session_cache_dir(tmp_path_factory)))
    return sets


def test_verify_project_set_exits_0_and_writes_json(cache, tmp_path, capsys):
    out = tmp_path / "report.json"
    code = main(["safe-set", "verify", "--task", "pendulum", "--samples", "50", "--seed", "3",
                 "--json", str(out)])
    assert code == 0
    report = json.loads(out.read_text())
    assert report["verdict"] is True and report["num_violations"] == 0
    assert report["seed"] == 3 and report["num_states"] >= 50
    assert report["worst_margin"] <= 1.0 + report["tolerance"]
    text = capsys.readouterr().out
    assert "VERIFIED" in text and "worst containment margin" in text


def test_verify_reports_the_volume_ratio(cache, tmp_path, capsys):
    ref = reference_file("pendulum")
    out = tmp_path / "report.json"
    assert main(["safe-set", "verify", "--task", "pendulum", "--samples", "10",
                 "--reference", str(ref), "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["volume_ratio"] == pytest.approx(
        report["volume"] / SafeSet.load(ref).volume())
    assert report["volume_ratio"] >= 1.0
    assert "volume ratio" in capsys.readouterr().out


def test_verify_without_reference_says_so(cache, tmp_path, capsys):
    out = tmp_path / "report.json"
    assert main(["safe-set", "verify", "--task", "pendulum", "--samples", "10",
                 "--no-reference", "--json", str(out)]) == 0
    assert json.loads(out.read_text())["volume_ratio"] is None
    assert "reference not available" in capsys.readouterr().out


def test_verify_reference_file_exits_0(tmp_path):
    out = tmp_path / "report.json"
    code = main(["safe-set", "verify", "--task", "pendulum", "--safe-set",
                 str(reference_file("pendulum")), "--samples", "50", "--json", str(out)])
    assert code == 0
    assert json.loads(out.read_text())["feasible_excess"][1] > 0  # sticks out of S, still OK


def test_violation_exits_1(tmp_path, capsys):
    box = SafeSet("pendulum", Zonotope.from_box(torch.tensor([-3.1, -8.0], dtype=F64),
                                                torch.tensor([3.1, 8.0], dtype=F64)))
    path = box.save(tmp_path / "box.json")
    out = tmp_path / "report.json"
    code = main(["safe-set", "verify", "--task", "pendulum", "--safe-set", str(path),
                 "--samples", "40", "--no-reference", "--json", str(out)])
    assert code == 1
    report = json.loads(out.read_text())
    assert report["verdict"] is False and report["num_violations"] > 0
    assert "VIOLATED" in capsys.readouterr().out


@pytest.mark.parametrize(("content", "message"), [
    ('{"format": "other/1"}', "missing key"),
    ("not json at all", "not a JSON file"),
])
def test_bad_file_exits_2_with_the_message(tmp_path, capsys, content, message):
    path = tmp_path / "bad.json"
    path.write_text(content)
    code = main(["safe-set", "verify", "--task", "pendulum", "--safe-set", str(path)])
    assert code == 2
    assert message in capsys.readouterr().err


def test_missing_file_and_task_mismatch_exit_2(tmp_path, capsys):
    assert main(["safe-set", "verify", "--task", "pendulum", "--safe-set",
                 str(tmp_path / "absent.json")]) == 2
    quad = reference_file("quadrotor")
    assert main(["safe-set", "verify", "--task", "pendulum", "--safe-set", str(quad)]) == 2
    assert "--task is 'pendulum'" in capsys.readouterr().err


def test_compute_writes_a_verified_set(cache, tmp_path, monkeypatch, capsys):
    """``compute --out`` (the computation is replaced by the cached set to stay fast; the
    computation itself is tested in test_rci.py)."""
    import safegbpo.safesets.rci as rci

    cached = cache["pendulum"]
    monkeypatch.setattr(rci, "compute_rci", lambda task, verbose=False: cached)
    out = tmp_path / "p.json"
    report = tmp_path / "r.json"
    code = main(["safe-set", "compute", "--task", "pendulum", "--out", str(out),
                 "--samples", "30", "--json", str(report)])
    assert code == 0
    assert SafeSet.load(out).volume() == pytest.approx(cached.volume())
    assert json.loads(report.read_text())["verdict"] is True
    assert "saved to" in capsys.readouterr().out
