"""Gymnasium vector action wrapper applying a safeguard before every step (SPEC §2, Eq 9).

``SafeguardActionWrapper(env, safeguard)`` is a :class:`gymnasium.vector.VectorActionWrapper`:
any algorithm trains through it unchanged.  ``step(actions)`` computes
``safe = safeguard(actions, env.state)`` (the wrapper owns the env, so it passes the current
states explicitly) and steps the wrapped env with
``safe`` (torch tensors in and out, the autograd graph from the policy's action through the
safeguard into the simulator is kept).  The step's ``info`` gains

* ``"unsafe_action"`` ``(N, d)`` — the actions given to the wrapper,
* ``"safe_action"`` ``(N, d)`` — the actions actually applied,
* ``"intervened"`` ``(N,)`` bool — ``||safe - unsafe|| > 1e-6`` (SPEC §5),
* ``"fallback"`` ``(N,)`` bool — the safeguard returned the safe set's backup action.
* ``"uncertified"`` ``(N,)`` bool — no certified safe action existed; the row holds the
  best-effort recovery action (:mod:`~safegbpo.safeguards.recovery`); ``None`` when the
  safeguard does not report it.

Attribute access that the wrapper does not define (``state``, ``cut_graph``, ``linearise``,
``model``, ``safe_set``, ...) is forwarded to the wrapped env, so differentiable-simulation
algorithms (SHAC) can use the wrapper like the env itself.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from gymnasium.vector import VectorActionWrapper, VectorEnv
from torch import Tensor

from safegbpo.safeguards.protocol import SafeguardProtocol

__all__ = ["SafeguardActionWrapper"]


class SafeguardActionWrapper(VectorActionWrapper):
    """Apply ``safeguard`` to every batch of actions (module docstring).

    Args:
        env: the vector env (possibly wrapped).
        safeguard: a :class:`~safegbpo.safeguards.protocol.Safeguard` built for ``env``
            (its ``env`` must be ``env.unwrapped``).

    Raises:
        ValueError: the safeguard was built for another environment.
    """

    def __init__(self, env: VectorEnv, safeguard: SafeguardProtocol) -> None:
        super().__init__(env)
        if not callable(safeguard):
            raise ValueError(f"safeguard must be callable, got {type(safeguard).__name__}")
        if getattr(safeguard, "env", None) is not env.unwrapped:
            raise ValueError("the safeguard was built for a different environment than the one "
                             "being wrapped (it reads the states of its own env)")
        self.safeguard = safeguard

    def actions(self, actions: Any) -> Tensor:
        """The safe actions ``g(actions, state)`` for the current states."""
        env: Any = self.env.unwrapped  # a SafeVectorEnv (checked in __init__)
        return self.safeguard(actions, env.state)

    def step(self, actions: Any) -> tuple[Any, Any, Any, Any, dict[str, Any]]:
        safe = self.actions(actions)
        obs, reward, terminated, truncated, info = self.env.step(safe)
        info = dict(info)
        if not isinstance(actions, Tensor):
            actions = torch.as_tensor(np.asarray(actions, dtype=np.float64), dtype=safe.dtype,
                                      device=safe.device)
        info["unsafe_action"] = actions
        info["safe_action"] = safe
        info["intervened"] = self.safeguard.last_intervened
        info["fallback"] = self.safeguard.last_fallback
        info["uncertified"] = getattr(self.safeguard, "last_uncertified", None)
        return obs, reward, terminated, truncated, info

    def __getattr__(self, name: str) -> Any:
        # only called when normal lookup fails: forward public attributes to the wrapped env
        if name.startswith("_") or name == "env":
            raise AttributeError(name)
        return getattr(self.env, name)
