"""Control/noise-affine linearisation (Eq 12) and the next-state set (Eq 13–14)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from safegbpo.envs import Linearisation, make_vec
from safegbpo.safesets import SafeSet
from safegbpo.sets import Zonotope

TASKS = ("pendulum", "quadrotor")


def local_safe_set(task: str) -> SafeSet:
    """A box well inside ``S`` (not a certified RCI set: enough for env tests)."""
    half = {"pendulum": [0.5, 1.0], "quadrotor": [0.5, 0.5, 0.1, 0.2, 0.2, 0.3]}[task]
    n = len(half)
    return SafeSet(task=task, state=Zonotope(torch.zeros(n), torch.diag(torch.tensor(half))),
                   action=None, source="test")


def random_inputs(env, batch: int, generator: torch.Generator, action_scale: float = 2.0):
    """States uniform in ``S``, actions in ``[-scale, scale]^d`` (also outside ``A``), noise
    uniform in ``W``."""
    def uniform(low, high):
        u = torch.rand((batch, low.shape[0]), generator=generator, dtype=torch.float64)
        return low + (high - low) * u

    s = uniform(*env.model.state_bounds())
    d = env.model.action_dim
    a = action_scale * (2 * torch.rand((batch, d), generator=generator, dtype=torch.float64) - 1)
    w = uniform(*env.model.noise_bounds())
    return s, a, w


@pytest.mark.property
@pytest.mark.parametrize("task", TASKS)
@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**31 - 1))
def test_eq12_control_and_noise_affine(task, seed):
    """``f(s, a, w) == f(s, a0, w0) + B (a - a0) + E (w - w0)`` for random s, a, w."""
    env = make_vec(task, 4, seed=0, safe_set=local_safe_set(task))
    s, a, w = random_inputs(env, 32, torch.Generator().manual_seed(seed))
    lin = env.linearise(s)
    assert isinstance(lin, Linearisation)
    a0 = torch.zeros(env.model.action_dim, dtype=torch.float64)
    w0 = torch.zeros(env.model.noise_dim, dtype=torch.float64)
    predicted = (lin.f0 + (lin.B @ (a - a0).unsqueeze(-1)).squeeze(-1)
                 + (lin.E @ (w - w0).unsqueeze(-1)).squeeze(-1))
    torch.testing.assert_close(env.dynamics(s, a, w), predicted, rtol=0, atol=1e-9)


@pytest.mark.parametrize("task", TASKS)
def test_linearise_shapes_and_default_state(task):
    env = make_vec(task, 5, seed=0, safe_set=local_safe_set(task))
    env.reset()
    n, d, n_w = env.model.state_dim, env.model.action_dim, env.model.noise_dim
    f0, B, E = env.linearise()
    assert f0.shape == (5, n) and B.shape == (5, n, d) and E.shape == (5, n, n_w)
    zeros = torch.zeros
    torch.testing.assert_close(
        f0, env.dynamics(env.state, zeros(5, d, dtype=torch.float64),
                         zeros(5, n_w, dtype=torch.float64)), rtol=0, atol=0)
    with pytest.raises(ValueError, match="shape"):
        env.linearise(torch.zeros(5, n + 1))
    with pytest.raises(ValueError, match="NaN"):
        env.linearise(torch.full((2, n), float("nan")))


def test_linearise_is_per_environment_and_matches_per_state_jacrev():
    env = make_vec("quadrotor", 3, seed=0, safe_set=local_safe_set("quadrotor"))
    states = torch.zeros(3, 6, dtype=torch.float64)
    states[:, 2] = torch.tensor([-0.2, 0.0, 0.25])  # different roll -> different B
    states[:, 5] = torch.tensor([0.3, -1.0, 0.0])
    _, B, E = env.linearise(states)
    assert not torch.allclose(B[0], B[2])
    a0, w0 = torch.zeros(2, dtype=torch.float64), torch.zeros(2, dtype=torch.float64)
    for i in range(3):
        Bi, Ei = torch.func.jacrev(env.model.dynamics, argnums=(1, 2))(states[i], a0, w0)
        torch.testing.assert_close(B[i], Bi, rtol=0, atol=1e-15)
        torch.testing.assert_close(E[i], Ei, rtol=0, atol=1e-15)
        # hand-derived: x_dot' = x_dot + dt (g + 6/7 a_T) sin(phi), x' = x + dt x_dot'
        phi, dt = float(states[i, 2]), 0.05
        expected_b = torch.zeros(6, 2, dtype=torch.float64)
        expected_b[3, 0], expected_b[4, 0] = dt * 6 / 7 * math.sin(phi), dt * 6 / 7 * math.cos(phi)
        expected_b[0, 0], expected_b[1, 0] = dt * expected_b[3, 0], dt * expected_b[4, 0]
        expected_b[5, 1] = dt * 55 * math.pi / 12
        expected_b[2, 1] = dt * expected_b[5, 1]
        torch.testing.assert_close(B[i], expected_b, rtol=0, atol=1e-15)


def test_pendulum_linearisation_constants():
    env = make_vec("pendulum", 2, seed=0, safe_set=local_safe_set("pendulum"))
    _, B, E = env.linearise(torch.tensor([[0.3, 1.0], [-2.0, -4.0]], dtype=torch.float64))
    # theta_dot' = theta_dot + dt (... + 90 a + w), theta' = theta + dt theta_dot'
    expected_b = torch.tensor([[0.05**2 * 90], [0.05 * 90]], dtype=torch.float64)
    expected_e = torch.tensor([[0.05**2], [0.05]], dtype=torch.float64)
    for i in range(2):
        torch.testing.assert_close(B[i], expected_b, rtol=0, atol=1e-15)
        torch.testing.assert_close(E[i], expected_e, rtol=0, atol=1e-15)


def test_linearisation_is_differentiable_in_the_state():
    env = make_vec("quadrotor", 2, seed=0, safe_set=local_safe_set("quadrotor"))
    states = torch.full((2, 6), 0.1, dtype=torch.float64, requires_grad=True)
    _, B, _ = env.linearise(states)
    (grad,) = torch.autograd.grad(B[:, 3, 0].sum(), states)  # dt (6/7) sin(phi)
    expected = torch.zeros(2, 6, dtype=torch.float64)
    expected[:, 2] = 0.05 * 6 / 7 * math.cos(0.1)
    torch.testing.assert_close(grad, expected, rtol=0, atol=1e-15)


@pytest.mark.parametrize("task", TASKS)
def test_next_state_set_contains_every_next_state(task):
    """Eq 13–14: ``<f0 + B (a - a0), E G_W>``; the raw next state of any noise lies in it,
    the noise box's corners map onto its generators' corners."""
    env = make_vec(task, 3, seed=0, safe_set=local_safe_set(task))
    env.reset(seed=1)
    d, n_w = env.model.action_dim, env.model.noise_dim
    action = torch.linspace(-0.8, 0.8, 3 * d, dtype=torch.float64).reshape(3, d)
    zset = env.next_state_set(action)
    assert isinstance(zset, Zonotope) and zset.batch_size == 3
    assert zset.generators.shape == (3, env.model.state_dim, n_w)
    torch.testing.assert_close(
        zset.center, env.dynamics(env.state, action, torch.zeros(3, n_w, dtype=torch.float64)))
    gen = torch.Generator().manual_seed(2)
    low, high = env.model.noise_bounds()
    noises = [low + (high - low) * torch.rand((3, n_w), generator=gen, dtype=torch.float64)
              for _ in range(4)]
    corners = [torch.tensor(np.array(c), dtype=torch.float64).expand(3, n_w) * high
               for c in np.array(np.meshgrid(*[[-1.0, 1.0]] * n_w)).reshape(n_w, -1).T]
    points = torch.stack([env.dynamics(env.state, action, w) for w in noises + corners], dim=1)
    assert bool(zset.contains(points).all())
    # a corner of W is a vertex: pushing it further out leaves the set
    outside = env.dynamics(env.state, action, 1.5 * corners[-1])
    assert not bool(zset.contains(outside).any())


@pytest.mark.parametrize("task", TASKS)
def test_affine_linearisation_equals_jacrev(task):
    """SPEC §11: the batched evaluation at a0, a0 + e_j, w0 + e_k equals torch.func.jacrev
    (the oracle) within 1e-12, values and gradients w.r.t. the state, also far outside S."""
    env = make_vec(task, 4, seed=0, safe_set=local_safe_set(task))
    gen = torch.Generator().manual_seed(3)
    s, _, _ = random_inputs(env, 64, gen)
    s = torch.cat([s, 3.0 * s[:8]])  # far outside S as well
    s1 = s.clone().requires_grad_()
    s2 = s.clone().requires_grad_()
    fast = env.linearise(s1)
    slow = env.linearise(s2, method="jacrev")
    weights = [torch.randn(x.shape, generator=gen, dtype=torch.float64) for x in slow]
    for x, y in zip(fast, slow, strict=True):
        torch.testing.assert_close(x, y, rtol=0, atol=1e-12)
    sum((w * x).sum() for w, x in zip(weights, fast, strict=True)).backward()
    sum((w * y).sum() for w, y in zip(weights, slow, strict=True)).backward()
    torch.testing.assert_close(s1.grad, s2.grad, rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="method"):
        env.linearise(s, method="finite-differences")


def test_linearisation_at_the_centre_of_a_non_centred_noise_box():
    """w0 is the centre of W, not 0 (the energy system's W = [-10, 40]): Eq 12 holds with it."""
    env = make_vec("pendulum", 3, seed=0, safe_set=local_safe_set("pendulum"))
    env._noise_low = torch.tensor([-0.05], dtype=torch.float64)
    env._noise_high = torch.tensor([0.25], dtype=torch.float64)
    env._noise_centre = 0.5 * (env._noise_low + env._noise_high)
    s, a, _ = random_inputs(env, 16, torch.Generator().manual_seed(4))
    w = env._noise_low + 0.3 * torch.rand(16, 1, generator=torch.Generator().manual_seed(5),
                                          dtype=torch.float64)
    f0, B, E = env.linearise(s)
    w0 = env._noise_centre
    torch.testing.assert_close(f0, env.dynamics(s, torch.zeros_like(a), w0.expand(16, 1)))
    predicted = f0 + (B @ a.unsqueeze(-1)).squeeze(-1) + (E @ (w - w0).unsqueeze(-1)).squeeze(-1)
    torch.testing.assert_close(env.dynamics(s, a, w), predicted, rtol=0, atol=1e-12)
    assert env.noise_box.center[0].tolist() == pytest.approx([0.1])
