"""Replay buffer: ring semantics, per-member seeded sampling, checkpoint round trip, input
checks."""

from __future__ import annotations

import pytest
import torch

from safegbpo.algorithms.buffers import ReplayBuffer

F64 = torch.float64
FIELDS = {"obs": ((2,), F64), "reward": ((), F64)}


def rows(start: int, count: int, members: int = 1) -> dict[str, torch.Tensor]:
    """Member p's rows hold values ``100 p + start .. 100 p + start + count - 1``."""
    values = torch.stack([torch.arange(start, start + count, dtype=F64) + 100 * p
                          for p in range(members)])
    return {"obs": torch.stack([values, -values], dim=-1), "reward": values}


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_ring_overwrites_the_oldest_transitions():
    buffer = ReplayBuffer(5, FIELDS)
    buffer.add(**rows(0, 3))
    assert len(buffer) == 3
    buffer.add(**rows(3, 3))  # 0..5 into 5 slots: 0 is overwritten by 5
    assert len(buffer) == 5 and buffer.position == 1
    assert sorted(buffer.data["reward"][0].tolist()) == [1.0, 2.0, 3.0, 4.0, 5.0]
    torch.testing.assert_close(buffer.data["obs"][..., 1], -buffer.data["reward"])


def test_sampling_is_uniform_over_the_filled_part_and_seeded_per_member():
    buffer = ReplayBuffer(100, FIELDS, members=2)
    buffer.add(**rows(0, 10, members=2))
    a = buffer.sample(500, [gen(0), gen(1)])
    b = buffer.sample(500, [gen(0), gen(1)])
    assert a["reward"].shape == (2, 500)
    assert torch.equal(a["reward"], b["reward"])
    assert set(a["reward"][0].tolist()) == set(range(10))  # never an empty slot
    assert set(a["reward"][1].tolist()) == set(range(100, 110))  # never another member's row
    torch.testing.assert_close(a["obs"][..., 0], a["reward"])  # rows stay aligned
    # member 1's draws are those of a one-member buffer with its generator
    alone = ReplayBuffer(100, FIELDS)
    alone.add(**{k: v[1:] for k, v in rows(0, 10, members=2).items()})
    assert torch.equal(alone.sample(500, [gen(1)])["reward"][0], a["reward"][1])
    with pytest.raises(ValueError, match="one generator per member"):
        buffer.sample(5, [gen(0)])


def test_state_dict_round_trip():
    buffer = ReplayBuffer(4, FIELDS, members=2)
    buffer.add(**rows(0, 3, members=2))
    buffer.add(**rows(3, 3, members=2))
    other = ReplayBuffer(4, FIELDS, members=2)
    other.load_state_dict(buffer.state_dict())
    assert (other.position, other.size) == (buffer.position, buffer.size)
    for key in FIELDS:
        assert torch.equal(other.data[key], buffer.data[key])
    with pytest.raises(ValueError, match="capacity"):
        ReplayBuffer(5, FIELDS, members=2).load_state_dict(buffer.state_dict())
    with pytest.raises(ValueError, match="members"):
        ReplayBuffer(4, FIELDS, members=3).load_state_dict(buffer.state_dict())


def test_bad_input_is_rejected():
    with pytest.raises(ValueError, match="capacity"):
        ReplayBuffer(0, FIELDS)
    with pytest.raises(ValueError, match="members"):
        ReplayBuffer(4, FIELDS, members=0)
    buffer = ReplayBuffer(4, FIELDS)
    with pytest.raises(ValueError, match="empty"):
        buffer.sample(1, [gen(0)])
    with pytest.raises(ValueError, match="fields"):
        buffer.add(obs=torch.zeros(1, 2, 2, dtype=F64))
    with pytest.raises(ValueError, match="same non-zero N"):
        buffer.add(obs=torch.zeros(1, 2, 2, dtype=F64), reward=torch.zeros(1, 3, dtype=F64))
    with pytest.raises(ValueError, match=r"\(1, N\) leading"):
        buffer.add(obs=torch.zeros(2, 2, 2, dtype=F64), reward=torch.zeros(2, 2, dtype=F64))
    with pytest.raises(ValueError, match="shape"):
        buffer.add(obs=torch.zeros(1, 2, 3, dtype=F64), reward=torch.zeros(1, 2, dtype=F64))
    with pytest.raises(ValueError, match="capacity"):
        buffer.add(**rows(0, 5))
