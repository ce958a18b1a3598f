"""Safe state zonotope with paired backup actions, and its file format (SPEC §6 "Safe sets").

A :class:`SafeSet` is a robust control invariant (RCI) state zonotope ``S_s = <c_S, G_S>``
(batch 1) and, optionally, an action zonotope ``U_s = <c_U, G_U>`` whose generator columns are
paired with those of ``S_s``: the state ``c_S + G_S b`` has the backup action ``c_U + G_U b``
(SPEC §7: the certificate of the RCI program proves that this action keeps the successor set
inside ``S_s``).

File format ``safegbpo-safe-set/1`` (JSON)::

    {"format": "safegbpo-safe-set/1", "task": "pendulum",
     "state_center": [n], "state_generators": [n][m],
     "action_center": [d], "action_generators": [d][m],     # optional (both or neither)
     "source": "...", "metadata": {...}}                     # optional

Validation policy (decision).  Shapes must match the task (``n``, ``d``) and each other (the
same ``m`` columns), all numbers must be finite, ``m >= 1``.  The action set must lie in
``A = [-1, 1]^d`` (interval hull, tolerance ``1e-6``), else the file is rejected: a backup action
outside ``A`` is not an action.  The state set's *centre* must lie in ``S`` (else the file is
rejected), but a set that sticks out of ``S`` only partially is accepted and its excess is
reported per dimension (:attr:`SafeSet.feasible_excess`): the environments clamp the state to
``S`` and :func:`~safegbpo.safesets.verify.verify_safe_set` certifies ``S_s ∩ S`` (successor sets
must lie in ``S_s`` *and* in ``S``).  The reference pendulum set of the paper's implementation
extends to ``|theta_dot| ≈ 11.6 > 8`` and must stay loadable.

Exact H-representations (SPEC §11): :attr:`SafeSet.hrep` (of ``S_s``) and
:attr:`SafeSet.action_hrep` (of ``U_s``) are computed lazily on first use from the set's own
numbers and memoised with the (immutable) set object (``0.1 s`` for the quadrotor set with
``m = 18``, so no on-disk cache is needed); :meth:`SafeSet.hrep_gauge` is the exact, LP-free
membership test built on them.

The factor LPs (:meth:`SafeSet.factors`) are solved with scipy/HiGHS, many states per LP (the
block-diagonal LP of independent states is separable, so its optimum is every state's own
optimum); they are not differentiable.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from safegbpo.io import atomic_write_text
from safegbpo.sets import HRep, Zonotope, zonotope_hrep
from safegbpo.sets.containment import min_inf_norm_factors
from safegbpo.tasks import TaskModel, get_model

__all__ = ["SAFE_SET_FORMAT", "ACTION_TOLERANCE", "SafeSet", "resolve_safe_sets"]

SAFE_SET_FORMAT = "safegbpo-safe-set/1"
#: Tolerance of the check "action set inside A = [-1, 1]^d" (interval hull).
ACTION_TOLERANCE = 1e-6
_REQUIRED_KEYS = ("format", "task", "state_center", "state_generators")


# ------------------------------------------------------------------------------------------
# SafeSet
# ------------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class SafeSet:
    """RCI state zonotope ``S_s`` with an optional generator-paired action zonotope ``U_s``.

    Attributes:
        task: a registered task (:func:`safegbpo.tasks.get_task`), e.g. ``"pendulum"``.
        state: ``S_s``, a batch-1 :class:`~safegbpo.sets.Zonotope` ``(1, n)``, ``(1, n, m)``.
        action: ``U_s`` (batch 1, ``(1, d)``, ``(1, d, m)``) or ``None``; column ``j`` of its
            generators is paired with column ``j`` of the state generators.
        source: free text naming where the set comes from.
        metadata: JSON-serialisable extra information (e.g. the RCI certificate).

    Raises:
        ValueError: on construction, with a message naming the problem (see module docstring
            for the policy: unknown task, shapes, centre outside ``S``, action set outside ``A``).
    """

    task: str
    state: Zonotope
    action: Zonotope | None = None
    source: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        model = get_model(self.task)  # ValueError for an unknown task
        if not isinstance(self.state, Zonotope):
            raise ValueError(f"state must be a Zonotope, got {type(self.state).__name__}")
        n, d = model.state_dim, model.action_dim
        if self.state.batch_size != 1:
            raise ValueError(f"state zonotope must have batch size 1, got {self.state.batch_size}")
        if self.state.dim != n:
            raise ValueError(f"state set has dimension {self.state.dim}, but task "
                             f"{self.task!r} has n = {n} states")
        m = self.state.num_generators
        if m < 1:
            raise ValueError("state set has no generators (m = 0)")
        if self.action is not None:
            if not isinstance(self.action, Zonotope):
                raise ValueError(f"action must be a Zonotope or None, got "
                                 f"{type(self.action).__name__}")
            if self.action.batch_size != 1:
                raise ValueError(f"action zonotope must have batch size 1, got "
                                 f"{self.action.batch_size}")
            if self.action.dim != d:
                raise ValueError(f"action set has dimension {self.action.dim}, but task "
                                 f"{self.task!r} has d = {d} actions")
            if self.action.num_generators != m:
                raise ValueError(f"action generators have {self.action.num_generators} columns, "
                                 f"state generators {m}: they must be paired column by column")
        if not isinstance(self.metadata, Mapping):
            raise ValueError(f"metadata must be a dict, got {type(self.metadata).__name__}")
        object.__setattr__(self, "metadata", dict(self.metadata))
        self._check_feasible(model)

    def _check_feasible(self, model: TaskModel) -> None:
        low, high = (t.numpy() for t in model.state_bounds())
        c = self.state.center.detach().cpu().numpy()[0]
        outside = (c < low) | (c > high)
        if outside.any():
            i = int(np.flatnonzero(outside)[0])
            raise ValueError(
                f"state set centre lies outside the feasible state box S: "
                f"{model.state_names[i]} = {c[i]:.6g} not in [{low[i]:.6g}, {high[i]:.6g}]")
        if self.action is not None:
            a_low, a_high = (t.detach().cpu().numpy()[0] for t in self.action.interval_hull())
            excess = np.maximum(-1.0 - a_low, a_high - 1.0)
            if (excess > ACTION_TOLERANCE).any():
                i = int(np.argmax(excess))
                raise ValueError(
                    f"action set lies outside the feasible action box A = [-1, 1]^d: "
                    f"{model.action_names[i]} spans [{a_low[i]:.6g}, {a_high[i]:.6g}] "
                    f"(tolerance {ACTION_TOLERANCE})")

    # -- properties ----------------------------------------------------------------------
    @property
    def model(self) -> TaskModel:
        return get_model(self.task)

    @property
    def dim(self) -> int:
        return self.state.dim

    @property
    def num_generators(self) -> int:
        return self.state.num_generators

    @property
    def feasible_excess(self) -> Tensor:
        """``(n,)``: how far the interval hull of ``S_s`` sticks out of ``S`` per dimension
        (``max(0, hull_high - S_high, S_low - hull_low)``); all zero iff ``S_s ⊆ S``."""
        low, high = self.model.state_bounds(self.state.dtype, self.state.device)
        h_low, h_high = (t[0].detach() for t in self.state.interval_hull())
        return torch.clamp(torch.maximum(h_high - high, low - h_low), min=0.0)

    @cached_property
    def hrep(self) -> HRep:
        """Exact H-representation of ``S_s`` (:func:`safegbpo.sets.zonotope_hrep`), computed
        once per set object."""
        c, G = (a[0] for a in self.state.numpy())
        return zonotope_hrep(c, G)

    @cached_property
    def action_hrep(self) -> HRep | None:
        """Exact H-representation of ``U_s`` (``None`` without an action part)."""
        if self.action is None:
            return None
        c, G = (a[0] for a in self.action.numpy())
        return zonotope_hrep(c, G)

    def hrep_gauge(self, states: Any) -> np.ndarray:
        """Exact gauge of ``states (B, n)`` w.r.t. ``S_s`` from :attr:`hrep` (no LP):
        ``(B,)``, ``<= 1`` iff the state lies in ``S_s`` (equals :meth:`gauge` up to rounding)."""
        c = self.state.center[0].detach().cpu().numpy()
        return self.hrep.gauge(self._states_numpy(states), c)

    def volume(self) -> float:
        """Exact volume of ``S_s`` (``2^n sum |det|``, SPEC §1 / :mod:`safegbpo.sets.volume`)."""
        return float(self.state.volume()[0])

    # -- state queries -------------------------------------------------------------------
    def _states_numpy(self, states: Any) -> np.ndarray:
        x = states.detach().cpu().numpy() if isinstance(states, Tensor) else np.asarray(states)
        x = np.asarray(x, dtype=np.float64)
        if x.ndim == 1:
            x = x[None]
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise ValueError(f"states: expected shape (batch, {self.dim}), got {x.shape}")
        if not np.isfinite(x).all():
            raise ValueError("states contain NaN/inf")
        return x

    def _like(self, values: np.ndarray, states: Any) -> Tensor:
        if isinstance(states, Tensor):
            return torch.as_tensor(values, dtype=states.dtype, device=states.device)
        return torch.as_tensor(values, dtype=torch.float64)

    def gauge(self, states: Any) -> Tensor:
        """``(B,)`` gauge ``min ||b||_inf`` s.t. ``c + G b = s`` (``<= 1`` iff ``s in S_s``)."""
        x = self._states_numpy(states)
        b = self._factors_numpy(x)
        return self._like(np.abs(b).max(axis=1), states)

    def _factors_numpy(self, x: np.ndarray) -> np.ndarray:
        c, G = (a[0] for a in self.state.numpy())
        return min_inf_norm_factors(G, x - c[None])

    def factors(self, states: Any, *, strict: bool = True, tol: float = 1e-7) -> Tensor:
        """Factors ``b(s)`` ``(B, m)`` with ``c_S + G_S b = s`` and minimal ``||b||_inf``.

        Args:
            states: ``(B, n)`` (or ``(n,)``), tensor or array.
            strict: raise ``ValueError`` if a state lies outside ``S_s`` (gauge ``> 1 + tol``);
                otherwise return the minimal-norm factor (norm ``> 1``), ``+inf`` rows for
                states outside the affine hull of ``S_s``.
            tol: tolerance of the membership test (LP accuracy).

        Returns:
            ``(B, m)`` with the dtype/device of ``states`` (float64 CPU for arrays).
        """
        x = self._states_numpy(states)
        b = self._factors_numpy(x)
        if strict:
            norms = np.abs(b).max(axis=1)
            bad = np.flatnonzero(~(norms <= 1.0 + tol))
            if bad.size:
                raise ValueError(
                    f"{bad.size} of {x.shape[0]} states lie outside the safe state set S_s "
                    f"(largest gauge {float(norms[bad].max()):.6g} > 1; first offending "
                    f"state index {int(bad[0])}: {x[bad[0]].tolist()})")
            b = np.clip(b, -1.0, 1.0)
        return self._like(b, states)

    def backup_action(self, states: Any, *, strict: bool = True, tol: float = 1e-7) -> Tensor:
        """Certified backup actions ``c_U + G_U b(s)`` ``(B, d)`` (SPEC §7).

        Raises:
            ValueError: the set has no action part, or (``strict``) a state is outside ``S_s``.
        """
        if self.action is None:
            raise ValueError(f"the {self.task} safe set ({self.source or 'no source'}) has no "
                             f"paired action set: no backup action available")
        b = self.factors(states, strict=strict, tol=tol)
        c_u, G_u = (t[0].to(b.dtype).to(b.device) for t in (self.action.center,
                                                            self.action.generators))
        return c_u[None] + b @ G_u.T

    def contains(self, states: Any, tol: float = 1e-9) -> Tensor:
        """Exact membership in ``S_s`` (Eq 5), bool ``(B,)``."""
        x = self._states_numpy(states)
        norms = np.abs(self._factors_numpy(x)).max(axis=1)
        return torch.as_tensor(norms <= 1.0 + tol)

    # -- IO ------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        c, G = (a[0] for a in self.state.numpy())
        data: dict[str, Any] = {"format": SAFE_SET_FORMAT, "task": self.task}
        if self.source:
            data["source"] = self.source
        data["state_center"] = c.tolist()
        data["state_generators"] = G.tolist()
        if self.action is not None:
            cu, Gu = (a[0] for a in self.action.numpy())
            data["action_center"] = cu.tolist()
            data["action_generators"] = Gu.tolist()
        if self.metadata:
            data["metadata"] = self.metadata
        return data

    @classmethod
    def from_dict(cls, data: Any, *, origin: str = "safe-set data") -> SafeSet:
        """Build and validate a set from the parsed JSON of the ``safegbpo-safe-set/1`` format.

        Raises:
            ValueError: naming ``origin`` and the problem.
        """
        def fail(msg: str) -> ValueError:
            return ValueError(f"{origin}: {msg}")

        if not isinstance(data, dict):
            raise fail(f"expected a JSON object, got {type(data).__name__}")
        missing = [k for k in _REQUIRED_KEYS if k not in data]
        if missing:
            raise fail(f"missing key(s) {missing}")
        if data["format"] != SAFE_SET_FORMAT:
            raise fail(f"wrong format {data['format']!r}; expected {SAFE_SET_FORMAT!r}")
        task = data["task"]
        if not isinstance(task, str):
            raise fail(f"'task' must be a string, got {task!r}")
        try:
            model = get_model(task)
        except ValueError as err:
            raise fail(str(err)) from None
        has_c, has_g = "action_center" in data, "action_generators" in data
        if has_c != has_g:
            raise fail("'action_center' and 'action_generators' must be given together "
                       f"(missing key {'action_generators' if has_c else 'action_center'!r})")
        n, d = model.state_dim, model.action_dim
        c = _array(data["state_center"], "state_center", (n,), fail)
        G = _array(data["state_generators"], "state_generators", (n, None), fail)
        m = G.shape[1]
        if m == 0:
            raise fail("'state_generators' has no columns (m = 0)")
        action = None
        if has_c:
            cu = _array(data["action_center"], "action_center", (d,), fail)
            Gu = _array(data["action_generators"], "action_generators", (d, m), fail)
            action = Zonotope(torch.as_tensor(cu), torch.as_tensor(Gu))
        source = data.get("source", "")
        if not isinstance(source, str):
            raise fail(f"'source' must be a string, got {type(source).__name__}")
        metadata = data.get("metadata", {})
        if not isinstance(metadata, dict):
            raise fail(f"'metadata' must be an object, got {type(metadata).__name__}")
        try:
            return cls(task, Zonotope(torch.as_tensor(c), torch.as_tensor(G)), action,
                       source, metadata)
        except ValueError as err:
            raise fail(str(err)) from None

    @classmethod
    def load(cls, path: str | os.PathLike) -> SafeSet:
        """Load and validate a ``safegbpo-safe-set/1`` file.

        Raises:
            FileNotFoundError: no such file.
            ValueError: not JSON, wrong format string, unknown task, missing keys, wrong shapes,
                NaN/inf, centre outside ``S``, action set outside ``A`` (message names it).
        """
        path = Path(path)
        text = path.read_text(encoding="utf-8")
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}: not a JSON file ({err})") from None
        return cls.from_dict(data, origin=str(path))

    def save(self, path: str | os.PathLike) -> Path:
        """Write the set atomically (:func:`safegbpo.io.atomic_write_text`)."""
        text = json.dumps(self.to_dict(), indent=1, allow_nan=False)
        return atomic_write_text(path, text + "\n")

    def __repr__(self) -> str:
        act = "none" if self.action is None else f"d={self.action.dim}"
        return (f"SafeSet(task={self.task!r}, n={self.dim}, m={self.num_generators}, "
                f"action={act}, source={self.source!r})")


def _array(value: Any, key: str, shape: tuple[int | None, ...], fail) -> np.ndarray:
    """Parse a nested list into a finite float64 array of ``shape`` (``None`` = any size)."""
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise fail(f"'{key}' must be a (nested) list of numbers") from None
    if arr.ndim != len(shape) or any(s is not None and a != s
                                     for a, s in zip(arr.shape, shape, strict=True)):
        want = "(" + ", ".join("m" if s is None else str(s) for s in shape) + ")"
        raise fail(f"'{key}' has shape {arr.shape}, expected {want}")
    if not np.isfinite(arr).all():
        raise fail(f"'{key}' contains NaN/inf")
    return arr


def resolve_safe_sets(directory: str | Path | None, tasks: Iterable[str]) -> dict[str, str | None]:
    """``{task: path}`` of ``<directory>/<task>.json`` for each task (``None`` everywhere when
    ``directory`` is ``None``: the project's own certified sets).

    Raises:
        FileNotFoundError: the directory or a task's set file does not exist.
    """
    tasks = list(dict.fromkeys(tasks))
    if directory is None:
        return dict.fromkeys(tasks)
    root = Path(directory).expanduser().resolve()
    if not root.is_dir():
        raise FileNotFoundError(f"--safe-sets: {root} is not a directory")
    out: dict[str, str | None] = {}
    for task in tasks:
        path = root / f"{task}.json"
        if not path.is_file():
            raise FileNotFoundError(f"--safe-sets: no set file for task {task!r} ({path})")
        out[task] = str(path)
    return out
