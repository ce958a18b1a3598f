"""Load-time checks of a task model: the contract of :class:`~safegbpo.tasks.base.TaskModel`.

:func:`check_task_model` runs when a task is registered (:func:`safegbpo.tasks.register_task`,
the built-in tasks included) and when a task defined outside the package is loaded by import
path (``--task mypkg.mymodule:MY_TASK``, :func:`safegbpo.tasks.get_task`).  It raises
:class:`TaskModelError` (a ``ValueError``) naming the first violation:

* dimensions and names: positive ``state_dim``, ``action_dim``, ``noise_dim``; one name per state
  and action coordinate;
* boxes: ``S``, ``A``, ``W`` as finite ``(low, high)`` of the right shapes with ``low < high``
  (``low <= high`` for ``W``: a zero-width disturbance is allowed);
* dynamics: batched ``(B, n)`` float64 output, finite on ``S x A x W``, rows independent of the
  batch (row ``i`` of a batch equals the call on row ``i`` alone), differentiable;
* **Eq 12** (control- and noise-affine dynamics): on random states of ``S`` the map
  ``(a, w) -> f(s, a, w)`` must equal its linearisation
  ``f(s, a0, w0) + B(s) (a - a0) + E(s) (w - w0)`` (``B, E`` by ``torch.func.jacrev`` at the
  centres ``a0, w0`` of ``A, W``) at random points and at the vertices of ``A`` and ``W``; the
  action and the noise are tested separately, then together (an ``a * w`` cross term).  The
  message names the offending next-state component, the variable and the point;
* reward and observation (models without exogenous inputs): shapes ``(B,)`` and ``(B, o)``,
  finite;
* the equilibrium: inside ``S`` and ``A`` and a fixed point of the dynamics at ``w0`` (what the
  RCI program of SPEC §7 linearises at).

The tolerance is relative: ``|residual| <= 1e-8 (1 + |f|)`` per component (float64 round-off of
an affine map is ~1e-15; genuine nonlinearity over the boxes is many orders larger).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

if TYPE_CHECKING:
    from safegbpo.tasks.base import TaskModel

__all__ = ["AFFINE_RTOL", "TaskModelError", "check_task_model"]

#: Relative tolerance of the Eq 12 affinity test (module docstring).
AFFINE_RTOL = 1e-8


class TaskModelError(ValueError):
    """A task model violates the task contract (the message names the violation)."""


def _fmt(t: Tensor) -> str:
    return "[" + ", ".join(f"{float(v):.4g}" for v in t.detach().flatten()) + "]"


def check_task_model(model: TaskModel, *, task: str | None = None, num_states: int = 16,
                     num_points: int = 8, seed: int = 0) -> None:
    """Check ``model`` against the task contract (module docstring).

    Args:
        model: the task model.
        task: the task's name for messages (default ``model.name``).
        num_states: random states of ``S`` at which Eq 12 is tested.
        num_points: random ``(a, w)`` per state (the vertices of ``A`` and ``W`` are added when
            there are at most 64 of them).
        seed: seed of the ``torch.Generator`` drawing the points.

    Raises:
        TaskModelError: the first violation found.
    """
    name = task or getattr(model, "name", "") or type(model).__name__
    where = f"task {name!r} ({type(model).__name__})"

    def fail(msg: str) -> TaskModelError:
        return TaskModelError(f"{where}: {msg}")

    # -- dimensions and names --------------------------------------------------------------
    dims = {}
    for attr in ("state_dim", "action_dim", "noise_dim"):
        value = getattr(model, attr, None)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise fail(f"{attr} must be a positive integer, got {value!r}")
        dims[attr] = value
    n, d, n_w = dims["state_dim"], dims["action_dim"], dims["noise_dim"]
    if len(tuple(model.state_names)) != n:
        raise fail(f"state_names must name the {n} state coordinates, got "
                   f"{tuple(model.state_names)!r}")
    if len(tuple(model.action_names)) != d:
        raise fail(f"action_names must name the {d} action coordinates, got "
                   f"{tuple(model.action_names)!r}")

    # -- boxes -----------------------------------------------------------------------------
    boxes = {}
    for label, method, size, strict in (("S", "state_bounds", n, True),
                                        ("A", "action_bounds", d, True),
                                        ("W", "noise_bounds", n_w, False)):
        try:
            low, high = getattr(model, method)()
        except Exception as err:  # a user's method: name it
            raise fail(f"{method}() failed: {type(err).__name__}: {err}") from err
        low = torch.as_tensor(low, dtype=torch.float64)
        high = torch.as_tensor(high, dtype=torch.float64)
        if low.shape != (size,) or high.shape != (size,):
            raise fail(f"{method}() must return (low, high) of shape ({size},) each, got "
                       f"{tuple(low.shape)} and {tuple(high.shape)}")
        if not (torch.isfinite(low).all() and torch.isfinite(high).all()):
            raise fail(f"the box {label} ({method}) must be finite, got low={_fmt(low)}, "
                       f"high={_fmt(high)}")
        bad = (low >= high) if strict else (low > high)
        if bool(bad.any()):
            i = int(torch.nonzero(bad).flatten()[0])
            raise fail(f"the box {label} ({method}) is empty or flat in coordinate {i}: "
                       f"[{float(low[i]):.6g}, {float(high[i]):.6g}]")
        boxes[label] = (low, high)
    (s_low, s_high), (a_low, a_high), (w_low, w_high) = boxes["S"], boxes["A"], boxes["W"]
    a0, w0 = 0.5 * (a_low + a_high), 0.5 * (w_low + w_high)

    gen = torch.Generator().manual_seed(seed)

    def uniform(num: int, low: Tensor, high: Tensor) -> Tensor:
        return low + (high - low) * torch.rand((num, low.numel()), generator=gen,
                                               dtype=torch.float64)

    def call(fn: str, *args: Any) -> Tensor:
        try:
            return getattr(model, fn)(*args)
        except Exception as err:
            raise fail(f"{fn}() raised {type(err).__name__}: {err}") from err

    # -- dynamics: shape, finiteness, batching, differentiability ----------------------------
    B = num_states
    states = uniform(B, s_low, s_high).requires_grad_(True)
    actions = uniform(B, a_low, a_high)
    noise = uniform(B, w_low, w_high)
    nxt = call("dynamics", states, actions, noise)
    if not isinstance(nxt, Tensor) or tuple(nxt.shape) != (B, n):
        shape = tuple(nxt.shape) if isinstance(nxt, Tensor) else type(nxt).__name__
        raise fail(f"dynamics(state ({B}, {n}), action ({B}, {d}), noise ({B}, {n_w})) must "
                   f"return a ({B}, {n}) tensor, got {shape}")
    if nxt.dtype != torch.float64:
        raise fail(f"dynamics must keep the float64 dtype of its inputs, got {nxt.dtype}")
    if not bool(torch.isfinite(nxt).all()):
        i = int(torch.nonzero(~torch.isfinite(nxt).all(-1)).flatten()[0])
        raise fail(f"dynamics returned NaN/inf at s={_fmt(states[i])}, a={_fmt(actions[i])}, "
                   f"w={_fmt(noise[i])}")
    if not nxt.requires_grad:
        raise fail("dynamics is not differentiable in the state (its output carries no "
                   "autograd graph): use torch operations only")
    one = call("dynamics", states[:1], actions[:1], noise[:1])
    if not torch.allclose(one[0], nxt[0], rtol=1e-10, atol=1e-12):
        raise fail("dynamics is not batched row by row: row 0 of a batch differs from the "
                   "call on row 0 alone (batch the computation over the first dimension)")
    states = states.detach()

    # -- Eq 12: affine in a and in w ---------------------------------------------------------
    try:
        f0 = model.dynamics(states, a0.expand(B, d), w0.expand(B, n_w))
        jac = torch.func.vmap(torch.func.jacrev(model.dynamics, argnums=(1, 2)))
        Bm, Em = jac(states, a0.expand(B, d), w0.expand(B, n_w))
    except Exception as err:
        raise fail(f"the Jacobians df/da, df/dw (torch.func.jacrev) failed: "
                   f"{type(err).__name__}: {err}; the dynamics must be differentiable with "
                   "torch.func (no in-place updates of inputs, no .item()/numpy)") from err
    f0, Bm, Em = f0.detach(), Bm.detach(), Em.detach()

    def points(low: Tensor, high: Tensor) -> Tensor:
        k = low.numel()
        rand = uniform(num_points, low, high)
        if 2**k > 64:
            return rand
        corners = torch.cartesian_prod(*[torch.tensor([0.0, 1.0], dtype=torch.float64)] * k)
        corners = corners.reshape(-1, k)
        return torch.cat([rand, low + (high - low) * corners])

    a_pts, w_pts = points(a_low, a_high), points(w_low, w_high)
    P = min(len(a_pts), len(w_pts))
    cases = (("the action a", a_pts, w0.expand(len(a_pts), n_w)),
             ("the noise w", a0.expand(len(w_pts), d), w_pts),
             ("the action and the noise jointly (a cross term a*w)", a_pts[:P], w_pts[:P]))
    names = tuple(model.state_names)
    for label, a_set, w_set in cases:
        K = len(a_set)
        s_rep = states.repeat_interleave(K, 0)
        a_rep, w_rep = a_set.repeat(B, 1), w_set.repeat(B, 1)
        with torch.no_grad():
            true = model.dynamics(s_rep, a_rep, w_rep)
        pred = (f0.repeat_interleave(K, 0)
                + (Bm.repeat_interleave(K, 0) @ (a_rep - a0).unsqueeze(-1)).squeeze(-1)
                + (Em.repeat_interleave(K, 0) @ (w_rep - w0).unsqueeze(-1)).squeeze(-1))
        rel = (true - pred).abs() / (1.0 + true.abs())
        if float(rel.max()) > AFFINE_RTOL:
            flat = int(torch.argmax(rel))
            row, comp = divmod(flat, n)
            raise fail(
                f"dynamics is not affine in {label} (Eq 12: f(s, a, w) = f(s, a0, w0) + "
                f"B(s)(a - a0) + E(s)(w - w0)): next-state component {comp} "
                f"({names[comp]!r}) differs from its linearisation by "
                f"{float((true - pred).abs().view(-1)[flat]):.3g} at s={_fmt(s_rep[row])}, "
                f"a={_fmt(a_rep[row])}, w={_fmt(w_rep[row])}; control and disturbance must "
                "enter linearly (nonlinear in the state is fine)")

    # -- reward and observation --------------------------------------------------------------
    if not getattr(model, "exogenous_inputs", False):
        with torch.no_grad():
            reward = call("reward", nxt.detach(), actions)
            obs = call("observe", states)
        if not isinstance(reward, Tensor) or tuple(reward.shape) != (B,):
            shape = tuple(reward.shape) if isinstance(reward, Tensor) else type(reward).__name__
            raise fail(f"reward(next_state ({B}, {n}), action ({B}, {d})) must return a ({B},) "
                       f"tensor, got {shape}")
        obs_dim = getattr(model, "obs_dim", 0)
        if isinstance(obs_dim, bool) or not isinstance(obs_dim, int) or obs_dim < 1:
            raise fail(f"obs_dim must be a positive integer (the length of observe(state)), "
                       f"got {obs_dim!r}")
        if not isinstance(obs, Tensor) or obs.ndim != 2 or obs.shape[0] != B \
                or obs.shape[1] != obs_dim:
            shape = tuple(obs.shape) if isinstance(obs, Tensor) else type(obs).__name__
            raise fail(f"observe(state ({B}, {n})) must return a ({B}, obs_dim={obs_dim}) "
                       f"tensor, got {shape}")
        for label, value in (("reward", reward), ("observe", obs)):
            if not bool(torch.isfinite(value).all()):
                raise fail(f"{label} returned NaN/inf on states of S")

    # -- equilibrium -------------------------------------------------------------------------
    x_e, u_e = (torch.as_tensor(t, dtype=torch.float64) for t in call("equilibrium"))
    if x_e.shape != (n,) or u_e.shape != (d,):
        raise fail(f"equilibrium() must return (x_e ({n},), u_e ({d},)), got "
                   f"{tuple(x_e.shape)}, {tuple(u_e.shape)}")
    if bool(((x_e < s_low) | (x_e > s_high)).any()) or bool(((u_e < a_low)
                                                             | (u_e > a_high)).any()):
        raise fail(f"equilibrium() (x_e={_fmt(x_e)}, u_e={_fmt(u_e)}) must lie in S x A")
    with torch.no_grad():
        residual = call("dynamics", x_e[None], u_e[None], w0[None])[0] - x_e
    if float(residual.abs().max()) > 1e-9 * (1.0 + float(x_e.abs().max())):
        raise fail(f"equilibrium() is not a fixed point of the dynamics at the centre w0 of W: "
                   f"f(x_e, u_e, w0) - x_e = {_fmt(residual)} (override equilibrium())")
