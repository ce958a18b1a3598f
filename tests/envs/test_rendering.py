"""RGB rendering of the tasks (matplotlib Agg)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from safegbpo.envs import make_vec
from safegbpo.envs.rendering import DEFAULT_SIZE, PendulumScene, QuadrotorScene
from safegbpo.safesets import SafeSet
from safegbpo.sets import Zonotope

WHITE = np.array([255, 255, 255], dtype=np.uint8)


def local_safe_set(task: str) -> SafeSet:
    """A box well inside ``S`` (not a certified RCI set: enough for env tests)."""
    half = {"pendulum": [0.5, 1.0], "quadrotor": [0.5, 0.5, 0.1, 0.2, 0.2, 0.3]}[task]
    n = len(half)
    return SafeSet(task=task, state=Zonotope(torch.zeros(n), torch.diag(torch.tensor(half))),
                   action=None, source="test")


def ink(frame: np.ndarray) -> np.ndarray:
    """Mask ``(H, W)`` of the non-background pixels."""
    return np.any(frame != WHITE, axis=-1)


@pytest.mark.parametrize("task", ["pendulum", "quadrotor"])
def test_env_render_shape_dtype_and_not_blank(task):
    env = make_vec(task, 3, seed=0, safe_set=local_safe_set(task), render_mode="rgb_array")
    env.reset()
    frames = env.render()
    assert frames.shape == (3, DEFAULT_SIZE, DEFAULT_SIZE, 3) and frames.dtype == np.uint8
    for frame in frames:
        assert 0.005 < ink(frame).mean() < 0.5
        assert len(np.unique(frame.reshape(-1, 3), axis=0)) > 3
    env.close()
    assert env.closed


def test_pendulum_rod_points_along_theta():
    scene = PendulumScene()
    up, down, right = scene.render(np.array([[0.0, 0.0], [math.pi, 0.0], [math.pi / 2, 0.0]]))
    half = DEFAULT_SIZE // 2
    red = np.array([192, 57, 43])  # the rod's colour

    def rod(frame):
        return np.all(np.abs(frame.astype(int) - red) < 30, axis=-1)

    assert rod(up)[: half - 4].sum() > 50 and rod(up)[half + 4:].sum() == 0
    assert rod(down)[half + 4:].sum() > 50 and rod(down)[: half - 4].sum() == 0
    assert rod(right)[:, half + 4:].sum() > 50 and rod(right)[:, : half - 4].sum() == 0


def test_quadrotor_frame_depends_on_roll_and_goal():
    scene = QuadrotorScene()
    states = np.zeros((3, 6))
    states[1, 2] = 0.25
    goals = np.zeros((3, 2))
    goals[2] = [0.5, 0.3]
    level, rolled, moved_goal = scene.render(states, goals)
    assert not np.array_equal(level, rolled) and not np.array_equal(level, moved_goal)
    # level hover: the frame is mirror-symmetric about the vertical axis through the body
    assert (ink(level) != ink(level)[:, ::-1]).mean() < 0.01
    assert (ink(rolled) != ink(rolled)[:, ::-1]).mean() > 0.01


def test_scene_input_validation():
    with pytest.raises(ValueError, match="shape"):
        PendulumScene().render(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="NaN"):
        PendulumScene().render(np.full((1, 2), np.nan))
    with pytest.raises(ValueError, match="rows"):
        QuadrotorScene().render(np.zeros((2, 6)), np.zeros((1, 2)))
    with pytest.raises(ValueError, match="size"):
        PendulumScene(size=4)
