"""Training runner: result files, evaluation grid and protocol, determinism, resume after a
failure, refusal of a different config, locking, safeguarded runs, seed populations (a seed's
result does not depend on its population; kill-and-resume; regrouping); atomic writes."""

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
    POLICY_FILE,
    RESULT_FILE,
    load_policy,
    load_result,
    train,
    train_population,
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
    """A run of a few iterations on 4 pendulums (episodes of 40 steps) with 2 set episodes."""
    fields = dict(task="pendulum", algo=algo, seed=0, interactions=192, eval_every=64,
                  eval_episodes=2, num_envs=4, episode_length=40, hyper=TINY_HYPER[algo])
    fields.update(overrides)
    return TrainConfig(**fields)


def crash_on_evaluation(monkeypatch, n: int):
    """Make the ``n``-th evaluation raise ``RuntimeError('simulated crash')`` (a kill between
    two checkpoints); returns the original ``Evaluator.__call__`` to restore."""
    original = Evaluator.__call__
    calls = {"n": 0}

    def crashing(self, policy):
        calls["n"] += 1
        if calls["n"] == n:
            raise RuntimeError("simulated crash")
        return original(self, policy)

    monkeypatch.setattr(Evaluator, "__call__", crashing)
    return original



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
    assert [p["step"] for p in result["eval_set_curve"]] == [64, 128, 192]
    assert all(set(p) == {"step", "reward", "std"} for p in result["eval_set_curve"])
    assert result["evaluation"]["paper_seed"] == 42 and result["evaluation"]["set_size"] == 2
    assert result["evaluation"]["episode_length"] == 40
    assert result["population"] == {"seeds": [0], "members": 1}
    policy = load_policy(tmp_path)
    checkpoint = torch_load(tmp_path / CHECKPOINT_FILE)
    for key, value in checkpoint["algorithm"]["modules"]["policy"].items():
        assert torch.equal(policy.state_dict()[key], value)
    assert not list(tmp_path.glob(".*.tmp"))


def test_defaults_are_the_reference_protocol():
    config = TrainConfig(task="pendulum")
    assert (config.episode_length, config.eval_seed, config.eval_episodes) == (3000, 42, 16)
    assert TrainConfig(task="quadrotor", algo="sac").episode_length == 240
    assert TrainConfig(task="quadrotor", algo="sac").hyper.learning_starts == 5000  # vector steps


def test_paper_profile_runs_the_protocol_and_quick_shortens_pendulum_episodes():
    from safegbpo.experiments.grid import expand, load_grid

    paper = expand(load_grid("paper"))
    assert {s.train_config().episode_length for s in paper if s.task == "pendulum"} == {3000}
    assert {s.train_config().eval_episodes for s in paper} == {16}
    assert {s.train_config().eval_seed for s in paper} == {42}
    quick = expand(load_grid("quick"))
    # the smoke runs of every variant shorten the pendulum episodes; the campaign miniature
    # (SHAC unsafe / BP / RM, three seeds) runs the SPEC section 13 protocol
    assert {s.train_config().episode_length for s in quick if s.task == "pendulum"
            and "campaign-pendulum" not in s.experiments} == {200}
    assert {s.train_config().episode_length for s in quick if s.task == "pendulum"
            and "campaign-pendulum" in s.experiments} == {3000}
    assert {s.train_config().episode_length for s in quick if s.task == "quadrotor"} == {240}


def test_curve_is_the_seed_42_episode_and_the_set_curve_its_16_state_companion(tmp_path,
                                                                                monkeypatch):
    """The curve's reward is the paper episode's return; the set curve the mean of the set's."""
    seen = []
    original = Evaluator.__call__

    def recording(self, policy):
        result = original(self, policy)
        seen.append(result)
        return result

    monkeypatch.setattr(Evaluator, "__call__", recording)
    result = train(tiny(interactions=64, eval_episodes=3), tmp_path, progress=False)
    assert len(seen) == 1 and seen[0].episodes.shape == (1, 3)
    assert result["curve"][0]["reward"] == float(seen[0].paper[0])
    assert result["eval_set_curve"][0]["reward"] == float(seen[0].episodes[0].mean())
    assert result["eval_set_curve"][0]["std"] == float(seen[0].episodes[0].std())


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

    original = crash_on_evaluation(monkeypatch, 3)
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


# -- populations ---------------------------------------------------------------------------------
def _seed_dirs(root, seeds):
    return [root / f"seed-{s}" for s in seeds]


@pytest.mark.parametrize("algo,extra", [
    ("shac", {}), ("ppo", {}), ("sac", {}),
    ("shac", dict(safeguard="bp", regularisation=0.1, interactions=64)),
])
def test_a_seed_trained_in_a_population_has_the_single_seed_result(tmp_path, algo, extra):
    seeds = [0, 1, 2]
    results = train_population([tiny(algo, seed=s, **extra) for s in seeds],
                               _seed_dirs(tmp_path / "population", seeds), progress=False)
    alone = train(tiny(algo, seed=1, **extra), tmp_path / "alone", progress=False)
    assert [r["config"]["seed"] for r in results] == seeds
    member = results[1]
    for key in ("curve", "eval_set_curve", "interventions", "fallbacks", "safeguard_steps",
                "interactions", "iterations"):
        assert member[key] == alone[key], key
    assert member["population"] == {"seeds": seeds, "members": 3}
    assert member == load_result(tmp_path / "population" / "seed-1")
    for x, y in zip(load_policy(tmp_path / "population" / "seed-1").parameters(),
                    load_policy(tmp_path / "alone").parameters(), strict=True):
        assert torch.equal(x, y)
    assert results[0]["curve"] != results[2]["curve"]
    if extra:
        assert member["interventions"] > 0


def test_population_resumes_after_a_crash_to_the_uninterrupted_curves(tmp_path, monkeypatch):
    seeds = [3, 4]
    configs = [tiny("sac", seed=s, interactions=256) for s in seeds]
    reference = train_population(configs, _seed_dirs(tmp_path / "reference", seeds),
                                 progress=False)
    original = crash_on_evaluation(monkeypatch, 3)
    dirs = _seed_dirs(tmp_path / "run", seeds)
    with pytest.raises(RuntimeError, match="simulated crash"):
        train_population(configs, dirs, progress=False)
    for out in dirs:  # every seed checkpointed at the same evaluation
        failed = load_result(out)
        assert failed["status"] == "failed" and [p["step"] for p in failed["curve"]] == [64, 128]
    monkeypatch.setattr(Evaluator, "__call__", original)
    resumed = train_population(configs, dirs, progress=False)
    for r, ref in zip(resumed, reference, strict=True):
        assert r["status"] == "finished" and r["curve"] == ref["curve"]
        assert r["eval_set_curve"] == ref["eval_set_curve"]


def test_seeds_at_different_progress_resume_as_separate_groups(tmp_path, monkeypatch):
    """Seed 0 crashed after two evaluations, seed 1 finished, seed 2 never started: one call
    finishes all three, each with its single-seed result."""
    dirs = _seed_dirs(tmp_path, [0, 1, 2])
    original = crash_on_evaluation(monkeypatch, 3)
    with pytest.raises(RuntimeError):
        train(tiny(seed=0), dirs[0], progress=False)
    monkeypatch.setattr(Evaluator, "__call__", original)
    finished = train(tiny(seed=1), dirs[1], progress=False)
    results = train_population([tiny(seed=s) for s in (0, 1, 2)], dirs, progress=False)
    assert results[1] == finished
    for seed in (0, 2):
        reference = train(tiny(seed=seed), tmp_path / f"ref-{seed}", progress=False)
        assert results[seed]["curve"] == reference["curve"]
        assert results[seed]["status"] == "finished"


def test_population_arguments_are_checked_before_any_work(tmp_path):
    with pytest.raises(ValueError, match="differ in more than the seed"):
        train_population([tiny(seed=0), tiny("ppo", seed=1)], _seed_dirs(tmp_path, [0, 1]))
    with pytest.raises(ValueError, match="duplicate seeds"):
        train_population([tiny(seed=0), tiny(seed=0)], _seed_dirs(tmp_path, [0, 1]))
    with pytest.raises(ValueError, match="its own output directory"):
        train_population([tiny(seed=0), tiny(seed=1)], [tmp_path / "x", tmp_path / "x"])
    with pytest.raises(ValueError, match="2 configurations but 1 output"):
        train_population([tiny(seed=0), tiny(seed=1)], [tmp_path / "x"])
    with pytest.raises(ValueError, match="at least one"):
        train_population([], [])
    assert not any(tmp_path.iterdir())


def test_a_run_of_an_older_protocol_is_refused(tmp_path):
    train(tiny(interactions=64), tmp_path, progress=False)
    result = read_json(tmp_path / RESULT_FILE)
    del result["config"]["episode_length"]  # written before the SPEC §13 protocol
    atomic_write_json(tmp_path / RESULT_FILE, result)
    (tmp_path / CHECKPOINT_FILE).unlink()
    with pytest.raises(ValueError, match="older version.*episode_length"):
        train(tiny(interactions=64), tmp_path, progress=False)


def test_policy_files_of_the_previous_format_still_load(tmp_path):
    from safegbpo.algorithms.networks import EnsembleLayerNorm, EnsembleLinear

    train(tiny(interactions=32), tmp_path, progress=False)
    saved = torch_load(tmp_path / POLICY_FILE)
    policy = load_policy(tmp_path)
    single = {"log_std": policy.log_std.detach()[0]}  # nn.Linear / nn.LayerNorm shapes
    for name, module in policy.named_modules():
        if isinstance(module, EnsembleLinear):
            single[f"{name}.weight"] = module.weight.detach()[0].T
            single[f"{name}.bias"] = module.bias.detach()[0, 0]
        elif isinstance(module, EnsembleLayerNorm):
            single[f"{name}.weight"] = module.weight.detach()[0, 0]
            single[f"{name}.bias"] = module.bias.detach()[0, 0]
    atomic_torch_save({**saved, "format": "safegbpo-policy/1", "state_dict": single},
                      tmp_path / "old.pt")
    old = load_policy(tmp_path / "old.pt")
    obs = torch.randn(5, 3, dtype=torch.float64)
    torch.testing.assert_close(old(obs), policy(obs))


@pytest.mark.slow
def test_sac_quadrotor_curve_is_flat_until_80128_interactions(tmp_path):
    """The archived quadrotor SAC curves are flat until 80,128 interactions: learning_starts =
    5000 vector steps x 16 envs of uniform random actions, the first policy step at vector step
    5010 (policy_freq 10) -- the evaluations up to 80,128 all score the initial policy."""
    config = TrainConfig(task="quadrotor", algo="sac", seed=0, interactions=85136,
                         eval_episodes=1,
                         hyper={"policy_hidden": [16, 16], "critic_hidden": [16, 16],
                                "batch_size": 32})
    assert config.eval_every == 5008 and config.hyper.learning_starts == 5000
    result = train(config, tmp_path, progress=False)
    steps = [p["step"] for p in result["curve"]]
    rewards = [p["reward"] for p in result["curve"]]
    assert steps[15:] == [80128, 85136]
    assert len(set(rewards[:16])) == 1, "the policy changed before 80,128 interactions"
    assert rewards[16] != rewards[15], "the policy never changed after learning_starts"


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
