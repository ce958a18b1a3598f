"""The CI recipe of ``docs/ci-gating.md`` (``examples/ci/safety-gate.sh``) run on the cart-pole
example: it passes on the example's safe set and safeguard, its JSON says what was audited,
and it fails (exit 1) when the policy requires a certified set."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "examples" / "ci" / "safety-gate.sh"

pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="the recipe is a bash script")


def _run(tmp_path: Path, **env: str) -> subprocess.CompletedProcess:
    bindir = str(Path(sys.executable).parent)  # the safegbpo console script of this venv
    full = {**os.environ, "PATH": bindir + os.pathsep + os.environ.get("PATH", ""),
            "PYTHONPATH": str(ROOT / "examples" / "cartpole"),
            "SAFEGBPO_CACHE_DIR": str(tmp_path / "cache"), "SAFETY_SAMPLES": "16",
            "SAFETY_OUT": str(tmp_path / "safety"), **env}
    return subprocess.run(["bash", str(SCRIPT)], env=full, capture_output=True, text=True,
                          timeout=900, cwd=tmp_path)


def test_gate_passes_on_the_example_and_fails_when_certification_is_required(tmp_path):
    done = _run(tmp_path)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = tmp_path / "safety"
    audit = json.loads((out / "audit.json").read_text())
    assert audit["format"] == "safegbpo-audit/1"
    result = audit["audit"]
    assert result["passed"] is True and result["task"] == "cartpole_task:CARTPOLE"
    assert {c["check"] for c in result["checks"]} >= {"P1", "P2"}
    assert result["safe_set"]["certification"] == "verified by sampling, not certified"
    verify = json.loads((out / "verify.json").read_text())
    assert verify["verdict"] is True and verify["num_violations"] == 0
    assert verify["certification"] == "verified by sampling, not certified"
    saved = json.loads((out / "safe_set.json").read_text())
    assert saved["task"] == "cartpole" and saved["certification"] == verify["certification"]

    strict = _run(tmp_path, SAFETY_REQUIRE_CERTIFIED="1")
    assert strict.returncode == 1
    assert "not certified" in strict.stdout

    unknown = _run(tmp_path, SAFETY_TASK="no_such_module:TASK")
    assert unknown.returncode == 2
