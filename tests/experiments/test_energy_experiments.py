"""The energy task in the experiment layer: presets, its env option ``profiles`` in configs and
run ids (the generic ``env_options`` mechanism), the grids, the train CLI, the reproduction's
choice of profiles, and tiny end-to-end runs of SHAC (unsafe and safeguarded), PPO and SAC."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from safegbpo.cli import main
from safegbpo.cli.options import parse_task_key_values
from safegbpo.envs.energy import EnergyEnv
from safegbpo.experiments.config import TrainConfig, preset
from safegbpo.experiments.grid import RunSpec, expand, load_grid
from safegbpo.experiments.profiles import get_profile
from safegbpo.experiments.reproduce import describe_env_options, reproduce, resolve_env_options
from safegbpo.experiments.runner import train
from safegbpo.safeguards.variants import variant_labels
from safegbpo.safesets import CACHE_ENV_VAR
from safegbpo.tasks.energy_profiles import (
    EnergyProfiles,
    generate_profiles,
    reference_profiles_path,
)
from tests.safesets import project_set, session_cache_dir

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
    project_set(tmp_path_factory, "energy")
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
    assert config.env_options == {}  # the registry's defaults: the generated year
    assert TrainConfig(task="energy", env_options={"profiles": None, "start_hour": 7800}
                       ) == config  # defaults are dropped: equal settings, equal configs


def test_profiles_in_the_config(profile_file, tmp_path, monkeypatch):
    config = TrainConfig(task="energy", env_options={"profiles": profile_file}).validate()
    assert config.env_options == {"profiles": str(profile_file)}
    assert TrainConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    monkeypatch.chdir(profile_file.parent)  # relative paths are made absolute
    assert TrainConfig(task="energy", env_options={"profiles": profile_file.name}) == config
    with pytest.raises(ValueError, match="do not apply to task 'pendulum'"):
        TrainConfig(task="pendulum", env_options={"profiles": str(profile_file)}).validate()
    with pytest.raises(ValueError, match="does not exist"):
        TrainConfig(task="energy",
                    env_options={"profiles": tmp_path / "missing.csv"}).validate()
    arrays = generate_profiles(5).as_array().T
    arrays[2, 10] = -20.0
    cold = EnergyProfiles(*arrays).to_csv(tmp_path / "cold.csv")
    with pytest.raises(ValueError, match=r"W = \[-10, 40\]"):
        TrainConfig(task="energy", env_options={"profiles": cold}).validate()
    with pytest.raises(ValueError, match="start_hour"):
        TrainConfig(task="energy", env_options={"start_hour": 9000}).validate()
    shifted = TrainConfig(task="energy", env_options={"start_hour": 0}).validate()
    assert shifted.env_options == {"start_hour": 0}


def test_train_cli_env_option(tmp_path, capsys):
    bad = tmp_path / "bad.csv"
    bad.write_text("hour,load\n0,1\n")
    code = main(["train", "--task", "energy", "--env-option", f"profiles={bad}", "--out",
                 str(tmp_path / "run")])
    assert code == 2
    assert "missing column" in capsys.readouterr().err
    code = main(["train", "--task", "pendulum", "--env-option", "profiles=reference",
                 "--out", str(tmp_path / "run2")])
    assert code == 2
    assert "do not apply to task 'pendulum'" in capsys.readouterr().err
    assert EnergyEnv.resolve_options({"profiles": None}) == {}
    assert EnergyEnv.resolve_options({"profiles": "generated"}) == {}
    assert EnergyEnv.resolve_options({"profiles": "x.csv"})["profiles"].endswith("/x.csv")
    if reference_profiles_path() is not None:
        assert EnergyEnv.resolve_options({"profiles": "reference"}) == {
            "profiles": str(reference_profiles_path())}
    else:
        with pytest.raises(ValueError, match="not present"):
            EnergyEnv.resolve_options({"profiles": "reference"})


def test_profiles_change_the_energy_run_ids_only(profile_file):
    grid = load_grid("paper")
    own = expand(grid)
    options = {"profiles": str(profile_file)}
    given = expand(grid, env_options={"energy": options})
    assert len(own) == len(given)
    for a, b in zip(own, given, strict=True):
        assert (a.run_id == b.run_id) == (a.task != "energy")
        if a.task == "energy":
            assert b.env_options == options and b.env_options_sha256["profiles"]
            assert b.train_config_fields()["env_options"] == options
            assert b.train_config().env_options == options
    spec = next(s for s in given if s.task == "energy")
    assert RunSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec
    with pytest.raises(ValueError, match="do not apply to task 'pendulum'"):
        RunSpec.from_dict({**spec.to_dict(), "task": "pendulum", "run_id": None})
    # the file's content, not its path, identifies the run
    copy = profile_file.parent / "copy.csv"
    copy.write_bytes(profile_file.read_bytes())
    moved = expand(grid, env_options={"energy": {"profiles": str(copy)}})
    assert [s.run_id for s in moved] == [s.run_id for s in given]


def test_quick_profile_has_energy_with_small_budgets():
    specs = [s for s in expand(get_profile("quick").load_grid()) if s.task == "energy"
             and s.algo != "pcrpo"]  # PCRPO: tests/algorithms/test_pcrpo.py
    assert {s.variant for s in specs} == set(variant_labels())
    for spec in specs:
        assert spec.algo == "shac" and spec.interactions <= 2 * 8 * spec.hyper["len_traj"]
        assert spec.hyper["len_traj"] < preset("energy", "shac").len_traj
        assert "safeguards-energy" in spec.experiments
    checks = load_grid("quick").checks
    assert "safeguards-energy" in checks["safety"]["experiments"]
    assert "safeguards-energy" in checks["completed"]["experiments"]


def test_reproduction_says_which_profiles(profile_file):
    """The reproduction's default is the registry's ``reproduce_env_options``: the reference's
    profiles when ../shared is present ('auto'), else the generated year."""
    reference = reference_profiles_path()
    auto = resolve_env_options(["pendulum", "energy"])
    assert auto == {"pendulum": {},
                    "energy": {} if reference is None else {"profiles": str(reference)}}
    generated = resolve_env_options(["energy"], {"energy": {"profiles": "generated"}})
    assert generated == {"energy": {}}
    given = resolve_env_options(["energy"], {"energy": {"profiles": str(profile_file)}})
    assert given == {"energy": {"profiles": str(profile_file.resolve())}}
    with pytest.raises(ValueError, match="does not exist"):
        resolve_env_options(["energy"], {"energy": {"profiles": "/nonexistent/profiles.csv"}})
    with pytest.raises(ValueError, match="does not train"):
        resolve_env_options(["pendulum"], {"energy": {"profiles": "generated"}})
    assert "generated" in describe_env_options(generated)["energy"]["profiles"]["source"]
    assert describe_env_options(given)["energy"]["profiles"]["source"] == \
        f"file {profile_file.resolve()}"
    assert "pendulum" not in describe_env_options(auto)
    if reference is not None:
        assert describe_env_options(auto)["energy"]["profiles"]["source"].startswith(
            "reference ")
    assert parse_task_key_values(["energy.profiles=generated", "energy.start_hour=5"]) == {
        "energy": {"profiles": "generated", "start_hour": 5}}
    with pytest.raises(ValueError, match="TASK.KEY=VALUE"):
        parse_task_key_values(["profiles=generated"])


def recording_train(config, out_dir, *, progress: bool = True):
    """Runner stand-in (importable in the executor's workers): records the env options the run
    was configured with."""
    result = {"status": "finished", "curve": [{"step": config.interactions, "reward": -1.0}],
              "interventions": 0, "fallbacks": 0, "wallclock": {"rollout": 0.01},
              "env_options": dict(config.env_options)}
    (Path(out_dir) / "result.json").write_text(json.dumps(result))
    return result


def test_reproduce_records_and_uses_the_profiles(cache, tmp_path, profile_file):
    grid = tmp_path / "grid.json"
    grid.write_text(json.dumps({
        "format": "safegbpo-grid/1", "name": "mini", "seeds": [0],
        "budgets": {"pendulum": {"interactions": 512, "eval_every": {"shac": 512}},
                    "energy": {"interactions": 768, "eval_every": {"shac": 768}}},
        "experiments": [{"name": "mini", "tables": ["table2"], "tasks": ["pendulum", "energy"],
                         "algos": ["shac"], "variants": ["No Safeguard"]}]}))
    trainer = f"{__name__}:recording_train"
    lines: list[str] = []
    results = tmp_path / "given"
    cells = reproduce("quick", grid=grid, results=results, trainer=trainer, jobs=1,
                      monitor=False, echo=lines.append,
                      env_options={"energy": {"profiles": str(profile_file)}})
    manifest = json.loads((results / "manifest.json").read_text())
    described = manifest["env_options"]["energy"]
    assert described["options"] == {"profiles": str(profile_file)}
    assert described["profiles"]["source"] == f"file {profile_file}"
    assert described["profiles"]["summary"]["hours"] == 8784
    assert "pendulum" not in manifest["env_options"]  # no env options: nothing to say
    assert f"energy profiles: file {profile_file}" in lines
    assert cells["env_options"] == manifest["env_options"]
    records = {r["spec"]["task"]: r for r in
               (json.loads(p.read_text()) for p in (results / "records").glob("*.json"))}
    assert records["energy"]["env_options"] == {"profiles": str(profile_file)}
    assert records["energy"]["spec"]["env_options_sha256"]["profiles"]
    assert records["pendulum"]["env_options"] == {}
    assert f"- energy profiles: file {profile_file}" in (results / "cells.md").read_text()
    # the default: the reference's profiles when ../shared is present, else the generated year
    lines.clear()
    reproduce("quick", grid=grid, results=tmp_path / "auto", trainer=trainer, jobs=1,
              monitor=False, echo=lines.append)
    reference = reference_profiles_path()
    expected = (f"energy profiles: reference {reference}" if reference is not None else
                "energy profiles: generated (seed 0): the project's generated year "
                "(no reference CSV found)")
    assert expected in lines
    auto = {json.loads(p.read_text())["spec"]["task"]: json.loads(p.read_text())
            for p in (tmp_path / "auto" / "records").glob("*.json")}
    assert auto["energy"]["env_options"] == ({} if reference is None
                                             else {"profiles": str(reference)})
    assert auto["pendulum"]["run_id"] == records["pendulum"]["run_id"]
    assert auto["energy"]["run_id"] != records["energy"]["run_id"]


@pytest.mark.slow
@pytest.mark.parametrize("algo, safeguard", [("shac", None), ("shac", "bp"), ("ppo", None),
                                             ("sac", None)])
def test_tiny_runs_end_to_end(cache, tmp_path, profile_file, algo, safeguard):
    interactions = {"shac": 64, "ppo": 64, "sac": 32}[algo]
    config = TrainConfig(task="energy", algo=algo, safeguard=safeguard, seed=0,
                         interactions=interactions, eval_every=interactions, eval_episodes=2,
                         num_envs=4, hyper=TINY[algo], env_options={"profiles": profile_file})
    result = train(config, tmp_path, progress=False)
    assert result["status"] == "finished" and result["interactions"] == interactions
    assert result["data_sources"] == {"profiles": str(profile_file)}
    (point,) = result["curve"]
    # one 720-step episode per evaluation env: between -720 * (900 + cost) and 0
    assert -720 * 1000 < point["reward"] < 0
    if safeguard is not None:
        assert result["safeguard_steps"] > 0 and result["fallbacks"] == 0


# -- seed populations (issue 14) with the energy task's env options ----------------------------
def test_population_env_and_evaluator_use_the_env_options(cache, profile_file):
    from safegbpo.algorithms import Evaluator, population_env

    options = {"profiles": str(profile_file), "start_hour": 100}
    env = population_env("energy", [2, 2], env_options=options)
    evaluator = Evaluator("energy", 2, set_size=1, env_options=options)
    for built in (env, evaluator.env):
        assert built.start_hour == 100
        assert built.data_sources() == {"profiles": str(profile_file)}


@pytest.mark.slow
def test_an_energy_seed_trained_in_a_population_has_the_single_seed_result(cache, tmp_path,
                                                                          profile_file):
    """Energy seeds trained together (one env of P x N rows, one batched safeguard call with the
    configured backend) get the results they get alone; the env options reach the training env
    and the evaluation, and each seed's result records its data sources and its population."""
    from safegbpo.experiments.runner import train_population

    def config(seed: int, **changes):
        fields = dict(task="energy", algo="shac", safeguard="bp", seed=seed, interactions=32,
                      eval_every=16, eval_episodes=1, num_envs=2, episode_length=12,
                      hyper=TINY["shac"],
                      env_options={"profiles": profile_file, "start_hour": 4000})
        return TrainConfig(**{**fields, **changes})

    seeds = [0, 1, 2]
    results = train_population([config(s) for s in seeds],
                               [tmp_path / f"seed-{s}" for s in seeds], progress=False)
    alone = train(config(1), tmp_path / "alone", progress=False)
    member = results[1]
    for key in ("curve", "eval_set_curve", "interventions", "fallbacks", "safeguard_steps",
                "interactions", "iterations"):
        assert member[key] == alone[key], key
    assert member["safeguard_steps"] > 0 and member["fallbacks"] == 0
    for result in results:
        assert result["status"] == "finished"
        assert result["population"] == {"seeds": seeds, "members": 3}
        assert result["data_sources"] == {"profiles": str(profile_file)}
        assert result["config"]["backend"] == "exact"
        assert result["config"]["env_options"] == {"profiles": str(profile_file),
                                                   "start_hour": 4000}
    assert results[0]["curve"] != results[2]["curve"]
    # the start hour reaches the evaluation too: another hour, another curve
    other = train(config(1, env_options={"profiles": profile_file, "start_hour": 100}),
                  tmp_path / "other-hour", progress=False)
    assert other["curve"] != alone["curve"]


def test_population_keys_keep_env_options_and_backends_apart(profile_file, tmp_path):
    from safegbpo.experiments.grid import group_populations

    base = dict(task="energy", algo="shac", variant="BP", variant_fields={"safeguard": "bp"},
                interactions=64, eval_every=32)
    plain = [RunSpec(**base, seed=s) for s in (0, 1)]
    hour = RunSpec(**base, seed=2, env_options={"start_hour": 0})
    cvx = RunSpec(**base, seed=3, backend="cvxpylayers")
    length = RunSpec(**base, seed=4, episode_length=48)
    copy = tmp_path / "copy.csv"
    copy.write_bytes(profile_file.read_bytes())
    digest = {"profiles": "0" * 64}
    files = [RunSpec(**base, seed=5, env_options={"profiles": str(profile_file)},
                     env_options_sha256=digest),
             RunSpec(**base, seed=6, env_options={"profiles": str(copy)},
                     env_options_sha256=digest)]
    groups = group_populations([*plain, hour, cvx, length, *files])
    assert [[s.seed for s in g] for g in groups] == [[0, 1], [2], [3], [4], [5], [6]]
    # same content (same run identity apart from the seed), other path: not one process
    assert {k: v for k, v in files[0].identity().items() if k != "seed"} == \
        {k: v for k, v in files[1].identity().items() if k != "seed"}
    for group in groups:
        configs = [s.train_config() for s in group]
        assert all(set(configs[0].differences(c)) <= {"seed"} for c in configs)
