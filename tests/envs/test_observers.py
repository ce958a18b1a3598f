"""The explicit step-observer hook of the environments (``observe_steps``)."""

from __future__ import annotations

import threading

import pytest
import torch

from safegbpo.envs import SafeVectorEnv, make_vec, observe_steps


@pytest.fixture()
def env() -> SafeVectorEnv:
    env = make_vec("pendulum", num_envs=2, seed=0, episode_length=3)
    env.reset(seed=0)
    return env


def _zero(env: SafeVectorEnv) -> torch.Tensor:
    return torch.zeros(env.num_envs, env.model.action_dim, dtype=torch.float64)


def test_observer_sees_every_step_with_the_realised_states(env):
    seen = []
    with observe_steps(lambda e, info: seen.append((e, info))) as observer:
        for _ in range(4):  # one truncation (episode length 3) on the third step
            _, _, _, truncated, info = env.step(_zero(env))
            assert seen[-1][1] is info
    assert callable(observer) and len(seen) == 4 and all(e is env for e, _ in seen)
    assert "final_state" in seen[2][1] and "final_state" not in seen[3][1]
    torch.testing.assert_close(seen[3][1]["state"], env.state)
    env.step(_zero(env))
    assert len(seen) == 4  # removed when the block exited


def test_observers_nest_and_are_removed_in_order(env):
    outer, inner = [], []
    with observe_steps(lambda e, i: outer.append(1)):
        env.step(_zero(env))
        with observe_steps(lambda e, i: inner.append(1)):
            env.step(_zero(env))
        env.step(_zero(env))
    assert (len(outer), len(inner)) == (3, 1)


def test_an_observer_error_propagates_and_the_observer_is_removed(env):
    def broken(e, info):
        raise RuntimeError("monitor broke")

    with pytest.raises(RuntimeError, match="monitor broke"), observe_steps(broken):
        env.step(_zero(env))
    env.step(_zero(env))  # no longer observed
    with pytest.raises(ValueError, match="callable"), observe_steps(42):  # type: ignore[arg-type]
        pass


def test_observers_are_local_to_their_context(env):
    """A monitor in one thread does not see the steps of another (contextvars)."""
    seen = []
    other = make_vec("pendulum", num_envs=2, seed=1)
    other.reset(seed=1)
    with observe_steps(lambda e, info: seen.append(e)):
        worker = threading.Thread(target=lambda: other.step(_zero(other)))
        worker.start()
        worker.join()
        env.step(_zero(env))
    assert seen == [env]
