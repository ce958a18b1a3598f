"""SHAC (SPEC §8): TD(lambda) targets, the short-horizon loss with episode ends inside a window,
gradients through the safeguard (finite differences), Eq 45, learning, determinism."""

from __future__ import annotations

import copy

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from safegbpo.algorithms import SHAC, SHACConfig
from safegbpo.algorithms.base import final_observations
from safegbpo.algorithms.shac import td_lambda_targets
from safegbpo.safeguards import make_safeguard

from .conftest import boundary_states, make_env, make_evaluator

F64 = torch.float64
TINY = SHACConfig(policy_hidden=(8,), critic_hidden=(8,), len_traj=3, vf_num_fits=2)


# -- TD(lambda) ----------------------------------------------------------------------------------
def brute_force_lambda_returns(rewards, next_values, ends, gamma, lam):
    """Weighted average of n-step returns, truncated at the episode end / window end."""
    h, n = rewards.shape
    out = torch.empty_like(rewards)
    for env in range(n):
        for t in range(h):
            last = t
            while last < h - 1 and not bool(ends[last, env]):
                last += 1
            length = last - t + 1
            n_step = []
            for k in range(1, length + 1):
                ret = sum(gamma**i * rewards[t + i, env] for i in range(k))
                n_step.append(ret + gamma**k * next_values[t + k - 1, env])
            value = sum((1 - lam) * lam ** (k - 1) * n_step[k - 1] for k in range(1, length))
            out[t, env] = value + lam ** (length - 1) * n_step[-1]
    return out


@pytest.mark.property
@settings(max_examples=40, deadline=None)
@given(h=st.integers(1, 6), n=st.integers(1, 3), gamma=st.floats(0.0, 1.0),
       lam=st.floats(0.0, 1.0), seed=st.integers(0, 2**16))
def test_td_lambda_targets_are_lambda_returns(h, n, gamma, lam, seed):
    g = torch.Generator().manual_seed(seed)
    rewards = torch.randn(h, n, generator=g, dtype=F64)
    values = torch.randn(h, n, generator=g, dtype=F64)
    ends = torch.rand(h, n, generator=g) < 0.3
    torch.testing.assert_close(td_lambda_targets(rewards, values, ends, gamma, lam),
                               brute_force_lambda_returns(rewards, values, ends, gamma, lam))


def test_td_lambda_special_cases_and_shape_check():
    rewards = torch.tensor([[1.0], [2.0], [3.0]], dtype=F64)
    values = torch.tensor([[10.0], [20.0], [30.0]], dtype=F64)
    ends = torch.zeros(3, 1, dtype=torch.bool)
    torch.testing.assert_close(td_lambda_targets(rewards, values, ends, 0.5, 0.0),
                               rewards + 0.5 * values)  # one-step TD
    monte_carlo = torch.tensor([[1 + 0.5 * 2 + 0.25 * 3 + 0.125 * 30], [2 + 0.5 * 3 + 0.25 * 30],
                                [3 + 0.5 * 30]], dtype=F64)
    torch.testing.assert_close(td_lambda_targets(rewards, values, ends, 0.5, 1.0), monte_carlo)
    with pytest.raises(ValueError, match="shape"):
        td_lambda_targets(rewards, values[:2], ends, 0.5, 0.5)


def test_final_observations_replace_rows_of_finished_episodes():
    next_obs = torch.zeros(3, 2, dtype=F64)
    final = torch.ones(3, 2, dtype=F64)
    done = torch.tensor([True, False, True])
    out = final_observations(next_obs, done, {"final_obs": final})
    torch.testing.assert_close(out, torch.tensor([[1.0, 1.0], [0.0, 0.0], [1.0, 1.0]], dtype=F64))
    assert final_observations(next_obs, torch.zeros(3, dtype=torch.bool), {}) is next_obs
    with pytest.raises(ValueError, match="final_obs"):
        final_observations(next_obs, done, {})


# -- the policy loss -----------------------------------------------------------------------------
def test_loss_closes_episodes_inside_the_window_with_the_final_observation():
    """Episode length 3, window 5: the loss is the discounted return of steps 0-2 bootstrapped
    with V_target(final_obs), plus steps 3-4 bootstrapped with V_target(o_5)."""
    env = make_env("pendulum", 2, episode_length=3)
    config = SHACConfig(policy_hidden=(8,), critic_hidden=(8,), len_traj=5, gamma=0.9)
    algo = SHAC(env, config, seeds=[1], env_seeds=[4])
    recorded = []
    step = env.step

    def recording_step(action):
        out = step(action)
        recorded.append(out)
        return out

    env.step = recording_step
    loss, data = algo.rollout_loss()
    rewards = torch.stack([r[1].detach() for r in recorded])
    assert bool(recorded[2][3].all()) and not bool(recorded[1][3].any())  # truncated at t = 2
    with torch.no_grad():
        v_final = algo.target_critic(recorded[2][4]["final_obs"][None])[0]
        v_last = algo.target_critic(recorded[4][0][None])[0]
    g = config.gamma
    first = rewards[0] + g * rewards[1] + g**2 * rewards[2] + g**3 * v_final
    second = rewards[3] + g * rewards[4] + g**2 * v_last
    expected = -(first + second).sum() / (2 * 5)
    assert loss.shape == (1,)  # one loss per member
    torch.testing.assert_close(loss.detach()[0], expected)
    torch.testing.assert_close(data["next_values"][2, 0], v_final)
    assert data["ends"][:, 0, 0].tolist() == [False, False, True, False, False]


def _fixed_rollout(algo: SHAC, states: torch.Tensor):
    """A closure evaluating the window loss from fixed states, env noise and policy noise."""
    generator_state = algo.generators[0].get_state()

    def loss() -> torch.Tensor:
        obs, _ = algo.env.reset(seed=[7], options={"state": states})
        algo.obs = obs
        algo.generators[0].set_state(generator_state)
        return algo.rollout_loss()[0].sum()

    return loss


def _policy_gradient(algo: SHAC, loss_fn) -> torch.Tensor:
    grads = torch.autograd.grad(loss_fn(), list(algo.policy.parameters()))
    return torch.cat([g.flatten() for g in grads])


PUSHES = ((2.0, 0.0), (0.0, 2.0), (-2.0, 0.0), (0.0, -2.0))


def _intervening_shac(task: str, safeguard: str, **options):
    """SHAC on 2 envs whose states (near vertices of the safe set) make the safeguard
    intervene on the policy's actions: the policy's mean is biased to ``tanh(push)`` for the
    first push of :data:`PUSHES` that the safeguard must correct at two such states."""
    env = make_env(task, 2)
    env.reset(seed=[0])
    guard = make_safeguard(safeguard, env, **options)
    algo = SHAC(env, TINY, seeds=[0], env_seeds=None, safeguard=guard)
    candidates = boundary_states(env, 64)
    for push in PUSHES:
        push_tensor = torch.tensor(push[: env.model.action_dim], dtype=F64)
        if not bool(push_tensor.any()):
            continue
        with torch.no_grad():
            guard(torch.tanh(push_tensor).expand(64, -1), state=candidates)
        states = candidates[guard.last_intervened][:2]
        if states.shape[0] == 2:
            break
    else:
        raise AssertionError("no vertex state makes the safeguard intervene")
    with torch.no_grad():
        algo.policy.mean_net[-1].bias.copy_(push_tensor)
    guard.reset_counters()
    return algo, guard, states


@pytest.mark.gradcheck
@pytest.mark.parametrize("task,safeguard,options", [
    ("pendulum", "rm", {}),
    ("pendulum", "rm", {"mapping": "hyperbolic"}),
    ("pendulum", "rm", {"centre": "orthogonal"}),
    # d = 2: the projection keeps the gradient component along the active face (Lemma 1)
    ("quadrotor", "bp", {}),
])
def test_policy_gradient_through_the_safeguard_matches_finite_differences(task, safeguard,
                                                                           options):
    algo, guard, states = _intervening_shac(task, safeguard, **options)
    loss = _fixed_rollout(algo, states)
    params = list(algo.policy.parameters())
    gradient = _policy_gradient(algo, loss)
    assert guard.interventions > 0 and guard.fallbacks == 0
    g = torch.Generator().manual_seed(1)
    direction = [torch.randn(p.shape, generator=g, dtype=F64) for p in params]
    analytic = float(gradient @ torch.cat([d.flatten() for d in direction]))
    eps = 1e-4  # the safeguards' solutions are accurate to ~1e-9: noise / eps << gradient

    def shifted(scale: float) -> float:
        with torch.no_grad():
            for p, d in zip(params, direction, strict=True):
                p.add_(scale * d)
        value = float(loss().detach())
        with torch.no_grad():
            for p, d in zip(params, direction, strict=True):
                p.sub_(scale * d)
        return value

    numeric = (shifted(eps) - shifted(-eps)) / (2 * eps)
    assert abs(analytic) > 1e-4, "policy gradient through the safeguard vanished"
    assert numeric == pytest.approx(analytic, rel=2e-3)


@pytest.mark.gradcheck
def test_regularisation_restores_the_gradient_the_boundary_projection_loses():
    """Pendulum (d = 1), every step projected: the Jacobian of g_BP is 0 (rank <= d - 1,
    Eq 16), so the policy gradient vanishes; Eq 45 brings it back, linearly in its coefficient."""
    algo, guard, states = _intervening_shac("pendulum", "bp")
    loss = _fixed_rollout(algo, states)
    grads = {}
    for coef in (0.0, 0.1, 0.2):
        algo.regularisation = coef
        grads[coef] = _policy_gradient(algo, loss)
    assert guard.interventions == 3 * 2 * 3  # every env-step of the three evaluations
    assert float(grads[0.0].abs().max()) < 1e-6, "BP should lose the 1-D gradient (Eq 16)"
    difference = grads[0.1] - grads[0.0]
    assert float(difference.abs().max()) > 1e-3, "Eq 45 did not reach the policy gradient"
    torch.testing.assert_close(grads[0.2] - grads[0.0], 2.0 * difference)


def test_regularisation_is_inert_without_interventions():
    env = make_env("pendulum", 2)
    env.reset(seed=[0])
    guard = make_safeguard("bp", env)
    algo = SHAC(env, SHACConfig(policy_hidden=(8,), critic_hidden=(8,), len_traj=2), seeds=[0],
                env_seeds=None, safeguard=guard)
    centre = env.safe_set.state.center.expand(2, -1).clone()
    loss = _fixed_rollout(algo, centre)  # near-zero actions at the safe set's centre: safe
    algo.regularisation = 0.0
    plain = _policy_gradient(algo, loss)
    algo.regularisation = 0.1
    regularised = _policy_gradient(algo, loss)
    assert guard.interventions == 0
    torch.testing.assert_close(regularised, plain, rtol=0, atol=1e-7)


# -- training --------------------------------------------------------------------------------
def test_shac_improves_the_unsafe_pendulum():
    config = SHACConfig(policy_hidden=(32, 32), critic_hidden=(32, 32), len_traj=16,
                        vf_num_fits=5, policy_lr=2e-3)
    algo = SHAC(make_env("pendulum", 8, episode_length=200), config, seeds=[0], env_seeds=[0])
    evaluator = make_evaluator("pendulum", set_size=8, set_seed=100, episode_length=200)
    initial = float(evaluator(algo.act).episodes.mean())
    for _ in range(4096 // algo.interactions_per_iteration):
        stats = algo.iterate()
    final = float(evaluator(algo.act).episodes.mean())
    assert initial < -500.0  # the untrained policy does not balance
    assert final > initial / 4, f"no clear improvement: {initial:.1f} -> {final:.1f}"
    assert set(stats) >= {"policy_loss", "critic_loss", "policy_grad_norm"}


def test_iterations_are_deterministic_and_resumable_from_state_dict():
    def build(env, env_seed):
        return SHAC(env, TINY, seeds=[3], env_seeds=env_seed)

    a = build(make_env("pendulum", 4, episode_length=10), [5])
    b = build(make_env("pendulum", 4, episode_length=10), [5])
    for _ in range(2):
        a.iterate()
        b.iterate()
    for p, q in zip(a.policy.parameters(), b.policy.parameters(), strict=True):
        assert torch.equal(p, q)
    state, env_snapshot = a.state_dict(), copy.deepcopy(a.env)
    for _ in range(2):
        a.iterate()
    c = build(env_snapshot, None)  # resume: restored env object + algorithm state
    c.load_state_dict(state)
    for _ in range(2):
        c.iterate()
    for p, q in zip(a.policy.parameters(), c.policy.parameters(), strict=True):
        assert torch.equal(p, q)
    for p, q in zip(a.target_critic.parameters(), c.target_critic.parameters(), strict=True):
        assert torch.equal(p, q)


def test_invalid_hyper_parameters_are_rejected():
    with pytest.raises(ValueError, match="len_traj"):
        SHACConfig(len_traj=0).validate()
    with pytest.raises(ValueError, match="polyak"):
        SHACConfig(polyak=1.5).validate()
    with pytest.raises(ValueError, match="policy_hidden"):
        SHACConfig(policy_hidden=()).validate()
    with pytest.raises(RuntimeError, match="reset_env"):
        SHAC(make_env("pendulum", 2), TINY, seeds=[0], env_seeds=None).iterate()
    with pytest.raises(ValueError, match="do not split into 2 members"):
        SHAC(make_env("pendulum", 3), TINY, seeds=[0, 1], env_seeds=None)
