"""Evaluation of a policy on a fixed, seeded evaluation set (SPEC §9 "learning curve").

The evaluation set is ``episodes`` episodes run in parallel in a dedicated vector env (one env
per episode) that is re-seeded with the same ``seed`` before every evaluation: the initial
states *and* the noise sequence are the same every time, so the evaluation reward is a
deterministic function of the policy.  The policy acts deterministically (``tanh(mu(o))``);
with a safeguard the executed action is ``g(a, s)`` (the safeguarded system is what is
deployed).  The score is the mean over the episodes of the undiscounted episodic return.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

__all__ = ["Evaluator"]

Policy = Callable[[Tensor], Tensor]


class Evaluator:
    """Mean episodic return of a deterministic policy on a fixed evaluation set.

    Args:
        env: a ``SafeVectorEnv`` with ``num_envs`` = number of evaluation episodes, used only
            for evaluation.
        seed: the evaluation set's seed (the env is reset with it before every evaluation).
        safeguard: a safeguard built for ``env`` (``None``: unsafe evaluation).
    """

    def __init__(self, env: Any, seed: int,
                 safeguard: Callable[[Tensor, Tensor], Tensor] | None = None):
        self.env = env
        self.seed = int(seed)
        self.safeguard = safeguard
        self.max_steps = int(env.episode_length)

    @property
    def episodes(self) -> int:
        return int(self.env.num_envs)

    @torch.no_grad()
    def __call__(self, policy: Policy) -> float:
        """Run one episode per env with ``policy`` (observations ``(E, o)`` -> actions
        ``(E, d)``) and return the mean episodic return."""
        obs, _ = self.env.reset(seed=self.seed)
        returns = torch.zeros(self.episodes, dtype=obs.dtype, device=obs.device)
        running = torch.ones(self.episodes, dtype=torch.bool, device=obs.device)
        for _ in range(self.max_steps):
            action = policy(obs)
            if self.safeguard is not None:
                action = self.safeguard(action, self.env.state)
            obs, reward, terminated, truncated, _ = self.env.step(action)
            returns = returns + torch.where(running, reward, torch.zeros_like(reward))
            running = running & ~(terminated | truncated)
            if not bool(running.any()):
                break
        if bool(running.any()):
            raise RuntimeError(f"evaluation episodes did not end within {self.max_steps} steps")
        self.env.cut_graph()
        return float(returns.mean())
