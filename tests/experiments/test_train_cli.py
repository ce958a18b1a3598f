"""``safegbpo train``: end to end, ``--seeds`` populations, SIGKILL + restart = uninterrupted run
(one seed and a population), clear errors (exit 2)."""

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
from safegbpo.cli.train import parse_seeds
from safegbpo.io import torch_load

TINY = ["--task", "pendulum", "--algo", "shac", "--num-envs", "4", "--eval-episodes", "2",
        "--episode-length", "40",
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
    (["--seeds", "3-1"], "ascending range"),
    (["--seeds", "0,,1"], "empty item"),
    (["--seeds", "0-2,1"], "duplicate seeds"),
    (["--seeds", "a"], "is not a seed"),
    (["--episode-length", "0"], "episode_length must be a positive integer"),
])
def test_invalid_configurations_exit_2_before_any_work(tmp_path, capsys, extra, message):
    out = tmp_path / "never"
    assert main(["train", *TINY, *extra, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "safegbpo train: error:" in err and message in err
    assert not out.exists()


def test_seeds_are_parsed_as_lists_and_ranges():
    assert parse_seeds("0-9") == list(range(10))
    assert parse_seeds("0,2,5") == [0, 2, 5]
    assert parse_seeds(" 7, 0-2 ") == [7, 0, 1, 2]
    assert parse_seeds("4") == [4]


def test_seeds_train_a_population_into_one_directory_per_seed(tmp_path, capsys):
    out = tmp_path / "population"
    argv = ["train", *TINY, "--interactions", "64", "--eval-every", "32", "--seeds", "0,2",
            "--out", str(out)]
    assert main(argv) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.strip().splitlines()]
    assert [line["seed"] for line in lines] == [0, 2]
    assert [line["out"] for line in lines] == [str(out / "seed-0"), str(out / "seed-2")]
    for seed in (0, 2):
        result = read_result(out / f"seed-{seed}")
        assert result["config"]["seed"] == seed and result["status"] == "finished"
        assert result["population"] == {"seeds": [0, 2], "members": 2}
    single = tmp_path / "single"
    assert main(["train", *TINY, "--interactions", "64", "--eval-every", "32", "--seed", "2",
                 "--out", str(single)]) == 0
    assert read_result(single)["curve"] == read_result(out / "seed-2")["curve"]
    assert main(argv) == 0  # finished: returns the stored results
    assert [json.loads(x) for x in capsys.readouterr().out.strip().splitlines()][-2:] == lines


def _command(out: Path, *seed: str) -> list[str]:
    return [sys.executable, "-m", "safegbpo", "train", *TINY, "--interactions", "1280",
            "--eval-every", "32", *(seed or ("--seed", "1")), "--out", str(out)]


@pytest.mark.parametrize("seeds", [(), ("--seeds", "1-2")])
def test_sigkilled_run_resumes_to_the_uninterrupted_curve(tmp_path, seeds):
    # the uninterrupted reference, in this process
    reference = tmp_path / "reference"
    assert main(_command(reference, *seeds)[3:]) == 0
    runs = ["seed-1", "seed-2"] if seeds else ["."]
    expected = [read_result(reference / run) for run in runs]
    assert all(len(e["curve"]) == 40 for e in expected)

    out = tmp_path / "killed"
    process = subprocess.Popen(_command(out, *seeds), stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, env=os.environ.copy())
    try:
        deadline = time.monotonic() + 300
        while not (out / runs[-1] / "checkpoint.pt").exists():
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
    for run in runs:
        checkpoint = torch_load(out / run / "checkpoint.pt")
        assert 1 <= len(checkpoint["curve"]) < 40
        if (out / run / "result.json").exists():
            assert read_result(out / run)["status"] == "running"

    resumed = subprocess.run(_command(out, *seeds), capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    for run, reference_result in zip(runs, expected, strict=True):
        result = read_result(out / run)
        assert result["status"] == "finished"
        assert result["curve"] == reference_result["curve"]
        assert result["eval_set_curve"] == reference_result["eval_set_curve"]
        assert not list((out / run).glob(".*.tmp"))


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
