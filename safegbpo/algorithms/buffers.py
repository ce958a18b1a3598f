"""Replay buffer of SAC: a fixed-capacity ring of transitions held in preallocated tensors.

Fields are declared once (name -> trailing shape, dtype); :meth:`ReplayBuffer.add` appends a
batch of ``N`` transitions (one vector step), overwriting the oldest ones when full;
:meth:`ReplayBuffer.sample` draws a uniform mini-batch with the caller's ``torch.Generator``.
The whole buffer (contents, write position, size) is a checkpointable ``state_dict``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

__all__ = ["ReplayBuffer"]


class ReplayBuffer:
    """Uniform replay of transitions.

    Args:
        capacity: maximum number of transitions kept.
        fields: ``{name: (trailing_shape, dtype)}``, e.g. ``{"obs": ((3,), torch.float64)}``.
        device: of the stored tensors.
    """

    def __init__(
        self,
        capacity: int,
        fields: Mapping[str, tuple[tuple[int, ...], torch.dtype]],
        device: torch.device | str = "cpu",
    ) -> None:
        if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity <= 0:
            raise ValueError(f"capacity must be a positive integer, got {capacity!r}")
        if not fields:
            raise ValueError("a replay buffer needs at least one field")
        self.capacity = capacity
        self.data: dict[str, Tensor] = {
            name: torch.zeros((capacity, *shape), dtype=dtype, device=device)
            for name, (shape, dtype) in fields.items()
        }
        self.position = 0  # next write index
        self.size = 0

    def __len__(self) -> int:
        return self.size

    def add(self, **batch: Tensor) -> None:
        """Append ``N`` transitions: one ``(N, *shape)`` tensor per field (all fields required)."""
        if set(batch) != set(self.data):
            raise ValueError(f"add() needs exactly the fields {sorted(self.data)}, "
                             f"got {sorted(batch)}")
        sizes = {name: value.shape[0] for name, value in batch.items()}
        count = next(iter(sizes.values()))
        if any(size != count for size in sizes.values()) or count == 0:
            raise ValueError(f"all fields must hold the same non-zero number of rows, got {sizes}")
        if count > self.capacity:
            raise ValueError(f"cannot add {count} transitions to a buffer of capacity "
                             f"{self.capacity}")
        index = (self.position + torch.arange(count)) % self.capacity
        for name, value in batch.items():
            store = self.data[name]
            if tuple(value.shape[1:]) != tuple(store.shape[1:]):
                raise ValueError(f"field {name!r} must have shape (N, *{tuple(store.shape[1:])}), "
                                 f"got {tuple(value.shape)}")
            store[index.to(store.device)] = value.detach().to(store.dtype)
        self.position = (self.position + count) % self.capacity
        self.size = min(self.size + count, self.capacity)

    def sample(self, batch_size: int, generator: torch.Generator) -> dict[str, Tensor]:
        """A uniform mini-batch (with replacement) ``{name: (batch_size, *shape)}``."""
        if self.size == 0:
            raise ValueError("cannot sample from an empty replay buffer")
        device = next(iter(self.data.values())).device
        index = torch.randint(self.size, (batch_size,), generator=generator, device=device)
        return {name: store[index] for name, store in self.data.items()}

    def state_dict(self) -> dict[str, Any]:
        """Contents (only the filled part) and ring position."""
        return {"capacity": self.capacity, "position": self.position, "size": self.size,
                "data": {k: v[: self.size].clone() for k, v in self.data.items()}}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if state["capacity"] != self.capacity or set(state["data"]) != set(self.data):
            raise ValueError("replay buffer checkpoint does not match this buffer's capacity or "
                             "fields")
        size = int(state["size"])
        for name, store in self.data.items():
            store.zero_()
            store[:size] = state["data"][name].to(store.device, store.dtype)
        self.position, self.size = int(state["position"]), size
