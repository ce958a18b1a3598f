"""Training runner: result files, evaluation grid, determinism, resume after a failure,
refusal of a different config, locking, safeguarded runs; atomic writes."""

from __future__ import annotations

import fcntl
import json
import warnings
from dataclasses import replace

import pytest
import torch

from safegbpo.algorithms import Evaluator
from safegbpo.experiments.config import TrainConfig
from safegbpo.experiments.runner import (
    CHECKPOINT_FILE,
    RESULT_FILE,
    load_policy,
    load_result,
    train,
)
from safegbpo.io import (
    atomic_torch_save,
    atomic_write,
    atomic_write_json,
    read_json,
    remove_stale_temporaries,
    torch_load,
)
from safegbpo.safeguards import (
    BoundaryProjection,
    UncertifiedActionError,
    UncertifiedActionWarning,
)

TINY_HYPER = {
    "shac": {"policy_hidden": [16, 16], "critic_hidden": [16, 16], "len_traj": 8,
             "vf_num_fits": 3},
    "ppo": {"policy_hidden": [16, 16], "critic_hidden": [16, 16], "len_traj": 16,
            "num_fits": 2, "num_batches": 2},
    "sac": {"policy_hidden": [16, 16], "critic_hidden": [16, 16], "batch_size": 16,
            "learning_starts": 8},
}


def tiny(algo: str = "shac", **overrides) -> TrainConfig:
    """A run of a few iterations on 4 pendulums with 2 evaluation episodes."""
    fields = dict(task="pendulum", algo=algo, seed=0, interactions=192, eval_every=64,
                  eval_episodes=2, num_envs=4, hyper=TINY_HYPER[algo])
    fields.update(overrides)
    return TrainConfig(**fields)


def test_result_files_and_their_content(tmp_path):
    result = train(tiny(), tmp_path, progress=False)
    assert result == read_json(tmp_path / RESULT_FILE) == load_result(tmp_path)
    assert result["status"] == "finished" and result["interactions"] == 192
    assert [p["step"] for p in result["curve"]] == [64, 128, 192]
    assert all(set(p) == {"step", "reward"} and p["reward"] < 0 for p in result["curve"])
    assert result["config"] == tiny().to_dict()
    assert result["safe_set_source"]
    assert (result["interventions"], result["fallbacks"]) == (0, 0)
    assert {"rollout", "update", "evaluation", "checkpoint", "total"} <= set(result["wallclock"])
    phases = sum(v for k, v in result["wallclock"].items() if k != "total")
    assert phases <= result["wallclock"]["total"] + 1e-6
    assert [h["step"] for h in result["history"]] == [64, 128, 192]
    policy = load_policy(tmp_path)
    checkpoint = torch_load(tmp_path / CHECKPOINT_FILE)
    for key, value in checkpoint["algorithm"]["modules"]["policy"].items():
        assert torch.equal(policy.state_dict()[key], value)
    assert not list(tmp_path.glob(".*.tmp"))


def test_evaluation_grid_follows_iteration_boundaries(tmp_path):
    # 32 interactions per SHAC window (8 steps x 4 envs): evaluations at the first window
    # boundary at or past each multiple of 50, and at the end
    result = train(tiny(interactions=150, eval_every=50), tmp_path / "a", progress=False)
    assert [p["step"] for p in result["curve"]] == [64, 128, 160]
    result = train(tiny(interactions=40, eval_every=1000), tmp_path / "b", progress=False)
    assert [p["step"] for p in result["curve"]] == [64]  # only the final evaluation


@pytest.mark.parametrize("algo", ["shac", "ppo", "sac"])
def test_same_config_gives_bitwise_identical_curves(tmp_path, algo):
    a = train(tiny(algo), tmp_path / "a", progress=False)
    b = train(tiny(algo), tmp_path / "b", progress=False)
    assert a["curve"] == b["curve"]
    assert len({p["reward"] for p in a["curve"]}) > 1  # the policy does change
    pa, pb = load_policy(tmp_path / "a"), load_policy(tmp_path / "b")
    for x, y in zip(pa.parameters(), pb.parameters(), strict=True):
        assert torch.equal(x, y)
    other_seed = train(tiny(algo, seed=1), tmp_path / "c", progress=False)
    assert other_seed["curve"] != a["curve"]


@pytest.mark.parametrize("algo", ["shac", "ppo", "sac"])
def test_resume_after_a_crash_reproduces_the_uninterrupted_curve(tmp_path, monkeypatch, algo):
    config = tiny(algo, interactions=256)
    reference = train(config, tmp_path / "reference", progress=False)

    original = Evaluator.__call__
    calls = {"n": 0}

    def crashing(self, policy):
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("simulated crash")
        return original(self, policy)

    monkeypatch.setattr(Evaluator, "__call__", crashing)
    with pytest.raises(RuntimeError, match="simulated crash"):
        train(config, tmp_path / "run", progress=False)
    failed = load_result(tmp_path / "run")
    assert failed["status"] == "failed" and "simulated crash" in failed["error"]
    assert [p["step"] for p in failed["curve"]] == [64, 128]
    monkeypatch.setattr(Evaluator, "__call__", original)
    resumed = train(config, tmp_path / "run", progress=False)
    assert resumed["status"] == "finished"
    assert resumed["curve"] == reference["curve"]
    assert resumed["interactions"] == reference["interactions"]


def test_finished_run_returns_without_work(tmp_path):
    first = train(tiny(), tmp_path, progress=False)
    stamps = {p.name: p.stat().st_mtime_ns for p in tmp_path.iterdir()}
    again = train(tiny(), tmp_path, progress=False)
    assert again == first
    assert {p.name: p.stat().st_mtime_ns for p in tmp_path.iterdir()} == stamps


def test_existing_run_with_another_config_is_refused(tmp_path):
    train(tiny(), tmp_path, progress=False)
    with pytest.raises(ValueError, match=r"different config \(seed: existing 0 vs requested 5"):
        train(tiny(seed=5), tmp_path, progress=False)


def test_a_run_written_before_backends_resumes_only_as_cvxpylayers(tmp_path):
    from safegbpo.experiments.runner import _check_same_config

    legacy = {k: v for k, v in tiny(safeguard="bp").to_dict().items() if k != "backend"}
    _check_same_config(tiny(safeguard="bp", backend="cvxpylayers"), legacy, tmp_path)
    with pytest.raises(ValueError, match="backend: existing 'cvxpylayers' vs requested 'exact'"):
        _check_same_config(tiny(safeguard="bp"), legacy, tmp_path)
    unsafe = {k: v for k, v in tiny().to_dict().items() if k != "backend"}
    _check_same_config(tiny(), unsafe, tmp_path)  # no safeguard: the backend is irrelevant


def test_invalid_config_or_out_fails_before_any_work(tmp_path):
    with pytest.raises(ValueError, match="interactions must be a positive integer"):
        train(tiny(interactions=-1), tmp_path / "never", progress=False)
    assert not (tmp_path / "never").exists()
    file = tmp_path / "file"
    file.write_text("x")
    with pytest.raises(ValueError, match="not a directory"):
        train(tiny(), file, progress=False)


def test_a_run_directory_is_locked(tmp_path):
    tmp_path.mkdir(exist_ok=True)
    with open(tmp_path / ".lock", "a+") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        with pytest.raises(ValueError, match="another process is training"):
            train(tiny(), tmp_path, progress=False)


def test_progress_bar_does_not_change_the_result(tmp_path, capsys):
    quiet = train(tiny(interactions=64), tmp_path / "a", progress=False)
    shown = train(tiny(interactions=64), tmp_path / "b", progress=True)
    assert quiet["curve"] == shown["curve"]
    assert "pendulum shac unsafe" in capsys.readouterr().err


@pytest.mark.parametrize("algo,safeguard,extra", [
    ("shac", "rm", dict(mapping="hyperbolic", regularisation=0.1)),
    ("ppo", "bp", dict(regularisation=0.1)),
    ("sac", "rm", dict(centre="orthogonal", passthrough=True)),
])
def test_safeguarded_runs_count_interventions(tmp_path, algo, safeguard, extra):
    config = tiny(algo, safeguard=safeguard, interactions=32, eval_every=1000, eval_episodes=1,
                  **extra)
    result = train(config, tmp_path, progress=False)
    assert result["status"] == "finished" and len(result["curve"]) == 1
    assert result["safeguard_steps"] == result["interactions"] >= 32
    assert 0 <= result["interventions"] <= result["interactions"]
    assert result["fallbacks"] == 0
    assert result["wallclock"]["safeguard"] > 0
    if safeguard == "rm":
        assert result["interventions"] > 0  # the ray mask moves almost every action


def test_custom_safe_set_file(tmp_path):
    from safegbpo.safesets import get_safe_set

    path = tmp_path / "pendulum.json"
    get_safe_set("pendulum").save(path)
    result = train(tiny(interactions=32, safe_set=path), tmp_path / "run", progress=False)
    default = train(tiny(interactions=32), tmp_path / "default", progress=False)
    assert result["config"]["safe_set"] == str(path)
    assert result["curve"] == default["curve"]  # the same set as the project's


# -- atomic writes -------------------------------------------------------------------------------
def test_atomic_writes_replace_whole_files(tmp_path):
    target = tmp_path / "sub" / "result.json"
    atomic_write_json(target, {"a": 1})
    assert json.loads(target.read_text()) == {"a": 1}
    atomic_write_json(target, {"a": 2})
    assert read_json(target) == {"a": 2}
    atomic_torch_save({"x": torch.arange(3)}, tmp_path / "t.pt")
    assert torch.equal(torch_load(tmp_path / "t.pt")["x"], torch.arange(3))
    assert not list(tmp_path.rglob(".*.tmp"))


def test_interrupted_write_keeps_the_previous_file(tmp_path):
    target = tmp_path / "result.json"
    atomic_write_json(target, {"complete": True})

    def half_then_crash(handle):
        handle.write(b'{"complete": fa')
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(target, half_then_crash)
    assert read_json(target) == {"complete": True}
    assert not list(tmp_path.glob(".*.tmp"))


def test_stale_temporaries_are_removed_and_corrupt_json_is_named(tmp_path):
    stale = tmp_path / ".result.json.abc.tmp"
    stale.write_text("partial")
    (tmp_path / "keep.json").write_text("{}")
    assert remove_stale_temporaries(tmp_path) == [stale]
    assert (tmp_path / "keep.json").exists()
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ValueError, match="bad.json is not valid JSON"):
        read_json(tmp_path / "bad.json")


class NeverCertified(BoundaryProjection):
    """A safeguard whose certification never passes: every step is uncertified (issue 10)."""

    def certify(self, actions, data, rows=None, certificate=None):
        return torch.zeros(actions.shape[0], dtype=torch.bool, device=actions.device)


def test_result_counts_uncertified_steps_and_strict_fails_the_run(tmp_path):
    user = f"{__name__}:NeverCertified"
    config = tiny(safeguard=user, interactions=32, eval_every=1000, eval_episodes=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UncertifiedActionWarning)
        result = train(config, tmp_path / "lenient", progress=False)
    assert result["status"] == "finished"
    assert result["uncertified"] == result["fallbacks"] == result["safeguard_steps"] > 0
    assert result["history"][-1]["uncertified"] == result["uncertified"]
    assert "strict" not in result["config"]  # an execution policy, not the run's identity
    strict = replace(config, strict=True)
    with pytest.raises(UncertifiedActionError):
        train(strict, tmp_path / "strict", progress=False)
    assert load_result(tmp_path / "strict")["status"] == "failed"
