"""Neural networks of the learning algorithms (SPEC §8), as ensembles of independent members.

A training *population* holds ``P`` independent seeds (:mod:`safegbpo.algorithms.population`);
every network here holds the parameters of its ``P`` members stacked along a leading member
dimension and evaluates all of them in one batched call.  A single-seed run is a population of
one through the same code.

* :class:`MLP` — ``Linear -> ELU -> LayerNorm`` for every hidden layer, a linear output layer.
* :class:`GaussianPolicy` — the MLP gives the mean ``mu(o)`` of a Gaussian over the *pre-squash*
  action ``u``; a learned, state-independent ``log_std`` (initialised to -1) gives its standard
  deviation; the action is ``a = tanh(u)`` (inside the feasible box ``A = [-1, 1]^d``).  The
  deterministic (evaluation) action is ``tanh(mu(o))``.
* :class:`ValueCritic` — ``V(o)`` (SHAC, PPO); :class:`QCritic` — ``Q(o, a)`` (SAC).

Shapes: observations ``(P, batch, obs_dim)``, actions ``(P, batch, act_dim)``, values
``(P, batch)``; every parameter and buffer is ``(P, ...)``.  Member ``p`` only ever sees row
``p`` of its inputs, so the members are independent networks.

Initialisation never touches the global RNG: member ``p`` is filled from the caller's
``generators[p]`` (orthogonal weights, zero biases — gain ``sqrt(2)`` for hidden layers,
``output_gain`` for the last layer: 0.01 for the policy mean so the initial policy is centred
on ``a = 0``, 1 for critics), layer by layer, so a member's weights do not depend on the
other members.

**Bitwise independence of the members.**  A member's outputs and gradients are bitwise
identical whatever the other members are, and whatever ``P`` is (tested): the population size
must not change a seed's learning curve.  This needs care on CPUs, where the last bit of a
result can depend on where a row sits in a batch:

* matrix products (:func:`batched_matmul`) go through ``torch.bmm`` with every member's matrix
  starting on a 64-byte boundary (MKL's kernels depend on it: operands and results whose
  per-member block is not a multiple of 8 doubles are copied into / computed in padded
  buffers), and a layer with one output unit is a multiply-and-sum (``bmm`` of a single column
  takes a different kernel for one member than for several);
* PyTorch's fused ``elu``/``softplus`` kernels round the elements of a tensor's scalar tail
  (the last ``numel mod 16`` elements on AVX-512) differently from its vectorised body, so they
  are used only when one member's element count is a multiple of 64 (the tail is then empty
  for every population size: true for the presets' training batches); otherwise ELU is
  ``where(x > 0, x, expm1(min(x, 0)))`` and the softplus ``relu(x) + log1p(exp(-|x|))``,
  whose kernels agree in both paths.  Standard deviations over a member's batch use
  :func:`member_std` (two plain reductions: ``Tensor.std`` rounds differently for different
  numbers of rows).

All of this holds with one torch intra-op thread (the training runner's setting).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

__all__ = [
    "MLP",
    "ELU",
    "EnsembleLinear",
    "EnsembleLayerNorm",
    "GaussianPolicy",
    "PolicySample",
    "ValueCritic",
    "QCritic",
    "LOG_STD_BOUNDS",
    "batched_matmul",
    "member_std",
    "polyak_update",
    "select_members",
    "softplus",
]

#: ``log_std`` is clamped to this interval when used (keeps ``std`` away from 0 and from blowing
#: up under PPO's entropy bonus / SAC's temperature); the parameter itself is unconstrained.
LOG_STD_BOUNDS: tuple[float, float] = (-5.0, 2.0)

_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)
_ALIGN_BYTES = 64
#: elements; a multiple of twice the widest SIMD vector of doubles (ATen's unrolled loop step).
_VECTOR_BLOCK = 64


# -- batched, member-independent matrix products -------------------------------------------------
def _aligned_empty(shape: tuple[int, int, int], like: Tensor) -> Tensor:
    """An uninitialised ``(P, M, K)`` view whose member matrices start on 64-byte boundaries."""
    members, rows, cols = shape
    align = max(1, _ALIGN_BYTES // like.element_size())
    stride = -(-(rows * cols) // align) * align
    buffer = torch.empty(members * stride + align, dtype=like.dtype, device=like.device)
    offset = (-(buffer.data_ptr() // like.element_size())) % align
    return buffer.as_strided((members, rows, cols), (stride, cols, 1), offset)


def _is_aligned(t: Tensor) -> bool:
    """Every member matrix of ``t`` starts on a 64-byte boundary.  Decided from the per-member
    stride, not from ``P``: a population of one must take the same kernels as a larger one."""
    align = max(1, _ALIGN_BYTES // t.element_size())
    return t.data_ptr() % _ALIGN_BYTES == 0 and t.stride(0) % align == 0


def _aligned(t: Tensor) -> Tensor:
    """``t`` ``(P, M, K)`` itself if its member matrices start on 64-byte boundaries, else an
    aligned copy (same values)."""
    if t.device.type != "cpu" or _is_aligned(t):
        return t
    out = _aligned_empty((t.shape[0], t.shape[1], t.shape[2]), t)
    out.copy_(t)
    return out


def _bmm(a: Tensor, b: Tensor, bias: Tensor | None = None) -> Tensor:
    """``a @ b (+ bias)`` per member (``(P, M, K) x (P, K, N) (+ (P, 1, N)) -> (P, M, N)``),
    computed with aligned operands and result (module docstring)."""
    a, b = _aligned(a), _aligned(b)
    members, rows, cols = a.shape[0], a.shape[1], b.shape[2]
    align = max(1, _ALIGN_BYTES // a.element_size())
    if a.device.type != "cpu" or (rows * cols) % align == 0:  # fresh tensors are aligned
        return torch.bmm(a, b) if bias is None else torch.baddbmm(bias, a, b)
    out = _aligned_empty((members, rows, cols), a)
    if bias is None:
        torch.bmm(a, b, out=out)
    else:
        torch.baddbmm(bias, a, b, out=out)
    return out.contiguous()


class _BatchedAffine(torch.autograd.Function):
    """``a @ b (+ bias)`` per member with the backward products also computed by :func:`_bmm`
    (the bias gradient is the sum over the member's rows)."""

    @staticmethod
    def forward(ctx: Any, a: Tensor, b: Tensor, bias: Tensor | None) -> Tensor:
        ctx.save_for_backward(a, b)
        return _bmm(a, b, bias)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        a, b = ctx.saved_tensors
        needs = ctx.needs_input_grad
        grad_a = _bmm(grad, b.transpose(1, 2)) if needs[0] else None
        grad_b = _bmm(a.transpose(1, 2), grad) if needs[1] else None
        grad_bias = grad.sum(1, keepdim=True) if needs[2] else None
        return grad_a, grad_b, grad_bias


def batched_matmul(a: Tensor, b: Tensor, bias: Tensor | None = None) -> Tensor:
    """Per-member matrix product ``(P, M, K) x (P, K, N) (+ bias (P, 1, N)) -> (P, M, N)``,
    differentiable, with results that do not depend on the other members (module docstring)."""
    if a.ndim != 3 or b.ndim != 3 or a.shape[0] != b.shape[0] or a.shape[2] != b.shape[1]:
        raise ValueError(f"batched_matmul expects (P, M, K) and (P, K, N), got "
                         f"{tuple(a.shape)} and {tuple(b.shape)}")
    if bias is not None and tuple(bias.shape) != (a.shape[0], 1, b.shape[2]):
        raise ValueError(f"bias must be ({a.shape[0]}, 1, {b.shape[2]}), got "
                         f"{tuple(bias.shape)}")
    rows, inner, cols = a.shape[1], a.shape[2], b.shape[2]
    align = max(1, _ALIGN_BYTES // a.element_size())
    if a.device.type != "cpu" or (all(n % align == 0 for n in (rows * inner, inner * cols,
                                                             rows * cols))
                                  and _is_aligned(a) and _is_aligned(b)):
        # every member block of the operands, the result and the gradients is aligned:
        # PyTorch's own kernels and backward (no Python autograd function on the hot path)
        return torch.bmm(a, b) if bias is None else torch.baddbmm(bias, a, b)
    return _BatchedAffine.apply(a, b, bias)


def _vectorised_throughout(x: Tensor) -> bool:
    """Whether PyTorch's elementwise CPU kernels process every element of ``x`` (and of any
    population holding members shaped like ``x[0]``) in their vectorised body: true when one
    member's element count is a multiple of :data:`_VECTOR_BLOCK` (their scalar tail, which
    rounds some functions differently, is then empty for every population size).  Holds for a
    contiguous ``x`` with one intra-op thread (the runner's setting)."""
    return x.is_contiguous() and (x[0].numel() % _VECTOR_BLOCK == 0)


def member_std(x: Tensor) -> Tensor:
    """Unbiased standard deviation over the last dimension, ``(..., n) -> (..., 1)``, computed in
    two passes with plain reductions (``Tensor.std``'s kernel rounds differently depending on
    the number of rows, module docstring)."""
    centred = x - x.mean(-1, keepdim=True)
    return torch.sqrt((centred * centred).sum(-1, keepdim=True) / (x.shape[-1] - 1))


def softplus(x: Tensor) -> Tensor:
    """``log(1 + exp(x))`` for ``(P, ...)`` inputs, position independent (module docstring):
    PyTorch's kernel when every element is vectorised, else ``relu(x) + log1p(exp(-|x|))``."""
    if _vectorised_throughout(x):
        return nn.functional.softplus(x)
    return torch.relu(x) + torch.log1p(torch.exp(-x.abs()))


# -- layers --------------------------------------------------------------------------------------
def _check_generators(generators: Sequence[torch.Generator]) -> int:
    if isinstance(generators, torch.Generator) or not generators:
        raise ValueError("generators must be a non-empty sequence of torch.Generator, one per "
                         "member")
    return len(generators)


class EnsembleLinear(nn.Module):
    """``P`` independent affine maps ``y_p = x_p W_p + b_p``: ``(P, B, in) -> (P, B, out)``.

    ``weight`` is ``(P, in, out)`` (member ``p``'s ``nn.Linear`` weight transposed), ``bias``
    ``(P, 1, out)``.  Member ``p`` is initialised from ``generators[p]``: an orthogonal
    ``(out, in)`` matrix with ``gain`` (``torch.nn.init.orthogonal_``) and a zero bias.
    """

    def __init__(self, in_dim: int, out_dim: int, *, gain: float,
                 generators: Sequence[torch.Generator], dtype: torch.dtype = torch.float64,
                 device: torch.device | str = "cpu") -> None:
        super().__init__()
        members = _check_generators(generators)
        self.in_features, self.out_features, self.members = in_dim, out_dim, members
        weight = torch.empty(members, in_dim, out_dim, dtype=dtype)
        with torch.no_grad():
            for p, generator in enumerate(generators):
                # QR-based orthogonal init on the CPU generator, then copied (device-agnostic)
                w = torch.empty(out_dim, in_dim, dtype=dtype)
                nn.init.orthogonal_(w, gain=gain, generator=generator)
                weight[p] = w.T
        self.weight = nn.Parameter(weight.to(device))
        self.bias = nn.Parameter(torch.zeros(members, 1, out_dim, dtype=dtype, device=device))

    def forward(self, x: Tensor) -> Tensor:
        if self.out_features == 1:
            # multiply-and-sum: MKL's matrix-vector kernel is chosen differently for one member
            # than for several (module docstring); a row reduction is position independent
            return (x * self.weight.transpose(1, 2)).sum(-1, keepdim=True) + self.bias
        return batched_matmul(x, self.weight, self.bias)

    def extra_repr(self) -> str:
        return f"members={self.members}, in={self.in_features}, out={self.out_features}"


class ELU(nn.Module):
    """``ELU(x) = x`` for ``x > 0``, ``exp(x) - 1`` otherwise (alpha 1) on ``(P, ...)`` inputs,
    position independent: PyTorch's fused kernel when every element is vectorised, else
    ``where(x > 0, x, expm1(min(x, 0)))``."""

    def forward(self, x: Tensor) -> Tensor:
        if _vectorised_throughout(x):
            return nn.functional.elu(x)
        return torch.where(x > 0, x, torch.expm1(torch.clamp(x, max=0.0)))


class EnsembleLayerNorm(nn.Module):
    """LayerNorm over the last dimension with per-member affine parameters ``(P, 1, width)``."""

    def __init__(self, width: int, members: int, *, eps: float = 1e-5,
                 dtype: torch.dtype = torch.float64, device: torch.device | str = "cpu") -> None:
        super().__init__()
        self.width, self.members, self.eps = width, members, eps
        self.weight = nn.Parameter(torch.ones(members, 1, width, dtype=dtype, device=device))
        self.bias = nn.Parameter(torch.zeros(members, 1, width, dtype=dtype, device=device))
        self._unit: tuple[Tensor, Tensor] | None = None  # constant (1, 0) affine of the kernel

    def forward(self, x: Tensor) -> Tensor:
        # unit affine inside (PyTorch's faster kernel), the members' own one outside
        unit = self._unit
        if unit is None or unit[0].dtype != x.dtype or unit[0].device != x.device:
            ones = torch.ones(self.width, dtype=x.dtype, device=x.device)
            unit = self._unit = (ones, torch.zeros_like(ones))
        normed = nn.functional.layer_norm(x, (self.width,), unit[0], unit[1], eps=self.eps)
        return torch.addcmul(self.bias, normed, self.weight)


class MLP(nn.Sequential):
    """``in -> [Linear -> ELU -> LayerNorm] * len(hidden) -> Linear -> out`` (SPEC §8), for
    ``len(generators)`` members: ``(P, B, in) -> (P, B, out)``."""

    def __init__(
        self,
        in_dim: int,
        hidden: Sequence[int],
        out_dim: int,
        *,
        generators: Sequence[torch.Generator],
        output_gain: float = 1.0,
        dtype: torch.dtype = torch.float64,
        device: torch.device | str = "cpu",
    ) -> None:
        if in_dim <= 0 or out_dim <= 0:
            raise ValueError(f"MLP dimensions must be positive, got in={in_dim}, out={out_dim}")
        if any(int(h) <= 0 for h in hidden):
            raise ValueError(f"hidden layer sizes must be positive, got {tuple(hidden)}")
        members = _check_generators(generators)
        layers: list[nn.Module] = []
        last = in_dim
        for width in hidden:
            layers.append(EnsembleLinear(last, int(width), gain=math.sqrt(2.0),
                                         generators=generators, dtype=dtype, device=device))
            layers.append(ELU())
            layers.append(EnsembleLayerNorm(int(width), members, dtype=dtype, device=device))
            last = int(width)
        layers.append(EnsembleLinear(last, out_dim, gain=output_gain, generators=generators,
                                     dtype=dtype, device=device))
        super().__init__(*layers)
        self.members = members


def _check_obs(obs: Tensor, members: int, dim: int, what: str = "observations") -> None:
    if obs.ndim != 3 or obs.shape[0] != members or obs.shape[-1] != dim:
        raise ValueError(f"{what} must be ({members}, batch, {dim}) (members, batch, dim), "
                         f"got {tuple(obs.shape)}")


# -- policy --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PolicySample:
    """A reparameterised policy sample, each ``(P, batch, act_dim)``.

    ``noise`` is the standard normal draw ``eps``, ``pre_tanh = mu + std * eps`` and
    ``action = tanh(pre_tanh)`` (differentiable in the policy parameters).
    """

    noise: Tensor
    pre_tanh: Tensor
    action: Tensor


def standard_normal(shape: tuple[int, ...], generators: Sequence[torch.Generator],
                    like: Tensor) -> Tensor:
    """``(P, *shape)`` standard normal draws, row ``p`` from ``generators[p]`` (each member's
    stream advances as in a population of one)."""
    draws = [torch.randn(shape, generator=g, dtype=like.dtype, device=like.device)
             for g in generators]
    return draws[0].unsqueeze(0) if len(draws) == 1 else torch.stack(draws)


class GaussianPolicy(nn.Module):
    """Tanh-squashed Gaussian policy with a state-independent ``log_std`` ``(P, d)`` (SPEC §8).

    ``policy(obs)`` is the deterministic action; it also accepts ``(batch, obs_dim)``
    observations when the policy has one member (a deployed, single policy: ``load_policy``).
    """

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        hidden: Sequence[int],
        *,
        generators: Sequence[torch.Generator],
        log_std_init: float = -1.0,
        dtype: torch.dtype = torch.float64,
        device: torch.device | str = "cpu",
    ) -> None:
        super().__init__()
        self.obs_dim, self.act_dim = obs_dim, act_dim
        self.members = _check_generators(generators)
        self.mean_net = MLP(obs_dim, hidden, act_dim, generators=generators, output_gain=0.01,
                            dtype=dtype, device=device)
        self.log_std = nn.Parameter(torch.full((self.members, act_dim), float(log_std_init),
                                               dtype=dtype, device=device))

    def std(self) -> Tensor:
        """Standard deviations ``(P, 1, d)`` (``log_std`` clamped to :data:`LOG_STD_BOUNDS`)."""
        return self.log_std.clamp(*LOG_STD_BOUNDS).exp().unsqueeze(1)

    def distribution(self, obs: Tensor) -> tuple[Tensor, Tensor]:
        """Mean ``(P, batch, d)`` and standard deviation ``(P, 1, d)`` of the pre-squash
        Gaussian."""
        _check_obs(obs, self.members, self.obs_dim)
        return self.mean_net(obs), self.std()

    def sample(self, obs: Tensor, generators: Sequence[torch.Generator]) -> PolicySample:
        """Reparameterised sample ``a = tanh(mu(o) + std * eps)``, ``eps ~ N(0, I)`` with row
        ``p`` drawn from ``generators[p]`` (gradients flow to the parameters)."""
        mean, std = self.distribution(obs)
        noise = standard_normal(tuple(mean.shape[1:]), generators, mean)
        pre_tanh = mean + std * noise
        return PolicySample(noise=noise, pre_tanh=pre_tanh, action=torch.tanh(pre_tanh))

    def action_from_noise(self, obs: Tensor, noise: Tensor) -> Tensor:
        """``tanh(mu(o) + std * noise)`` for a given noise draw (reproduces a stored sample at
        the parameters that drew it; used by the Eq 45 term of PPO and SAC)."""
        mean, std = self.distribution(obs)
        return torch.tanh(mean + std * noise)

    def deterministic(self, obs: Tensor) -> Tensor:
        """The evaluation action ``tanh(mu(o))`` ``(P, batch, d)``."""
        mean, _ = self.distribution(obs)
        return torch.tanh(mean)

    def forward(self, obs: Tensor) -> Tensor:
        """:meth:`deterministic`; a one-member policy also maps ``(batch, o) -> (batch, d)``."""
        if obs.ndim == 2 and self.members == 1:
            return self.deterministic(obs.unsqueeze(0)).squeeze(0)
        return self.deterministic(obs)

    def log_prob_pre_tanh(self, obs: Tensor, pre_tanh: Tensor) -> Tensor:
        """Gaussian log-density of ``u`` (before the squash), summed over action dims
        ``(P, batch)``.

        The squash's log-Jacobian depends on ``u`` only, so ratios of these densities equal
        ratios of the densities of ``a = tanh(u)`` (what PPO needs).
        """
        mean, std = self.distribution(obs)
        z = (pre_tanh - mean) / std
        return (-0.5 * z**2 - torch.log(std) - _HALF_LOG_2PI).sum(-1)

    @staticmethod
    def squash_log_det(pre_tanh: Tensor) -> Tensor:
        """``sum log(1 - tanh(u)^2)`` computed stably as ``2 (log 2 - u - softplus(-2u))``."""
        return (2.0 * (math.log(2.0) - pre_tanh - softplus(-2.0 * pre_tanh))).sum(-1)

    def sample_with_log_prob(
        self, obs: Tensor, generators: Sequence[torch.Generator]
    ) -> tuple[PolicySample, Tensor]:
        """A reparameterised sample and the log-density of the *squashed* action ``(P, batch)``
        (SAC's entropy term)."""
        mean, std = self.distribution(obs)
        noise = standard_normal(tuple(mean.shape[1:]), generators, mean)
        pre_tanh = mean + std * noise
        log_prob = (-0.5 * noise**2 - torch.log(std) - _HALF_LOG_2PI).sum(-1)
        log_prob = log_prob - self.squash_log_det(pre_tanh)
        return PolicySample(noise=noise, pre_tanh=pre_tanh, action=torch.tanh(pre_tanh)), log_prob

    def entropy(self) -> Tensor:
        """Entropy of the pre-squash Gaussian (state independent) per member ``(P,)``."""
        log_std = self.log_std.clamp(*LOG_STD_BOUNDS)
        return (0.5 + _HALF_LOG_2PI + log_std).sum(-1)


# -- critics -------------------------------------------------------------------------------------
class ValueCritic(nn.Module):
    """State value ``V(o)``: observations ``(P, batch, obs_dim)`` -> ``(P, batch)``."""

    def __init__(
        self,
        obs_dim: int,
        hidden: Sequence[int],
        *,
        generators: Sequence[torch.Generator],
        dtype: torch.dtype = torch.float64,
        device: torch.device | str = "cpu",
    ) -> None:
        super().__init__()
        self.obs_dim = obs_dim
        self.members = _check_generators(generators)
        self.net = MLP(obs_dim, hidden, 1, generators=generators, dtype=dtype, device=device)

    def forward(self, obs: Tensor) -> Tensor:
        _check_obs(obs, self.members, self.obs_dim)
        return self.net(obs).squeeze(-1)


class QCritic(nn.Module):
    """Soft action value ``Q(o, a)``: ``(P, batch, obs_dim)``, ``(P, batch, act_dim)`` ->
    ``(P, batch)``."""

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        hidden: Sequence[int],
        *,
        generators: Sequence[torch.Generator],
        dtype: torch.dtype = torch.float64,
        device: torch.device | str = "cpu",
    ) -> None:
        super().__init__()
        self.obs_dim, self.act_dim = obs_dim, act_dim
        self.members = _check_generators(generators)
        self.net = MLP(obs_dim + act_dim, hidden, 1, generators=generators, dtype=dtype,
                       device=device)

    def forward(self, obs: Tensor, action: Tensor) -> Tensor:
        _check_obs(obs, self.members, self.obs_dim)
        _check_obs(action, self.members, self.act_dim, "actions")
        return self.net(torch.cat([obs, action], dim=-1)).squeeze(-1)


# -- utilities -----------------------------------------------------------------------------------
@torch.no_grad()
def polyak_update(target: nn.Module, source: nn.Module, polyak: float) -> None:
    """``target <- polyak * target + (1 - polyak) * source`` for every parameter and buffer
    (elementwise: each member of an ensemble is averaged with the same member)."""
    if not 0.0 <= polyak <= 1.0:
        raise ValueError(f"polyak must lie in [0, 1], got {polyak}")
    for t, s in zip(target.parameters(), source.parameters(), strict=True):
        t.mul_(polyak).add_(s, alpha=1.0 - polyak)
    for tb, sb in zip(target.buffers(), source.buffers(), strict=True):
        tb.copy_(sb)


def select_members(module: nn.Module, index: int | Sequence[int]) -> nn.Module:
    """A copy of the ensemble ``module`` keeping only the member(s) ``index`` (every parameter
    and buffer is sliced along its leading member dimension; ``members`` attributes updated)."""
    rows = [index] if isinstance(index, int) else list(index)
    clone = copy.deepcopy(module)
    with torch.no_grad():
        for name, tensor in list(clone.named_parameters()) + list(clone.named_buffers()):
            selected = tensor.detach()[rows].clone()
            owner = clone.get_submodule(name.rpartition(".")[0]) if "." in name else clone
            leaf = name.rpartition(".")[2]
            if isinstance(tensor, nn.Parameter):
                setattr(owner, leaf, nn.Parameter(selected, requires_grad=tensor.requires_grad))
            else:
                owner._buffers[leaf] = selected
    for sub in clone.modules():
        if hasattr(sub, "members"):
            setattr(sub, "members", len(rows))  # noqa: B010 - not a Module attribute to mypy
    return clone


def linear_state_to_ensemble(state: Mapping[str, Tensor], module: nn.Module) -> dict[str, Tensor]:
    """A ``state_dict`` of a one-member ensemble from one of the pre-ensemble single networks
    (``nn.Linear`` weights ``(out, in)``, biases ``(out,)``, LayerNorm ``(width,)``, policy
    ``log_std`` ``(d,)``): each tensor is reshaped to the ensemble's shape (policy files of the
    format ``safegbpo-policy/1``)."""
    target = module.state_dict()
    out: dict[str, Tensor] = {}
    for key, value in state.items():
        if key not in target:
            raise ValueError(f"unexpected key {key!r} in a single-network state dict")
        shape = target[key].shape
        if value.ndim == 2 and key.endswith(".weight"):
            value = value.T  # nn.Linear (out, in) -> (in, out)
        out[key] = value.reshape(shape)
    return out
