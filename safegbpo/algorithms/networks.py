"""Neural networks of the learning algorithms (SPEC §8).

* :class:`MLP` — ``Linear -> ELU -> LayerNorm`` for every hidden layer, a linear output layer.
* :class:`GaussianPolicy` — the MLP gives the mean ``mu(o)`` of a Gaussian over the *pre-squash*
  action ``u``; a learned, state-independent ``log_std`` (initialised to -1) gives its standard
  deviation; the action is ``a = tanh(u)`` (inside the feasible box ``A = [-1, 1]^d``).  The
  deterministic (evaluation) action is ``tanh(mu(o))``.
* :class:`ValueCritic` — ``V(o)`` (SHAC, PPO); :class:`QCritic` — ``Q(o, a)`` (SAC).

Initialisation never touches the global RNG: layers are created uninitialised
(``torch.nn.utils.skip_init``) and then filled from the caller's ``torch.Generator``
(orthogonal weights, zero biases — gain ``sqrt(2)`` for hidden layers, ``output_gain`` for the
last layer: 0.01 for the policy mean so the initial policy is centred on ``a = 0``, 1 for critics).

Shapes: observations ``(batch, obs_dim)``, actions ``(batch, act_dim)``, values ``(batch,)``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "MLP",
    "GaussianPolicy",
    "PolicySample",
    "ValueCritic",
    "QCritic",
    "LOG_STD_BOUNDS",
    "polyak_update",
]

#: ``log_std`` is clamped to this interval when used (keeps ``std`` away from 0 and from blowing
#: up under PPO's entropy bonus / SAC's temperature); the parameter itself is unconstrained.
LOG_STD_BOUNDS: tuple[float, float] = (-5.0, 2.0)

_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)


def _linear(
    in_dim: int,
    out_dim: int,
    *,
    gain: float,
    generator: torch.Generator,
    dtype: torch.dtype,
    device: torch.device | str,
) -> nn.Linear:
    """An ``nn.Linear`` initialised from ``generator`` only (orthogonal weight, zero bias)."""
    layer = torch.nn.utils.skip_init(nn.Linear, in_dim, out_dim, dtype=dtype, device=device)
    with torch.no_grad():
        # QR-based orthogonal init is done on the CPU generator, then copied (device-agnostic).
        weight = torch.empty(out_dim, in_dim, dtype=dtype)
        nn.init.orthogonal_(weight, gain=gain, generator=generator)
        layer.weight.copy_(weight)
        layer.bias.zero_()
    return layer


class MLP(nn.Sequential):
    """``in -> [Linear -> ELU -> LayerNorm] * len(hidden) -> Linear -> out`` (SPEC §8)."""

    def __init__(
        self,
        in_dim: int,
        hidden: Sequence[int],
        out_dim: int,
        *,
        generator: torch.Generator,
        output_gain: float = 1.0,
        dtype: torch.dtype = torch.float64,
        device: torch.device | str = "cpu",
    ) -> None:
        if in_dim <= 0 or out_dim <= 0:
            raise ValueError(f"MLP dimensions must be positive, got in={in_dim}, out={out_dim}")
        if any(int(h) <= 0 for h in hidden):
            raise ValueError(f"hidden layer sizes must be positive, got {tuple(hidden)}")
        layers: list[nn.Module] = []
        last = in_dim
        for width in hidden:
            layers.append(
                _linear(
                    last, int(width), gain=math.sqrt(2.0), generator=generator, dtype=dtype,
                    device=device,
                )
            )
            layers.append(nn.ELU())
            layers.append(nn.LayerNorm(int(width), dtype=dtype, device=device))
            last = int(width)
        layers.append(_linear(last, out_dim, gain=output_gain, generator=generator, dtype=dtype,
                              device=device))
        super().__init__(*layers)


@dataclass(frozen=True)
class PolicySample:
    """A reparameterised policy sample, each ``(batch, act_dim)``.

    ``noise`` is the standard normal draw ``eps``, ``pre_tanh = mu + std * eps`` and
    ``action = tanh(pre_tanh)`` (differentiable in the policy parameters).
    """

    noise: Tensor
    pre_tanh: Tensor
    action: Tensor


class GaussianPolicy(nn.Module):
    """Tanh-squashed Gaussian policy with a state-independent ``log_std`` (SPEC §8)."""

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        hidden: Sequence[int],
        *,
        generator: torch.Generator,
        log_std_init: float = -1.0,
        dtype: torch.dtype = torch.float64,
        device: torch.device | str = "cpu",
    ) -> None:
        super().__init__()
        self.obs_dim, self.act_dim = obs_dim, act_dim
        self.mean_net = MLP(
            obs_dim, hidden, act_dim, generator=generator, output_gain=0.01, dtype=dtype,
            device=device,
        )
        self.log_std = nn.Parameter(torch.full((act_dim,), float(log_std_init), dtype=dtype,
                                               device=device))

    def _check(self, obs: Tensor) -> None:
        if obs.ndim != 2 or obs.shape[-1] != self.obs_dim:
            raise ValueError(f"observations must be (batch, {self.obs_dim}), "
                             f"got {tuple(obs.shape)}")

    def distribution(self, obs: Tensor) -> tuple[Tensor, Tensor]:
        """Mean ``(batch, d)`` and standard deviation ``(d,)`` of the pre-squash Gaussian."""
        self._check(obs)
        std = self.log_std.clamp(*LOG_STD_BOUNDS).exp()
        return self.mean_net(obs), std

    def sample(self, obs: Tensor, generator: torch.Generator) -> PolicySample:
        """Reparameterised sample ``a = tanh(mu(o) + std * eps)``, ``eps ~ N(0, I)`` from
        ``generator`` (gradients flow to the parameters)."""
        mean, std = self.distribution(obs)
        noise = torch.randn(mean.shape, generator=generator, dtype=mean.dtype, device=mean.device)
        pre_tanh = mean + std * noise
        return PolicySample(noise=noise, pre_tanh=pre_tanh, action=torch.tanh(pre_tanh))

    def action_from_noise(self, obs: Tensor, noise: Tensor) -> Tensor:
        """``tanh(mu(o) + std * noise)`` for a given noise draw (reproduces a stored sample at
        the parameters that drew it; used by the Eq 45 term of PPO and SAC)."""
        mean, std = self.distribution(obs)
        return torch.tanh(mean + std * noise)

    def deterministic(self, obs: Tensor) -> Tensor:
        """The evaluation action ``tanh(mu(o))``."""
        mean, _ = self.distribution(obs)
        return torch.tanh(mean)

    def log_prob_pre_tanh(self, obs: Tensor, pre_tanh: Tensor) -> Tensor:
        """Gaussian log-density of ``u`` (before the squash), summed over action dims: ``(batch,)``.

        The squash's log-Jacobian depends on ``u`` only, so ratios of these densities equal
        ratios of the densities of ``a = tanh(u)`` (what PPO needs).
        """
        mean, std = self.distribution(obs)
        z = (pre_tanh - mean) / std
        return (-0.5 * z**2 - torch.log(std) - _HALF_LOG_2PI).sum(-1)

    @staticmethod
    def squash_log_det(pre_tanh: Tensor) -> Tensor:
        """``sum log(1 - tanh(u)^2)`` computed stably as ``2 (log 2 - u - softplus(-2u))``."""
        return (2.0 * (math.log(2.0) - pre_tanh - F.softplus(-2.0 * pre_tanh))).sum(-1)

    def sample_with_log_prob(
        self, obs: Tensor, generator: torch.Generator
    ) -> tuple[PolicySample, Tensor]:
        """A reparameterised sample and the log-density of the *squashed* action ``(batch,)``
        (SAC's entropy term)."""
        mean, std = self.distribution(obs)
        noise = torch.randn(mean.shape, generator=generator, dtype=mean.dtype, device=mean.device)
        pre_tanh = mean + std * noise
        log_prob = (-0.5 * noise**2 - torch.log(std) - _HALF_LOG_2PI).sum(-1)
        log_prob = log_prob - self.squash_log_det(pre_tanh)
        return PolicySample(noise=noise, pre_tanh=pre_tanh, action=torch.tanh(pre_tanh)), log_prob

    def entropy(self) -> Tensor:
        """Entropy of the pre-squash Gaussian (state independent), a scalar."""
        log_std = self.log_std.clamp(*LOG_STD_BOUNDS)
        return (0.5 + _HALF_LOG_2PI + log_std).sum()


class ValueCritic(nn.Module):
    """State value ``V(o)``: observations ``(batch, obs_dim)`` -> ``(batch,)``."""

    def __init__(
        self,
        obs_dim: int,
        hidden: Sequence[int],
        *,
        generator: torch.Generator,
        dtype: torch.dtype = torch.float64,
        device: torch.device | str = "cpu",
    ) -> None:
        super().__init__()
        self.net = MLP(obs_dim, hidden, 1, generator=generator, dtype=dtype, device=device)

    def forward(self, obs: Tensor) -> Tensor:
        return self.net(obs).squeeze(-1)


class QCritic(nn.Module):
    """Soft action value ``Q(o, a)``: ``(batch, obs_dim)``, ``(batch, act_dim)`` -> ``(batch,)``."""

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        hidden: Sequence[int],
        *,
        generator: torch.Generator,
        dtype: torch.dtype = torch.float64,
        device: torch.device | str = "cpu",
    ) -> None:
        super().__init__()
        self.net = MLP(obs_dim + act_dim, hidden, 1, generator=generator, dtype=dtype,
                       device=device)

    def forward(self, obs: Tensor, action: Tensor) -> Tensor:
        return self.net(torch.cat([obs, action], dim=-1)).squeeze(-1)


@torch.no_grad()
def polyak_update(target: nn.Module, source: nn.Module, polyak: float) -> None:
    """``target <- polyak * target + (1 - polyak) * source`` for every parameter and buffer."""
    if not 0.0 <= polyak <= 1.0:
        raise ValueError(f"polyak must lie in [0, 1], got {polyak}")
    for t, s in zip(target.parameters(), source.parameters(), strict=True):
        t.mul_(polyak).add_(s, alpha=1.0 - polyak)
    for tb, sb in zip(target.buffers(), source.buffers(), strict=True):
        tb.copy_(sb)
