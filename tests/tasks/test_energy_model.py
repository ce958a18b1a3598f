"""The energy model (SPEC §10): constants and registry entry, dynamics, Eq 12, the exact
enclosure, reward, observation, gradients."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from safegbpo.tasks import get_model, get_task
from safegbpo.tasks.energy import EXOGENOUS_COLUMNS, EnergyModel

F64 = torch.float64


@pytest.fixture(scope="module")
def model() -> EnergyModel:
    return get_model("energy")


def uniform(low, high, batch, gen):
    return low + (high - low) * torch.rand((batch, low.shape[0]), generator=gen, dtype=F64)


def exogenous(batch, gen, horizon=None):
    """Random exogenous inputs ``(batch, [horizon,] 4)`` in their natural ranges."""
    shape = (batch, 4) if horizon is None else (batch, horizon, 4)
    u = torch.rand(shape, generator=gen, dtype=F64)
    low = torch.tensor([0.0, 0.0, -10.0, 0.2], dtype=F64)
    high = torch.tensor([1.0, 1.0, 40.0, 0.5], dtype=F64)
    return low + (high - low) * u


# --------------------------------------------------------------------------------------------
# constants (SPEC §10, verbatim)
# --------------------------------------------------------------------------------------------
def test_registered_and_constants(model):
    spec = get_task("energy")
    assert spec.model is model and isinstance(model, EnergyModel)
    assert (spec.label, spec.archive_label) == ("Energy System", "Energy System")
    assert spec.env == "safegbpo.envs.energy:EnergyEnv"
    assert (model.state_dim, model.action_dim, model.noise_dim, model.obs_dim) == (3, 2, 1, 23)
    assert model.dt == 1.0
    assert (model.battery_power, model.heat_pump_power, model.heat_pump_offset) == (2.0, 2.5, 2.5)
    assert (model.h_fh, model.h_out, model.tau, model.c_w_fh, model.cop) == \
        (1.1, 0.26, 240.0, 1.1625, 3.01)
    assert model.c0 == pytest.approx((1.1 + 0.26) / (0.26 * 240))
    assert model.c1 == pytest.approx(1.1 / (0.26 * 240))
    assert model.c2 == pytest.approx(1.1 / 1.1625)
    assert model.c4 == pytest.approx(3.01 / 1.1625)
    assert model.selling_price == 0.08
    # the task's facts that are not physics live in its registry entry
    assert (spec.episode_length, spec.num_envs, spec.env_options["start_hour"]) == (720, 8, 7800)
    assert spec.env_options["profiles"] is None  # the generated year
    assert spec.reproduce_env_options == {"profiles": "auto"}
    assert model.forecast_horizon == 5 and model.angle_indices == ()
    low, high = model.state_bounds()
    assert low.tolist() == [0.0, 18.0, 10.0] and high.tolist() == [10.0, 24.0, 100.0]
    w_low, w_high = model.noise_bounds()
    assert w_low.tolist() == [-10.0] and w_high.tolist() == [40.0]
    a_low, a_high = model.action_bounds()
    assert a_low.tolist() == [-1.0, -1.0] and a_high.tolist() == [1.0, 1.0]
    assert EXOGENOUS_COLUMNS == ("load", "pv", "outside_temperature", "buying_price")
    # every field is a plain value: the safe-set cache key hashes dataclasses.asdict(model)
    assert all(isinstance(v, int | float | str | tuple)
               for v in dataclasses.asdict(model).values())


def test_dynamics_formulas(model):
    state = torch.tensor([[4.0, 20.0, 30.0]], dtype=F64)
    action = torch.tensor([[0.5, -0.25]], dtype=F64)
    t_out = torch.tensor([[3.0]], dtype=F64)
    c0 = (1.1 + 0.26) / (0.26 * 240)
    c1 = 1.1 / (0.26 * 240)
    c2 = 1.1 / 1.1625
    c4 = 3.01 / 1.1625
    expected = [4.0 + 2.0 * 0.5,
                20.0 + (-c0 * 20.0 + c1 * 30.0 + 3.0 / 240.0),
                30.0 + (c2 * 20.0 - c2 * 30.0 + c4 * 2.5 * -0.25)]
    torch.testing.assert_close(model.dynamics(state, action, t_out)[0],
                               torch.tensor(expected, dtype=F64), rtol=0, atol=1e-12)


def test_step_clamps_to_the_box(model):
    state = torch.tensor([[9.5, 23.9, 99.0], [0.5, 18.1, 10.5]], dtype=F64)
    action = torch.tensor([[1.0, 1.0], [-1.0, -1.0]], dtype=F64)
    out = model.step(state, action, torch.tensor([[40.0], [-10.0]], dtype=F64))
    low, high = model.state_bounds()
    assert bool(((out >= low) & (out <= high)).all())
    assert out[0, 0] == 10.0 and out[1, 0] == 0.0


def test_equilibrium_is_a_fixed_point_at_the_centre_of_w(model):
    x_e, u_e = model.equilibrium()
    assert x_e[1] == 21.0 and u_e[0] == 0.0 and -1.0 < float(u_e[1]) < 1.0
    low, high = model.state_bounds()
    assert bool(((x_e > low) & (x_e < high)).all())
    w0 = torch.tensor([[15.0]], dtype=F64)
    torch.testing.assert_close(model.dynamics(x_e[None], u_e[None], w0)[0], x_e,
                               rtol=0, atol=1e-12)


# --------------------------------------------------------------------------------------------
# Eq 12: control- and noise-affine, exactly (linear dynamics)
# --------------------------------------------------------------------------------------------
@pytest.mark.property
@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**31 - 1))
def test_eq12_exact_at_the_centre_of_w(seed):
    """``f(s, a, w) == f(s, a0, w0) + B (a - a0) + E (w - w0)`` with ``w0 = 15`` (the centre of
    ``W``), for states in ``S``, actions inside and outside ``A`` and ``w`` in ``W``."""
    model = get_model("energy")
    gen = torch.Generator().manual_seed(seed)
    s = uniform(*model.state_bounds(), 16, gen)
    a = 3.0 * (2 * torch.rand((16, 2), generator=gen, dtype=F64) - 1)
    w = uniform(*model.noise_bounds(), 16, gen)
    a0 = torch.zeros(2, dtype=F64)
    w0 = torch.full((1,), 15.0, dtype=F64)

    def f(x, u, v):
        return model.dynamics(x[None], u[None], v[None])[0]

    B, E = torch.func.vmap(torch.func.jacrev(f, argnums=(1, 2)), in_dims=(0, None, None))(
        s, a0, w0)
    f0 = model.dynamics(s, a0.expand(16, -1), w0.expand(16, -1))
    predicted = f0 + (B @ (a - a0)[..., None])[..., 0] + (E @ (w - w0)[..., None])[..., 0]
    torch.testing.assert_close(model.dynamics(s, a, w), predicted, rtol=0, atol=1e-10)
    # B and E are constant: the disturbance enters t_in' only
    expected_B = torch.tensor([[2.0, 0.0], [0.0, 0.0], [0.0, model.c4 * 2.5]], dtype=F64)
    torch.testing.assert_close(B, expected_B.expand(16, -1, -1), rtol=0, atol=1e-14)
    expected_E = torch.tensor([[0.0], [1.0 / 240.0], [0.0]], dtype=F64)
    torch.testing.assert_close(E, expected_E.expand(16, -1, -1), rtol=0, atol=1e-14)


def test_enclosure_is_exact_and_linearised_at_the_centre_of_w(model):
    """The affine enclosure (SPEC §7 for linear dynamics): one vertex, no remainder, the
    Jacobians at the equilibrium with ``w0 = 15``; the bound is measured from ``x_e``."""
    enc = model.linear_enclosure(3.0)
    assert enc.num_vertices == 1 and not enc.remainder_radius.any()
    assert enc.bounded_index == 1 == type(model).enclosure_index and enc.bound == 3.0
    np.testing.assert_allclose(enc.noise_radius, [25.0])
    np.testing.assert_allclose(enc.E[:, 0], [0.0, 1.0 / 240.0, 0.0], atol=1e-15)
    np.testing.assert_allclose(enc.B[0], [[2.0, 0.0], [0.0, 0.0], [0.0, model.c4 * 2.5]],
                               atol=1e-14)
    x_e, _ = model.equilibrium()
    np.testing.assert_allclose(enc.x_e, x_e.numpy())
    assert model.enclosure_bound_limit() == pytest.approx(3.0)  # t_in in [18, 24] around 21
    with pytest.raises(ValueError, match="bound > 0"):
        model.linear_enclosure(0.0)


# --------------------------------------------------------------------------------------------
# reward and observation
# --------------------------------------------------------------------------------------------
def test_reward_buying_and_selling(model):
    next_state = torch.tensor([[5.0, 22.0, 30.0], [5.0, 21.0, 30.0]], dtype=F64)
    action = torch.tensor([[0.5, 0.25], [-1.0, -0.5]], dtype=F64)
    exo = torch.tensor([[0.3, 0.1, 5.0, 0.4], [0.2, 0.1, 5.0, 0.5]], dtype=F64)
    reward = model.reward(next_state, action, exo)
    p0 = 0.5 + 0.25 + 0.3 + 0.1  # buying at 0.4
    p1 = -1.0 - 0.5 + 0.2 + 0.1  # selling at 0.08
    expected = torch.tensor([-p0 * 0.4 - 100.0 * 1.0, -p1 * 0.08 - 0.0], dtype=F64)
    torch.testing.assert_close(reward, expected, rtol=0, atol=1e-12)
    torch.testing.assert_close(model.grid_power(action, exo),
                               torch.tensor([p0, p1], dtype=F64), rtol=0, atol=1e-12)


def test_reward_and_observe_need_their_exogenous_inputs(model):
    s = torch.zeros(2, 3, dtype=F64)
    with pytest.raises(ValueError, match="exogenous"):
        model.reward(s, torch.zeros(2, 2, dtype=F64))
    with pytest.raises(ValueError, match="shape"):
        model.reward(s, torch.zeros(2, 2, dtype=F64), torch.zeros(2, 3, dtype=F64))
    with pytest.raises(ValueError, match="forecast"):
        model.observe(s)
    with pytest.raises(ValueError, match="shape"):
        model.observe(s, torch.zeros(2, 4, dtype=F64))


def test_observation_layout(model):
    gen = torch.Generator().manual_seed(0)
    state = uniform(*model.state_bounds(), 3, gen)
    forecast = exogenous(3, gen, horizon=5)
    obs = model.observe(state, forecast)
    assert obs.shape == (3, 23)
    torch.testing.assert_close(obs[:, :3], state)
    for k in range(4):  # load, pv, t_out, price: 5 hours each
        torch.testing.assert_close(obs[:, 3 + 5 * k: 8 + 5 * k], forecast[:, :, k])


# --------------------------------------------------------------------------------------------
# gradients vs finite differences
# --------------------------------------------------------------------------------------------
@pytest.mark.gradcheck
def test_multi_step_return_gradient_matches_finite_differences(model):
    """d(sum of k rewards)/d(actions) through the dynamics == central differences (states well
    inside ``S``: no clamp active; ``p`` away from 0: no kink of the tariff)."""
    gen = torch.Generator().manual_seed(3)
    k, batch = 6, 2
    state0 = torch.tensor([[5.0, 21.0, 30.0], [3.0, 20.0, 25.0]], dtype=F64)
    exo = exogenous(batch * k, gen).reshape(k, batch, 4)
    exo[..., 0] = 0.6 + 0.1 * exo[..., 0]  # load keeps p > 0
    actions = (0.1 * (2 * torch.rand((k, batch, 2), generator=gen, dtype=F64) - 1))

    def total(acts):
        s, ret = state0, torch.zeros((), dtype=F64)
        for t in range(k):
            s = model.step(s, acts[t], exo[t][:, 2:3])
            ret = ret + model.reward(s, acts[t], exo[t]).sum()
        return ret

    acts = actions.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(total(acts), acts)
    assert bool((grad[:, :, 1].abs() > 0).all())  # the heat pump acts on the comfort term
    assert torch.autograd.gradcheck(total, (actions.clone().requires_grad_(True),), eps=1e-6,
                                    atol=1e-5, rtol=1e-5)
    assert math.isfinite(float(grad.abs().max()))
