"""The energy task in the experiment layer: presets, profiles in configs and run ids, the grids,
the train CLI and tiny end-to-end runs of SHAC (unsafe and safeguarded), PPO and SAC."""

from __future__ import annotations

import json

import pytest

from safegbpo.cli import main
from safegbpo.experiments.config import TrainConfig, preset
from safegbpo.experiments.grid import RunSpec, expand, load_grid
from safegbpo.experiments.profiles import get_profile
from safegbpo.experiments.reproduce import _describe_profiles, _resolve_profiles
from safegbpo.experiments.runner import train
from safegbpo.safesets import CACHE_ENV_VAR
from safegbpo.tasks.energy_profiles import (
    EnergyProfiles,
    generate_profiles,
    reference_profiles_path,
)
from tests.safesets import session_cache_dir
from tests.tasks import energy_safe_set

TINY = {
    "shac": {"policy_hidden": [16, 16], "critic_hidden": [16, 16], "len_traj": 8,
             "vf_num_fits": 2, "vf_fit_num_batches": 2},
    "ppo": {"policy_hidden": [16, 16], "critic_hidden": [16, 16], "len_traj": 16,
            "num_fits": 2, "num_batches": 2},
    "sac": {"policy_hidden": [16, 16], "critic_hidden": [16, 16], "batch_size": 16,
            "learning_starts": 8, "buffer_size": 1000},
}


@pytest.fixture()
def cache(tmp_path_factory, monkeypatch):
    """The session's certified energy set, visible to runs through the cache variable."""
    energy_safe_set(tmp_path_factory)
    monkeypatch.setenv(CACHE_ENV_VAR, str(session_cache_dir(tmp_path_factory)))


@pytest.fixture(scope="module")
def profile_file(tmp_path_factory):
    return generate_profiles(5).to_csv(tmp_path_factory.mktemp("prof") / "year5.csv")


def test_config_defaults_are_spec_10():
    config = TrainConfig(task="energy", algo="shac").validate()
    assert config.hyper == preset("energy", "shac")
    assert (config.interactions, config.eval_every, config.num_envs) == (1_000_000, 13200, 8)
    assert TrainConfig(task="energy", algo="ppo").eval_every == 23040
    assert TrainConfig(task="energy", algo="sac").eval_every == 10000
    assert config.profiles is None and config.env_options() == {}


def test_profiles_in_the_config(profile_file, tmp_path):
    config = TrainConfig(task="energy", profiles=profile_file).validate()
    assert config.profiles == str(profile_file) and config.env_options() == {
        "profiles": str(profile_file)}
    assert TrainConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match="only apply to the energy task"):
        TrainConfig(task="pendulum", profiles=profile_file).validate()
    with pytest.raises(ValueError, match="does not exist"):
        TrainConfig(task="energy", profiles=tmp_path / "missing.csv").validate()
    arrays = generate_profiles(5).as_array().T
    arrays[2, 10] = -20.0
    cold = EnergyProfiles(*arrays).to_csv(tmp_path / "cold.csv")
    with pytest.raises(ValueError, match=r"W = \[-10, 40\]"):
        TrainConfig(task="energy", profiles=cold).validate()


def test_train_cli_profiles_argument(tmp_path, capsys):
    bad = tmp_path / "bad.csv"
    bad.write_text("hour,load\n0,1\n")
    code = main(["train", "--task", "energy", "--profiles", str(bad), "--out",
                 str(tmp_path / "run")])
    assert code == 2
    assert "missing column" in capsys.readouterr().err
    from safegbpo.experiments.cli import _profiles_path

    assert _profiles_path(None) is None and _profiles_path("x.csv") == "x.csv"
    if reference_profiles_path() is not None:
        assert _profiles_path("reference") == str(reference_profiles_path())


def test_profiles_change_the_energy_run_ids_only(profile_file):
    grid = load_grid("paper")
    own = expand(grid)
    given = expand(grid, profiles=str(profile_file))
    assert len(own) == len(given)
    for a, b in zip(own, given, strict=True):
        assert (a.run_id == b.run_id) == (a.task != "energy")
        if a.task == "energy":
            assert b.profiles == str(profile_file) and b.profiles_sha256
            assert b.train_config_fields()["profiles"] == str(profile_file)
    spec = next(s for s in given if s.task == "energy")
    assert RunSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec
    with pytest.raises(ValueError, match="only apply to the energy task"):
        RunSpec.from_dict({**spec.to_dict(), "task": "pendulum", "run_id": None})


def test_quick_profile_has_energy_with_small_budgets():
    specs = [s for s in expand(get_profile("quick").load_grid()) if s.task == "energy"]
    assert {s.variant for s in specs} == set(load_grid("quick").variants)
    for spec in specs:
        assert spec.algo == "shac" and spec.interactions <= 2 * 8 * spec.hyper["len_traj"]
        assert spec.hyper["len_traj"] < preset("energy", "shac").len_traj
        assert "safeguards-energy" in spec.experiments
    checks = load_grid("quick").checks
    assert "safeguards-energy" in checks["safety"]["experiments"]


def test_reproduction_says_which_profiles(profile_file):
    auto = _resolve_profiles("auto")
    assert auto == (None if reference_profiles_path() is None else str(reference_profiles_path()))
    assert _resolve_profiles("generated") is None and _resolve_profiles(None) is None
    assert _resolve_profiles(profile_file) == str(profile_file.resolve())
    with pytest.raises(FileNotFoundError):
        _resolve_profiles("/nonexistent/profiles.csv")
    assert "generated" in _describe_profiles(None)["source"]
    assert _describe_profiles(str(profile_file))["source"] == f"file {profile_file}"
    if auto is not None:
        assert _describe_profiles(auto)["source"].startswith("reference ")


@pytest.mark.slow
@pytest.mark.parametrize("algo, safeguard", [("shac", None), ("shac", "bp"), ("ppo", None),
                                             ("sac", None)])
def test_tiny_runs_end_to_end(cache, tmp_path, profile_file, algo, safeguard):
    interactions = {"shac": 64, "ppo": 64, "sac": 32}[algo]
    config = TrainConfig(task="energy", algo=algo, safeguard=safeguard, seed=0,
                         interactions=interactions, eval_every=interactions, eval_episodes=2,
                         num_envs=4, hyper=TINY[algo], profiles=profile_file)
    result = train(config, tmp_path, progress=False)
    assert result["status"] == "finished" and result["interactions"] == interactions
    assert result["profiles_source"] == str(profile_file)
    (point,) = result["curve"]
    # one 720-step episode per evaluation env: between -720 * (900 + cost) and 0
    assert -720 * 1000 < point["reward"] < 0
    if safeguard is not None:
        assert result["safeguard_steps"] > 0 and result["fallbacks"] == 0
