"""Proximal Policy Optimisation (Schulman et al. 2017) with a post-processing safeguard (SPEC §8).

One iteration (:meth:`PPO.iterate`) = a rollout of ``len_traj`` steps *per environment*
(``len_traj * N`` interactions: Pendulum 1700 * 8 = 13600, the evaluation interval of SPEC §8)
followed by ``num_fits`` epochs of ``num_batches`` mini-batches.

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
from safegbpo.algorithms.networks import GaussianPolicy, ValueCritic

__all__ = ["PPOConfig", "PPO", "gae"]


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


class PPO(Algorithm):
    """PPO on a ``SafeVectorEnv`` (see the module docstring)."""

    name = "ppo"
    extra_rollout_keys: tuple[str, ...] = ()
    """Names of the per-step tensors :meth:`observe_step` adds to the rollout (none for PPO)."""

    def __init__(
        self,
        env: Any,
        config: PPOConfig,
        *,
        seed: int,
        env_seed: int | None,
        safeguard: SafeguardFn | None = None,
        regularisation: float = 0.0,
        timer: PhaseTimer | None = None,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float64,
    ) -> None:
        config.validate()
        super().__init__(env, safeguard=safeguard, regularisation=regularisation, timer=timer)
        self.config = config
        init = make_generator(derive_seed(seed, "ppo/init"))
        self.generator = make_generator(derive_seed(seed, "ppo/sample"), device)
        self.policy = GaussianPolicy(self.obs_dim, self.act_dim, config.policy_hidden,
                                     generator=init, log_std_init=config.log_std_init,
                                     dtype=dtype, device=device)
        self.critic = ValueCritic(self.obs_dim, config.critic_hidden, generator=init,
                                  dtype=dtype, device=device)
        self.policy_optimizer = torch.optim.Adam(self.policy.parameters(), lr=config.policy_lr)
        self.critic_optimizer = torch.optim.Adam(self.critic.parameters(), lr=config.critic_lr)
        self.modules = {"policy": self.policy, "critic": self.critic}
        self.optimizers = {"policy": self.policy_optimizer, "critic": self.critic_optimizer}
        if env_seed is not None:
            self.reset_env(env_seed)

    @property
    def interactions_per_iteration(self) -> int:
        return self.config.len_traj * self.num_envs

    @torch.no_grad()
    def collect(self) -> dict[str, Tensor]:
        """Roll out ``len_traj`` steps of every env; returns ``(T, N, ...)`` tensors ``obs``,
        ``pre_tanh``, ``noise``, ``log_prob``, ``value``, ``reward``, ``done``, ``safe_action``
        and ``last_value`` ``(N,)``."""
        cfg = self.config
        keys = ("obs", "pre_tanh", "noise", "log_prob", "value", "reward", "done", "safe_action")
        data: dict[str, list[Tensor]] = {k: [] for k in keys}
        for key in self.extra_rollout_keys:
            data[key] = []
        obs = self.current_obs()
        for _ in range(cfg.len_traj):
            sample = self.policy.sample(obs, self.generator)
            safe_action = self.apply_safeguard(sample.action, self.env.state)
            next_obs, reward, terminated, truncated, info = self.env.step(safe_action)
            done = terminated | truncated
            timeout = truncated & ~terminated
            if bool(timeout.any()):  # bootstrap the time limit with the real last observation
                final_value = self.critic(final_observations(next_obs, done, info))
                reward = reward + cfg.gamma * torch.where(timeout, final_value,
                                                          torch.zeros_like(final_value))
            data["obs"].append(obs)
            data["pre_tanh"].append(sample.pre_tanh)
            data["noise"].append(sample.noise)
            data["log_prob"].append(self.policy.log_prob_pre_tanh(obs, sample.pre_tanh))
            data["value"].append(self.critic(obs))
            data["reward"].append(reward)
            data["done"].append(done)
            data["safe_action"].append(safe_action)
            for key, value in self.observe_step(obs, next_obs, done, timeout, info).items():
                data[key].append(value)
            obs = next_obs
        self.env.cut_graph()
        self.obs = obs.detach()
        batch = {k: torch.stack(v) for k, v in data.items()}
        batch["last_value"] = self.critic(self.obs)
        batch.update(self.finish_rollout(self.obs))
        return batch

    # -- hooks of an algorithm built on PPO (PCRPO's cost signal); PPO records nothing more
    def observe_step(self, obs: Tensor, next_obs: Tensor, done: Tensor, timeout: Tensor,
                     info: dict[str, Any]) -> dict[str, Tensor]:
        """Extra per-step data (``extra_rollout_keys``) of one rollout step, after
        ``env.step``: ``obs`` / ``next_obs`` ``(N, o)`` (``next_obs`` after autoreset),
        ``done`` / ``timeout`` ``(N,)``, the step's ``info``."""
        return {}

    def finish_rollout(self, obs: Tensor) -> dict[str, Tensor]:
        """Extra rollout entries computed from the observations after the rollout."""
        return {}

    def iterate(self) -> dict[str, float]:
        cfg = self.config
        with self.timer("rollout"):
            batch = self.collect()
        with self.timer("update"):
            advantages = gae(batch["reward"], batch["value"], batch["done"], batch["last_value"],
                             cfg.gamma, cfg.gae_lambda)
            returns = advantages + batch["value"]
            flat = {k: v.flatten(0, 1) for k, v in batch.items() if k != "last_value"}
            flat["advantage"], flat["return"] = advantages.flatten(), returns.flatten()
            stats = self.update(flat)
        stats["rollout_reward"] = float(batch["reward"].mean())
        return stats

    def update(self, flat: dict[str, Tensor]) -> dict[str, float]:
        """``num_fits`` epochs of ``num_batches`` mini-batches on the flattened rollout."""
        cfg = self.config
        size = flat["advantage"].shape[0]
        for _ in range(cfg.num_fits):
            order = torch.randperm(size, generator=self.generator, device=flat["obs"].device)
            for idx in torch.tensor_split(order, cfg.num_batches):
                if idx.numel() == 0:
                    continue
                batch = {k: v[idx] for k, v in flat.items()}
                policy_loss, info = self.policy_loss(batch)
                value_loss = 0.5 * ((self.critic(batch["obs"]) - batch["return"]) ** 2).mean()
                self.policy_optimizer.zero_grad(set_to_none=True)
                self.critic_optimizer.zero_grad(set_to_none=True)
                (policy_loss + value_loss).backward()
                torch.nn.utils.clip_grad_norm_(self.policy.parameters(), cfg.max_grad_norm)
                torch.nn.utils.clip_grad_norm_(self.critic.parameters(), cfg.max_grad_norm)
                self.policy_optimizer.step()
                self.critic_optimizer.step()
        return {"policy_loss": float(policy_loss.detach()),
                "value_loss": float(value_loss.detach()), **info}

    def policy_loss(self, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, float]]:
        """Clipped surrogate + entropy bonus (+ Eq 45) of a mini-batch of flattened rollout
        data (``obs``, ``pre_tanh``, ``noise``, ``log_prob``, ``advantage``, ``safe_action``);
        returns the loss and diagnostics (entropy, approximate KL, clip fraction)."""
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
        """Entropy, approximate KL and clip fraction of a mini-batch's update."""
        return {"entropy": float(entropy.detach()),
                "approx_kl": float(((ratio - 1.0) - log_ratio).mean()),
                "clip_fraction": float(((ratio - 1.0).abs() > self.config.clip_coef)
                                       .to(ratio.dtype).mean())}

    def log_ratio(self, batch: dict[str, Tensor]) -> Tensor:
        """``log pi_theta(u|o) - log pi_old(u|o)`` ``(B,)`` of the stored samples."""
        return self.policy.log_prob_pre_tanh(batch["obs"], batch["pre_tanh"]) - batch["log_prob"]

    def clipped_surrogate(self, advantage: Tensor, ratio: Tensor) -> Tensor:
        """The clipped surrogate loss ``mean max(-A r, -A clip(r, 1 - eps, 1 + eps))`` of the
        advantages ``(B,)`` (standardised per mini-batch if ``normalise_advantages``) and the
        probability ratios ``(B,)``."""
        cfg = self.config
        if cfg.normalise_advantages and advantage.numel() > 1:
            advantage = (advantage - advantage.mean()) / (advantage.std() + 1e-8)
        return torch.max(
            -advantage * ratio,
            -advantage * ratio.clamp(1.0 - cfg.clip_coef, 1.0 + cfg.clip_coef)).mean()
