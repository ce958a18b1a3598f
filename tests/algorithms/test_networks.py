"""Networks (SPEC §8): architecture, generator-only initialisation, the squashed Gaussian, and
the ensembles' member independence (bitwise, whatever the population size)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from safegbpo.algorithms.base import PhaseTimer, derive_seed
from safegbpo.algorithms.networks import (
    ELU,
    LOG_STD_BOUNDS,
    MLP,
    EnsembleLayerNorm,
    EnsembleLinear,
    GaussianPolicy,
    QCritic,
    ValueCritic,
    batched_matmul,
    linear_state_to_ensemble,
    member_std,
    polyak_update,
    select_members,
    softplus,
)

F64 = torch.float64


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def gens(*seeds: int) -> list[torch.Generator]:
    return [gen(s) for s in seeds]


def test_mlp_is_linear_elu_layernorm_per_hidden_layer():
    net = MLP(3, (5, 7), 2, generators=gens(0, 1))
    kinds = [type(m) for m in net]
    assert kinds == [EnsembleLinear, ELU, EnsembleLayerNorm, EnsembleLinear, ELU,
                     EnsembleLayerNorm, EnsembleLinear]
    assert [m.out_features for m in net if isinstance(m, EnsembleLinear)] == [5, 7, 2]
    assert all(p.dtype == F64 and p.shape[0] == 2 for p in net.parameters())
    assert net(torch.zeros(2, 4, 3, dtype=F64)).shape == (2, 4, 2)


def test_layers_compute_elu_and_layernorm():
    x = torch.linspace(-30.0, 30.0, 121, dtype=F64).view(1, 11, 11)
    torch.testing.assert_close(ELU()(x), nn.functional.elu(x), rtol=0, atol=1e-15)
    norm = EnsembleLayerNorm(11, 1)
    with torch.no_grad():
        norm.weight.fill_(2.0)
        norm.bias.fill_(0.5)
    torch.testing.assert_close(norm(x), 2.0 * nn.functional.layer_norm(x, (11,)) + 0.5)
    # huge inputs: ELU's gradient stays finite (no inf * 0 in the unused branch)
    big = torch.tensor([[[1e3, -1e3]]], dtype=F64, requires_grad=True)
    ELU()(big).sum().backward()
    torch.testing.assert_close(big.grad, torch.tensor([[[1.0, 0.0]]], dtype=F64))
    u = torch.tensor([-800.0, -3.0, 0.0, 2.0, 800.0], dtype=F64)
    torch.testing.assert_close(softplus(u), nn.functional.softplus(u))


def test_member_is_the_single_network_it_was_initialised_as():
    """Member p of an ensemble equals a one-member ensemble built from the same generator, and
    equals the ``nn.Linear``/``nn.LayerNorm`` network with its weights."""
    ensemble = MLP(3, (16, 16), 2, generators=gens(4, 5, 6))
    alone = MLP(3, (16, 16), 2, generators=gens(5))
    for a, b in zip(ensemble.parameters(), alone.parameters(), strict=True):
        assert torch.equal(a[1], b[0])
    x = torch.randn(3, 9, 3, generator=gen(1), dtype=F64)
    reference = nn.Sequential(nn.Linear(3, 16), nn.ELU(), nn.LayerNorm(16), nn.Linear(16, 16),
                              nn.ELU(), nn.LayerNorm(16), nn.Linear(16, 2)).to(F64)
    reference.load_state_dict(_single_state(alone))
    torch.testing.assert_close(ensemble(x)[1], reference(x[1]))


def _single_state(module: nn.Module) -> dict[str, torch.Tensor]:
    """The ``nn.Linear``/``nn.LayerNorm`` state dict of a one-member ensemble."""
    out = {}
    for prefix, sub in module.named_modules():
        name = f"{prefix}." if prefix else ""
        if isinstance(sub, EnsembleLinear):
            out[name + "weight"] = sub.weight.detach()[0].T
            out[name + "bias"] = sub.bias.detach()[0, 0]
        elif isinstance(sub, EnsembleLayerNorm):
            out[name + "weight"] = sub.weight.detach()[0, 0]
            out[name + "bias"] = sub.bias.detach()[0, 0]
    if isinstance(module, GaussianPolicy):
        out["log_std"] = module.log_std.detach()[0]
    return out


def test_initialisation_uses_only_the_given_generators():
    before = torch.random.get_rng_state()
    a = GaussianPolicy(3, 1, (16, 16), generators=gens(1))
    after = torch.random.get_rng_state()
    assert torch.equal(before, after), "network initialisation touched the global RNG"
    b = GaussianPolicy(3, 1, (16, 16), generators=gens(1))
    c = GaussianPolicy(3, 1, (16, 16), generators=gens(2))
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(pa, pb)
    assert any(not torch.equal(pa, pc) for pa, pc in zip(a.parameters(), c.parameters(),
                                                         strict=True) if pa.numel() > 1)
    with pytest.raises(ValueError, match="one per member"):
        GaussianPolicy(3, 1, (4,), generators=[])


def test_orthogonal_hidden_weights_and_small_policy_output():
    policy = GaussianPolicy(3, 1, (16, 16), generators=gens(0, 1))
    for member in range(2):
        hidden = policy.mean_net[3].weight.detach()[member].T  # (out, in), gain sqrt(2)
        torch.testing.assert_close(hidden @ hidden.T, 2.0 * torch.eye(16, dtype=F64))
    assert policy.mean_net[-1].weight.abs().max() <= 0.01 + 1e-12
    assert all(float(m.bias.detach().abs().max()) == 0.0 for m in policy.mean_net
               if isinstance(m, EnsembleLinear))


def test_policy_log_std_is_state_independent_and_starts_at_minus_one():
    policy = GaussianPolicy(3, 2, (8,), generators=gens(0))
    torch.testing.assert_close(policy.log_std.detach(), torch.full((1, 2), -1.0, dtype=F64))
    _, std = policy.distribution(torch.randn(1, 5, 3, generator=gen(), dtype=F64))
    assert std.shape == (1, 1, 2)
    torch.testing.assert_close(std, torch.full((1, 1, 2), math.exp(-1.0), dtype=F64))
    with torch.no_grad():
        policy.log_std.fill_(10.0)
    _, std = policy.distribution(torch.zeros(1, 1, 3, dtype=F64))
    torch.testing.assert_close(std, torch.full((1, 1, 2), math.exp(LOG_STD_BOUNDS[1]),
                                               dtype=F64))


def test_samples_are_squashed_reparameterised_and_reproducible():
    policy = GaussianPolicy(3, 2, (8,), generators=gens(0, 1))
    obs = torch.randn(2, 64, 3, generator=gen(5), dtype=F64)
    s1 = policy.sample(obs, gens(3, 4))
    s2 = policy.sample(obs, gens(3, 4))
    assert torch.equal(s1.action, s2.action)
    assert torch.equal(s1.noise[0], torch.randn(64, 2, generator=gen(3), dtype=F64))
    assert bool((s1.action.abs() < 1).all())
    torch.testing.assert_close(s1.action, torch.tanh(s1.pre_tanh))
    torch.testing.assert_close(policy.action_from_noise(obs, s1.noise), s1.action)
    s1.action.sum().backward()
    assert policy.log_std.grad is not None and bool(policy.log_std.grad.abs().sum() > 0)
    torch.testing.assert_close(policy.deterministic(obs),
                               torch.tanh(policy.distribution(obs)[0]))


def test_a_one_member_policy_maps_plain_batches():
    policy = GaussianPolicy(3, 2, (8,), generators=gens(0))
    obs = torch.randn(5, 3, generator=gen(1), dtype=F64)
    torch.testing.assert_close(policy(obs), policy.deterministic(obs[None])[0])


def test_log_probabilities_match_torch_distributions():
    policy = GaussianPolicy(3, 2, (8,), generators=gens(0, 1))
    obs = torch.randn(2, 32, 3, generator=gen(5), dtype=F64)
    sample, log_prob = policy.sample_with_log_prob(obs, gens(4, 5))
    mean, std = policy.distribution(obs)
    base = torch.distributions.Normal(mean, std)
    squashed = torch.distributions.TransformedDistribution(
        base, [torch.distributions.transforms.TanhTransform()])
    torch.testing.assert_close(policy.log_prob_pre_tanh(obs, sample.pre_tanh),
                               base.log_prob(sample.pre_tanh).sum(-1))
    torch.testing.assert_close(log_prob, squashed.log_prob(sample.action).sum(-1),
                               rtol=1e-6, atol=1e-8)
    torch.testing.assert_close(policy.entropy(), base.entropy()[:, 0].sum(-1))


def test_squash_log_det_is_stable_for_large_inputs():
    u = torch.tensor([[0.0], [5.0], [-30.0], [40.0]], dtype=F64)
    value = GaussianPolicy.squash_log_det(u)
    assert bool(torch.isfinite(value).all())
    torch.testing.assert_close(value[:2], torch.log(1 - torch.tanh(u[:2]) ** 2).sum(-1))


def test_critics_shapes_and_bad_observations():
    v = ValueCritic(3, (8, 8), generators=gens(0, 1))
    q = QCritic(3, 2, (8,), generators=gens(0, 1))
    assert v(torch.zeros(2, 5, 3, dtype=F64)).shape == (2, 5)
    assert q(torch.zeros(2, 5, 3, dtype=F64), torch.zeros(2, 5, 2, dtype=F64)).shape == (2, 5)
    policy = GaussianPolicy(3, 1, (8,), generators=gens(0))
    with pytest.raises(ValueError, match="observations must be"):
        policy.deterministic(torch.zeros(1, 5, 4, dtype=F64))
    with pytest.raises(ValueError, match="observations must be"):
        v(torch.zeros(5, 3, dtype=F64))  # no member dimension
    with pytest.raises(ValueError, match="hidden layer sizes"):
        MLP(3, (0,), 1, generators=gens(0))


def test_polyak_update_formula():
    source = ValueCritic(2, (4,), generators=gens(1, 3))
    target = ValueCritic(2, (4,), generators=gens(2, 4))
    expected = [0.4 * t.detach() + 0.6 * s.detach()
                for t, s in zip(target.parameters(), source.parameters(), strict=True)]
    polyak_update(target, source, 0.4)
    for t, e in zip(target.parameters(), expected, strict=True):
        torch.testing.assert_close(t.detach(), e)
    with pytest.raises(ValueError, match="polyak"):
        polyak_update(target, source, 1.5)


def test_select_members_and_policy_file_conversion():
    policy = GaussianPolicy(3, 2, (8, 8), generators=gens(0, 1, 2))
    one = select_members(policy, 1)
    assert one.members == 1 and one.mean_net.members == 1
    obs = torch.randn(3, 4, 3, generator=gen(7), dtype=F64)
    assert torch.equal(one.deterministic(obs[1:2])[0], policy.deterministic(obs)[1])
    # a pre-ensemble (nn.Linear) state dict loads into a one-member policy
    single = _single_state(one)
    converted = linear_state_to_ensemble(single, one)
    for key, value in one.state_dict().items():
        assert torch.equal(converted[key], value)


# -- member independence -------------------------------------------------------------------------
SHAPES = [  # (rows, in, out): presets' widths, odd widths, one row, tiny batches
    (8, 3, 128), (512, 128, 128), (688, 120, 120), (16, 8, 128), (256, 175, 135),
    (256, 4, 135), (256, 359, 359), (8, 135, 135), (1, 173, 173), (17, 128, 173), (5, 3, 7),
]


@pytest.mark.parametrize("rows,inp,out", SHAPES)
def test_batched_matmul_gives_each_member_what_a_population_of_one_gives(rows, inp, out):
    """Forward and both backward products of member p are bitwise those of a population of one
    (MKL's kernels depend on alignment and on the batch count: batched_matmul removes both)."""
    g = gen(rows * 1000 + inp + out)
    members = 3
    x = torch.randn(members, rows, inp, generator=g, dtype=F64, requires_grad=True)
    w = torch.randn(members, inp, out, generator=g, dtype=F64, requires_grad=True)
    upstream = torch.randn(members, rows, out, generator=g, dtype=F64)
    y = batched_matmul(x, w)
    gx, gw = torch.autograd.grad(y, (x, w), upstream)
    torch.testing.assert_close(y, x @ w)
    torch.testing.assert_close(gw, x.transpose(1, 2) @ upstream)
    for p in range(members):
        x1 = x[p:p + 1].detach().clone().requires_grad_()
        w1 = w[p:p + 1].detach().clone().requires_grad_()
        y1 = batched_matmul(x1, w1)
        g1 = torch.autograd.grad(y1, (x1, w1), upstream[p:p + 1])
        assert torch.equal(y1[0], y[p]) and torch.equal(g1[0][0], gx[p]) \
            and torch.equal(g1[1][0], gw[p])
    with pytest.raises(ValueError, match="batched_matmul"):
        batched_matmul(x[0], w)


@pytest.mark.parametrize("widths,out", [((16, 16), 1), ((173, 135), 2), ((13,), 1)])
def test_network_outputs_and_gradients_do_not_depend_on_the_other_members(widths, out):
    members = [GaussianPolicy(3, out, widths, generators=gens(s)) for s in (4, 5, 6)]
    together = GaussianPolicy(3, out, widths, generators=gens(4, 5, 6))
    obs = torch.randn(3, 11, 3, generator=gen(0), dtype=F64)
    sample = together.sample(obs, gens(9, 10, 11))
    loss = (sample.action ** 2).sum() + together.log_prob_pre_tanh(obs, sample.pre_tanh).sum()
    grads = torch.autograd.grad(loss, list(together.parameters()))
    for p, alone in enumerate(members):
        s1 = alone.sample(obs[p:p + 1], [gen(9 + p)])
        l1 = (s1.action ** 2).sum() + alone.log_prob_pre_tanh(obs[p:p + 1], s1.pre_tanh).sum()
        for g_all, g_one in zip(grads, torch.autograd.grad(l1, list(alone.parameters())),
                                strict=True):
            assert torch.equal(g_all[p], g_one[0])
        assert torch.equal(s1.action[0], sample.action[p])


def test_member_std_is_the_unbiased_standard_deviation():
    x = torch.randn(3, 40, generator=gen(2), dtype=F64)
    torch.testing.assert_close(member_std(x), x.std(-1, keepdim=True))
    assert all(torch.equal(member_std(x[p:p + 1])[0], member_std(x)[p]) for p in range(3))


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
