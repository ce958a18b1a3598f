"""``safegbpo train``: end to end, SIGKILL + restart = uninterrupted run, clear errors (exit 2)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from safegbpo.cli import main
from safegbpo.io import torch_load

TINY = ["--task", "pendulum", "--algo", "shac", "--num-envs", "4", "--eval-episodes", "2",
        "--hyper", "policy_hidden=16,16", "--hyper", "critic_hidden=16,16",
        "--hyper", "len_traj=8", "--hyper", "vf_num_fits=3", "--no-progress"]


def read_result(out: Path) -> dict:
    return json.loads((out / "result.json").read_text())


def test_train_end_to_end_and_rerun(tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["train", *TINY, "--interactions", "64", "--eval-every", "32", "--seed", "2",
            "--out", str(out)]
    assert main(argv) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    result = read_result(out)
    assert summary["status"] == result["status"] == "finished"
    assert summary["final_reward"] == result["curve"][-1]["reward"]
    assert [p["step"] for p in result["curve"]] == [32, 64]
    assert result["config"]["seed"] == 2 and result["config"]["hyper"]["len_traj"] == 8
    assert (out / "policy.pt").is_file() and (out / "checkpoint.pt").is_file()
    assert main(argv) == 0  # finished: returns the stored result
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1]) == summary
    changed = [a if a != "2" else "3" for a in argv]  # another seed into the same --out
    assert main(changed) == 2
    assert "different config (seed: existing 2 vs requested 3" in capsys.readouterr().err


@pytest.mark.parametrize("extra,message", [
    (["--task", "cartpole"], "unknown task 'cartpole'"),
    (["--interactions", "-100"], "interactions must be a positive integer"),
    (["--safeguard", "bp", "--centre", "orthogonal"], "centre 'orthogonal' only applies to the"),
    (["--mapping", "hyperbolic"], "mapping 'hyperbolic' only applies to the ray mask"),
    (["--safeguard", "bp", "--mapping", "linear"], "only applies to the ray mask"),
    (["--regularisation", "0.1"], "requires a safeguard"),
    (["--algo", "trpo"], "unknown algorithm 'trpo'"),
    (["--hyper", "len_traj"], "--hyper expects KEY=VALUE"),
    (["--hyper", "learning_rate=1"], "unknown hyper-parameter"),
    (["--safe-set", "/nonexistent/set.json"], "does not exist"),
])
def test_invalid_configurations_exit_2_before_any_work(tmp_path, capsys, extra, message):
    out = tmp_path / "never"
    assert main(["train", *TINY, *extra, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "safegbpo train: error:" in err and message in err
    assert not out.exists()


def _command(out: Path) -> list[str]:
    return [sys.executable, "-m", "safegbpo", "train", *TINY, "--interactions", "1280",
            "--eval-every", "32", "--seed", "1", "--out", str(out)]


def test_sigkilled_run_resumes_to_the_uninterrupted_curve(tmp_path):
    # the uninterrupted reference, in this process
    reference = tmp_path / "reference"
    assert main(_command(reference)[3:]) == 0
    expected = read_result(reference)
    assert len(expected["curve"]) == 40

    out = tmp_path / "killed"
    process = subprocess.Popen(_command(out), stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, env=os.environ.copy())
    try:
        deadline = time.monotonic() + 300
        while not (out / "checkpoint.pt").exists():
            if process.poll() is not None:
                pytest.fail(f"training exited early: {process.stderr.read().decode()}")
            if time.monotonic() > deadline:
                pytest.fail("no checkpoint within 300 s")
            time.sleep(0.01)
        process.send_signal(signal.SIGKILL)
    finally:
        process.wait()
        process.stderr.close()
    assert process.returncode == -signal.SIGKILL
    # killed mid-run, possibly between writing the checkpoint and the result
    checkpoint = torch_load(out / "checkpoint.pt")
    assert 1 <= len(checkpoint["curve"]) < 40
    if (out / "result.json").exists():
        assert read_result(out)["status"] == "running"

    resumed = subprocess.run(_command(out), capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    result = read_result(out)
    assert result["status"] == "finished"
    assert result["curve"] == expected["curve"]
    assert not list(out.glob(".*.tmp"))


def test_backend_option_reaches_the_config(tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["train", *TINY, "--safeguard", "bp", "--backend", "cvxpylayers",
            "--interactions", "32", "--eval-every", "32", "--out", str(out)]
    assert main(argv) == 0
    assert read_result(out)["config"]["backend"] == "cvxpylayers"
    # the backend is part of the run's config: resuming with the other one is refused
    assert main([a if a != "cvxpylayers" else "exact" for a in argv]) == 2
    assert "different config (backend: existing 'cvxpylayers' vs requested 'exact'" in \
        capsys.readouterr().err
    with pytest.raises(SystemExit):  # argparse lists the valid choices, exit code 2
        main(["train", *TINY, "--backend", "scs", "--out", str(tmp_path / "never")])
    assert "invalid choice: 'scs'" in capsys.readouterr().err


def test_strict_option_reaches_the_safeguard(tmp_path):
    """``--strict`` (issue 10): the config's ``strict`` builds the safeguard with
    ``strict=True``; an execution policy: recorded when set, absent otherwise (identities of
    existing runs unchanged), never a reason to refuse a resume."""
    from safegbpo.cli import build_parser
    from safegbpo.cli.train import config_from_args

    args = build_parser().parse_args(["train", *TINY, "--safeguard", "bp", "--strict",
                                      "--out", str(tmp_path / "run")])
    config = config_from_args(args)
    assert config.strict is True and config.safeguard_options(0)["strict"] is True
    lenient = config_from_args(build_parser().parse_args(
        ["train", *TINY, "--safeguard", "bp", "--out", str(tmp_path / "run")]))
    assert lenient.strict is False and "strict" not in lenient.safeguard_options(0)
    assert config.to_dict()["strict"] is True and "strict" not in lenient.to_dict()
    assert config.differences(lenient) == {}  # resuming with(out) --strict is allowed
