"""The independent safe-state monitor of the reproduction (a step observer of the envs)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from safegbpo.algorithms import member_rows, population_env
from safegbpo.envs import make_vec
from safegbpo.envs.base import SafeVectorEnv
from safegbpo.experiments.grid import RunSpec
from safegbpo.experiments.monitor import SafetyMonitor, safety_monitor
from safegbpo.sets.containment import gauge_lp
from tests.helpers import reference_file_or_none


def _pendulum_set() -> str | None:
    path = reference_file_or_none("safe_sets", "pendulum.json")
    return str(path) if path is not None else None


def _pendulum_env():
    return make_vec("pendulum", num_envs=4, seed=0, safe_set=_pendulum_set())


def _spec(seed: int = 0) -> RunSpec:
    return RunSpec(task="pendulum", algo="shac", variant="No Safeguard", seed=seed,
                   variant_fields={"safeguard": None}, interactions=1, eval_every=1)


def test_monitor_counts_states_outside_the_safe_set():
    env = make_vec("pendulum", num_envs=4, seed=0)  # the project's set lies inside S
    zonotope = env.safe_set.state
    c = zonotope.center[0]
    G = zonotope.generators[0]
    spec = RunSpec(task="pendulum", algo="shac", variant="BP", seed=0,
                   variant_fields={"safeguard": "bp"}, interactions=1, eval_every=1)
    monitor = SafetyMonitor(spec)
    b = torch.tensor(np.random.default_rng(0).uniform(-1, 1, (5, G.shape[1])))
    inside = c + b @ G.T
    direction = torch.tensor([0.3, -1.0], dtype=G.dtype)
    boundary = c + direction / gauge_lp(G.numpy(), direction.numpy())  # gauge 1: still safe
    outside = c + 1.5 * (boundary - c)
    monitor.observe(env, {"state": torch.cat([inside, boundary[None]])})
    assert monitor.violations == 0 and monitor.states == 6
    monitor.observe(env, {"state": outside[None], "final_state": outside[None]})
    report = monitor.report()
    assert report["violations"] == 1 and report["env_steps"] == 2
    assert report["max_gauge"] == pytest.approx(1.5, rel=1e-6)
    assert report["examples"][0]["gauge"] == pytest.approx(1.5, rel=1e-6)
    # the monitor also requires the box S (exact H-rep test, no LP)
    beyond = torch.tensor([[0.0, 8.5]], dtype=G.dtype)
    monitor.observe(env, {"state": beyond})
    assert monitor.violations == 2


def test_monitor_observes_env_steps_only_inside_the_block(tmp_path):
    env = _pendulum_env()
    original = SafeVectorEnv.step
    spec = RunSpec(task="pendulum", algo="shac", variant="No Safeguard", seed=0,
                   variant_fields={"safeguard": None}, interactions=1, eval_every=1)
    env.reset(seed=0)
    with safety_monitor(spec, tmp_path) as monitor:
        for _ in range(3):
            backup = env.safe_set.backup_action(env.state)  # the set's certified safe action
            env.step(backup)
    assert SafeVectorEnv.step is original  # the class is never patched
    env.step(env.safe_set.backup_action(env.state))  # after the block: not observed
    report = monitor.report()
    assert report["env_steps"] == 3 and report["states"] == 12 and report["violations"] == 0
    assert json.loads((tmp_path / "safety_monitor.json").read_text())["states"] == 12
    # a resumed attempt accumulates
    with safety_monitor(spec, tmp_path) as again:
        env.step(env.safe_set.backup_action(env.state))
    assert again.report()["states"] == 16 and again.report()["attempts"] == 2


def test_population_monitors_attribute_rows_to_their_seed():
    """Training layout (one block per seed) and evaluation layout (two blocks per seed): each
    seed's monitor counts its own rows only, and reports their indices within its rows."""
    training = population_env("pendulum", [2, 2, 2], safe_set=_pendulum_set())
    evaluation = population_env("pendulum", [1, 3, 1, 3], safe_set=_pendulum_set())
    assert [member_rows(training, p, 3) for p in range(3)] == [slice(0, 2), slice(2, 4),
                                                               slice(4, 6)]
    assert [member_rows(evaluation, p, 2) for p in range(2)] == [slice(0, 4), slice(4, 8)]
    c = training.safe_set.state.center[0]
    G = training.safe_set.state.generators[0]
    outside = c + 1.5 * G.sum(dim=1)  # gauge 1.5
    monitors = [SafetyMonitor(_spec(p), member=p, members=3) for p in range(3)]
    states = c.repeat(6, 1)
    states[3] = outside  # the second row of seed 1
    for monitor in monitors:
        monitor.observe(training, {"state": states})
    assert [m.violations for m in monitors] == [0, 1, 0]
    assert [m.states for m in monitors] == [2, 2, 2]
    assert monitors[1].examples[0]["env"] == 1
    pair = [SafetyMonitor(_spec(p), member=p, members=2) for p in range(2)]
    states = c.repeat(8, 1)
    states[4] = outside  # seed 1's paper episode
    for monitor in pair:
        monitor.observe(evaluation, {"state": states})
    assert [(m.violations, m.states) for m in pair] == [(0, 4), (1, 4)]
    with pytest.raises(ValueError, match="cannot attribute"):
        SafetyMonitor(_spec(), member=0, members=2).observe(_pendulum_env(),
                                                            {"state": c.repeat(4, 1)})
    with pytest.raises(ValueError, match="member 3 of a population of 3"):
        SafetyMonitor(_spec(), member=3, members=3)


def test_a_seeds_report_in_a_population_is_its_report_alone(tmp_path):
    """Unsafe random actions in a 3-seed population env (blocks seeded like the seeds' envs
    alone): every seed's monitor report equals the report of the same steps alone."""
    seeds = [5, 6, 7]
    actions = torch.rand(30, 3 * 4, 1, generator=torch.Generator().manual_seed(0),
                         dtype=torch.float64) * 2 - 1
    together = population_env("pendulum", [4] * 3, safe_set=_pendulum_set(), episode_length=10)
    together.reset(seed=seeds)
    with safety_monitor(_spec(5), tmp_path / "5", member=0, members=3) as m0, \
            safety_monitor(_spec(6), tmp_path / "6", member=1, members=3) as m1, \
            safety_monitor(_spec(7), tmp_path / "7", member=2, members=3) as m2:
        for action in actions:
            together.step(action)
    reports = [m.report() for m in (m0, m1, m2)]
    assert sum(r["violations"] for r in reports) > 0  # random torques leave the safe set
    for index, seed in enumerate(seeds):
        alone = population_env("pendulum", [4], safe_set=_pendulum_set(), episode_length=10)
        alone.reset(seed=[seed])
        with safety_monitor(_spec(seed), tmp_path / f"alone-{seed}") as monitor:
            for action in actions:
                alone.step(action[4 * index:4 * (index + 1)])
        expected, got = monitor.report(), reports[index]
        for key in ("env_steps", "states", "violations", "examples", "attempts"):
            assert got[key] == expected[key], key
        assert got["max_gauge"] == pytest.approx(expected["max_gauge"], rel=1e-12)
