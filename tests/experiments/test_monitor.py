"""The independent safe-state monitor of the reproduction (a step observer of the envs)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from safegbpo.envs import make_vec
from safegbpo.envs.base import SafeVectorEnv
from safegbpo.experiments.grid import RunSpec
from safegbpo.experiments.monitor import SafetyMonitor, safety_monitor
from safegbpo.sets.containment import gauge_lp
from tests.helpers import reference_file_or_none


def _pendulum_env():
    path = reference_file_or_none("safe_sets", "pendulum.json")
    return make_vec("pendulum", num_envs=4, seed=0,
                    safe_set=str(path) if path is not None else None)


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
