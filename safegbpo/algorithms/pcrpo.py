"""PCRPO (Gu et al., AAAI 2024): the soft-constraint baseline, on top of this project's PPO
(SPEC §12).

PCRPO balances the reward and a cost constraint by *gradient manipulation* instead of a
safeguard: nothing keeps the states safe during training; the cost only steers the policy
away from leaving the safe state set.  It is the alternative the paper's safeguards are meant to
beat (safety *during* training), and it is reported next to them with the same metrics and the
same independent monitor (``safegbpo.experiments.monitor``).

One iteration (:meth:`PCRPO.iterate`) = one PPO rollout of ``len_traj`` steps per env, then
``num_fits`` epochs of ``num_batches`` mini-batches, as :class:`~safegbpo.algorithms.PPO`:

* **Cost signal** (rollout): ``c_t = 1`` if the realised next state ``s'`` (``info['final_state']``
  on truncation, else ``info['state']``) lies outside the safe state set ``S_s``, tested by the
  project's one membership test :func:`safegbpo.sets.membership.state_membership` -- the very
  test of the safety monitor, so PCRPO's cost counts exactly the states the report counts as
  unsafe.  ``cost='gauge'`` uses the continuous variant ``max(0, gauge(s') - 1)``.
* **Cost critic** ``V_c`` (same architecture and fitting as ``V_r``, own Adam optimiser), cost
  advantages by GAE (time-limit steps bootstrap ``gamma V_c(final_obs)`` like the reward);
  both advantages standardised per mini-batch.
* **Mode** (:func:`select_mode`, once per iteration): ``J_c`` = mean undiscounted cost of the
  episodes that finished during the rollout (when none finished: the rollout's cost per step
  times the episode length, an estimate of the same quantity, flagged ``source='rate'``);
  cost-only if ``J_c > b + h+``, reward-only if ``J_c < b + h-`` or during the first
  ``warmup_iterations``, otherwise both.  ``b`` = ``cost_limit``, ``h+`` = ``slack_upper >= 0``,
  ``h-`` = ``slack_lower <= 0``: per task in the task registry (``presets['pcrpo']``, built by
  :func:`safegbpo.tasks.registry.pcrpo_preset`, where each value's reason is stated).
* **Gradients** (per mini-batch): ``g_r``, ``g_c`` = gradients of the clipped surrogate with
  ``A_r`` and with ``-A_c``, flattened over the actor's parameters.  Reward-only follows
  ``g_r``, cost-only ``g_c``; both combines them by :func:`combine_gradients` (the projection of
  conflicting gradients, SPEC §12, ``x_r = x_c = 1/2``).  The code works with the gradients of
  the *losses* ``-g``: the rule is odd-homogeneous, so negating both inputs negates its output,
  and the inner products (hence the test ``g_r . g_c < 0``) are unchanged.
  The entropy bonus (``ent_coef``) is added after the combination: it is a regulariser of the
  policy, not one of the two objectives whose conflict the rule resolves.
  The total policy gradient is clipped to ``max_grad_norm`` and one Adam step is taken.

Decisions (document, not hide): the authors' code combines two full TRPO steps; on PPO the
combination is per mini-batch, as SPEC §12 asks.  ``cos(g_r, g_c)`` is recorded for every
mini-batch in every mode (it measures the conflict whether or not the rule is applied), and the
run's ``result.json`` gets ``algorithm_summary['pcrpo']``: mode counts, the cosine statistics,
the training states PCRPO's own cost counted as unsafe, and one entry per iteration.  The
network initialisation uses PPO's streams (``ppo/init``), so PCRPO and PPO of the same seed
start from the same policy and value critic; the cost critic has its own stream.
PCRPO has no safeguard: :class:`PCRPO` refuses one (and Eq 45 regularisation), and the
algorithm registry marks it ``safeguarded=False`` so ``TrainConfig`` refuses ``--safeguard``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from safegbpo.algorithms.base import (
    PhaseTimer,
    SafeguardFn,
    check_positive,
    derive_seed,
    final_observations,
    make_generator,
)
from safegbpo.algorithms.networks import ValueCritic
from safegbpo.algorithms.ppo import PPO, PPOConfig, gae
from safegbpo.sets.membership import state_membership

__all__ = ["MODES", "PCRPO", "PCRPOConfig", "combine_gradients", "select_mode"]

MODES = ("reward", "both", "cost")
"""The three modes of PCRPO: reward-only, both (gradient manipulation), cost-only."""

COSTS = ("indicator", "gauge")


@dataclass(frozen=True)
class PCRPOConfig(PPOConfig):
    """Hyper-parameters of PCRPO: PPO's (:class:`PPOConfig`) and the constraint's.

    The defaults of the constraint are the pendulum's (task registry, ``presets['pcrpo']``).

    Attributes:
        cost_limit: ``b``, the limit on the mean episode cost ``J_c`` (unsafe states per episode
            with ``cost='indicator'``).
        slack_upper: ``h+ >= 0``: cost-only above ``b + h+``.
        slack_lower: ``h- <= 0``: reward-only below ``b + h-``.
        warmup_iterations: reward-only iterations at the start (0: none).
        cost: ``'indicator'`` (``1`` per realised state outside ``S_s``) or ``'gauge'``
            (``max(0, gauge - 1)``).
        cost_critic_lr: learning rate of the cost critic (same architecture as the critic).
        reward_weight, cost_weight: ``x_r``, ``x_c`` of the combination (SPEC §12: 1/2 each).
    """

    cost_limit: float = 2.0
    slack_upper: float = 1.0
    slack_lower: float = -1.0
    warmup_iterations: int = 0
    cost: str = "indicator"
    cost_critic_lr: float = 2e-3
    reward_weight: float = 0.5
    cost_weight: float = 0.5

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first invalid hyper-parameter."""
        super().validate()
        for name in ("cost_limit", "slack_upper", "slack_lower"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) \
                    or not math.isfinite(value):
                raise ValueError(f"{name} must be a finite number, got {value!r}")
        if self.cost_limit < 0:
            raise ValueError(f"cost_limit must be >= 0, got {self.cost_limit!r}")
        if self.slack_upper < 0:
            raise ValueError(f"slack_upper (h+) must be >= 0, got {self.slack_upper!r}")
        if self.slack_lower > 0:
            raise ValueError(f"slack_lower (h-) must be <= 0, got {self.slack_lower!r}")
        if isinstance(self.warmup_iterations, bool) or not isinstance(
                self.warmup_iterations, int) or self.warmup_iterations < 0:
            raise ValueError(f"warmup_iterations must be an integer >= 0, got "
                             f"{self.warmup_iterations!r}")
        if self.cost not in COSTS:
            raise ValueError(f"cost must be one of {list(COSTS)}, got {self.cost!r}")
        for name in ("cost_critic_lr", "reward_weight", "cost_weight"):
            check_positive(name, getattr(self, name))


def select_mode(episode_cost: float, cost_limit: float, slack_upper: float,
                slack_lower: float, *, warmup: bool = False) -> str:
    """PCRPO's mode for the mean episode cost ``J_c`` (SPEC §12): ``'cost'`` if
    ``J_c > b + h+``, ``'reward'`` if ``J_c < b + h-`` or during the warm-up, else ``'both'``.

    Raises:
        ValueError: ``J_c`` is NaN (no decision can be made), or the slacks have the wrong sign.
    """
    if slack_upper < 0 or slack_lower > 0:
        raise ValueError(f"need h+ >= 0 >= h-, got h+ = {slack_upper!r}, h- = {slack_lower!r}")
    if math.isnan(episode_cost):
        raise ValueError("the mean episode cost J_c is NaN")
    if warmup:
        return "reward"
    if episode_cost > cost_limit + slack_upper:
        return "cost"
    if episode_cost < cost_limit + slack_lower:
        return "reward"
    return "both"


def combine_gradients(g_r: Tensor, g_c: Tensor, x_r: float = 0.5, x_c: float = 0.5) -> Tensor:
    """The projection rule of PCRPO for the flattened gradients ``g_r``, ``g_c`` ``(P,)``
    (SPEC §12; ESPO eqs. 2-5): if they conflict (``g_r . g_c < 0``) each is projected onto the
    normal plane of the other,

        ``g = x_r (g_r - (g_r.g_c / |g_c|^2) g_c) + x_c (g_c - (g_c.g_r / |g_r|^2) g_r)``,

    else ``g = x_r g_r + x_c g_c``.  In the conflicting case ``g . g_r = x_r (|g_r|^2 -
    (g_r.g_c)^2 / |g_c|^2) >= 0`` and likewise ``g . g_c >= 0`` (Cauchy-Schwarz): the step
    does not decrease either objective to first order.
    """
    if g_r.shape != g_c.shape or g_r.ndim != 1:
        raise ValueError(f"combine_gradients needs two flat gradients of equal length, got "
                         f"{tuple(g_r.shape)} and {tuple(g_c.shape)}")
    dot = torch.dot(g_r, g_c)
    if bool(dot < 0):  # both norms are > 0 here
        projected_r = g_r - dot / torch.dot(g_c, g_c) * g_c
        projected_c = g_c - dot / torch.dot(g_r, g_r) * g_r
        return x_r * projected_r + x_c * projected_c
    return x_r * g_r + x_c * g_c


def _flat_grad(loss: Tensor, params: list[torch.nn.Parameter], retain: bool) -> Tensor:
    grads = torch.autograd.grad(loss, params, retain_graph=retain, allow_unused=True)
    return torch.cat([(torch.zeros_like(p) if g is None else g).reshape(-1)
                      for g, p in zip(grads, params, strict=True)])


def _cosine(a: Tensor, b: Tensor) -> float:
    norms = float(torch.linalg.vector_norm(a) * torch.linalg.vector_norm(b))
    return float(torch.dot(a, b)) / norms if norms > 0.0 else math.nan


class PCRPO(PPO):
    """PCRPO on a ``SafeVectorEnv`` (see the module docstring)."""

    name = "pcrpo"
    extra_rollout_keys = ("cost", "cost_value")

    def __init__(
        self,
        env: Any,
        config: PCRPOConfig,
        *,
        seed: int,
        env_seed: int | None,
        safeguard: SafeguardFn | None = None,
        regularisation: float = 0.0,
        timer: PhaseTimer | None = None,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float64,
    ) -> None:
        if not isinstance(config, PCRPOConfig):
            raise ValueError(f"PCRPO needs a PCRPOConfig, got {type(config).__name__}")
        if safeguard is not None:
            raise ValueError("PCRPO is the soft-constraint baseline and trains without a "
                             "safeguard (SPEC §12); got a safeguard")
        if regularisation:
            raise ValueError("PCRPO trains without a safeguard: Eq 45 regularisation does not "
                             f"apply (got {regularisation!r})")
        super().__init__(env, config, seed=seed, env_seed=None, timer=timer, device=device,
                         dtype=dtype)
        self.config: PCRPOConfig = config
        init = make_generator(derive_seed(seed, "pcrpo/cost-critic"))
        self.cost_critic = ValueCritic(self.obs_dim, config.critic_hidden, generator=init,
                                       dtype=dtype, device=device)
        self.cost_critic_optimizer = torch.optim.Adam(self.cost_critic.parameters(),
                                                      lr=config.cost_critic_lr)
        self.modules["cost_critic"] = self.cost_critic
        self.optimizers["cost_critic"] = self.cost_critic_optimizer
        self.membership = state_membership(env.safe_set.state)
        self.episode_length = int(env.episode_length)
        # counters of the constraint (checkpointed: extra_state)
        self.episode_cost = torch.zeros(self.num_envs, dtype=dtype, device=device)
        self.finished_costs: list[float] = []  # episodes finished in the current rollout
        self.unsafe_states = 0
        self.mode_counts = dict.fromkeys(MODES, 0)
        self.cos_stats = {"count": 0, "sum": 0.0, "min": math.inf, "max": -math.inf,
                          "conflicts": 0}
        self.iterations_log: list[dict[str, Any]] = []
        if env_seed is not None:
            self.reset_env(env_seed)

    # -- rollout: the cost signal ------------------------------------------------------------
    def observe_step(self, obs: Tensor, next_obs: Tensor, done: Tensor, timeout: Tensor,
                     info: dict[str, Any]) -> dict[str, Tensor]:
        """Cost of the realised next states (module docstring), the cost critic's value of
        ``obs`` and the episode cost bookkeeping."""
        realised = info.get("final_state", info.get("state"))
        if realised is None:
            raise ValueError("env.step info has neither 'final_state' nor 'state'")
        gauges = self.membership.gauges(realised)
        unsafe = ~(gauges <= 1.0 + self.membership.tol)
        if self.config.cost == "indicator":
            raw = unsafe.astype(np.float64)
        else:
            raw = np.where(np.isfinite(gauges), np.maximum(gauges - 1.0, 0.0), 1.0)
        cost = torch.as_tensor(raw, dtype=self.episode_cost.dtype,
                               device=self.episode_cost.device)
        self.unsafe_states += int(unsafe.sum())
        self.episode_cost += cost
        if bool(done.any()):
            self.finished_costs += self.episode_cost[done].tolist()
            self.episode_cost = torch.where(done, torch.zeros_like(self.episode_cost),
                                            self.episode_cost)
        if bool(timeout.any()):  # bootstrap the time limit, as the reward
            final_value = self.cost_critic(final_observations(next_obs, done, info))
            cost = cost + self.config.gamma * torch.where(timeout, final_value,
                                                          torch.zeros_like(final_value))
        return {"cost": cost, "cost_value": self.cost_critic(obs)}

    def finish_rollout(self, obs: Tensor) -> dict[str, Tensor]:
        return {"last_cost_value": self.cost_critic(obs)}

    def episode_cost_estimate(self, rollout_cost: float) -> tuple[float, str, int]:
        """``J_c`` of the rollout just collected: the mean cost of its finished episodes, else
        ``rollout_cost`` (the rollout's raw cost per env-step) times the episode length;
        returns ``(J_c, source, finished episodes)``."""
        finished = self.finished_costs
        if finished:
            return float(np.mean(finished)), "episodes", len(finished)
        return rollout_cost * self.episode_length, "rate", 0

    # -- the iteration -----------------------------------------------------------------------
    def iterate(self) -> dict[str, float]:
        cfg = self.config
        self.finished_costs = []
        unsafe_before = self.unsafe_states
        cost_before = float(self.episode_cost.sum())
        with self.timer("rollout"):
            batch = self.collect()
        with self.timer("update"):
            steps = batch["reward"].shape[0] * self.num_envs
            raw_cost = sum(self.finished_costs) + float(self.episode_cost.sum()) - cost_before
            episode_cost, source, finished = self.episode_cost_estimate(raw_cost / steps)
            iteration = len(self.iterations_log)
            mode = select_mode(episode_cost, cfg.cost_limit, cfg.slack_upper, cfg.slack_lower,
                               warmup=iteration < cfg.warmup_iterations)
            advantages = gae(batch["reward"], batch["value"], batch["done"], batch["last_value"],
                             cfg.gamma, cfg.gae_lambda)
            cost_advantages = gae(batch["cost"], batch["cost_value"], batch["done"],
                                  batch["last_cost_value"], cfg.gamma, cfg.gae_lambda)
            flat = {k: v.flatten(0, 1) for k, v in batch.items() if not k.startswith("last_")}
            flat["advantage"] = advantages.flatten()
            flat["return"] = (advantages + batch["value"]).flatten()
            flat["cost_advantage"] = cost_advantages.flatten()
            flat["cost_return"] = (cost_advantages + batch["cost_value"]).flatten()
            stats, cosines = self.update_modes(flat, mode)
        finite = [c for c in cosines if math.isfinite(c)]
        self.mode_counts[mode] += 1
        self.iterations_log.append({
            "iteration": iteration, "mode": mode, "episode_cost": episode_cost,
            "episode_cost_source": source, "finished_episodes": finished,
            "unsafe_states": self.unsafe_states - unsafe_before,
            "cos_mean": float(np.mean(finite)) if finite else None,
            "cos_min": min(finite) if finite else None,
            "cos_max": max(finite) if finite else None,
            "conflict_fraction": (sum(c < 0 for c in finite) / len(finite)) if finite else None,
        })
        stats.update(rollout_reward=float(batch["reward"].mean()), episode_cost=episode_cost,
                     mode=float(MODES.index(mode)))
        return stats

    def update_modes(self, flat: dict[str, Tensor], mode: str
                     ) -> tuple[dict[str, float], list[float]]:
        """``num_fits`` epochs of ``num_batches`` mini-batches in ``mode``; returns the last
        mini-batch's statistics and ``cos(g_r, g_c)`` of every mini-batch."""
        cfg = self.config
        params = list(self.policy.parameters())
        size = flat["advantage"].shape[0]
        cosines: list[float] = []
        for _ in range(cfg.num_fits):
            order = torch.randperm(size, generator=self.generator, device=flat["obs"].device)
            for idx in torch.tensor_split(order, cfg.num_batches):
                if idx.numel() == 0:
                    continue
                batch = {k: v[idx] for k, v in flat.items()}
                log_ratio = self.log_ratio(batch)
                ratio = log_ratio.exp()
                entropy = self.policy.entropy()
                # gradients of the losses (-g_r, -g_c): module docstring
                grad_r = _flat_grad(self.clipped_surrogate(batch["advantage"], ratio), params,
                                    retain=True)
                grad_c = _flat_grad(self.clipped_surrogate(-batch["cost_advantage"], ratio),
                                    params, retain=True)
                grad_e = _flat_grad(-cfg.ent_coef * entropy, params, retain=False)
                cosine = _cosine(grad_r, grad_c)
                cosines.append(cosine)
                self._record_cosine(cosine)
                if mode == "reward":
                    direction = grad_r
                elif mode == "cost":
                    direction = grad_c
                else:
                    direction = combine_gradients(grad_r, grad_c, cfg.reward_weight,
                                                  cfg.cost_weight)
                self.policy_optimizer.zero_grad(set_to_none=True)
                offset = 0
                for p in params:
                    count = p.numel()
                    p.grad = (direction + grad_e)[offset:offset + count].view_as(p).clone()
                    offset += count
                value_loss = 0.5 * ((self.critic(batch["obs"]) - batch["return"]) ** 2).mean()
                cost_value_loss = 0.5 * ((self.cost_critic(batch["obs"])
                                          - batch["cost_return"]) ** 2).mean()
                self.critic_optimizer.zero_grad(set_to_none=True)
                self.cost_critic_optimizer.zero_grad(set_to_none=True)
                (value_loss + cost_value_loss).backward()
                for module in (self.policy, self.critic, self.cost_critic):
                    torch.nn.utils.clip_grad_norm_(module.parameters(), cfg.max_grad_norm)
                self.policy_optimizer.step()
                self.critic_optimizer.step()
                self.cost_critic_optimizer.step()
        stats = {"value_loss": float(value_loss.detach()),
                 "cost_value_loss": float(cost_value_loss.detach()),
                 **self.diagnostics(log_ratio, ratio, entropy)}
        return stats, cosines

    def _record_cosine(self, cosine: float) -> None:
        if not math.isfinite(cosine):
            return
        s = self.cos_stats
        s["count"] += 1
        s["sum"] += cosine
        s["min"] = min(s["min"], cosine)
        s["max"] = max(s["max"], cosine)
        s["conflicts"] += int(cosine < 0)

    # -- results and checkpoints -------------------------------------------------------------
    def summary(self) -> dict[str, Any]:
        """``algorithm_summary`` of ``result.json``: the constraint, mode counts,
        ``cos(g_r, g_c)`` over all mini-batches, PCRPO's own count of unsafe training states
        and one entry per iteration."""
        cfg, s = self.config, self.cos_stats
        count = s["count"]
        return {"pcrpo": {
            "cost": cfg.cost, "cost_limit": cfg.cost_limit, "slack_upper": cfg.slack_upper,
            "slack_lower": cfg.slack_lower, "warmup_iterations": cfg.warmup_iterations,
            "mode_counts": dict(self.mode_counts),
            "cos": {"minibatches": count,
                    "mean": s["sum"] / count if count else None,
                    "min": s["min"] if count else None,
                    "max": s["max"] if count else None,
                    "conflict_fraction": s["conflicts"] / count if count else None},
            "unsafe_training_states": self.unsafe_states,
            "iterations": [dict(entry) for entry in self.iterations_log],
        }}

    def extra_state(self) -> dict[str, Any]:
        return {"episode_cost": self.episode_cost, "unsafe_states": self.unsafe_states,
                "mode_counts": self.mode_counts, "cos_stats": self.cos_stats,
                "iterations_log": self.iterations_log}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        self.episode_cost = state["episode_cost"].to(self.episode_cost.device)
        self.unsafe_states = int(state["unsafe_states"])
        self.mode_counts = dict(state["mode_counts"])
        self.cos_stats = dict(state["cos_stats"])
        self.iterations_log = [dict(entry) for entry in state["iterations_log"]]
