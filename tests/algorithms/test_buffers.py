"""Replay buffer: ring semantics, seeded sampling, checkpoint round trip, input checks."""

from __future__ import annotations

import pytest
import torch

from safegbpo.algorithms.buffers import ReplayBuffer

F64 = torch.float64
FIELDS = {"obs": ((2,), F64), "reward": ((), F64)}


def rows(start: int, count: int) -> dict[str, torch.Tensor]:
    values = torch.arange(start, start + count, dtype=F64)
    return {"obs": torch.stack([values, -values], dim=-1), "reward": values}


def test_ring_overwrites_the_oldest_transitions():
    buffer = ReplayBuffer(5, FIELDS)
    buffer.add(**rows(0, 3))
    assert len(buffer) == 3
    buffer.add(**rows(3, 3))  # 0..5 into 5 slots: 0 is overwritten by 5
    assert len(buffer) == 5 and buffer.position == 1
    assert sorted(buffer.data["reward"].tolist()) == [1.0, 2.0, 3.0, 4.0, 5.0]
    torch.testing.assert_close(buffer.data["obs"][:, 1], -buffer.data["reward"])


def test_sampling_is_uniform_over_the_filled_part_and_seeded():
    buffer = ReplayBuffer(100, FIELDS)
    buffer.add(**rows(0, 10))
    a = buffer.sample(500, torch.Generator().manual_seed(0))
    b = buffer.sample(500, torch.Generator().manual_seed(0))
    assert torch.equal(a["reward"], b["reward"])
    assert set(a["reward"].tolist()) == set(range(10))  # never an empty slot
    torch.testing.assert_close(a["obs"][:, 0], a["reward"])  # rows stay aligned


def test_state_dict_round_trip():
    buffer = ReplayBuffer(4, FIELDS)
    buffer.add(**rows(0, 3))
    buffer.add(**rows(3, 3))
    other = ReplayBuffer(4, FIELDS)
    other.load_state_dict(buffer.state_dict())
    assert (other.position, other.size) == (buffer.position, buffer.size)
    for key in FIELDS:
        assert torch.equal(other.data[key], buffer.data[key])
    with pytest.raises(ValueError, match="capacity"):
        ReplayBuffer(5, FIELDS).load_state_dict(buffer.state_dict())


def test_bad_input_is_rejected():
    with pytest.raises(ValueError, match="capacity"):
        ReplayBuffer(0, FIELDS)
    buffer = ReplayBuffer(4, FIELDS)
    with pytest.raises(ValueError, match="empty"):
        buffer.sample(1, torch.Generator())
    with pytest.raises(ValueError, match="fields"):
        buffer.add(obs=torch.zeros(2, 2, dtype=F64))
    with pytest.raises(ValueError, match="same non-zero number"):
        buffer.add(obs=torch.zeros(2, 2, dtype=F64), reward=torch.zeros(3, dtype=F64))
    with pytest.raises(ValueError, match="shape"):
        buffer.add(obs=torch.zeros(2, 3, dtype=F64), reward=torch.zeros(2, dtype=F64))
    with pytest.raises(ValueError, match="capacity"):
        buffer.add(**rows(0, 5))
