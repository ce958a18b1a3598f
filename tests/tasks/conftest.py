"""A fake task registered for the duration of a test: one registry entry, nothing else."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import ClassVar

import pytest
import torch

from safegbpo.envs import PendulumEnv
from safegbpo.safesets import SafeSet
from safegbpo.sets import Zonotope
from safegbpo.tasks import PendulumModel, TaskSpec, get_task, register_task, unregister_task

FAKE_KEY = "fast-pendulum"


@dataclasses.dataclass(frozen=True)
class FastPendulumModel(PendulumModel):
    """The pendulum with a shorter time step (a 'new task' for the registry tests)."""

    name: str = FAKE_KEY
    dt: float = 0.02


class FastPendulumEnv(PendulumEnv):
    task: ClassVar[str] = FAKE_KEY


def fake_spec() -> TaskSpec:
    base = get_task("pendulum")
    return dataclasses.replace(
        base, key=FAKE_KEY, label="Fast Pendulum", archive_label="Fast Pendulum",
        model=FastPendulumModel(), env=f"{__name__}:FastPendulumEnv", num_envs=3,
        episode_length=7, budget=4096, eval_every={"shac": 1024},
        presets={"shac": {**base.presets["shac"], "len_traj": 8}})


def fake_safe_set() -> SafeSet:
    box = Zonotope.from_box(torch.tensor([-0.5, -1.0], dtype=torch.float64),
                            torch.tensor([0.5, 1.0], dtype=torch.float64))
    return SafeSet(FAKE_KEY, box, None, source="test")


@pytest.fixture()
def fake_task() -> Iterator[TaskSpec]:
    spec = register_task(fake_spec())
    try:
        yield spec
    finally:
        unregister_task(FAKE_KEY)
