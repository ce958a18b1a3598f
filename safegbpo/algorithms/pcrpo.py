"""PCRPO (Gu et al., AAAI 2024): the soft-constraint baseline, on top of this project's PPO
(SPEC §12).

PCRPO balances the reward and a cost constraint by *gradient manipulation* instead of a
safeguard: nothing keeps the states safe during training; the cost only steers the policy
away from leaving the safe state set.  It is the alternative the paper's safeguards are meant to
beat (safety *during* training), and it is reported next to them with the same metrics and the
same independent monitor (``safegbpo.experiments.monitor``).

One iteration (:meth:`PCRPO.iterate`) = one PPO rollout of ``len_traj`` steps per env, then
``num_fits`` epochs of ``num_batches`` mini-batches, as :class:`~safegbpo.algorithms.PPO`, for
every member of a seed population (:mod:`~safegbpo.algorithms.population`; a single-seed run
is a population of one).  Everything below is *per member*: each seed has its own cost critic
(an ensemble member), its own episode costs and ``J_c``, its own mode, its own ``g_r``, ``g_c``
and projection, its own gradient clipping and its own counters, so a seed's run is bitwise the
same whatever population it trains in (``tests/algorithms/test_pcrpo.py``):

* **Cost signal** (rollout): ``c_t = 1`` if the realised next state ``s'``
  (``info['final_state']`` on truncation, else ``info['state']``) lies outside the safe state
  set ``S_s`` (or the box ``S``), tested by the project's one membership test
  :func:`safegbpo.sets.membership.state_membership` (exact, from the H-representation of
  ``S_s``) -- the very test of the safety monitor, so PCRPO's cost counts exactly the states
  the report counts as unsafe.  ``cost='gauge'`` uses the continuous variant
  ``max(0, gauge(s') - 1)``.
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
from collections.abc import Sequence
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
from safegbpo.algorithms.population import clip_grad_norm_
from safegbpo.algorithms.ppo import PPO, PPOConfig, minibatch
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
    """The projection rule of PCRPO for flattened gradients ``g_r``, ``g_c`` ``(P,)`` -- or
    ``(M, P)``: one pair per population member, each combined on its own -- (SPEC §12; ESPO
    eqs. 2-5): if they conflict (``g_r . g_c < 0``) each is projected onto the normal plane of
    the other,

        ``g = x_r (g_r - (g_r.g_c / |g_c|^2) g_c) + x_c (g_c - (g_c.g_r / |g_r|^2) g_r)``,

    else ``g = x_r g_r + x_c g_c``.  In the conflicting case ``g . g_r = x_r (|g_r|^2 -
    (g_r.g_c)^2 / |g_c|^2) >= 0`` and likewise ``g . g_c >= 0`` (Cauchy-Schwarz): the step
    does not decrease either objective to first order.  The inner products of a row are plain
    reductions over that row, so a member's result does not depend on the other rows.
    """
    if g_r.shape != g_c.shape or g_r.ndim not in (1, 2) or g_r.shape[-1] == 0:
        raise ValueError(f"combine_gradients needs two flat gradients (P,) or one per member "
                         f"(M, P) of equal shape, got {tuple(g_r.shape)} and "
                         f"{tuple(g_c.shape)}")
    dot = (g_r * g_c).sum(-1, keepdim=True)
    plain = x_r * g_r + x_c * g_c
    conflict = dot < 0  # both norms are > 0 on these rows
    if not bool(conflict.any()):
        return plain
    # rows without a conflict may have a zero gradient: divide by 1 there (value unused)
    safe_r = torch.where(conflict, (g_r * g_r).sum(-1, keepdim=True), torch.ones_like(dot))
    safe_c = torch.where(conflict, (g_c * g_c).sum(-1, keepdim=True), torch.ones_like(dot))
    projected_r = g_r - dot / safe_c * g_c
    projected_c = g_c - dot / safe_r * g_r
    return torch.where(conflict, x_r * projected_r + x_c * projected_c, plain)


def _flat_grads(loss: Tensor, params: list[torch.nn.Parameter], members: int,
                retain: bool) -> Tensor:
    """Every member's gradient of ``loss`` (a sum of per-member losses) w.r.t. the ensemble
    ``params`` (each ``(members, ...)``), flattened: ``(members, D)``."""
    grads = torch.autograd.grad(loss, params, retain_graph=retain, allow_unused=True)
    return torch.cat([(torch.zeros_like(p) if g is None else g).reshape(members, -1)
                      for g, p in zip(grads, params, strict=True)], dim=1)


def _cosines(a: Tensor, b: Tensor) -> Tensor:
    """Row-wise ``cos(a_p, b_p)`` ``(M, D) -> (M,)`` (``nan`` where a norm is 0)."""
    norms = (a * a).sum(-1).sqrt() * (b * b).sum(-1).sqrt()
    dot = (a * b).sum(-1)
    return torch.where(norms > 0, dot / torch.where(norms > 0, norms, torch.ones_like(norms)),
                       torch.full_like(norms, math.nan))


#: Columns of the per-iteration log (``PCRPO.iterations_log``, ``(P, iterations, K)`` float64;
#: ``nan`` where no value exists).
LOG_COLUMNS = ("mode", "episode_cost", "episode_cost_source", "finished_episodes",
               "unsafe_states", "cos_mean", "cos_min", "cos_max", "conflict_fraction")
SOURCES = ("episodes", "rate")
#: Columns of the running cosine statistics (``PCRPO.cos_stats``, ``(P, K)`` float64).
COS_COLUMNS = ("count", "sum", "min", "max", "conflicts")


class PCRPO(PPO):
    """PCRPO on a population env (see the module docstring, and :class:`PPO` for the
    arguments)."""

    name = "pcrpo"
    extra_rollout_keys = ("cost", "cost_value")

    def __init__(
        self,
        env: Any,
        config: PCRPOConfig,
        *,
        seeds: Sequence[int],
        env_seeds: Sequence[int] | None,
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
        super().__init__(env, config, seeds=seeds, env_seeds=None, timer=timer, device=device,
                         dtype=dtype)
        self.config: PCRPOConfig = config
        inits = [make_generator(derive_seed(s, "pcrpo/cost-critic")) for s in seeds]
        self.cost_critic = ValueCritic(self.obs_dim, config.critic_hidden, generators=inits,
                                       dtype=dtype, device=device)
        self.cost_critic_optimizer = torch.optim.Adam(self.cost_critic.parameters(),
                                                      lr=config.cost_critic_lr)
        self.modules["cost_critic"] = self.cost_critic
        self.optimizers["cost_critic"] = self.cost_critic_optimizer
        self.membership = state_membership(env.safe_set, env.model.state_bounds())
        self.episode_length = int(env.episode_length)
        P = self.members
        # per-member counters of the constraint (checkpointed: extra_state)
        self.episode_cost = torch.zeros(P, self.num_envs, dtype=dtype, device=device)
        self.unsafe_states = torch.zeros(P, dtype=torch.int64)
        self.mode_counts = torch.zeros(P, len(MODES), dtype=torch.int64)
        self.cos_stats = torch.tensor([[0.0, 0.0, math.inf, -math.inf, 0.0]] * P,
                                      dtype=torch.float64)
        self.iterations_log = torch.zeros(P, 0, len(LOG_COLUMNS), dtype=torch.float64)
        # episode costs finished during the current rollout, per member (not checkpointed:
        # a rollout never spans a checkpoint)
        self.finished_costs: list[list[float]] = [[] for _ in range(P)]
        if env_seeds is not None:
            self.reset_env(env_seeds)

    # -- rollout: the cost signal ------------------------------------------------------------
    def observe_step(self, obs: Tensor, next_obs: Tensor, done: Tensor, timeout: Tensor,
                     info: dict[str, Any]) -> dict[str, Tensor]:
        """Cost ``(P, N)`` of the realised next states (module docstring), the cost critic's
        value of ``obs`` and the members' episode cost bookkeeping."""
        realised = info.get("final_state", info.get("state"))
        if realised is None:
            raise ValueError("env.step info has neither 'final_state' nor 'state'")
        gauges = self.membership.gauges(realised)
        unsafe = self.membership.outside_gauges(gauges)
        if self.config.cost == "indicator":
            raw = unsafe.astype(np.float64)
        else:
            raw = np.where(np.isfinite(gauges), np.maximum(gauges - 1.0, 0.0), 1.0)
        cost = torch.as_tensor(raw, dtype=self.episode_cost.dtype,
                               device=self.episode_cost.device).view(self.members, self.num_envs)
        self.unsafe_states += torch.as_tensor(unsafe.reshape(self.members, -1).sum(axis=1),
                                              dtype=torch.int64)
        self.episode_cost = self.episode_cost + cost
        if bool(done.any()):
            for p in range(self.members):
                self.finished_costs[p] += self.episode_cost[p][done[p]].tolist()
            self.episode_cost = torch.where(done, torch.zeros_like(self.episode_cost),
                                            self.episode_cost)
        if bool(timeout.any()):  # bootstrap the time limit, as the reward
            rows = self.members * self.num_envs
            final = final_observations(next_obs.reshape(rows, -1), done.reshape(rows), info)
            final_value = self.cost_critic(self.by_member(final))
            cost = cost + self.config.gamma * torch.where(timeout, final_value,
                                                          torch.zeros_like(final_value))
        return {"cost": cost, "cost_value": self.cost_critic(obs)}

    def finish_rollout(self, obs: Tensor) -> dict[str, Tensor]:
        return {"last_cost_value": self.cost_critic(obs)}

    def episode_cost_estimate(self, member: int, rollout_cost: float) -> tuple[float, str, int]:
        """``J_c`` of member ``member``'s rollout just collected: the mean cost of its finished
        episodes, else ``rollout_cost`` (the rollout's raw cost per env-step) times the episode
        length; returns ``(J_c, source, finished episodes)``."""
        finished = self.finished_costs[member]
        if finished:
            return float(np.mean(finished)), "episodes", len(finished)
        return rollout_cost * self.episode_length, "rate", 0

    # -- the iteration -----------------------------------------------------------------------
    def iterate(self) -> dict[str, float]:
        cfg, P = self.config, self.members
        self.finished_costs = [[] for _ in range(P)]
        unsafe_before = self.unsafe_states.clone()
        cost_before = [float(self.episode_cost[p].sum()) for p in range(P)]
        with self.timer("rollout"):
            batch = self.collect()
        with self.timer("update"):
            steps = batch["reward"].shape[0] * self.num_envs
            iteration = self.iterations_log.shape[1]
            modes, estimates = [], []
            for p in range(P):  # each member decides its own mode from its own cost
                raw_cost = sum(self.finished_costs[p]) + float(self.episode_cost[p].sum()) \
                    - cost_before[p]
                estimate = self.episode_cost_estimate(p, raw_cost / steps)
                modes.append(select_mode(estimate[0], cfg.cost_limit, cfg.slack_upper,
                                         cfg.slack_lower,
                                         warmup=iteration < cfg.warmup_iterations))
                estimates.append(estimate)
            advantages = self.advantages(batch["reward"], batch["value"], batch["done"],
                                         batch["last_value"])
            cost_advantages = self.advantages(batch["cost"], batch["cost_value"], batch["done"],
                                              batch["last_cost_value"])
            flat = {k: self.per_member(v) for k, v in batch.items() if not k.startswith("last_")}
            flat["advantage"] = self.per_member(advantages)
            flat["return"] = self.per_member(advantages + batch["value"])
            flat["cost_advantage"] = self.per_member(cost_advantages)
            flat["cost_return"] = self.per_member(cost_advantages + batch["cost_value"])
            stats, cosines = self.update_modes(flat, modes)
        self._record(modes, estimates, cosines, self.unsafe_states - unsafe_before)
        stats.update(rollout_reward=float(batch["reward"].mean()),
                     episode_cost=float(np.mean([e[0] for e in estimates])),
                     mode=float(np.mean([MODES.index(m) for m in modes])))
        return stats

    def update_modes(self, flat: dict[str, Tensor], modes: Sequence[str]
                     ) -> tuple[dict[str, float], Tensor]:
        """``num_fits`` epochs of ``num_batches`` mini-batches, member ``p`` in ``modes[p]``
        (every member's gradients are combined on their own); returns the last mini-batch's
        statistics (member means) and ``cos(g_r, g_c)`` ``(mini-batches, P)``."""
        cfg, P = self.config, self.members
        if len(modes) != P or any(m not in MODES for m in modes):
            raise ValueError(f"need one mode of {list(MODES)} per member, got {list(modes)}")
        params = list(self.policy.parameters())
        size = flat["advantage"].shape[1]
        device = flat["obs"].device
        follow_r = torch.tensor([m == "reward" for m in modes], device=device).view(P, 1)
        follow_c = torch.tensor([m == "cost" for m in modes], device=device).view(P, 1)
        combine = "both" in modes
        cosines: list[Tensor] = []
        for _ in range(cfg.num_fits):
            order = torch.stack([torch.randperm(size, generator=g, device=device)
                                 for g in self.generators])
            for idx in torch.tensor_split(order, cfg.num_batches, dim=1):
                if idx.shape[1] == 0:
                    continue
                batch = minibatch(flat, idx)
                log_ratio = self.log_ratio(batch)
                ratio = log_ratio.exp()
                entropy = self.policy.entropy()
                # gradients of the losses (-g_r, -g_c), (P, D): module docstring
                grad_r = _flat_grads(self.clipped_surrogate(batch["advantage"], ratio).sum(),
                                     params, P, retain=True)
                grad_c = _flat_grads(
                    self.clipped_surrogate(-batch["cost_advantage"], ratio).sum(), params, P,
                    retain=True)
                grad_e = _flat_grads((-cfg.ent_coef * entropy).sum(), params, P, retain=False)
                cosines.append(_cosines(grad_r, grad_c))
                direction = torch.where(follow_c, grad_c, grad_r)
                if combine:
                    combined = combine_gradients(grad_r, grad_c, cfg.reward_weight,
                                                 cfg.cost_weight)
                    direction = torch.where(follow_r | follow_c, direction, combined)
                total = direction + grad_e
                self.policy_optimizer.zero_grad(set_to_none=True)
                offset = 0
                for p in params:
                    count = p[0].numel()
                    p.grad = total[:, offset:offset + count].reshape(p.shape).clone()
                    offset += count
                value_loss = 0.5 * ((self.critic(batch["obs"]) - batch["return"]) ** 2).mean(-1)
                cost_value_loss = 0.5 * ((self.cost_critic(batch["obs"])
                                          - batch["cost_return"]) ** 2).mean(-1)
                self.critic_optimizer.zero_grad(set_to_none=True)
                self.cost_critic_optimizer.zero_grad(set_to_none=True)
                (value_loss + cost_value_loss).sum().backward()
                for module in (self.policy, self.critic, self.cost_critic):
                    clip_grad_norm_(module.parameters(), cfg.max_grad_norm)
                self.policy_optimizer.step()
                self.critic_optimizer.step()
                self.cost_critic_optimizer.step()
        stats = {"value_loss": float(value_loss.detach().mean()),
                 "cost_value_loss": float(cost_value_loss.detach().mean()),
                 **self.diagnostics(log_ratio, ratio, entropy)}
        return stats, torch.stack(cosines)

    def _record(self, modes: Sequence[str], estimates: Sequence[tuple[float, str, int]],
                cosines: Tensor, unsafe: Tensor) -> None:
        """Mode counts, running cosine statistics and one log row per member."""
        rows = []
        for p, (mode, (episode_cost, source, finished)) in enumerate(
                zip(modes, estimates, strict=True)):
            self.mode_counts[p, MODES.index(mode)] += 1
            column = cosines[:, p].to(torch.float64)
            finite = column[torch.isfinite(column)]
            nan = math.nan
            if finite.numel():
                total, low, high = float(finite.sum()), float(finite.min()), float(finite.max())
                conflicts = int((finite < 0).sum())
                stats = self.cos_stats[p]
                stats[0] += finite.numel()
                stats[1] += total
                stats[2] = min(float(stats[2]), low)
                stats[3] = max(float(stats[3]), high)
                stats[4] += conflicts
                cos = (total / finite.numel(), low, high, conflicts / finite.numel())
            else:
                cos = (nan, nan, nan, nan)
            rows.append([float(MODES.index(mode)), episode_cost, float(SOURCES.index(source)),
                         float(finished), float(unsafe[p]), *cos])
        log = torch.tensor(rows, dtype=torch.float64).view(self.members, 1, len(LOG_COLUMNS))
        self.iterations_log = torch.cat([self.iterations_log, log], dim=1)

    # -- results and checkpoints -------------------------------------------------------------
    def summary(self, member: int) -> dict[str, Any]:
        """``algorithm_summary`` of member ``member``'s ``result.json``: the constraint, its
        mode counts, ``cos(g_r, g_c)`` over all its mini-batches, PCRPO's own count of its
        unsafe training states and one entry per iteration."""
        cfg = self.config
        count, total, low, high, conflicts = (float(v) for v in self.cos_stats[member])
        n = int(count)

        def value(x: float) -> float | None:
            return None if math.isnan(x) else x

        iterations = []
        for i, row in enumerate(self.iterations_log[member].tolist()):
            entry = dict(zip(LOG_COLUMNS, row, strict=True))
            iterations.append({
                "iteration": i, "mode": MODES[int(entry["mode"])],
                "episode_cost": entry["episode_cost"],
                "episode_cost_source": SOURCES[int(entry["episode_cost_source"])],
                "finished_episodes": int(entry["finished_episodes"]),
                "unsafe_states": int(entry["unsafe_states"]),
                **{k: value(entry[k]) for k in ("cos_mean", "cos_min", "cos_max",
                                                "conflict_fraction")}})
        return {"pcrpo": {
            "cost": cfg.cost, "cost_limit": cfg.cost_limit, "slack_upper": cfg.slack_upper,
            "slack_lower": cfg.slack_lower, "warmup_iterations": cfg.warmup_iterations,
            "mode_counts": dict(zip(MODES, self.mode_counts[member].tolist(), strict=True)),
            "cos": {"minibatches": n,
                    "mean": total / n if n else None,
                    "min": low if n else None,
                    "max": high if n else None,
                    "conflict_fraction": conflicts / n if n else None},
            "unsafe_training_states": int(self.unsafe_states[member]),
            "iterations": iterations,
        }}

    def extra_state(self) -> dict[str, Any]:
        return {"members": {"episode_cost": self.episode_cost.clone(),
                            "unsafe_states": self.unsafe_states.clone(),
                            "mode_counts": self.mode_counts.clone(),
                            "cos_stats": self.cos_stats.clone(),
                            "iterations_log": self.iterations_log.clone()},
                "shared": {}}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        members = state["members"]
        self.episode_cost = members["episode_cost"].to(self.episode_cost).clone()
        self.unsafe_states = members["unsafe_states"].to(torch.int64).clone()
        self.mode_counts = members["mode_counts"].to(torch.int64).clone()
        self.cos_stats = members["cos_stats"].to(torch.float64).clone()
        self.iterations_log = members["iterations_log"].to(torch.float64).clone()
