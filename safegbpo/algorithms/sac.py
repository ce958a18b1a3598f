"""Soft Actor-Critic (Haarnoja et al. 2018) with a post-processing safeguard (SPEC §8).

One iteration (:meth:`SAC.iterate`) = one vector step of the ``N`` environments of every member
of the population (``N`` interactions per member; :mod:`~safegbpo.algorithms.population`)
followed by the gradient steps that step calls for.  The schedule is the reference's
(CleanRL's), counted in **vector steps** ``t = 0, 1, ...`` (SPEC §13):

* ``t < learning_starts``: the executed action is **uniform random** in ``A = [-1, 1]^d``
  (drawn from the member's own stream); from then on, the policy's sample;
* ``t > learning_starts``: one gradient step of the soft Q-function(s) on a mini-batch; when
  ``t % policy_freq == 0`` also ``policy_freq`` policy (and temperature) steps on the same
  mini-batch (delayed updates); when ``t % target_freq == 0`` the target Q-function(s) are
  Polyak-averaged ``target <- polyak * target + (1 - polyak) * Q``.

So the quadrotor preset (``learning_starts = 5000``, 16 envs) acts randomly for 80,000
interactions, first changes its Q-function at vector step 5001 and its policy at step 5010:
the policy evaluated at 80,128 interactions is still the initial one, as in the archived
curves (flat until 80,128).

* **Safeguard**: the sampled action ``a = tanh(u)`` is post-processed, ``a~ = g(a, s)``, and the
  env executes ``a~``; the replay buffer stores the policy's (unsafe) action ``a``, so ``Q(s, a)``
  and ``log pi(a|s)`` refer to the policy's action and the safeguard is part of the environment.
  Random actions before ``learning_starts`` go through the safeguard too.
* **Twin-free by default** (``twin_q = False``): one soft Q-function and its target, as in the
  paper's reference implementation (SPEC §8); ``twin_q = True`` switches to clipped double-Q
  (minimum of two Q-functions in the target and in the policy loss).
* **Truncation** is not a termination: the target bootstraps from the real last observation
  (``info["final_obs"]``) and only terminations cut the bootstrap.
* **Temperature**: learned (``autotune_alpha``) towards ``target_entropy = -d`` from
  ``initial_alpha``, or fixed at ``initial_alpha``; one per member.
* **Regularisation (Eq 45)**, when ``coef > 0``: the buffer also stores the sample's noise
  ``eps`` and the executed safe action ``g(a, s)``; the policy loss gets
  ``coef * mean m ||tanh(mu_theta(o) + std_theta eps) - g(a, s)||^2`` over the mini-batch
  (``m`` = the safeguard intervened on a *policy* action: the uniform random actions have no
  ``eps`` and are left out; see
  :func:`~safegbpo.algorithms.base.stored_regularisation_loss`).

Decisions beyond SPEC §8 (overridable in :class:`SACConfig`): ``batch_size = 256``,
``gamma = 0.99``, ``initial_alpha = 1``, temperature learning rate = critic learning rate,
no gradient clipping, default Adam betas.
"""

from __future__ import annotations

import copy
import math
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
from safegbpo.algorithms.buffers import ReplayBuffer
from safegbpo.algorithms.networks import GaussianPolicy, QCritic, polyak_update

__all__ = ["SACConfig", "SAC"]


@dataclass(frozen=True)
class SACConfig:
    """Hyper-parameters of SAC (defaults: SPEC §8, Pendulum SAC).

    ``learning_starts`` counts **vector steps** (the reference's unit, SPEC §13: Quadrotor
    5000 x 16 envs = 80,000 interactions of uniform random actions), not interactions.
    """

    policy_hidden: tuple[int, ...] = (173, 173, 173, 173)
    policy_lr: float = 2e-3
    critic_hidden: tuple[int, ...] = (135, 135, 135, 135)
    critic_lr: float = 2e-3
    buffer_size: int = 60000
    polyak: float = 0.673
    learning_starts: int = 64
    policy_freq: int = 6
    target_freq: int = 7
    batch_size: int = 256
    gamma: float = 0.99
    twin_q: bool = False
    autotune_alpha: bool = True
    initial_alpha: float = 1.0
    log_std_init: float = -1.0

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first invalid hyper-parameter."""
        check_hidden("policy_hidden", self.policy_hidden)
        check_hidden("critic_hidden", self.critic_hidden)
        for name in ("policy_lr", "critic_lr", "initial_alpha"):
            check_positive(name, getattr(self, name))
        for name in ("buffer_size", "policy_freq", "target_freq", "batch_size"):
            check_positive_int(name, getattr(self, name))
        for name in ("polyak", "gamma"):
            check_unit(name, getattr(self, name))
        if isinstance(self.learning_starts, bool) or not isinstance(self.learning_starts, int) \
                or self.learning_starts < 0:
            raise ValueError(f"learning_starts must be an integer >= 0, got "
                             f"{self.learning_starts!r}")


class SAC(Algorithm):
    """SAC on a population env (see the module docstring and :class:`~safegbpo.algorithms.SHAC`
    for the arguments)."""

    name = "sac"

    def __init__(
        self,
        env: Any,
        config: SACConfig,
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
        if config.buffer_size < self.num_envs:
            raise ValueError(f"buffer_size ({config.buffer_size}) must hold at least one vector "
                             f"step ({self.num_envs} transitions)")
        self.config = config
        members = self.members
        inits = [make_generator(derive_seed(s, "sac/init")) for s in seeds]
        self.generators = [make_generator(derive_seed(s, "sac/sample"), device) for s in seeds]
        self.policy = GaussianPolicy(self.obs_dim, self.act_dim, config.policy_hidden,
                                     generators=inits, log_std_init=config.log_std_init,
                                     dtype=dtype, device=device)
        self.q_functions = torch.nn.ModuleList(
            QCritic(self.obs_dim, self.act_dim, config.critic_hidden, generators=inits,
                    dtype=dtype, device=device)
            for _ in range(2 if config.twin_q else 1))
        self.q_targets = copy.deepcopy(self.q_functions).requires_grad_(False)
        self.log_alpha = torch.full((members,), math.log(config.initial_alpha), dtype=dtype,
                                    device=device, requires_grad=config.autotune_alpha)
        self.target_entropy = -float(self.act_dim)
        self.policy_optimizer = torch.optim.Adam(self.policy.parameters(), lr=config.policy_lr)
        self.q_optimizer = torch.optim.Adam(self.q_functions.parameters(), lr=config.critic_lr)
        self.modules = {"policy": self.policy, "q": self.q_functions, "q_target": self.q_targets}
        self.optimizers = {"policy": self.policy_optimizer, "q": self.q_optimizer}
        if config.autotune_alpha:
            self.alpha_optimizer = torch.optim.Adam([self.log_alpha], lr=config.critic_lr)
            self.optimizers["alpha"] = self.alpha_optimizer
        vec = ((self.obs_dim,), dtype)
        act = ((self.act_dim,), dtype)
        self.buffer = ReplayBuffer(config.buffer_size, {
            "obs": vec, "action": act, "reward": ((), dtype), "next_obs": vec,
            "terminated": ((), dtype), "noise": act, "safe_action": act,
            "from_policy": ((), torch.bool)}, members=members, device=device)
        self.vector_steps = 0  # vector steps taken (the schedule's t)
        self.updates = 0  # Q-function gradient steps taken
        if env_seeds is not None:
            self.reset_env(env_seeds)

    @property
    def interactions_per_iteration(self) -> int:
        return self.num_envs

    @property
    def alpha(self) -> Tensor:
        """Temperatures ``(P, 1)``."""
        return self.log_alpha.detach().exp().unsqueeze(-1)

    @torch.no_grad()
    def collect(self) -> Tensor:
        """One vector step (uniform random actions before ``learning_starts``, else the
        stochastic policy), stored in the buffer; returns the rewards ``(P, N)``."""
        members, n = self.members, self.num_envs
        obs = self.by_member(self.current_obs())
        if self.vector_steps < self.config.learning_starts:
            action = 2.0 * torch.stack([
                torch.rand((n, self.act_dim), generator=g, dtype=obs.dtype, device=obs.device)
                for g in self.generators]) - 1.0
            noise = torch.zeros_like(action)
            from_policy = torch.zeros((members, n), dtype=torch.bool, device=obs.device)
        else:
            sample = self.policy.sample(obs, self.generators)
            action, noise = sample.action, sample.noise
            from_policy = torch.ones((members, n), dtype=torch.bool, device=obs.device)
        safe_action = self.apply_safeguard(action.reshape(members * n, -1), self.env.state)
        next_obs, reward, terminated, truncated, info = self.env.step(safe_action)
        real_next = final_observations(next_obs, terminated | truncated, info)
        reward = self.by_member(reward)
        self.buffer.add(obs=obs, action=action, reward=reward,
                        next_obs=self.by_member(real_next),
                        terminated=self.by_member(terminated).to(reward.dtype), noise=noise,
                        safe_action=self.by_member(safe_action), from_policy=from_policy)
        self.obs = next_obs.detach()
        self.vector_steps += 1
        return reward

    def iterate(self) -> dict[str, float]:
        step = self.vector_steps
        with self.timer("rollout"):
            reward = self.collect()
        stats = {"step_reward": float(reward.mean())}
        if step > self.config.learning_starts:
            with self.timer("update"):
                stats.update(self.update(step))
        return stats

    def _min_q(self, q_functions: torch.nn.ModuleList, obs: Tensor, action: Tensor) -> Tensor:
        values = [q(obs, action) for q in q_functions]
        return values[0] if len(values) == 1 else torch.min(torch.stack(values), dim=0).values

    def update(self, step: int) -> dict[str, float]:
        """One soft Q step of every member; the delayed policy / temperature steps and the
        target averaging that vector step ``step`` calls for (module docstring)."""
        cfg = self.config
        batch = self.buffer.sample(cfg.batch_size, self.generators)
        with torch.no_grad():
            next_sample, next_log_prob = self.policy.sample_with_log_prob(batch["next_obs"],
                                                                          self.generators)
            next_q = self._min_q(self.q_targets, batch["next_obs"], next_sample.action)
            target = batch["reward"] + cfg.gamma * (1.0 - batch["terminated"]) * (
                next_q - self.alpha * next_log_prob)
        q_loss = sum(((q(batch["obs"], batch["action"]) - target) ** 2).mean(-1)
                     for q in self.q_functions)
        self.q_optimizer.zero_grad(set_to_none=True)
        q_loss.sum().backward()
        self.q_optimizer.step()
        self.updates += 1
        stats = {"q_loss": float(q_loss.detach().mean()), "alpha": float(self.alpha.mean())}

        if step % cfg.policy_freq == 0:
            for _ in range(cfg.policy_freq):
                policy_loss, log_prob = self.policy_loss(batch)
                self.policy_optimizer.zero_grad(set_to_none=True)
                policy_loss.sum().backward()
                self.policy_optimizer.step()
                if cfg.autotune_alpha:
                    alpha_loss = -(self.log_alpha.exp().unsqueeze(-1)
                                   * (log_prob.detach() + self.target_entropy)).mean(-1)
                    self.alpha_optimizer.zero_grad(set_to_none=True)
                    alpha_loss.sum().backward()
                    self.alpha_optimizer.step()
            stats["policy_loss"] = float(policy_loss.detach().mean())
        if step % cfg.target_freq == 0:
            polyak_update(self.q_targets, self.q_functions, cfg.polyak)
        return stats

    def policy_loss(self, batch: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        """``mean(alpha log pi(a|o) - Q(o, a))`` per member with fresh reparameterised actions
        for the batch's observations (+ Eq 45 from the stored transitions,
        :func:`~safegbpo.algorithms.base.stored_regularisation_loss`); returns the losses
        ``(P,)`` and the log-probabilities ``(P, B)`` (for the temperature step)."""
        sample, log_prob = self.policy.sample_with_log_prob(batch["obs"], self.generators)
        q_value = self._min_q(self.q_functions, batch["obs"], sample.action)
        loss = (self.alpha * log_prob - q_value).mean(-1)
        if self.regularisation > 0.0:
            loss = loss + stored_regularisation_loss(
                self.policy, batch["obs"], batch["noise"], batch["action"],
                batch["safe_action"], self.regularisation, mask=batch["from_policy"])
        return loss, log_prob

    def extra_state(self) -> dict[str, Any]:
        buffer = self.buffer.state_dict()
        return {"members": {"buffer": buffer["data"],
                            "log_alpha": self.log_alpha.detach().clone()},
                "shared": {"buffer_capacity": buffer["capacity"],
                           "buffer_position": buffer["position"], "buffer_size": buffer["size"],
                           "vector_steps": self.vector_steps, "updates": self.updates}}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        shared = state["shared"]
        self.buffer.load_state_dict({"capacity": shared["buffer_capacity"],
                                     "position": shared["buffer_position"],
                                     "size": shared["buffer_size"],
                                     "data": state["members"]["buffer"]})
        self.vector_steps = int(shared["vector_steps"])
        self.updates = int(shared["updates"])
        with torch.no_grad():
            self.log_alpha.copy_(state["members"]["log_alpha"])
