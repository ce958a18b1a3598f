"""Seed populations: ``P`` independent training runs in lockstep in one process.

A *population* trains the seeds ``s_1 .. s_P`` of one configuration together: one environment of
``P x N`` rows (member ``p`` owns rows ``p N .. (p + 1) N - 1``), ensembles of the networks
(:mod:`safegbpo.algorithms.networks`: parameters stacked along a leading member dimension), one
batched safeguard call for all rows, per-member optimiser state (Adam is elementwise, so Adam
on the stacked parameters is ``P`` independent Adams), per-member gradient clipping
(:func:`clip_grad_norm_`) and per-member random streams.  The networks are small, so a run is
bounded by per-operation overhead in the rollout: ``P`` seeds in one process cost much less
than ``P`` processes (``benchmarks/bench_populations.py`` measures it).

Independence: member ``p``'s trajectory, gradients and parameters are bitwise the same whatever
the other members are and whatever ``P`` is (tests in ``tests/algorithms/test_population.py``).
Every random draw of a member comes from the member's own generators, in the same order as in a
population of one, and every batched kernel gives each member the result it gives a population
of one (see :mod:`~safegbpo.algorithms.networks` for the matrix products and elementwise
functions).  A single-seed run is a population of one through the same code.  The safeguard
is one batched call for all rows; the exact backend's rows are computed per state
(:meth:`~safegbpo.safeguards.polytope.ActionPolytope.rows`), except its 2-D zonotopic centre
(ray mask), whose batched solver makes a row depend on the others at rounding level (a known
exception, ``tests/algorithms/test_population.py``).

This module provides

* :func:`population_env` — a task's vector env whose rows form consecutive *blocks*, each with
  its own ``torch.Generator`` for reset states and noise (a block is what a one-block env with
  that seed would be, draw for draw); ``reset(seed=[s_1, ..., s_B])`` seeds the blocks.  The
  blocks of a population's envs are laid out member by member, every member owning the same
  number of consecutive blocks (the training env one block per member, the evaluation env two:
  :class:`~safegbpo.algorithms.evaluation.Evaluator`), so :func:`member_rows` tells which rows
  are whose (the safety monitor of the reproduction attributes realised states with it);
* :func:`split_population_state` / :func:`merge_population_states` — an algorithm's population
  checkpoint into per-member checkpoints (the format of a population of one) and back;
* :func:`clip_grad_norm_` — gradient clipping with one norm per member.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, cast

import torch
from torch import Tensor

if TYPE_CHECKING:  # the methods below extend a SafeVectorEnv subclass (see _block_class)
    from safegbpo.envs.base import SafeVectorEnv as _EnvBase
else:
    _EnvBase = object

__all__ = [
    "BlockSeededEnv",
    "member_rows",
    "population_env",
    "split_population_state",
    "merge_population_states",
    "clip_grad_norm_",
]


# -- environment ---------------------------------------------------------------------------------
class BlockSeededEnv(_EnvBase):
    """Methods added to a :class:`~safegbpo.envs.SafeVectorEnv` task class (its subclass
    ``BlockSeeded<Task>Env``, built by :func:`population_env`): consecutive blocks of rows, each
    with its own generator.

    All randomness of a ``SafeVectorEnv`` goes through :meth:`sample_noise` and
    :meth:`sample_safe_states`; both draw block by block here, each block from its own
    generator with the block's size (exactly the draws a one-block env of that size and seed
    would make).  Any other use of the env's single generator raises ``RuntimeError``, so a
    task that adds a random draw elsewhere cannot silently couple the blocks.

    The per-row state that :meth:`block_state` / :meth:`load_block_states` move between
    populations is the task env class's
    :attr:`~safegbpo.envs.SafeVectorEnv.ROW_ATTRIBUTES` (states and goals; the energy task adds
    each row's episode start hour, which fixes its current hour and exogenous inputs); the
    episode clock is shared (all blocks truncate together).
    """

    block_sizes: tuple[int, ...]
    block_offsets: tuple[int, ...]
    _task_class: type[_EnvBase]  # the task's env class these methods extend

    def _init_blocks(self, block_sizes: Sequence[int]) -> None:
        sizes = tuple(int(s) for s in block_sizes)
        if not sizes or any(s <= 0 for s in sizes) or sum(sizes) != self.num_envs:
            raise ValueError(f"block sizes {list(block_sizes)} must be positive and sum to "
                             f"num_envs = {self.num_envs}")
        self.block_sizes = sizes
        offsets = [0]
        for size in sizes:
            offsets.append(offsets[-1] + size)
        self.block_offsets = tuple(offsets)
        self.__dict__["_block_generators"] = [torch.Generator(device=self.device)
                                              for _ in sizes]
        self.__dict__["_active_generator"] = None

    # the single generator of SafeVectorEnv is replaced by the active block's
    @property
    def _generator(self) -> torch.Generator:
        active = self.__dict__.get("_active_generator")
        if active is None:
            raise RuntimeError(
                f"{type(self).__name__}: a random draw outside the per-block streams "
                "(sample_noise / sample_safe_states) would couple the population's members")
        return active

    @_generator.setter
    def _generator(self, value: torch.Generator) -> None:  # set by SafeVectorEnv.__init__
        self.__dict__["_unused_generator"] = value

    @contextmanager
    def _drawing_from(self, generator: torch.Generator) -> Iterator[None]:
        self.__dict__["_active_generator"] = generator
        try:
            yield
        finally:
            self.__dict__["_active_generator"] = None

    def _seed_generator(self, seed: Any) -> None:
        """Seed every block: ``seed`` is a sequence with one non-negative integer per block."""
        generators = self.__dict__.get("_block_generators")
        if generators is None:  # SafeVectorEnv.__init__, before the blocks exist
            return
        if seed is None or isinstance(seed, int | str | bytes) or len(seed) != len(generators):
            raise ValueError(f"a population env is seeded with one seed per block "
                             f"({len(generators)} blocks), got {seed!r}")
        for generator, value in zip(generators, seed, strict=True):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"block seeds must be non-negative integers, got {value!r}")
            generator.manual_seed(int(value))

    def _per_block(self, num: int, draw: Any) -> Tensor:
        if num != self.num_envs:
            raise ValueError(f"a population env draws for all its {self.num_envs} rows at once "
                             f"(block by block), not for {num}")
        parts = []
        for size, generator in zip(self.block_sizes, self.__dict__["_block_generators"],
                                   strict=True):
            with self._drawing_from(generator):
                parts.append(draw(size))
        return parts[0] if len(parts) == 1 else torch.cat(parts)

    def sample_noise(self, num: int) -> Tensor:
        return self._per_block(num, lambda size: self._task_class.sample_noise(self, size))

    def sample_safe_states(self, num: int) -> Tensor:
        return self._per_block(num, lambda size: self._task_class.sample_safe_states(self, size))

    # -- moving blocks between populations -------------------------------------------------------
    def block_rows(self, block: int) -> slice:
        return slice(self.block_offsets[block], self.block_offsets[block + 1])

    def block_state(self, block: int) -> dict[str, Any]:
        """The dynamic state of ``block``: its rows of :attr:`ROW_ATTRIBUTES`, the episode clock
        and its generator (detached copies)."""
        self._require_reset()
        rows = self.block_rows(block)
        values = {}
        for name in self.ROW_ATTRIBUTES:
            value = getattr(self, name, None)
            values[name] = None if value is None else value[rows].detach().clone()
        return {"rows": values, "elapsed_steps": int(self._elapsed_steps),
                "generator": self.__dict__["_block_generators"][block].get_state()}

    def load_block_states(self, states: Sequence[Mapping[str, Any]]) -> None:
        """Restore every block from :meth:`block_state` dicts (one per block, in order; they may
        come from different populations but must share the episode clock)."""
        if len(states) != len(self.block_sizes):
            raise ValueError(f"expected {len(self.block_sizes)} block states, got {len(states)}")
        clocks = {int(s["elapsed_steps"]) for s in states}
        if len(clocks) != 1:
            raise ValueError(f"blocks at different episode steps {sorted(clocks)} cannot share "
                             "an env (all blocks truncate together)")
        for name in self.ROW_ATTRIBUTES:
            parts = [s["rows"][name] for s in states]
            if all(p is None for p in parts):
                setattr(self, name, None)
                continue
            if any(p is None for p in parts):
                raise ValueError(f"block states disagree on whether {name} is set")
            for part, size in zip(parts, self.block_sizes, strict=True):
                if part.shape[0] != size:
                    raise ValueError(f"block state of {name} has {part.shape[0]} rows, "
                                     f"expected {size}")
            setattr(self, name, torch.cat(parts).to(device=self.device))
        self._elapsed_steps = clocks.pop()
        for generator, state in zip(self.__dict__["_block_generators"], states, strict=True):
            generator.set_state(state["generator"])


_BLOCK_CLASSES: dict[type, type] = {}


def _block_class(env_class: type) -> type:
    """``env_class`` extended by the methods of :class:`BlockSeededEnv` (a direct subclass, so
    that an env built by ``make_vec`` can be switched to it in place; built once per class)."""
    cls = _BLOCK_CLASSES.get(env_class)
    if cls is None:
        skip = {"__dict__", "__weakref__", "__module__", "__qualname__", "__doc__"}
        namespace = {k: v for k, v in vars(BlockSeededEnv).items() if k not in skip}
        namespace.update(_task_class=env_class, __module__=__name__,
                         __doc__=f"{env_class.__name__} with per-block random streams "
                                 f"(:class:`BlockSeededEnv`).")
        cls = _BLOCK_CLASSES[env_class] = type(f"BlockSeeded{env_class.__name__}",
                                               (env_class,), namespace)
    return cls


def population_env(
    task: str,
    block_sizes: Sequence[int],
    *,
    safe_set: Any = None,
    episode_length: int | None = None,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float64,
    env_options: Mapping[str, Any] | None = None,
) -> BlockSeededEnv:
    """The vector env of ``task`` with ``sum(block_sizes)`` rows in blocks (class
    :class:`BlockSeededEnv` over the task's env class; seed it with
    ``reset(seed=[one per block])``).

    Args:
        task: task name (any task ``safegbpo.envs.make_vec`` knows).
        block_sizes: rows per block, e.g. ``[N] * P`` for a training population.
        safe_set, episode_length, device, dtype: as for ``make_vec``.
        env_options: the task's env options (``TrainConfig.env_options``, e.g. the energy
            task's ``profiles``), passed to ``make_vec``; every block shares them.
    """
    from safegbpo.envs import make_vec

    options: dict[str, Any] = dict(env_options or {})
    if episode_length is not None:
        options["episode_length"] = int(episode_length)
    env = make_vec(task, int(sum(block_sizes)), seed=0, safe_set=safe_set, device=device,
                   dtype=dtype, **options)
    env.__class__ = _block_class(type(env))
    blocks = cast(BlockSeededEnv, env)
    blocks._init_blocks(block_sizes)
    return blocks


def member_rows(env: Any, member: int, members: int) -> slice:
    """The rows of ``env`` that belong to member ``member`` of a population of ``members``
    (module docstring: each member owns ``len(env.block_sizes) / members`` consecutive blocks).
    A population of one owns every row of any env.

    Raises:
        ValueError: ``member`` out of range, or ``env`` is not a block-seeded env whose blocks
            split evenly into ``members`` (its rows cannot be attributed).
    """
    if isinstance(members, bool) or not isinstance(members, int) or members < 1 \
            or not 0 <= member < members:
        raise ValueError(f"member {member!r} of a population of {members!r}")
    if members == 1:
        return slice(0, int(env.num_envs))
    sizes = getattr(env, "block_sizes", None)
    if sizes is None or len(sizes) % members:
        raise ValueError(f"cannot attribute the {env.num_envs} rows of {type(env).__name__} "
                         f"(blocks {None if sizes is None else list(sizes)}) to {members} "
                         "members: a population env has the same number of consecutive blocks "
                         "per member")
    per = len(sizes) // members
    return slice(env.block_offsets[member * per], env.block_offsets[(member + 1) * per])


# -- checkpoints ---------------------------------------------------------------------------------
def _take(value: Any, member: int) -> Any:
    """Member ``member`` of a (nested) population value: tensors with a leading member
    dimension are sliced (kept as a member dimension of size 1), 0-d tensors and other leaves are
    shared and copied as they are."""
    if isinstance(value, Tensor):
        return value if value.ndim == 0 else value[member:member + 1].clone()
    if isinstance(value, Mapping):
        return {k: _take(v, member) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_take(v, member) for v in value)
    return value


def _join(values: Sequence[Any], where: str) -> Any:
    """Inverse of :func:`_take` over the members' values (concatenate member dimensions; shared
    leaves must agree)."""
    first = values[0]
    if isinstance(first, Tensor):
        if first.ndim == 0:
            if any(not torch.equal(v, first) for v in values[1:]):
                raise ValueError(f"members disagree on the shared value {where}")
            return first
        return torch.cat(list(values))
    if isinstance(first, Mapping):
        keys = list(first)
        if any(list(v) != keys for v in values[1:]):
            raise ValueError(f"members' checkpoints differ in structure at {where}")
        return {k: _join([v[k] for v in values], f"{where}/{k}") for k in keys}
    if isinstance(first, list | tuple):
        if any(len(v) != len(first) for v in values[1:]):
            raise ValueError(f"members' checkpoints differ in structure at {where}")
        return type(first)(_join([v[i] for v in values], f"{where}[{i}]")
                           for i in range(len(first)))
    if any(v != first for v in values[1:]):
        raise ValueError(f"members disagree on the shared value {where}: "
                         f"{sorted({repr(v) for v in values})}")
    return first


def split_population_state(state: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Per-member checkpoints of an algorithm's population ``state_dict`` (see
    :meth:`~safegbpo.algorithms.base.Algorithm.state_dict`): member ``p`` gets its slice of every
    per-member tensor and its own generator state; the result is the ``state_dict`` of a
    population of one."""
    members = int(state["members"])
    out = []
    for p in range(members):
        member = {k: _take(v, p) for k, v in state.items() if k not in ("generators", "members")}
        member["generators"] = [state["generators"][p]]
        member["members"] = 1
        out.append(member)
    return out


def merge_population_states(states: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The population ``state_dict`` of several one-member checkpoints (inverse of
    :func:`split_population_state`); shared values (e.g. Adam's step count) must agree."""
    if not states:
        raise ValueError("no member checkpoints to merge")
    if any(int(s.get("members", 0)) != 1 for s in states):
        raise ValueError("merge_population_states expects one-member checkpoints")
    keys = [k for k in states[0] if k not in ("generators", "members")]
    merged = {k: _join([s[k] for s in states], k) for k in keys}
    merged["generators"] = [s["generators"][0] for s in states]
    merged["members"] = len(states)
    return merged


# -- optimisation --------------------------------------------------------------------------------
@torch.no_grad()
def clip_grad_norm_(parameters: Iterable[Tensor], max_norm: float, eps: float = 1e-6) -> Tensor:
    """Clip the gradients of ensemble ``parameters`` (each ``(P, ...)``) to norm ``max_norm``
    *per member*, as ``torch.nn.utils.clip_grad_norm_`` does for one network: member ``p``'s
    gradients are scaled by ``min(1, max_norm / (||g_p|| + eps))``, ``||g_p||`` the Euclidean norm
    over all its parameters.  Returns the norms before clipping ``(P,)``."""
    grads = [p.grad for p in parameters if p.grad is not None]
    if not grads:
        raise ValueError("no gradients to clip")
    squared = grads[0].pow(2).flatten(1).sum(1)
    for grad in grads[1:]:
        squared = squared + grad.pow(2).flatten(1).sum(1)
    norms = squared.sqrt()
    scale = torch.clamp(max_norm / (norms + eps), max=1.0)
    for grad in grads:
        grad.mul_(scale.view(-1, *([1] * (grad.ndim - 1))))
    return norms
