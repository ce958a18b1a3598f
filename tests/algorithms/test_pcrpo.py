"""PCRPO (SPEC §12): the projection rule, mode selection, the cost signal (the safety monitor's
membership test), and a seeded, resumable training run through the runner."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from safegbpo.algorithms import (
    PCRPO,
    Evaluator,
    PCRPOConfig,
    PPOConfig,
    get_algorithm,
    merge_population_states,
    split_population_state,
)
from safegbpo.algorithms import pcrpo as pcrpo_module
from safegbpo.algorithms.pcrpo import MODES, combine_gradients, select_mode
from safegbpo.envs import observe_steps
from safegbpo.experiments.config import TrainConfig, preset
from safegbpo.experiments.monitor import SafetyMonitor
from safegbpo.experiments.runner import load_result, train, train_population
from safegbpo.safeguards import make_safeguard
from safegbpo.tasks import get_task
from safegbpo.tasks.registry import PCRPO_CONSTRAINTS
from tests.experiments.test_runner import crash_on_evaluation

from .conftest import make_env
from .test_population import _member as _member_state  # one walker of member state

F64 = torch.float64
TINY = dict(policy_hidden=(8,), critic_hidden=(8,), len_traj=20, num_fits=2, num_batches=2)


# -- the projection rule --------------------------------------------------------------------
def test_projection_of_a_known_conflict():
    g_r = torch.tensor([1.0, 0.0], dtype=F64)
    g_c = torch.tensor([-1.0, 1.0], dtype=F64)
    # g_r - (-1/2) g_c = (0.5, 0.5); g_c - (-1/1) g_r = (0, 1); halves summed
    torch.testing.assert_close(combine_gradients(g_r, g_c),
                               torch.tensor([0.25, 0.75], dtype=F64))


vectors = st.lists(st.floats(-1e3, 1e3, allow_nan=False, allow_subnormal=False),
                   min_size=6, max_size=6)


@pytest.mark.property
@settings(max_examples=200, deadline=None)
@given(a=vectors, b=vectors, x_r=st.floats(0.05, 1.0), x_c=st.floats(0.05, 1.0))
def test_combined_gradient_never_opposes_either_objective(a, b, x_r, x_c):
    g_r, g_c = torch.tensor(a, dtype=F64), torch.tensor(b, dtype=F64)
    g = combine_gradients(g_r, g_c, x_r, x_c)
    dot = float(g_r @ g_c)
    if dot < 0:
        scale = 1e-9 * float(g_r.norm() * g_c.norm() + g_r.norm() ** 2 + g_c.norm() ** 2)
        assert float(g @ g_r) >= -scale and float(g @ g_c) >= -scale
        # each projected part is orthogonal to the other objective's gradient
        projected_r = (g - x_c * (g_c - dot / float(g_r @ g_r) * g_r)) / x_r
        assert abs(float(projected_r @ g_c)) <= scale / x_r + 1e-9
    else:  # no conflict: unchanged weighted sum, bit for bit
        assert torch.equal(g, x_r * g_r + x_c * g_c)


def test_combined_gradient_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="flat gradients"):
        combine_gradients(torch.zeros(3, dtype=F64), torch.zeros(4, dtype=F64))


# -- mode selection -------------------------------------------------------------------------
@pytest.mark.parametrize(("cost", "warmup", "mode"), [
    (0.0, False, "reward"), (0.99, False, "reward"), (1.0, False, "both"),
    (2.0, False, "both"), (3.0, False, "both"), (3.01, False, "cost"),
    (100.0, False, "cost"), (100.0, True, "reward"),
])
def test_mode_follows_the_cost_limit_and_slack(cost, warmup, mode):
    assert select_mode(cost, 2.0, 1.0, -1.0, warmup=warmup) == mode


def test_mode_selection_rejects_nan_and_wrong_slack_signs():
    with pytest.raises(ValueError, match="NaN"):
        select_mode(math.nan, 2.0, 1.0, -1.0)
    with pytest.raises(ValueError, match="h\\+ >= 0 >= h-"):
        select_mode(1.0, 2.0, 1.0, 0.5)


def test_zero_slack_leaves_no_both_mode_except_on_the_limit():
    assert [select_mode(c, 2.0, 0.0, 0.0) for c in (1.9, 2.0, 2.1)] == ["reward", "both", "cost"]


@pytest.mark.parametrize(("field", "value", "match"), [
    ("cost_limit", -1.0, "cost_limit"), ("slack_upper", -0.1, "slack_upper"),
    ("slack_lower", 0.1, "slack_lower"), ("cost", "square", "cost must be one of"),
    ("warmup_iterations", -1, "warmup_iterations"), ("reward_weight", 0.0, "reward_weight"),
    ("cost_limit", math.inf, "cost_limit"), ("num_batches", 0, "num_batches"),
])
def test_invalid_hyper_parameters_are_named(field, value, match):
    with pytest.raises(ValueError, match=match):
        PCRPOConfig(**{field: value}).validate()


# -- registries -----------------------------------------------------------------------------
@pytest.mark.parametrize("task", ["pendulum", "quadrotor", "energy"])
def test_every_task_has_a_pcrpo_preset_built_on_its_ppo_preset(task):
    spec = get_task(task)
    ppo, pcrpo = preset(task, "ppo"), preset(task, "pcrpo")
    assert isinstance(pcrpo, PCRPOConfig) and spec.eval_every["pcrpo"] == spec.eval_every["ppo"]
    for name in ("policy_hidden", "policy_lr", "critic_hidden", "len_traj", "clip_coef",
                 "ent_coef", "num_batches", "num_fits"):
        assert getattr(pcrpo, name) == getattr(ppo, name)
    constraint = PCRPO_CONSTRAINTS[task]
    assert pcrpo.cost_limit == constraint["cost_limit"] == pytest.approx(0.01 * spec.episode_length)
    assert pcrpo.slack_upper == -pcrpo.slack_lower == pcrpo.cost_limit / 2
    assert pcrpo.cost_critic_lr == ppo.critic_lr


def test_pcrpo_is_registered_without_a_safeguard():
    spec = get_algorithm("pcrpo")
    assert spec.safeguarded is False and spec.cls is PCRPO and spec.config is PCRPOConfig
    with pytest.raises(ValueError, match="trains without a safeguard"):
        TrainConfig(task="pendulum", algo="pcrpo", safeguard="bp").validate()
    env = make_env("pendulum", 2)
    with pytest.raises(ValueError, match="without a safeguard"):
        PCRPO(env, PCRPOConfig(**TINY), seeds=[0], env_seeds=[0],
              safeguard=make_safeguard("bp", env))
    with pytest.raises(ValueError, match="regularisation"):
        PCRPO(env, PCRPOConfig(**TINY), seeds=[0], env_seeds=[0], regularisation=0.1)
    with pytest.raises(ValueError, match="PCRPOConfig"):
        PCRPO(env, PPOConfig(), seeds=[0], env_seeds=[0])  # type: ignore[arg-type]


# -- the cost signal ------------------------------------------------------------------------
def _pushed_out(num_envs: int = 4, seeds: tuple[int, ...] = (0,),
                bias: dict[int, float] | None = None, **overrides) -> PCRPO:
    """PCRPO on pendulums (a population of ``seeds``) whose policy of seed ``s`` has the output
    bias ``bias[s]`` (default 3.0: the torque saturates and many states leave S_s)."""
    env = make_env("pendulum", num_envs, members=len(seeds), episode_length=15)
    algo = PCRPO(env, PCRPOConfig(**{**TINY, **overrides}), seeds=list(seeds),
                 env_seeds=[s + 100 for s in seeds])
    with torch.no_grad():
        for p, seed in enumerate(seeds):
            algo.policy.mean_net[-1].bias[p].fill_((bias or {}).get(seed, 3.0))
    return algo


def test_cost_counts_exactly_the_states_the_safety_monitor_counts():
    algo = _pushed_out()
    monitor = SafetyMonitor(spec=None)  # type: ignore[arg-type]  # report() is not used
    with observe_steps(monitor.observe):
        batch = algo.collect()
    assert monitor.violations > 0, "the test needs unsafe states"
    assert int(algo.unsafe_states.sum()) == monitor.violations
    # episodes of 15 steps within 20-step rollouts: one time limit per env
    done = batch["done"]
    assert done.shape == (20, 1, 4) and int(done.sum()) == 4
    assert set(batch["cost"][~done].unique().tolist()) <= {0.0, 1.0}  # indicator
    assert sum(algo.finished_costs[0]) + float(algo.episode_cost.sum()) == monitor.violations


def test_gauge_cost_is_the_excess_gauge():
    algo = _pushed_out(cost="gauge")
    gauges = []
    original = algo.membership.gauges

    def recording(states):
        out = original(states)
        gauges.append(torch.as_tensor(out, dtype=F64))
        return out

    algo.membership.gauges = recording  # type: ignore[method-assign]
    batch = algo.collect()
    expected = torch.clamp(torch.stack(gauges) - 1.0, min=0.0).view(batch["cost"].shape)
    keep = ~batch["done"]
    torch.testing.assert_close(batch["cost"][keep], expected[keep])
    assert float(expected.max()) > 0.0


def test_time_limit_bootstraps_the_cost_critic():
    algo = _pushed_out()
    recorded = []
    step = algo.env.step

    def recording_step(action):
        out = step(action)
        recorded.append(out)
        return out

    algo.env.step = recording_step
    batch = algo.collect()
    t = 14  # the 15th step truncates every env
    assert bool(batch["done"][t].all())
    info = recorded[t][4]
    with torch.no_grad():
        bootstrap = algo.config.gamma * algo.cost_critic(algo.by_member(info["final_obs"]))
    raw = torch.as_tensor(algo.membership.outside(info["final_state"]), dtype=F64)
    torch.testing.assert_close(batch["cost"][t], raw.view(1, -1) + bootstrap)


# -- the update -----------------------------------------------------------------------------
@pytest.mark.parametrize("mode", MODES)
def test_only_the_both_mode_combines_gradients(monkeypatch, mode):
    algo = _pushed_out()
    calls = []

    def spy(g_r, g_c, x_r, x_c):
        calls.append((g_r.shape, x_r, x_c))
        return combine_gradients(g_r, g_c, x_r, x_c)

    monkeypatch.setattr(pcrpo_module, "combine_gradients", spy)
    monkeypatch.setattr(pcrpo_module, "select_mode", lambda *a, **k: mode)
    before = [p.detach().clone() for p in algo.policy.parameters()]
    stats = algo.iterate()
    assert len(calls) == (algo.config.num_fits * algo.config.num_batches if mode == "both"
                          else 0)
    assert all((x_r, x_c) == (0.5, 0.5) for _, x_r, x_c in calls)
    assert algo.summary(0)["pcrpo"]["mode_counts"] == {m: int(m == mode) for m in MODES}
    entry = algo.summary(0)["pcrpo"]["iterations"][0]
    assert entry["mode"] == mode and -1.0 <= entry["cos_mean"] <= 1.0
    assert stats["mode"] == MODES.index(mode)
    assert any(not torch.equal(a, b) for a, b in zip(before, algo.policy.parameters(),
                                                     strict=True))


@pytest.mark.parametrize(("mode", "key", "sign"), [("reward", "advantage", 1.0),
                                                    ("cost", "cost_advantage", -1.0)])
def test_single_modes_step_along_one_surrogate(monkeypatch, mode, key, sign):
    """One mini-batch, plain SGD, no clipping: the policy step is ``-lr`` times the gradient of
    the chosen clipped surrogate (``A_r``, or ``-A_c``) plus the entropy term."""
    algo = _pushed_out(num_fits=1, num_batches=1, max_grad_norm=1e9)
    algo.policy_optimizer = torch.optim.SGD(algo.policy.parameters(), lr=1e-3)
    monkeypatch.setattr(pcrpo_module, "select_mode", lambda *a, **k: mode)
    captured = {}
    original = algo.update_modes

    def capture(flat, chosen):
        captured["flat"] = {k: v.clone() for k, v in flat.items()}
        captured["params"] = [p.detach().clone() for p in algo.policy.parameters()]
        return original(flat, chosen)

    algo.update_modes = capture  # type: ignore[method-assign]
    algo.iterate()
    after = [p.detach().clone() for p in algo.policy.parameters()]
    with torch.no_grad():
        for p, p0 in zip(algo.policy.parameters(), captured["params"], strict=True):
            p.copy_(p0)
    flat = captured["flat"]
    loss = algo.clipped_surrogate(sign * flat[key], algo.log_ratio(flat).exp()) \
        - algo.config.ent_coef * algo.policy.entropy()
    grads = torch.autograd.grad(loss.sum(), list(algo.policy.parameters()))
    for p0, g, p1 in zip(captured["params"], grads, after, strict=True):
        torch.testing.assert_close(p1, p0 - 1e-3 * g)  # one mini-batch: the order is a mean's
    assert any(not torch.equal(p0, p1) for p0, p1 in zip(captured["params"], after,
                                                          strict=True))


# -- populations ----------------------------------------------------------------------------
# seed 3 saturates the torque (cost-only), seed 7 is mildly pushed, seed 5 is centred
BIASES = {3: 3.0, 7: 0.6, 5: 0.0}


def _population(seeds: tuple[int, ...], iterations: int = 3, **overrides) -> PCRPO:
    algo = _pushed_out(3, seeds=seeds, bias=BIASES, **overrides)
    for _ in range(iterations):
        algo.iterate()
    return algo


def test_a_pcrpo_member_trains_bitwise_as_alone_with_its_own_modes_and_cosines():
    """Seeds 3, 7, 5 together and each alone: every member's networks, cost critic, optimiser
    states, generators, observations, costs, mode counts and per-iteration log (cosines
    included) are bitwise equal -- the members are in different modes in the same iteration
    (each decides its own from its own J_c) and each member's gradients are combined and
    clipped on their own."""
    config = dict(cost_limit=4.0, slack_upper=1.0, slack_lower=-1.0)
    together = _population((3, 7, 5), **config)
    modes = [together.summary(p)["pcrpo"]["mode_counts"] for p in range(3)]
    assert modes[0] == {"reward": 0, "both": 0, "cost": 3}
    assert len({tuple(m.values()) for m in modes}) >= 2, modes  # not all in one mode
    assert sum(m["both"] for m in modes) > 0, modes  # the projection was exercised
    for index, seed in enumerate((3, 7, 5)):
        alone = _population((seed,), **config)
        left, right = _member_state(together, index), _member_state(alone, 0)
        assert left.keys() == right.keys()
        different = [k for k in left if not torch.equal(left[k], right[k])]
        assert not different, f"seed {seed} differs in {different[:5]}"
        assert together.summary(index) == alone.summary(0)
        assert int(together.unsafe_states[index]) == int(alone.unsafe_states[0])
    cos = [together.summary(p)["pcrpo"]["cos"] for p in range(3)]
    assert all(c["minibatches"] == 3 * 2 * 2 for c in cos)
    assert len({c["mean"] for c in cos}) == 3  # cosines are per seed
    counts = [together.summary(p)["pcrpo"]["unsafe_training_states"] for p in range(3)]
    assert counts[0] > counts[2] and counts == together.unsafe_states.tolist()


def test_projection_is_per_member():
    """The batched rule gives each row what the rule gives that pair alone (bitwise), with
    conflicting and non-conflicting rows (and a zero gradient) in one call."""
    g = torch.Generator().manual_seed(0)
    g_r = torch.randn(5, 40, generator=g, dtype=F64)
    g_c = torch.randn(5, 40, generator=g, dtype=F64)
    g_c[1] = -g_r[1] + 0.1 * g_c[1]  # strong conflict
    g_c[2] = g_r[2] + 0.1 * g_c[2]  # aligned
    g_r[3] = 0.0  # no conflict, zero norm
    together = combine_gradients(g_r, g_c, 0.3, 0.7)
    conflicts = 0
    for row in range(5):
        alone = combine_gradients(g_r[row], g_c[row], 0.3, 0.7)
        assert torch.equal(together[row], alone)
        conflicts += int(float(g_r[row] @ g_c[row]) < 0)
    assert torch.isfinite(together).all() and 0 < conflicts < 5


def test_population_checkpoint_splits_and_resumes_per_member():
    """A population's checkpoint split into seeds and merged back continues exactly like the
    uninterrupted population (the constraint's per-member state included)."""
    algo = _population((3, 5), iterations=2)
    merged = merge_population_states(split_population_state(algo.state_dict()))
    env = copy.deepcopy(algo.env)
    clone = PCRPO(env, algo.config, seeds=[3, 5], env_seeds=None)
    clone.load_state_dict(merged)
    for _ in range(2):
        algo.iterate()
        clone.iterate()
    for index in range(2):
        left, right = _member_state(algo, index), _member_state(clone, index)
        assert all(torch.equal(left[k], right[k]) for k in left)
        assert algo.summary(index) == clone.summary(index)


# -- training through the runner -------------------------------------------------------------
def tiny(**overrides) -> TrainConfig:
    fields = dict(task="pendulum", algo="pcrpo", seed=0, interactions=240, eval_every=80,
                  eval_episodes=2, num_envs=4, episode_length=40,
                  hyper={"policy_hidden": [16, 16], "critic_hidden": [16, 16], "len_traj": 20,
                         "num_fits": 2, "num_batches": 2, "cost_limit": 2.0,
                         "slack_upper": 1.0, "slack_lower": -1.0})
    fields.update(overrides)
    return TrainConfig(**fields)


def test_training_is_seeded_and_records_modes_and_cosines(tmp_path):
    a = train(tiny(), tmp_path / "a", progress=False)
    b = train(tiny(), tmp_path / "b", progress=False)
    assert a["status"] == "finished" and a["curve"] == b["curve"]
    assert a["algorithm_summary"] == b["algorithm_summary"]
    assert len({p["reward"] for p in a["curve"]}) > 1
    summary = a["algorithm_summary"]["pcrpo"]
    assert sum(summary["mode_counts"].values()) == a["iterations"] == 3
    assert summary["cost_limit"] == 2.0 and summary["slack_upper"] == 1.0
    assert summary["cos"]["minibatches"] == 3 * 2 * 2
    assert -1.0 <= summary["cos"]["min"] <= summary["cos"]["mean"] <= summary["cos"]["max"] <= 1
    assert [e["iteration"] for e in summary["iterations"]] == [0, 1, 2]
    assert summary["unsafe_training_states"] == sum(e["unsafe_states"]
                                                    for e in summary["iterations"])
    other = train(tiny(seed=1), tmp_path / "c", progress=False)
    assert other["curve"] != a["curve"]


def test_a_population_writes_each_seeds_own_summary(tmp_path):
    """train_population: every seed's result.json holds its own algorithm_summary (mode counts,
    cosines, unsafe states), equal to the seed's single-seed run's."""
    seeds = (0, 1)
    results = train_population([tiny(seed=s) for s in seeds],
                               [tmp_path / f"pop-{s}" for s in seeds], progress=False)
    for seed, result in zip(seeds, results, strict=True):
        stored = load_result(tmp_path / f"pop-{seed}")
        assert stored is not None and stored["population"]["seeds"] == list(seeds)
        alone = train(tiny(seed=seed), tmp_path / f"alone-{seed}", progress=False)
        assert stored["algorithm_summary"] == result["algorithm_summary"] \
            == alone["algorithm_summary"]
        assert stored["curve"] == alone["curve"]
    assert results[0]["algorithm_summary"] != results[1]["algorithm_summary"]


def test_resume_after_a_crash_reproduces_the_uninterrupted_run(tmp_path, monkeypatch):
    config = tiny(interactions=320)
    reference = train(config, tmp_path / "reference", progress=False)
    original = crash_on_evaluation(monkeypatch, 3)
    with pytest.raises(RuntimeError, match="simulated crash"):
        train(config, tmp_path / "run", progress=False)
    assert load_result(tmp_path / "run")["status"] == "failed"
    monkeypatch.setattr(Evaluator, "__call__", original)
    resumed = train(config, tmp_path / "run", progress=False)
    assert resumed["status"] == "finished"
    assert resumed["curve"] == reference["curve"]
    assert resumed["algorithm_summary"] == reference["algorithm_summary"]


def test_quick_profile_has_one_short_pcrpo_run_per_task():
    from safegbpo.experiments.grid import expand
    from safegbpo.experiments.profiles import get_profile

    grid = get_profile("quick").load_grid()
    specs = [s for s in expand(grid) if s.algo == "pcrpo"]
    assert sorted(s.task for s in specs) == ["energy", "pendulum", "quadrotor"]
    for spec in specs:
        assert spec.variant_fields.get("safeguard") is None and spec.tables == ("pcrpo",)
        per_iteration = spec.hyper["len_traj"] * get_task(spec.task).num_envs
        assert spec.interactions == 2 * per_iteration == 2 * spec.eval_every
    assert "pcrpo" in grid.checks["completed"]["experiments"]


def test_paper_grid_trains_pcrpo_as_one_ten_seed_population_per_task():
    from safegbpo.experiments.grid import expand, group_populations
    from safegbpo.experiments.profiles import get_profile

    specs = [s for s in expand(get_profile("paper").load_grid()) if s.algo == "pcrpo"]
    groups = group_populations(specs)
    assert sorted(g[0].task for g in groups) == ["energy", "pendulum", "quadrotor"]
    assert all([s.seed for s in g] == list(range(10)) for g in groups)
