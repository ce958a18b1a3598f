"""Evaluation protocol of the learning curves (SPEC §9 and §13), batched over a population.

Two evaluations of the deterministic policy ``tanh(mu(o))`` (with a safeguard, the executed
action is ``g(a, s)``: the safeguarded system is what is deployed), run to truncation:

* **paper** (the learning curve of the tables, SPEC §13): *one* episode from a fixed initial
  state — an env of one row reset with ``seed = paper_seed`` (42, the reference's), i.e. the
  same state drawn from the safe set in use for every run and every evaluation — scored by its
  **episode return** (undiscounted sum of rewards).  The reference's logger divides the sum by
  ``num_envs * steps``, but the archived values (pendulum PPO -596 against a per-step reward
  bound of about 16.3) can only be episode returns, so that is what is reported; absolute values
  depend on the one initial state and on the safe set, comparisons between configurations
  on the same set do not;
* **set** (lower variance, reported alongside): ``set_size`` episodes (16 by default) from a
  fixed, seeded set of initial states (``set_seed``), scored per episode.

Each episode's noise sequence is fixed too (the env is re-seeded before every evaluation), so
an evaluation is a deterministic function of the policy.  For a population of ``P`` members the
evaluation env has ``P x (1 + set_size)`` rows in ``2 P`` blocks (member ``p``: one row seeded
``paper_seed``, ``set_size`` rows seeded ``set_seed``): every member is scored on exactly the
episodes a population of one would use, in one batched pass (one policy call and one safeguard
call per step for all members).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from safegbpo.algorithms.base import derive_seed

__all__ = ["Evaluator", "EvaluationResult", "PAPER_SEED", "SET_SIZE", "set_seed_for"]

#: Seed of the paper evaluation's initial state (the reference's fixed seed, SPEC §13).
PAPER_SEED = 42
#: Episodes of the second, lower-variance evaluation.
SET_SIZE = 16

#: ``policy(obs (P, E, o)) -> actions (P, E, d)`` for the ``E`` evaluation episodes of each member.
Policy = Callable[[Tensor], Tensor]


def set_seed_for(paper_seed: int) -> int:
    """Seed of the evaluation set's initial states, derived from the paper seed."""
    return derive_seed(paper_seed, "evaluation/set")


@dataclass(frozen=True)
class EvaluationResult:
    """Episode returns of one evaluation: ``paper`` ``(P,)`` (the paper column), ``episodes``
    ``(P, set_size)`` (the set evaluation; its mean is reported alongside)."""

    paper: Tensor
    episodes: Tensor


class Evaluator:
    """The SPEC §13 evaluation of ``members`` policies (module docstring).

    Args:
        task: task name.
        members: policies evaluated together ``P``.
        safe_set: the safe set in use (reset distribution and safeguard); ``None``, a path or a
            :class:`~safegbpo.safesets.SafeSet`.
        paper_seed: seed of the paper episode's initial state (and noise).
        set_size: episodes of the set evaluation (``>= 0``).
        set_seed: seed of the set (default :func:`set_seed_for` ``(paper_seed)``).
        episode_length: steps per episode (default: the task's).
        env_options: the task's env options (e.g. the energy task's ``profiles``), the same
            as training's.
        safeguard_factory: ``factory(env) -> safeguard`` (``None``: unsafe evaluation).
        device, dtype: of the evaluation env.
    """

    def __init__(
        self,
        task: str,
        members: int = 1,
        *,
        safe_set: Any = None,
        paper_seed: int = PAPER_SEED,
        set_size: int = SET_SIZE,
        set_seed: int | None = None,
        episode_length: int | None = None,
        env_options: Mapping[str, Any] | None = None,
        safeguard_factory: Callable[[Any], Any] | None = None,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float64,
    ) -> None:
        from safegbpo.algorithms.population import population_env

        if isinstance(members, bool) or not isinstance(members, int) or members < 1:
            raise ValueError(f"members must be a positive integer, got {members!r}")
        if isinstance(set_size, bool) or not isinstance(set_size, int) or set_size < 0:
            raise ValueError(f"set_size must be a non-negative integer, got {set_size!r}")
        self.members, self.set_size = members, set_size
        self.paper_seed = int(paper_seed)
        self.set_seed = set_seed_for(self.paper_seed) if set_seed is None else int(set_seed)
        blocks = [1, set_size] if set_size else [1]
        seeds = [self.paper_seed, self.set_seed] if set_size else [self.paper_seed]
        self.block_seeds = seeds * members
        self.env = population_env(task, blocks * members, safe_set=safe_set,
                                  episode_length=episode_length, device=device, dtype=dtype,
                                  env_options=env_options)
        self.safeguard = None if safeguard_factory is None else safeguard_factory(self.env)
        self.max_steps = int(self.env.episode_length)

    @property
    def episodes_per_member(self) -> int:
        return 1 + self.set_size

    @torch.no_grad()
    def __call__(self, policy: Policy) -> EvaluationResult:
        """Run every member's episodes with ``policy`` and return their episode returns."""
        env, members, per = self.env, self.members, self.episodes_per_member
        obs, _ = env.reset(seed=self.block_seeds)
        returns = torch.zeros(members * per, dtype=obs.dtype, device=obs.device)
        running = torch.ones(members * per, dtype=torch.bool, device=obs.device)
        for _ in range(self.max_steps):
            action = policy(obs.view(members, per, -1))
            action = action.reshape(members * per, -1)
            if self.safeguard is not None:
                action = self.safeguard(action, env.state)
            obs, reward, terminated, truncated, _ = env.step(action)
            returns = returns + torch.where(running, reward, torch.zeros_like(reward))
            running = running & ~(terminated | truncated)
            if not bool(running.any()):
                break
        if bool(running.any()):
            raise RuntimeError(f"evaluation episodes did not end within {self.max_steps} steps")
        env.cut_graph()
        returns = returns.view(members, per).cpu()
        return EvaluationResult(paper=returns[:, 0].clone(), episodes=returns[:, 1:].clone())
