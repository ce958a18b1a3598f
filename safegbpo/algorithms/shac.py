"""Short-Horizon Actor-Critic (SHAC, Xu et al. 2022) through a differentiable safeguard (SPEC §8).

One iteration (:meth:`SHAC.iterate`) is one *window* of ``h = len_traj`` steps of all ``N``
environments of every member of the population (``h * N`` interactions per member; the
members are independent seeds trained in lockstep, :mod:`~safegbpo.algorithms.population`):

1. **Differentiable rollout.**  ``a_t = tanh(mu(o_t) + std * eps_t)`` (reparameterised), the
   safeguard ``a~_t = g(a_t, s_t)`` (differentiable in ``a_t`` and ``s_t``), ``env.step(a~_t)``
   returns rewards that are differentiable in every earlier action of the window.
2. **Policy loss** (Eq 10 over a short horizon, normalised as in SHAC)::

       L_pi = -1/(N h) * sum_envs [ sum_t gamma^t r_t + gamma^h V_target(s_h) ]
              + lambda_reg * mean_t,envs ||a_t - g(a_t, s_t)||^2          (Eq 45, if > 0)

   The terminal value is the *target* critic at the last state, differentiable in that state.
   An episode that ends inside the window closes its own sum: on truncation it is bootstrapped
   with ``gamma^(t+1) V_target(final_obs)`` (the real last observation, ``info["final_obs"]``),
   on termination with 0; the sum restarts (discount reset to 1) on the reset state.
   Gradient clipped to norm ``max_grad_norm`` (1.0) per member, one Adam step.
3. ``env.cut_graph()`` — the next window starts from detached states.
4. **Critic**: TD(lambda) targets (``lambda = td_weight``, values from the target critic, episode
   ends handled as above) and ``vf_num_fits`` epochs of ``vf_fit_num_batches`` mini-batches of
   MSE regression (gradient clipped like the policy's); then the target critic is
   Polyak-averaged ``target <- polyak * target + (1 - polyak) * critic``.

Decisions beyond SPEC §8 (documented, overridable in :class:`SHACConfig`): Adam
``betas = (0.7, 0.95)`` as in SHAC's reference configurations; constant learning rates; no
observation or reward normalisation.
"""

from __future__ import annotations

import copy
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
)
from safegbpo.algorithms.networks import GaussianPolicy, ValueCritic, polyak_update
from safegbpo.algorithms.population import clip_grad_norm_

__all__ = ["SHACConfig", "SHAC", "td_lambda_targets"]


@dataclass(frozen=True)
class SHACConfig:
    """Hyper-parameters of SHAC (defaults: SPEC §8, Pendulum SHAC)."""

    policy_hidden: tuple[int, ...] = (128, 128)
    policy_lr: float = 4e-4
    critic_hidden: tuple[int, ...] = (128, 128, 128)
    critic_lr: float = 2e-3
    len_traj: int = 64
    gamma: float = 0.99
    td_weight: float = 0.95
    polyak: float = 0.4
    vf_num_fits: int = 50
    vf_fit_num_batches: int = 1
    max_grad_norm: float = 1.0
    betas: tuple[float, float] = (0.7, 0.95)
    log_std_init: float = -1.0

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first invalid hyper-parameter."""
        check_hidden("policy_hidden", self.policy_hidden)
        check_hidden("critic_hidden", self.critic_hidden)
        for name in ("policy_lr", "critic_lr", "max_grad_norm"):
            check_positive(name, getattr(self, name))
        for name in ("len_traj", "vf_num_fits", "vf_fit_num_batches"):
            check_positive_int(name, getattr(self, name))
        for name in ("gamma", "td_weight", "polyak"):
            check_unit(name, getattr(self, name))
        if len(self.betas) != 2 or not all(0.0 <= b < 1.0 for b in self.betas):
            raise ValueError(f"betas must be two numbers in [0, 1), got {self.betas}")


def td_lambda_targets(
    rewards: Tensor, next_values: Tensor, ends: Tensor, gamma: float, lam: float
) -> Tensor:
    """TD(lambda) returns of a window, all ``(h, N)``.

    ``next_values[t]`` is the value of the state reached by step ``t`` (0 after a termination,
    the value of the final observation after a truncation); ``ends[t]`` marks steps after which
    the return must not look further ahead (episode end).  The last step of the window always
    bootstraps.  Recursion: ``G_t = r_t + gamma * ((1 - lam c_t) V_{t+1} + lam c_t G_{t+1})``
    with ``c_t = 0`` at an end or at the last step, 1 otherwise.
    """
    if not (rewards.shape == next_values.shape == ends.shape) or rewards.ndim != 2:
        raise ValueError(f"rewards, next_values, ends must share a (h, N) shape, got "
                         f"{tuple(rewards.shape)}, {tuple(next_values.shape)}, {tuple(ends.shape)}")
    targets = torch.empty_like(rewards)
    ahead = next_values[-1]
    for t in reversed(range(rewards.shape[0])):
        cont = torch.zeros_like(rewards[t]) if t == rewards.shape[0] - 1 else (~ends[t]).to(
            rewards.dtype)
        ahead = rewards[t] + gamma * ((1.0 - lam * cont) * next_values[t] + lam * cont * ahead)
        targets[t] = ahead
    return targets


class SHAC(Algorithm):
    """SHAC on a population env (see the module docstring).

    Args:
        env: the training env, ``len(seeds) x N`` rows (member ``p`` owns the ``p``-th block of
            ``N`` rows; :func:`~safegbpo.algorithms.population.population_env`).
        config: hyper-parameters.
        seeds: one seed per member (initialisation and sampling streams derive from it).
        env_seeds: one reset seed per member's block (``None``: the caller restores the env).
        safeguard: ``g(actions, states)`` for all rows at once, or ``None``.
    """

    name = "shac"

    def __init__(
        self,
        env: Any,
        config: SHACConfig,
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
        inits = [make_generator(derive_seed(s, "shac/init")) for s in seeds]
        self.generators = [make_generator(derive_seed(s, "shac/sample"), device) for s in seeds]
        self.policy = GaussianPolicy(self.obs_dim, self.act_dim, config.policy_hidden,
                                     generators=inits, log_std_init=config.log_std_init,
                                     dtype=dtype, device=device)
        self.critic = ValueCritic(self.obs_dim, config.critic_hidden, generators=inits,
                                  dtype=dtype, device=device)
        self.target_critic = copy.deepcopy(self.critic).requires_grad_(False)
        self.policy_optimizer = torch.optim.Adam(self.policy.parameters(), lr=config.policy_lr,
                                                 betas=config.betas)
        self.critic_optimizer = torch.optim.Adam(self.critic.parameters(), lr=config.critic_lr,
                                                 betas=config.betas)
        self.modules = {"policy": self.policy, "critic": self.critic,
                        "target_critic": self.target_critic}
        self.optimizers = {"policy": self.policy_optimizer, "critic": self.critic_optimizer}
        if env_seeds is not None:
            self.reset_env(env_seeds)

    @property
    def interactions_per_iteration(self) -> int:
        return self.config.len_traj * self.num_envs

    def rollout_loss(self) -> tuple[Tensor, dict[str, Tensor]]:
        """Roll out one window through the simulator and safeguard; return the policy loss of
        every member ``(P,)`` (differentiable) and the detached window data for the critic
        (``obs (h, P, N, o)``, ``rewards``, ``next_values``, ``ends`` each ``(h, P, N)``)."""
        cfg, members, n = self.config, self.members, self.num_envs
        obs = self.current_obs()
        shape = (members, n)
        discount = torch.ones(shape, dtype=obs.dtype, device=obs.device)  # gamma^t since reset
        discounted_return = torch.zeros_like(discount)  # sum gamma^t r_t since window / reset
        loss = torch.zeros(members, dtype=obs.dtype, device=obs.device)
        window: dict[str, list[Tensor]] = {"obs": [], "rewards": [], "next_values": [],
                                           "ends": []}
        actions, safe_actions = [], []
        for t in range(cfg.len_traj):
            member_obs = self.by_member(obs)
            action = self.policy.sample(member_obs, self.generators).action  # (P, N, d)
            safe_action = self.by_member(self.apply_safeguard(action.reshape(members * n, -1),
                                                                 self.env.state))
            next_obs, reward, terminated, truncated, info = self.env.step(
                safe_action.reshape(members * n, -1))
            done = terminated | truncated
            value = self.target_critic(self.by_member(final_observations(next_obs, done, info)))
            terminated, done, reward = (self.by_member(x) for x in (terminated, done, reward))
            value = torch.where(terminated, torch.zeros_like(value), value)
            discounted_return = discounted_return + discount * reward
            closes = done if t < cfg.len_traj - 1 else torch.ones_like(done)
            loss = loss - torch.where(
                closes, discounted_return + cfg.gamma * discount * value,
                torch.zeros_like(value)).sum(-1)
            discount = torch.where(done, torch.ones_like(discount), discount * cfg.gamma)
            discounted_return = torch.where(done, torch.zeros_like(discounted_return),
                                            discounted_return)
            window["obs"].append(member_obs.detach())
            window["rewards"].append(reward.detach())
            window["next_values"].append(value.detach())
            window["ends"].append(done.detach())
            actions.append(action)
            safe_actions.append(safe_action)
            obs = next_obs
        loss = loss / (n * cfg.len_traj)
        if self.regularisation > 0.0:
            from safegbpo.safeguards import regularisation_loss

            unsafe, safe = torch.stack(actions, dim=1), torch.stack(safe_actions, dim=1)
            loss = loss + torch.stack([regularisation_loss(unsafe[p], safe[p],
                                                           self.regularisation)
                                       for p in range(members)])
        self.obs = obs  # still attached to the graph until cut_graph()
        data = {k: torch.stack(v) for k, v in window.items()}
        return loss, data

    def iterate(self) -> dict[str, float]:
        cfg = self.config
        with self.timer("rollout"):
            loss, data = self.rollout_loss()
        with self.timer("update"):
            self.policy_optimizer.zero_grad(set_to_none=True)
            loss.sum().backward()  # member p's parameters only receive member p's gradient
            grad_norm = clip_grad_norm_(self.policy.parameters(), cfg.max_grad_norm)
            self.policy_optimizer.step()
            self.env.cut_graph()
            self.obs = self.current_obs().detach()
            critic_loss = self.fit_critic(data)
            polyak_update(self.target_critic, self.critic, cfg.polyak)
        return {"policy_loss": float(loss.detach().mean()),
                "critic_loss": float(critic_loss.mean()),
                "policy_grad_norm": float(grad_norm.mean()),
                "window_reward": float(data["rewards"].mean())}

    def fit_critic(self, data: dict[str, Tensor]) -> Tensor:
        """TD(lambda) regression of every member's critic on its window (returns the last
        epoch's loss per member ``(P,)``)."""
        cfg, members = self.config, self.members
        h = data["rewards"].shape[0]
        targets = td_lambda_targets(data["rewards"].reshape(h, -1),
                                    data["next_values"].reshape(h, -1),
                                    data["ends"].reshape(h, -1), cfg.gamma, cfg.td_weight)
        # (h, P, N) -> (P, h N): member p's samples, in the single-member order
        targets = targets.view(h, members, -1).transpose(0, 1).reshape(members, -1)
        obs = data["obs"].transpose(0, 1).reshape(members, targets.shape[1], -1)
        samples = targets.shape[1]
        total = torch.zeros(members, dtype=targets.dtype)
        for _ in range(cfg.vf_num_fits):
            order = torch.stack([torch.randperm(samples, generator=g, device=targets.device)
                                 for g in self.generators])
            total = torch.zeros(members, dtype=targets.dtype, device=targets.device)
            for batch in torch.tensor_split(order, cfg.vf_fit_num_batches, dim=1):
                if batch.shape[1] == 0:  # more mini-batches than samples
                    continue
                batch_obs = torch.gather(obs, 1, batch.unsqueeze(-1).expand(-1, -1,
                                                                            obs.shape[-1]))
                batch_targets = torch.gather(targets, 1, batch)
                critic_loss = ((self.critic(batch_obs) - batch_targets) ** 2).mean(-1)
                self.critic_optimizer.zero_grad(set_to_none=True)
                critic_loss.sum().backward()
                clip_grad_norm_(self.critic.parameters(), cfg.max_grad_norm)
                self.critic_optimizer.step()
                total = total + critic_loss.detach() * batch.shape[1]
        return (total / samples).cpu()
