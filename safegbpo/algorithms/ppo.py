"""Proximal Policy Optimisation (Schulman et al. 2017) with a post-processing safeguard (SPEC §8).

One iteration (:meth:`PPO.iterate`) = a rollout of ``len_traj`` steps *per environment*
(``len_traj * N`` interactions per member: Pendulum 1700 * 8 = 13600, the evaluation interval
of SPEC §8) followed by ``num_fits`` epochs of ``num_batches`` mini-batches, for every member
of the population (:mod:`~safegbpo.algorithms.population`: each member has its own rollout,
mini-batch order, advantage normalisation and per-member gradient clipping).

* **Rollout** (no gradients): ``u ~ N(mu(o), std^2)``, ``a = tanh(u)``, the safeguard
  post-processes the action ``a~ = g(a, s)`` and the env executes ``a~``.  From the agent's view
  the safeguard is part of the environment: the stored action and its log-probability are those
  of the policy's (unsafe) sample.  Log-probabilities are Gaussian densities of ``u``: the tanh
  Jacobian does not depend on the parameters, so the probability ratio is exact.
* **Truncation** (the time limit, not a failure): the reward of the truncating step is augmented
  with ``gamma * V(final_obs)`` and the step ends the GAE recursion; terminations bootstrap 0.
* **GAE** (``gamma``, ``gae_lambda``), returns ``= advantages + values``; advantages normalised
  per mini-batch.
* **Losses**: clipped surrogate ``max(-A r, -A clip(r, 1 - eps, 1 + eps))``, entropy bonus
  ``-ent_coef * H`` of the Gaussian (state independent), value loss ``0.5 (V - R)^2``;
  separate Adam optimisers (policy, critic), each gradient clipped to ``max_grad_norm``.
* **Regularisation (Eq 45)**, when ``coef > 0``: the rollout stores the noise ``eps`` of every
  sample and the executed safe action ``g(a, s)``; the policy loss gets
  ``coef * mean m ||tanh(mu_theta(o) + std_theta eps) - g(a, s)||^2`` (``m`` = the safeguard
  intervened), see :func:`~safegbpo.algorithms.base.stored_regularisation_loss` for how this
  reaches the gradient and why the safeguard is not re-solved per mini-batch.

Decisions beyond SPEC §8 (overridable in :class:`PPOConfig`): ``gae_lambda = 0.95``,
``max_grad_norm = 0.5``, default Adam betas, constant learning rates.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from safegbpo.algorithms.base import (
    Algorithm,
    PhaseTimer,
    SafeguardFn,
    check_hidden,
    check_positive,
    check_positive_int,
    check_unit,
    derive_seed,
    final_observations,
    make_generator,
    stored_regularisation_loss,
)
from safegbpo.algorithms.networks import GaussianPolicy, ValueCritic, member_std
from safegbpo.algorithms.population import clip_grad_norm_

__all__ = ["PPOConfig", "PPO", "gae", "minibatch"]


@dataclass(frozen=True)
class PPOConfig:
    """Hyper-parameters of PPO (defaults: SPEC §8, Pendulum PPO).  ``len_traj`` is per env."""

    policy_hidden: tuple[int, ...] = (256, 256, 256, 256)
    policy_lr: float = 3e-4
    critic_hidden: tuple[int, ...] = (200, 200)
    critic_lr: float = 2e-3
    len_traj: int = 1700
    clip_coef: float = 0.2
    ent_coef: float = 0.09
    num_batches: int = 45
    num_fits: int = 32
    gamma: float = 0.99
    gae_lambda: float = 0.95
    max_grad_norm: float = 0.5
    normalise_advantages: bool = True
    log_std_init: float = -1.0

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first invalid hyper-parameter."""
        check_hidden("policy_hidden", self.policy_hidden)
        check_hidden("critic_hidden", self.critic_hidden)
        for name in ("policy_lr", "critic_lr", "clip_coef", "max_grad_norm"):
            check_positive(name, getattr(self, name))
        for name in ("len_traj", "num_batches", "num_fits"):
            check_positive_int(name, getattr(self, name))
        for name in ("gamma", "gae_lambda"):
            check_unit(name, getattr(self, name))
        if not self.ent_coef >= 0:
            raise ValueError(f"ent_coef must be >= 0, got {self.ent_coef!r}")


def gae(rewards: Tensor, values: Tensor, dones: Tensor, last_value: Tensor, gamma: float,
        lam: float) -> Tensor:
    """Generalised advantage estimates ``(T, N)``.

    ``rewards``, ``values`` ``V(o_t)``, ``dones`` (episode ended at step ``t``) are ``(T, N)``;
    ``last_value`` ``(N,)`` is ``V`` of the observation after the rollout.
    ``delta_t = r_t + gamma (1 - done_t) V_{t+1} - V_t``,
    ``A_t = delta_t + gamma lam (1 - done_t) A_{t+1}``.
    """
    steps = rewards.shape[0]
    advantages = torch.empty_like(rewards)
    running = torch.zeros_like(last_value)
    next_value = last_value
    for t in reversed(range(steps)):
        cont = (~dones[t]).to(rewards.dtype)
        delta = rewards[t] + gamma * cont * next_value - values[t]
        running = delta + gamma * lam * cont * running
        advantages[t] = running
        next_value = values[t]
    return advantages


def minibatch(flat: dict[str, Tensor], idx: Tensor) -> dict[str, Tensor]:
    """Every member's mini-batch: the samples ``idx`` ``(P, B)`` (member ``p``'s indices in row
    ``p``) of the flattened rollout ``(P, T N, ...)`` tensors ``flat`` -> ``(P, B, ...)``."""
    return {k: torch.gather(v, 1, idx.view(*idx.shape, *([1] * (v.ndim - 2)))
                            .expand(-1, -1, *v.shape[2:]))
            for k, v in flat.items()}


class PPO(Algorithm):
    """PPO on a population env (see the module docstring and :class:`~safegbpo.algorithms.SHAC`
    for the arguments)."""

    name = "ppo"
    extra_rollout_keys: tuple[str, ...] = ()
    """Names of the per-step tensors :meth:`observe_step` adds to the rollout (none for PPO)."""

    def __init__(
        self,
        env: Any,
        config: PPOConfig,
        *,
        seeds: Sequence[int],
        env_seeds: Sequence[int] | None,
        safeguard: SafeguardFn | None = None,
        regularisation: float = 0.0,
        timer: PhaseTimer | None = None,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float64,
    ) -> None:
        config.validate()
        super().__init__(env, members=len(seeds), safeguard=safeguard,
                         regularisation=regularisation, timer=timer)
        self.config = config
        inits = [make_generator(derive_seed(s, "ppo/init")) for s in seeds]
        self.generators = [make_generator(derive_seed(s, "ppo/sample"), device) for s in seeds]
        self.policy = GaussianPolicy(self.obs_dim, self.act_dim, config.policy_hidden,
                                     generators=inits, log_std_init=config.log_std_init,
                                     dtype=dtype, device=device)
        self.critic = ValueCritic(self.obs_dim, config.critic_hidden, generators=inits,
                                  dtype=dtype, device=device)
        self.policy_optimizer = torch.optim.Adam(self.policy.parameters(), lr=config.policy_lr)
        self.critic_optimizer = torch.optim.Adam(self.critic.parameters(), lr=config.critic_lr)
        self.modules = {"policy": self.policy, "critic": self.critic}
        self.optimizers = {"policy": self.policy_optimizer, "critic": self.critic_optimizer}
        if env_seeds is not None:
            self.reset_env(env_seeds)

    @property
    def interactions_per_iteration(self) -> int:
        return self.config.len_traj * self.num_envs

    @torch.no_grad()
    def collect(self) -> dict[str, Tensor]:
        """Roll out ``len_traj`` steps of every env; returns ``(T, P, N, ...)`` tensors ``obs``,
        ``pre_tanh``, ``noise``, ``log_prob``, ``value``, ``reward``, ``done``, ``safe_action``
        and ``last_value`` ``(P, N)``."""
        cfg, rows = self.config, self.members * self.num_envs
        keys = ("obs", "pre_tanh", "noise", "log_prob", "value", "reward", "done", "safe_action")
        data: dict[str, list[Tensor]] = {k: [] for k in keys}
        for key in self.extra_rollout_keys:
            data[key] = []
        obs = self.current_obs()
        for _ in range(cfg.len_traj):
            member_obs = self.by_member(obs)
            sample = self.policy.sample(member_obs, self.generators)
            safe_action = self.apply_safeguard(sample.action.reshape(rows, -1), self.env.state)
            next_obs, reward, terminated, truncated, info = self.env.step(safe_action)
            done = terminated | truncated
            timeout = self.by_member(truncated & ~terminated)
            reward = self.by_member(reward)
            if bool(timeout.any()):  # bootstrap the time limit with the real last observation
                final_value = self.critic(self.by_member(final_observations(next_obs, done,
                                                                           info)))
                reward = reward + cfg.gamma * torch.where(timeout, final_value,
                                                          torch.zeros_like(final_value))
            data["obs"].append(member_obs)
            data["pre_tanh"].append(sample.pre_tanh)
            data["noise"].append(sample.noise)
            data["log_prob"].append(self.policy.log_prob_pre_tanh(member_obs, sample.pre_tanh))
            data["value"].append(self.critic(member_obs))
            data["reward"].append(reward)
            data["done"].append(self.by_member(done))
            data["safe_action"].append(self.by_member(safe_action))
            for key, value in self.observe_step(member_obs, self.by_member(next_obs),
                                                self.by_member(done), timeout, info).items():
                data[key].append(value)
            obs = next_obs
        self.env.cut_graph()
        self.obs = obs.detach()
        batch = {k: torch.stack(v) for k, v in data.items()}
        batch["last_value"] = self.critic(self.by_member(self.obs))
        batch.update(self.finish_rollout(self.by_member(self.obs)))
        return batch

    # -- hooks of an algorithm built on PPO (PCRPO's cost signal); PPO records nothing more
    def observe_step(self, obs: Tensor, next_obs: Tensor, done: Tensor, timeout: Tensor,
                     info: dict[str, Any]) -> dict[str, Tensor]:
        """Extra per-step data (``extra_rollout_keys``, each ``(P, N, ...)``) of one rollout
        step, after ``env.step``: ``obs`` / ``next_obs`` ``(P, N, o)`` (``next_obs`` after
        autoreset), ``done`` / ``timeout`` ``(P, N)``, the step's ``info`` (env rows
        ``(P N, ...)``)."""
        return {}

    def finish_rollout(self, obs: Tensor) -> dict[str, Tensor]:
        """Extra rollout entries computed from the observations ``(P, N, o)`` after the
        rollout."""
        return {}

    def advantages(self, rewards: Tensor, values: Tensor, dones: Tensor,
                   last_value: Tensor) -> Tensor:
        """GAE (:func:`gae`) of every member's envs: ``(T, P, N)`` rewards, values and dones,
        ``last_value`` ``(P, N)`` -> ``(T, P, N)`` (each column is one env's recursion)."""
        cfg, steps = self.config, rewards.shape[0]
        advantages = gae(rewards.reshape(steps, -1), values.reshape(steps, -1),
                         dones.reshape(steps, -1), last_value.reshape(-1), cfg.gamma,
                         cfg.gae_lambda)
        return advantages.view(rewards.shape)

    def per_member(self, x: Tensor) -> Tensor:
        """Rollout data ``(T, P, N, ...)`` as every member's flat samples ``(P, T N, ...)``."""
        return x.transpose(0, 1).reshape(self.members, -1, *x.shape[3:])

    def iterate(self) -> dict[str, float]:
        with self.timer("rollout"):
            batch = self.collect()
        with self.timer("update"):
            advantages = self.advantages(batch["reward"], batch["value"], batch["done"],
                                         batch["last_value"])
            returns = advantages + batch["value"]
            flat = {k: self.per_member(v) for k, v in batch.items() if k != "last_value"}
            flat["advantage"], flat["return"] = self.per_member(advantages), \
                self.per_member(returns)
            stats = self.update(flat)
        stats["rollout_reward"] = float(batch["reward"].mean())
        return stats

    def update(self, flat: dict[str, Tensor]) -> dict[str, float]:
        """``num_fits`` epochs of ``num_batches`` mini-batches on every member's flattened
        rollout (``(P, T N, ...)`` tensors)."""
        cfg = self.config
        size = flat["advantage"].shape[1]
        for _ in range(cfg.num_fits):
            order = torch.stack([torch.randperm(size, generator=g, device=flat["obs"].device)
                                 for g in self.generators])
            for idx in torch.tensor_split(order, cfg.num_batches, dim=1):
                if idx.shape[1] == 0:
                    continue
                batch = minibatch(flat, idx)
                policy_loss, info = self.policy_loss(batch)
                value_loss = 0.5 * ((self.critic(batch["obs"]) - batch["return"]) ** 2).mean(-1)
                self.policy_optimizer.zero_grad(set_to_none=True)
                self.critic_optimizer.zero_grad(set_to_none=True)
                (policy_loss + value_loss).sum().backward()
                clip_grad_norm_(self.policy.parameters(), cfg.max_grad_norm)
                clip_grad_norm_(self.critic.parameters(), cfg.max_grad_norm)
                self.policy_optimizer.step()
                self.critic_optimizer.step()
        return {"policy_loss": float(policy_loss.detach().mean()),
                "value_loss": float(value_loss.detach().mean()), **info}

    def policy_loss(self, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, float]]:
        """Clipped surrogate + entropy bonus (+ Eq 45) of every member's mini-batch
        (``(P, B, ...)``: ``obs``, ``pre_tanh``, ``noise``, ``log_prob``, ``advantage``,
        ``safe_action``); returns the losses ``(P,)`` and diagnostics (member means of entropy,
        approximate KL, clip fraction)."""
        cfg = self.config
        log_ratio = self.log_ratio(batch)
        ratio = log_ratio.exp()
        surrogate = self.clipped_surrogate(batch["advantage"], ratio)
        entropy = self.policy.entropy()
        loss = surrogate - cfg.ent_coef * entropy
        if self.regularisation > 0.0:
            loss = loss + stored_regularisation_loss(
                self.policy, batch["obs"], batch["noise"], torch.tanh(batch["pre_tanh"]),
                batch["safe_action"], self.regularisation)
        return loss, self.diagnostics(log_ratio, ratio, entropy)

    @torch.no_grad()
    def diagnostics(self, log_ratio: Tensor, ratio: Tensor, entropy: Tensor) -> dict[str, float]:
        """Member means of the entropy, approximate KL and clip fraction of a mini-batch's
        update (``log_ratio``, ``ratio`` ``(P, B)``, ``entropy`` ``(P,)``)."""
        return {"entropy": float(entropy.detach().mean()),
                "approx_kl": float(((ratio - 1.0) - log_ratio).mean()),
                "clip_fraction": float(((ratio - 1.0).abs() > self.config.clip_coef)
                                       .to(ratio.dtype).mean())}

    def log_ratio(self, batch: dict[str, Tensor]) -> Tensor:
        """``log pi_theta(u|o) - log pi_old(u|o)`` ``(P, B)`` of every member's stored
        samples."""
        return self.policy.log_prob_pre_tanh(batch["obs"], batch["pre_tanh"]) - batch["log_prob"]

    def clipped_surrogate(self, advantage: Tensor, ratio: Tensor) -> Tensor:
        """Every member's clipped surrogate loss ``mean max(-A r, -A clip(r, 1 - eps, 1 + eps))``
        ``(P,)`` of its advantages ``(P, B)`` (standardised per member's mini-batch if
        ``normalise_advantages``) and probability ratios ``(P, B)``."""
        cfg = self.config
        if cfg.normalise_advantages and advantage.shape[1] > 1:
            advantage = (advantage - advantage.mean(-1, keepdim=True)) \
                / (member_std(advantage) + 1e-8)
        return torch.max(
            -advantage * ratio,
            -advantage * ratio.clamp(1.0 - cfg.clip_coef, 1.0 + cfg.clip_coef)).mean(-1)
