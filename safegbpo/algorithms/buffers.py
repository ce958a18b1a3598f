"""Replay buffer of SAC: a fixed-capacity ring of transitions held in preallocated tensors, one
ring per member of a population (:mod:`~safegbpo.algorithms.population`).

Fields are declared once (name -> trailing shape, dtype); :meth:`ReplayBuffer.add` appends a
batch of ``N`` transitions per member (one vector step), overwriting the oldest ones when full;
:meth:`ReplayBuffer.sample` draws a uniform mini-batch per member, member ``p`` with its own
``torch.Generator``.  The members advance in lockstep, so the write position and the size are
shared.  The whole buffer (contents, write position, size) is a checkpointable ``state_dict``.

Shapes: stored ``(P, capacity, *shape)``; :meth:`add` takes ``(P, N, *shape)``;
:meth:`sample` returns ``(P, batch, *shape)``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

__all__ = ["ReplayBuffer"]


class ReplayBuffer:
    """Uniform replay of transitions, per member.

    Args:
        capacity: maximum number of transitions kept per member.
        fields: ``{name: (trailing_shape, dtype)}``, e.g. ``{"obs": ((3,), torch.float64)}``.
        members: number of members ``P``.
        device: of the stored tensors.
    """

    def __init__(
        self,
        capacity: int,
        fields: Mapping[str, tuple[tuple[int, ...], torch.dtype]],
        members: int = 1,
        device: torch.device | str = "cpu",
    ) -> None:
        if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity <= 0:
            raise ValueError(f"capacity must be a positive integer, got {capacity!r}")
        if isinstance(members, bool) or not isinstance(members, int) or members <= 0:
            raise ValueError(f"members must be a positive integer, got {members!r}")
        if not fields:
            raise ValueError("a replay buffer needs at least one field")
        self.capacity, self.members = capacity, members
        self.data: dict[str, Tensor] = {
            name: torch.zeros((members, capacity, *shape), dtype=dtype, device=device)
            for name, (shape, dtype) in fields.items()
        }
        self.position = 0  # next write index
        self.size = 0

    def __len__(self) -> int:
        return self.size

    def add(self, **batch: Tensor) -> None:
        """Append ``N`` transitions per member: one ``(P, N, *shape)`` tensor per field (all
        fields required)."""
        if set(batch) != set(self.data):
            raise ValueError(f"add() needs exactly the fields {sorted(self.data)}, "
                             f"got {sorted(batch)}")
        sizes = {name: tuple(value.shape[:2]) for name, value in batch.items()}
        count = next(iter(sizes.values()))[-1] if batch else 0
        if any(len(s) < 2 or s != (self.members, count) for s in sizes.values()) or count == 0:
            raise ValueError(f"all fields must hold ({self.members}, N) leading dimensions with "
                             f"the same non-zero N, got {sizes}")
        if count > self.capacity:
            raise ValueError(f"cannot add {count} transitions to a buffer of capacity "
                             f"{self.capacity}")
        index = (self.position + torch.arange(count)) % self.capacity
        for name, value in batch.items():
            store = self.data[name]
            if tuple(value.shape[2:]) != tuple(store.shape[2:]):
                raise ValueError(f"field {name!r} must have shape ({self.members}, N, "
                                 f"*{tuple(store.shape[2:])}), got {tuple(value.shape)}")
            store[:, index.to(store.device)] = value.detach().to(store.dtype)
        self.position = (self.position + count) % self.capacity
        self.size = min(self.size + count, self.capacity)

    def sample(self, batch_size: int, generators: Sequence[torch.Generator]) -> dict[str, Tensor]:
        """A uniform mini-batch (with replacement) per member, member ``p``'s indices from
        ``generators[p]``: ``{name: (P, batch_size, *shape)}``."""
        if self.size == 0:
            raise ValueError("cannot sample from an empty replay buffer")
        if len(generators) != self.members:
            raise ValueError(f"need one generator per member ({self.members}), got "
                             f"{len(generators)}")
        device = next(iter(self.data.values())).device
        index = torch.stack([torch.randint(self.size, (batch_size,), generator=g, device=device)
                             for g in generators])
        rows = torch.arange(self.members, device=device).unsqueeze(1)
        return {name: store[rows, index] for name, store in self.data.items()}

    def state_dict(self) -> dict[str, Any]:
        """Contents (only the filled part, ``(P, size, ...)``) and ring position."""
        return {"capacity": self.capacity, "position": self.position, "size": self.size,
                "data": {k: v[:, : self.size].clone() for k, v in self.data.items()}}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if state["capacity"] != self.capacity or set(state["data"]) != set(self.data):
            raise ValueError("replay buffer checkpoint does not match this buffer's capacity or "
                             "fields")
        size = int(state["size"])
        for name, store in self.data.items():
            saved = state["data"][name]
            if saved.shape[0] != self.members:
                raise ValueError(f"replay buffer checkpoint holds {saved.shape[0]} members, "
                                 f"this buffer {self.members}")
            store.zero_()
            store[:, :size] = saved.to(store.device, store.dtype)
        self.position, self.size = int(state["position"]), size
