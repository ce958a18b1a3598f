"""The audit API, ``safegbpo audit`` and ``python -m spec``."""

from __future__ import annotations

import json

import broken_safeguards
import pytest

from safegbpo.cli import main as safegbpo_main
from spec.__main__ import main as spec_main
from spec.checks.audit import audit, run_all, spec_exit_code, summarise

BROKEN = broken_safeguards.__name__


def _cli(*args: str) -> list[str]:
    return ["audit", "--task", "pendulum", "--samples", "8", *args]


def test_audit_api_names_the_variant_and_passes_builtin_bp():
    result = audit("pendulum", "bp", samples=8, seed=1)
    assert result.label == "BP" and result.passed
    assert result.samples["states"] == 8 and result.samples["actions"] == 32
    assert [c.check for c in result.checks] == ["P1", "P2", "P3", "P4", "P5"]
    assert json.loads(json.dumps(result.to_dict()))["passed"] is True


def test_audit_rejects_bad_input():
    with pytest.raises(ValueError, match="samples"):
        audit("pendulum", "bp", samples=0)
    with pytest.raises(ValueError, match="required"):
        audit("pendulum", "bp", required=["P9"])
    with pytest.raises(ValueError, match="unknown task"):
        audit("cartpole", "bp")


def test_cli_exit_codes(tmp_path, capsys):
    out = tmp_path / "audit.json"
    assert safegbpo_main(_cli("--safeguard", "bp", "--json", str(out))) == 0
    doc = json.loads(out.read_text())
    assert doc["format"] == "safegbpo-audit/1" and doc["audit"]["passed"] is True
    assert doc["metadata"]["packages"]["torch"]
    printed = capsys.readouterr().out
    assert "P1" in printed and "PASSED" in printed
    # P3 fails for boundary projection (Lemma 1): requiring it fails the audit
    assert safegbpo_main(_cli("--safeguard", "bp", "--require", "P3")) == 1
    assert safegbpo_main(_cli("--safeguard", f"{BROKEN}:BoxClip")) == 1
    assert "FAILED" in capsys.readouterr().out
    # bad input: a ValueError, exit code 2 with the reason
    assert safegbpo_main(_cli("--safeguard", "bp", "--centre", "orthogonal")) == 2
    assert "centre" in capsys.readouterr().err


def test_cli_forwards_ray_mask_options(tmp_path):
    out = tmp_path / "audit.json"
    assert safegbpo_main(_cli("--safeguard", "rm", "--mapping", "hyperbolic",
                              "--json", str(out))) == 0
    doc = json.loads(out.read_text())["audit"]
    assert doc["label"] == "RM Hyperbolic" and doc["options"] == {"mapping": "hyperbolic"}


def test_python_m_spec_writes_the_document(tmp_path):
    out = tmp_path / "spec.json"
    code = spec_main(["--variants", "bp", "--tasks", "pendulum", "--samples", "8",
                      "--no-lemmas", "--quiet", "--json", str(out)])
    doc = json.loads(out.read_text())
    assert doc["format"] == "safegbpo-spec/1"
    assert [a["label"] for a in doc["audits"]] == ["BP"]
    assert code == spec_exit_code(doc) == 0
    assert doc["summary"] == summarise(doc)


def test_spec_exit_code_counts_only_unexpected_verdicts():
    def doc(holds, expected):
        check = {"check": "P3", "title": "", "holds": holds, "expected": expected,
                 "required": False, "measured": {}}
        return {"audits": [{"task": "pendulum", "safeguard": "bp", "label": "BP", "seed": 0,
                            "checks": [check]}], "lemmas": []}
    assert spec_exit_code(doc(False, False)) == 0
    assert spec_exit_code(doc(False, True)) == 1
    assert spec_exit_code(doc(True, None)) == 0


def test_cli_and_spec_forward_the_backend(tmp_path, capsys):
    out = tmp_path / "audit.json"
    assert safegbpo_main(_cli("--safeguard", "bp", "--backend", "cvxpylayers",
                              "--json", str(out))) == 0
    doc = json.loads(out.read_text())["audit"]
    assert doc["label"] == "BP" and doc["options"] == {"backend": "cvxpylayers"}
    with pytest.raises(SystemExit):  # argparse: exit code 2, the valid choices listed
        safegbpo_main(_cli("--safeguard", "bp", "--backend", "scs"))
    assert "invalid choice: 'scs'" in capsys.readouterr().err
    spec_doc = tmp_path / "spec.json"
    assert spec_main(["--variants", "bp", "--tasks", "pendulum", "--samples", "8",
                      "--no-lemmas", "--quiet", "--backend", "cvxpylayers",
                      "--json", str(spec_doc)]) == 0
    written = json.loads(spec_doc.read_text())
    assert written["settings"]["backend"] == "cvxpylayers"
    assert written["audits"][0]["options"] == {"backend": "cvxpylayers"}
    with pytest.raises(ValueError, match="unknown safeguard backend"):
        run_all(variants=["bp"], tasks=["pendulum"], backend="scs", lemmas=False)
