"""Networks (SPEC §8): architecture, generator-only initialisation, the squashed Gaussian."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from safegbpo.algorithms.base import PhaseTimer, derive_seed
from safegbpo.algorithms.networks import (
    LOG_STD_BOUNDS,
    MLP,
    GaussianPolicy,
    QCritic,
    ValueCritic,
    polyak_update,
)

F64 = torch.float64


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_mlp_is_linear_elu_layernorm_per_hidden_layer():
    net = MLP(3, (5, 7), 2, generator=gen())
    kinds = [type(m) for m in net]
    assert kinds == [nn.Linear, nn.ELU, nn.LayerNorm, nn.Linear, nn.ELU, nn.LayerNorm, nn.Linear]
    assert [m.out_features for m in net if isinstance(m, nn.Linear)] == [5, 7, 2]
    assert all(p.dtype == F64 for p in net.parameters())
    assert net(torch.zeros(4, 3, dtype=F64)).shape == (4, 2)


def test_initialisation_uses_only_the_given_generator():
    before = torch.random.get_rng_state()
    a = GaussianPolicy(3, 1, (16, 16), generator=gen(1))
    after = torch.random.get_rng_state()
    assert torch.equal(before, after), "network initialisation touched the global RNG"
    b = GaussianPolicy(3, 1, (16, 16), generator=gen(1))
    c = GaussianPolicy(3, 1, (16, 16), generator=gen(2))
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(pa, pb)
    assert any(not torch.equal(pa, pc) for pa, pc in zip(a.parameters(), c.parameters(),
                                                         strict=True) if pa.numel() > 1)


def test_orthogonal_hidden_weights_and_small_policy_output():
    policy = GaussianPolicy(3, 1, (16, 16), generator=gen())
    hidden = policy.mean_net[3].weight.detach()  # 16 x 16, gain sqrt(2)
    torch.testing.assert_close(hidden @ hidden.T, 2.0 * torch.eye(16, dtype=F64))
    assert policy.mean_net[-1].weight.abs().max() <= 0.01 + 1e-12
    assert all(float(m.bias.detach().abs().max()) == 0.0 for m in policy.mean_net
               if isinstance(m, nn.Linear))


def test_policy_log_std_is_state_independent_and_starts_at_minus_one():
    policy = GaussianPolicy(3, 2, (8,), generator=gen())
    torch.testing.assert_close(policy.log_std.detach(), torch.full((2,), -1.0, dtype=F64))
    _, std = policy.distribution(torch.randn(5, 3, generator=gen(), dtype=F64))
    assert std.shape == (2,)
    torch.testing.assert_close(std, torch.full((2,), math.exp(-1.0), dtype=F64))
    with torch.no_grad():
        policy.log_std.fill_(10.0)
    _, std = policy.distribution(torch.zeros(1, 3, dtype=F64))
    torch.testing.assert_close(std, torch.full((2,), math.exp(LOG_STD_BOUNDS[1]), dtype=F64))


def test_samples_are_squashed_reparameterised_and_reproducible():
    policy = GaussianPolicy(3, 2, (8,), generator=gen())
    obs = torch.randn(64, 3, generator=gen(5), dtype=F64)
    s1 = policy.sample(obs, gen(3))
    s2 = policy.sample(obs, gen(3))
    assert torch.equal(s1.action, s2.action)
    assert bool((s1.action.abs() < 1).all())
    torch.testing.assert_close(s1.action, torch.tanh(s1.pre_tanh))
    torch.testing.assert_close(policy.action_from_noise(obs, s1.noise), s1.action)
    s1.action.sum().backward()
    assert policy.log_std.grad is not None and bool(policy.log_std.grad.abs().sum() > 0)
    torch.testing.assert_close(policy.deterministic(obs),
                               torch.tanh(policy.distribution(obs)[0]))


def test_log_probabilities_match_torch_distributions():
    policy = GaussianPolicy(3, 2, (8,), generator=gen())
    obs = torch.randn(32, 3, generator=gen(5), dtype=F64)
    sample, log_prob = policy.sample_with_log_prob(obs, gen(4))
    mean, std = policy.distribution(obs)
    base = torch.distributions.Normal(mean, std)
    squashed = torch.distributions.TransformedDistribution(
        base, [torch.distributions.transforms.TanhTransform()])
    torch.testing.assert_close(policy.log_prob_pre_tanh(obs, sample.pre_tanh),
                               base.log_prob(sample.pre_tanh).sum(-1))
    torch.testing.assert_close(log_prob, squashed.log_prob(sample.action).sum(-1),
                               rtol=1e-6, atol=1e-8)
    torch.testing.assert_close(policy.entropy(), base.entropy()[0].sum())


def test_squash_log_det_is_stable_for_large_inputs():
    u = torch.tensor([[0.0], [5.0], [-30.0], [40.0]], dtype=F64)
    value = GaussianPolicy.squash_log_det(u)
    assert bool(torch.isfinite(value).all())
    torch.testing.assert_close(value[:2], torch.log(1 - torch.tanh(u[:2]) ** 2).sum(-1))


def test_critics_shapes_and_bad_observations():
    v = ValueCritic(3, (8, 8), generator=gen())
    q = QCritic(3, 2, (8,), generator=gen())
    assert v(torch.zeros(5, 3, dtype=F64)).shape == (5,)
    assert q(torch.zeros(5, 3, dtype=F64), torch.zeros(5, 2, dtype=F64)).shape == (5,)
    policy = GaussianPolicy(3, 1, (8,), generator=gen())
    with pytest.raises(ValueError, match="observations must be"):
        policy.deterministic(torch.zeros(5, 4, dtype=F64))
    with pytest.raises(ValueError, match="hidden layer sizes"):
        MLP(3, (0,), 1, generator=gen())


def test_polyak_update_formula():
    source = ValueCritic(2, (4,), generator=gen(1))
    target = ValueCritic(2, (4,), generator=gen(2))
    expected = [0.4 * t.detach() + 0.6 * s.detach()
                for t, s in zip(target.parameters(), source.parameters(), strict=True)]
    polyak_update(target, source, 0.4)
    for t, e in zip(target.parameters(), expected, strict=True):
        torch.testing.assert_close(t.detach(), e)
    with pytest.raises(ValueError, match="polyak"):
        polyak_update(target, source, 1.5)


def test_derive_seed_streams_are_distinct_and_stable():
    assert derive_seed(0, "a") == derive_seed(0, "a")
    assert len({derive_seed(0, "a"), derive_seed(0, "b"), derive_seed(1, "a")}) == 3
    assert 0 <= derive_seed(123, "x") < 2**63
    with pytest.raises(ValueError, match="seed"):
        derive_seed(-1, "a")


def test_phase_timer_is_exclusive():
    timer = PhaseTimer()
    with timer("outer"):
        with timer("inner"):
            sum(range(10000))
    assert set(timer.seconds) == {"outer", "inner"}
    assert timer.seconds["outer"] >= 0.0 and timer.seconds["inner"] > 0.0
