"""TrainConfig and the SPEC §8 presets: defaults, validation, serialisation."""

from __future__ import annotations

import json
import os

import pytest

from safegbpo.algorithms import PPOConfig, SACConfig, SHACConfig
from safegbpo.experiments.config import (
    TrainConfig,
    override_hyper,
    parse_hyper_assignment,
    preset,
)
from safegbpo.tasks import get_task

# SPEC §8 table, written out: (task, algo) -> {field: value}
SPEC_TABLE = {
    ("pendulum", "shac"): dict(policy_hidden=(128, 128), policy_lr=4e-4,
                               critic_hidden=(128, 128, 128), critic_lr=2e-3, len_traj=64,
                               polyak=0.4, td_weight=0.95, vf_num_fits=50, vf_fit_num_batches=1),
    ("pendulum", "ppo"): dict(policy_hidden=(256,) * 4, policy_lr=3e-4, critic_hidden=(200, 200),
                              critic_lr=2e-3, len_traj=1700, clip_coef=0.2, ent_coef=0.09,
                              num_batches=45, num_fits=32),
    ("pendulum", "sac"): dict(policy_hidden=(173,) * 4, policy_lr=2e-3, critic_hidden=(135,) * 4,
                              critic_lr=2e-3, buffer_size=60000, polyak=0.673, learning_starts=64,
                              policy_freq=6, target_freq=7),
    ("quadrotor", "shac"): dict(policy_hidden=(128, 128), policy_lr=2e-3,
                                critic_hidden=(120,) * 3, critic_lr=4e-3, len_traj=43,
                                polyak=0.22, td_weight=0.93, vf_num_fits=24,
                                vf_fit_num_batches=1),
    ("quadrotor", "ppo"): dict(policy_hidden=(128,) * 3, policy_lr=1e-4, critic_hidden=(128,) * 4,
                               critic_lr=3e-3, len_traj=1400, clip_coef=0.29, ent_coef=0.06,
                               num_batches=30, num_fits=30),
    ("quadrotor", "sac"): dict(policy_hidden=(359,) * 4, policy_lr=1e-3, critic_hidden=(977,) * 3,
                               critic_lr=5e-4, buffer_size=45000, polyak=0.323,
                               learning_starts=5000, policy_freq=10, target_freq=2),
    # SPEC §10 (energy system)
    ("energy", "shac"): dict(policy_hidden=(512,) * 3, policy_lr=1e-6, critic_hidden=(512,) * 3,
                             critic_lr=2e-6, len_traj=550, polyak=0.7, td_weight=0.93,
                             vf_num_fits=50, vf_fit_num_batches=100),
    ("energy", "ppo"): dict(policy_hidden=(256,) * 3, policy_lr=5e-5, critic_hidden=(256,) * 4,
                            critic_lr=6e-4, len_traj=2880, clip_coef=0.32, ent_coef=0.065,
                            num_batches=30, num_fits=30),
    ("energy", "sac"): dict(policy_hidden=(838,) * 2, policy_lr=1e-5, critic_hidden=(937,) * 3,
                            critic_lr=2.5e-4, buffer_size=300000, polyak=0.3,
                            learning_starts=6000, policy_freq=1, target_freq=1),
}
NUM_ENVS = {"pendulum": 8, "quadrotor": 16, "energy": 8}


@pytest.mark.parametrize("key", sorted(SPEC_TABLE))
def test_presets_are_the_spec_table(key):
    hyper = preset(*key)
    assert type(hyper) is {"shac": SHACConfig, "ppo": PPOConfig, "sac": SACConfig}[key[1]]
    for name, value in SPEC_TABLE[key].items():
        assert getattr(hyper, name) == value, (key, name)
    hyper.validate()
    assert hyper.log_std_init == -1.0 and hyper.gamma == 0.99
    task, algo = key
    assert preset(task, algo) == hyper  # the registry entry's preset, reproducibly built
    assert dict(get_task(task).presets[algo]) == SPEC_TABLE[key]


def test_evaluation_grid_and_budgets_of_the_paper():
    budgets = {task: get_task(task).budget for task in NUM_ENVS}
    assert budgets == {"pendulum": 100_000, "quadrotor": 200_000, "energy": 1_000_000}
    for task, n in NUM_ENVS.items():
        eval_every = get_task(task).eval_every
        assert get_task(task).num_envs == n
        shac = preset(task, "shac")
        assert eval_every["shac"] % (shac.len_traj * n) == 0  # whole windows
        assert eval_every["ppo"] == preset(task, "ppo").len_traj * n  # len_traj per env
        assert eval_every["sac"] % n == 0  # whole vector steps
    assert get_task("pendulum").eval_every["shac"] == 2560 == 5 * 64 * 8
    assert get_task("quadrotor").eval_every["sac"] == 5008
    assert [get_task("energy").eval_every[a] for a in ("shac", "ppo", "sac")] == [13200, 23040,
                                                                               10000]


def test_defaults_come_from_the_task_and_algorithm():
    config = TrainConfig(task="quadrotor", algo="ppo")
    assert config.hyper == preset("quadrotor", "ppo")
    assert (config.interactions, config.eval_every) == (200_000, 22_400)
    assert config.num_envs == config.eval_episodes == 16
    assert config.safeguard is None and config.regularisation == 0.0
    assert config.validate() is config


def test_ray_mask_defaults_and_none_spellings():
    rm = TrainConfig(safeguard="rm")
    assert (rm.mapping, rm.centre) == ("linear", "zonotopic")
    assert TrainConfig(safeguard="rm", mapping="hyperbolic").mapping == "hyperbolic"
    assert TrainConfig(safeguard="none").safeguard is None
    bp = TrainConfig(safeguard="bp")
    assert (bp.mapping, bp.centre) == (None, None)


def test_safeguard_options():
    assert TrainConfig().safeguard_options(7) == {}
    assert TrainConfig(safeguard="bp", passthrough=True).safeguard_options(7) == {
        "passthrough": True, "backend": "exact"}
    assert TrainConfig(safeguard="rm", centre="orthogonal",
                       backend="cvxpylayers").safeguard_options(7) == {
        "mapping": "linear", "centre": "orthogonal", "seed": 7, "backend": "cvxpylayers"}
    with pytest.raises(ValueError, match="backend"):
        TrainConfig(backend="scs").validate()


@pytest.mark.parametrize("kwargs,match", [
    (dict(task="cartpole"), "unknown task 'cartpole'"),
    (dict(algo="ddpg"), "unknown algorithm 'ddpg'"),
    (dict(safeguard="projection"), "unknown safeguard 'projection'"),
    (dict(safeguard="bp", centre="orthogonal"), "centre 'orthogonal' only applies to the ray"),
    (dict(mapping="hyperbolic"), "mapping 'hyperbolic' only applies to the ray mask"),
    (dict(safeguard="bp", mapping="linear"), "only applies to the ray mask"),
    (dict(safeguard="rm", mapping="cubic"), "unknown mapping 'cubic'"),
    (dict(safeguard="rm", centre="middle"), "unknown centre 'middle'"),
    (dict(passthrough=True), "passthrough gradient requires a safeguard"),
    (dict(regularisation=0.1), "requires a safeguard"),
    (dict(safeguard="bp", regularisation=-0.1), "regularisation must be"),
    (dict(safeguard="bp", regularisation=float("nan")), "regularisation must be"),
    (dict(interactions=-5), "interactions must be a positive integer"),
    (dict(interactions=0), "interactions must be a positive integer"),
    (dict(eval_every=0), "eval_every must be a positive integer"),
    (dict(eval_episodes=0), "eval_episodes must be a positive integer"),
    (dict(num_envs=2.5), "num_envs must be a positive integer"),
    (dict(seed=-1), "seed must be a non-negative integer"),
    (dict(hyper=PPOConfig()), "hyper must be a SHACConfig"),
    (dict(hyper={"len_traj": 0}), "len_traj must be a positive integer"),
    (dict(device="quantum"), "invalid device"),
])
def test_invalid_configs_raise_naming_the_problem(kwargs, match):
    with pytest.raises(ValueError, match=match):
        TrainConfig(**kwargs).validate()


def test_safe_set_file_is_checked(tmp_path):
    missing = tmp_path / "missing.json"
    with pytest.raises(ValueError, match="does not exist"):
        TrainConfig(safe_set=str(missing)).validate()
    from safegbpo.safesets import get_safe_set

    path = tmp_path / "quadrotor.json"
    get_safe_set("quadrotor").save(path)
    with pytest.raises(ValueError, match="is for task 'quadrotor', not 'pendulum'"):
        TrainConfig(task="pendulum", safe_set=str(path)).validate()
    config = TrainConfig(task="quadrotor", safe_set=path).validate()
    assert config.safe_set == os.path.abspath(path)


def test_hyper_overrides_are_coerced_and_checked():
    config = TrainConfig(hyper={"policy_hidden": "64,32", "policy_lr": "1e-3",
                                "vf_num_fits": 3, "betas": [0.9, 0.999]})
    assert config.hyper.policy_hidden == (64, 32) and config.hyper.policy_lr == 1e-3
    assert config.hyper.betas == (0.9, 0.999)
    assert config.hyper.len_traj == 64  # the rest of the preset is kept
    sac = override_hyper(preset("pendulum", "sac"), {"twin_q": "true", "batch_size": "32"})
    assert sac.twin_q is True and sac.batch_size == 32
    with pytest.raises(ValueError, match=r"unknown hyper-parameter\(s\) \['lr'\]"):
        TrainConfig(hyper={"lr": 1.0})
    with pytest.raises(ValueError, match="expects an integer"):
        override_hyper(preset("pendulum", "shac"), {"len_traj": "many"})
    assert parse_hyper_assignment("policy_lr = 1e-3") == ("policy_lr", "1e-3")
    with pytest.raises(ValueError, match="KEY=VALUE"):
        parse_hyper_assignment("policy_lr")


def test_json_round_trip_and_differences():
    config = TrainConfig(task="pendulum", algo="sac", safeguard="rm", mapping="hyperbolic",
                         regularisation=0.1, seed=3, interactions=5000,
                         hyper={"batch_size": 64})
    restored = TrainConfig.from_dict(json.loads(json.dumps(config.to_dict())))
    assert restored == config
    assert restored.to_dict() == config.to_dict()
    other = TrainConfig(task="pendulum", algo="sac", safeguard="rm", mapping="hyperbolic",
                        regularisation=0.1, seed=4, interactions=5000, hyper={"batch_size": 64})
    assert config.differences(other) == {"seed": (3, 4)}
    with pytest.raises(ValueError, match="unknown TrainConfig field"):
        TrainConfig.from_dict({"task": "pendulum", "colour": "red"})
