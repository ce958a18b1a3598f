"""Run a safeguard on sampled states and actions and collect the evidence the checks need.

:func:`probe` is the single pass over the samples of :mod:`spec.checks.sampling`; it touches the
safeguard only through its protocol (:class:`safegbpo.safeguards.SafeguardProtocol`:
``safe = g(action (N, d), state (N, n))`` at the states the env was reset to; optional
attributes ``interventions``, ``fallbacks``, ``last_safe_action``, ``nonfinite_gradients``).
For every state batch (set with ``env.reset(options={"state": ...})``) and action category it
records

* the outputs and their independent P1 margins (:class:`spec.checks.oracle.SafeActionOracle`),
* the autograd Jacobian (``d`` backward passes: row ``k`` is ``d g_k / d a`` of every env at
  once — the protocol's outputs of env ``i`` depend on action ``i`` only),
* the central finite-difference Jacobian (step ``fd_step``) for the gradcheck,
* finite-difference Lipschitz ratios ``||g(a + h u) - g(a)|| / h`` along random directions,
* segments across the safe boundary (``(1 ± delta) t*`` along a ray) and across a face of
  ``A``, bisected towards the largest output change: a jump (discontinuity) of the map shows
  as a ratio that doubles with every step,
* call times (P5) and the time of one *unsafe* env step of the same batch on the same machine
  (the reference of P5), and whether NaN/inf inputs raise (P1),
* the rows the safeguard **flagged** as uncertified (``last_uncertified``: no certified safe
  action existed; :mod:`safegbpo.safeguards.recovery`) -- P1 accepts a row that is safe or
  flagged, never an unflagged unsafe one,
* an extra P1-only pass (no derivatives) at states **on and outside** the boundary of ``S_s``
  (``S_s`` vertex directions scaled by :data:`OFFSET_FACTORS`, clipped to ``S``) and with actions
  of magnitude up to :data:`HUGE_ACTION` at states inside, on and outside the set.

Any exception a safeguard raises on a finite input is recorded (it breaks P1: a safeguard must
map *every* action) instead of aborting the audit.
"""

from __future__ import annotations

import functools
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

from spec.checks.oracle import SafeActionOracle, point_gauge
from spec.checks.sampling import (
    CATEGORIES,
    boundary_pairs,
    random_directions,
    sample_actions,
    sample_safe_states,
)

__all__ = ["HUGE_ACTION", "INTERVENTION_THRESHOLD", "OFFSET_FACTORS", "Evidence", "ProbeConfig",
           "call_safeguard", "probe"]

INTERVENTION_THRESHOLD = 1e-6
"""SPEC §5: an intervention is ``||g(a) - a|| > 1e-6``."""

HUGE_ACTION = 1e6
"""Largest action magnitude of the P1-only pass (log-uniform in ``[1, 1e6]``): P1 holds "for
all a" (SPEC §3), and the paper's conic programs lost optimality above ``|a| ~ 300``."""

OFFSET_FACTORS = (1.0, 1.05, 1.5, 3.0)
"""Scales of the ``S_s`` vertex directions of the off-set states: ``1.0`` on the boundary, the
others outside (where no safe action may exist: the row must be safe or flagged)."""


@dataclass(frozen=True)
class ProbeConfig:
    """Sample sizes and numerical parameters of one probe.

    Attributes:
        rounds: number of state batches (each of ``env.num_envs`` states).
        categories: action categories (:data:`spec.checks.sampling.CATEGORIES`).
        vertex_fraction: share of states at extreme points of ``S_s``.
        fd_step: central-difference step of the gradcheck.  ``1e-4``: the solvers are accurate
            to ~1e-8, so the difference quotient carries ~1e-4 noise, while the truncation error
            ``h^2 |g'''|`` stays far below it.
        lipschitz_step: step of the Lipschitz ratios (``1e-5``: well above the solvers' output
            noise of up to ~5e-6, so noise alone cannot produce a large ratio).
        lipschitz_directions: random directions per sample.
        straddle_delta: relative half-width of the segments across the safe boundary and the
            faces of ``A`` that are bisected for jumps (``1e-3``: wide enough to contain the
            safeguards' constraint tightening, ~1e-6, so the jump of a map that switches
            behaviour at the tightened boundary lies inside the segment).
        bisection_steps: bisection steps per segment; the kept half shrinks to
            ``2e-3 t* / 2^steps`` (~1e-7 t* for 14 steps), where a jump ``J`` shows as a ratio
            ``~ 8e3 J / t*``.
        timing_calls: timed forward calls per round (P5); the first call of the audit is a
            warm-up and not timed.
        training_path: also step the env through ``SafeguardActionWrapper`` (P1 on the path
            that training uses).
        extra_p1: run the P1-only pass at states on/outside ``S_s`` and with actions up to
            :data:`HUGE_ACTION` (module docstring).
    """

    rounds: int = 4
    categories: tuple[str, ...] = CATEGORIES
    vertex_fraction: float = 0.25
    fd_step: float = 1e-4
    lipschitz_step: float = 1e-5
    lipschitz_directions: int = 2
    straddle_delta: float = 1e-3
    bisection_steps: int = 14
    timing_calls: int = 3
    training_path: bool = True
    extra_p1: bool = True

    def __post_init__(self) -> None:
        if self.rounds < 1:
            raise ValueError(f"rounds must be >= 1, got {self.rounds}")
        unknown = set(self.categories) - set(CATEGORIES)
        if unknown or not self.categories:
            raise ValueError(f"categories must be a non-empty subset of {CATEGORIES}, got "
                             f"{self.categories}")
        for name in ("fd_step", "lipschitz_step", "straddle_delta"):
            value = getattr(self, name)
            if not 0.0 < value < 0.1:
                raise ValueError(f"{name} must lie in (0, 0.1), got {value}")
        if self.lipschitz_directions < 1 or self.timing_calls < 1 or self.bisection_steps < 1:
            raise ValueError("lipschitz_directions, timing_calls and bisection_steps must be "
                             ">= 1")


@dataclass
class Evidence:
    """Everything measured by :func:`probe`; arrays are per sample (``S`` samples) unless noted.

    Attributes:
        category: ``(S,)`` action category of each sample.
        state_index: ``(S,)`` index into ``states``.
        states: ``(R*N, n)`` all audited states.
        actions, outputs: ``(S, d)`` inputs and safeguard outputs (NaN rows where it raised).
        input_margin, output_margin: ``(S,)`` worst normalised P1 margin (``<= 1`` safe) of
            inputs and outputs (:meth:`spec.checks.oracle.Margins.worst`).
        output_violation: ``(S,)`` output not certified safe (tolerance ``tol``).
        jac_auto, jac_fd: ``(S, d, d)`` autograd and finite-difference Jacobians.
        lipschitz_ratio: ``(S,)`` largest FD ratio over the random directions.
        straddle: list of dicts ``{kind, ratio, distance, jump}`` (one per bisected segment:
            the largest output-change / input-distance ratio seen, and where).
        call_errors: messages of exceptions raised (or wrong outputs) on finite inputs.
        grad_errors: backward failures / outputs without autograd graph.
        nonfinite_input_raises: ``{"nan": bool, "inf": bool}`` and the exception types.
        times_forward, times_backward: seconds per batched call.
        training_path: dict of the wrapper check (or ``None`` when not run).
        counters: safeguard counters before/after (``interventions``, ``fallbacks``,
            ``nonfinite_gradients`` when present).
        counter_check: one call's measured interventions vs the change of the safeguard's
            ``interventions`` counter (``{"measured", "counter_delta"}``).
        batch: ``N`` (actions per call).
        flagged: ``(S,)`` the safeguard flagged the output as uncertified (``last_uncertified``;
            ``False`` when it reports nothing).
        extra: the P1-only pass (module docstring): ``{"kind" (E,), "outputs" (E, d),
            "violation" (E,), "flagged" (E,), "margin" (E,), "state_gauge" (E,),
            "max_action" (float), "errors" [str]}``.
        times_env_step: seconds of one unsafe, batched ``env.step`` (P5's reference).
        fd_asymmetry: ``(S,)`` ``max |J_fwd - J_bwd|`` of the one-sided FD quotients (a kink
            in the stencil when large; P3 excludes those samples explicitly).
    """

    tol: float
    batch: int
    category: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=object))
    state_index: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))
    states: np.ndarray = field(default_factory=lambda: np.empty((0, 0)))
    actions: np.ndarray = field(default_factory=lambda: np.empty((0, 0)))
    outputs: np.ndarray = field(default_factory=lambda: np.empty((0, 0)))
    input_margin: np.ndarray = field(default_factory=lambda: np.empty(0))
    output_margin: np.ndarray = field(default_factory=lambda: np.empty(0))
    output_violation: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=bool))
    jac_auto: np.ndarray = field(default_factory=lambda: np.empty((0, 0, 0)))
    jac_fd: np.ndarray = field(default_factory=lambda: np.empty((0, 0, 0)))
    lipschitz_ratio: np.ndarray = field(default_factory=lambda: np.empty(0))
    straddle: list[dict[str, Any]] = field(default_factory=list)
    call_errors: list[str] = field(default_factory=list)
    grad_errors: list[str] = field(default_factory=list)
    nonfinite_input: dict[str, Any] = field(default_factory=dict)
    times_forward: list[float] = field(default_factory=list)
    times_backward: list[float] = field(default_factory=list)
    training_path: dict[str, Any] | None = None
    counters: dict[str, Any] = field(default_factory=dict)
    counter_check: dict[str, Any] = field(default_factory=dict)
    flagged: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=bool))
    fd_asymmetry: np.ndarray = field(default_factory=lambda: np.empty(0))
    extra: dict[str, Any] = field(default_factory=dict)
    times_env_step: list[float] = field(default_factory=list)

    @property
    def num_samples(self) -> int:
        return int(self.actions.shape[0])


def _counters(safeguard: Any) -> dict[str, float]:
    out = {}
    for name in ("interventions", "fallbacks", "nonfinite_gradients"):
        value = getattr(safeguard, name, None)
        if isinstance(value, int | float) and not isinstance(value, bool):
            out[name] = float(value)
        elif isinstance(value, Tensor) and value.numel() >= 1:
            out[name] = float(value.detach().sum())
    layers_nonfinite = _layer_nonfinite(safeguard)
    if layers_nonfinite is not None:
        out.setdefault("nonfinite_gradients", layers_nonfinite)
    return out


def _layer_nonfinite(safeguard: Any) -> float | None:
    """Sum of the ``nonfinite_gradients`` counters of the solver layers a safeguard holds
    (searched through its attributes, three levels deep, skipping the env).  The built-in
    layers replace non-finite gradient entries by zero and count them; a positive count means
    the safeguard's derivative was not finite somewhere (P2)."""
    seen: set[int] = set()
    total, found = 0.0, False

    def visit(obj: Any, depth: int) -> None:
        nonlocal total, found
        if id(obj) in seen or depth > 3:
            return
        seen.add(id(obj))
        count = getattr(obj, "nonfinite_gradients", None) if obj is not safeguard else None
        if isinstance(count, int | float) and not isinstance(count, bool):
            total += float(count)
            found = True
        children = vars(obj).items() if hasattr(obj, "__dict__") else ()
        for name, value in children:
            if name == "env" or isinstance(value, Tensor | str | int | float | bool):
                continue
            if isinstance(value, list | tuple):
                for item in value:
                    visit(item, depth + 1)
            elif hasattr(value, "__dict__") and not isinstance(value, type):
                visit(value, depth + 1)

    visit(safeguard, 0)
    return total if found else None


def call_safeguard(safeguard: Callable[[Tensor, Tensor], Tensor], action: Tensor,
                   state: Tensor) -> tuple[Tensor | None, str | None]:
    """``(g(action, state), None)`` or ``(None, error message)`` if ``g`` raised or returned a
    value of the wrong shape/type."""
    try:
        out = safeguard(action, state)
    except Exception as err:  # noqa: BLE001 - any failure is evidence, not a crash of the audit
        return None, f"{type(err).__name__}: {err}"
    if not isinstance(out, Tensor) or tuple(out.shape) != tuple(action.shape):
        shape = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
        return None, f"returned {shape}, expected a tensor of shape {tuple(action.shape)}"
    return out, None


def _flags(safeguard: Any, N: int) -> np.ndarray:
    """``(N,)`` the rows of the last call the safeguard flagged as uncertified."""
    flags = getattr(safeguard, "last_uncertified", None)
    if isinstance(flags, Tensor) and tuple(flags.shape) == (N,):
        return flags.detach().cpu().numpy().astype(bool)
    return np.zeros(N, dtype=bool)


def _offset_states(env, N: int, factor: float, generator: torch.Generator) -> Tensor:
    """``N`` states ``c + factor * G s`` (``s`` random sign vectors: directions of ``S_s``'s
    vertices), clipped to ``S`` (the env's reset accepts only states of ``S``)."""
    c = env.safe_set.state.center[0].to(torch.float64)
    G = env.safe_set.state.generators[0].to(torch.float64)
    signs = torch.where(_rand((N, G.shape[1]), generator) < 0.5, -1.0, 1.0).to(torch.float64)
    low, high = (x.to(torch.float64) for x in env.model.state_bounds())
    return torch.clamp(c + factor * signs @ G.T, low, high)


def _rand(shape: tuple[int, ...], generator: torch.Generator) -> Tensor:
    return torch.rand(shape, generator=generator, dtype=torch.float64)


def _huge_actions(N: int, d: int, generator: torch.Generator) -> Tensor:
    """Random directions with magnitudes log-uniform in ``[1, HUGE_ACTION]``; the first row
    exactly ``HUGE_ACTION``."""
    direction = random_directions(N, d, generator)
    scale = torch.exp(_rand((N,), generator) * float(np.log(HUGE_ACTION)))
    scale[0] = HUGE_ACTION
    return direction * scale.unsqueeze(-1)


def _p1_extra(safeguard, env, rounds: int, tol: float, generator: torch.Generator
              ) -> dict[str, Any]:
    """The P1-only pass (module docstring): states on/outside ``S_s`` and huge actions."""
    N, d = env.num_envs, env.model.action_dim
    kinds, outs, bad, flags, margins, gauges, errors = [], [], [], [], [], [], []
    max_action = 0.0
    batches: list[tuple[str, Tensor, Tensor]] = []
    for _ in range(rounds):
        for factor in OFFSET_FACTORS:
            where = "on S_s boundary" if factor == 1.0 else f"outside S_s (x{factor:g})"
            states = _offset_states(env, N, factor, generator)
            uniform = 2 * _rand((N, d), generator) - 1
            batches.append((f"state {where}, uniform action", states, uniform))
            batches.append((f"state {where}, huge action", states,
                            _huge_actions(N, d, generator)))
        inside = sample_safe_states(env, N, generator, 0.25)
        batches.append(("state inside S_s, huge action", inside, _huge_actions(N, d, generator)))
    for kind, states, actions in batches:
        env.reset(options={"state": states})
        state = env.state
        a = actions.to(dtype=env.dtype, device=env.device)
        max_action = max(max_action, float(a.abs().max()))
        with torch.no_grad():
            out, err = call_safeguard(safeguard, a, state)
        if out is None:
            errors.append(f"{kind}: {err}")
            continue
        oracle = SafeActionOracle(env, states)
        m = oracle.margins(out)
        kinds.extend([kind] * N)
        outs.append(out.detach().double().cpu().numpy())
        bad.append(m.violation(tol))
        flags.append(_flags(safeguard, N))
        margins.append(m.worst())
        gauges.append([point_gauge(oracle.S_G, s - oracle.S_c)
                       for s in states.detach().double().cpu().numpy()])
    def cat(xs: list[Any], empty: np.ndarray) -> np.ndarray:
        return np.concatenate(xs) if xs else empty

    return {"kind": np.asarray(kinds, dtype=object),
            "outputs": cat(outs, np.empty((0, d))),
            "violation": cat(bad, np.empty(0, dtype=bool)),
            "flagged": cat(flags, np.empty(0, dtype=bool)),
            "margin": cat(margins, np.empty(0)),
            "state_gauge": cat([np.asarray(g) for g in gauges], np.empty(0)),
            "max_action": max_action, "errors": errors}


def _env_step_time(env, generator: torch.Generator) -> float:
    """Seconds of one unsafe batched ``env.step`` (uniform actions in ``A``, no autograd)."""
    N, d = env.num_envs, env.model.action_dim
    a = (2 * _rand((N, d), generator) - 1).to(dtype=env.dtype, device=env.device)
    with torch.no_grad():
        t0 = time.perf_counter()
        env.step(a)
        return time.perf_counter() - t0


def _nan_rows(N: int, d: int) -> Tensor:
    return torch.full((N, d), float("nan"), dtype=torch.float64)


def _jacobians(safeguard, action: Tensor, state: Tensor, fd_step: float, evidence: Evidence
               ) -> tuple[Tensor, Tensor, Tensor, np.ndarray, np.ndarray]:
    """``(outputs, J_auto, J_fd, flagged, asymmetry)`` for the batch ``action (N, d)`` (NaN
    where unavailable; ``flagged``: the rows the safeguard flagged as uncertified;
    ``asymmetry``: ``max |J_fwd - J_bwd|`` of the one-sided difference quotients)."""
    N, d = action.shape
    x = action.detach().clone().requires_grad_(True)
    out, err = call_safeguard(safeguard, x, state)
    flags = _flags(safeguard, N)
    if out is None:
        evidence.call_errors.append(str(err))
        return _nan_rows(N, d), torch.full((N, d, d), float("nan")), \
            torch.full((N, d, d), float("nan")), flags, np.full(N, np.nan)
    J_auto = torch.full((N, d, d), float("nan"), dtype=torch.float64)
    if out.requires_grad:
        for k in range(d):
            try:
                (grad,) = torch.autograd.grad(out[:, k].sum(), x, retain_graph=k < d - 1,
                                              allow_unused=True)
            except Exception as err:  # noqa: BLE001
                evidence.grad_errors.append(f"backward failed: {type(err).__name__}: {err}")
                break
            J_auto[:, k, :] = torch.zeros(N, d) if grad is None else grad.detach().double()
    else:
        evidence.grad_errors.append("output carries no autograd graph (not differentiable)")
    J_fd = torch.empty((N, d, d), dtype=torch.float64)
    asym = torch.zeros(N, dtype=torch.float64)
    base = out.detach().double().cpu()
    with torch.no_grad():
        for k in range(d):
            e = torch.zeros(d, dtype=action.dtype, device=action.device)
            e[k] = fd_step
            plus, err_p = call_safeguard(safeguard, action + e, state)
            minus, err_m = call_safeguard(safeguard, action - e, state)
            if plus is None or minus is None:
                evidence.call_errors.append(str(err_p or err_m))
                J_fd[:, :, k] = float("nan")
                continue
            J_fd[:, :, k] = ((plus - minus) / (2 * fd_step)).double().cpu()
            # one-sided quotients: a kink inside the stencil makes them disagree (P3)
            fwd = (plus.double().cpu() - base) / fd_step
            bwd = (base - minus.double().cpu()) / fd_step
            asym = torch.maximum(asym, (fwd - bwd).abs().amax(-1))
    return base, J_auto, J_fd, flags, asym.numpy()


def _lipschitz(safeguard, action: Tensor, state: Tensor, out: Tensor, config: ProbeConfig,
               generator: torch.Generator, evidence: Evidence) -> Tensor:
    N, d = action.shape
    ratios = torch.zeros(N, dtype=torch.float64)
    h = config.lipschitz_step
    with torch.no_grad():
        for _ in range(config.lipschitz_directions):
            u = random_directions(N, d, generator).to(action)
            moved, err = call_safeguard(safeguard, action + h * u, state)
            if moved is None:
                evidence.call_errors.append(str(err))
                return torch.full((N,), float("inf"))
            r = (moved.double().cpu() - out).norm(dim=1) / h
            r = torch.where(torch.isfinite(r), r, torch.full_like(r, float("inf")))
            ratios = torch.maximum(ratios, r)
    return ratios


def _bisect_jumps(safeguard, lo: Tensor, hi: Tensor, state: Tensor, iterations: int, kind: str,
                  evidence: Evidence) -> None:
    """Look for a jump of ``g`` on each segment ``[lo_i, hi_i]`` (one per env) by bisection.

    At every step the half with the larger output change is kept; for a map that is
    Lipschitz with constant ``L`` on the segment the ratio ``||g(b) - g(a)|| / ||b - a||`` of
    the kept half never exceeds ``L``, while a jump ``J`` stays inside the kept half and its
    ratio doubles with every step (``J / (2^-k |hi - lo|)``).  The largest ratio seen per
    segment is recorded in ``evidence.straddle``.
    """
    with torch.no_grad():
        a, b = lo.to(state).clone(), hi.to(state).clone()
        ga, err_a = call_safeguard(safeguard, a, state)
        gb, err_b = call_safeguard(safeguard, b, state)
        if ga is None or gb is None:
            evidence.call_errors.append(str(err_a or err_b))
            return
        N = a.shape[0]
        worst = torch.zeros(N, dtype=torch.float64)
        jump = torch.zeros(N, dtype=torch.float64)
        dist = torch.zeros(N, dtype=torch.float64)
        for _ in range(iterations + 1):
            length = (b - a).norm(dim=1).double().cpu()
            change = (gb - ga).norm(dim=1).double().cpu()
            ratio = torch.where(length > 0, change / length.clamp_min(1e-300),
                                torch.zeros_like(length))
            ratio = torch.where(torch.isfinite(ratio), ratio, torch.full_like(ratio, float("inf")))
            better = ratio > worst
            worst = torch.where(better, ratio, worst)
            jump = torch.where(better, change, jump)
            dist = torch.where(better, length, dist)
            m = 0.5 * (a + b)
            gm, err = call_safeguard(safeguard, m, state)
            if gm is None:
                evidence.call_errors.append(str(err))
                break
            left = (gm - ga).norm(dim=1) >= (gb - gm).norm(dim=1)
            a = torch.where(left.unsqueeze(-1), a, m)
            b = torch.where(left.unsqueeze(-1), m, b)
            ga = torch.where(left.unsqueeze(-1), ga, gm)
            gb = torch.where(left.unsqueeze(-1), gm, gb)
    for k in range(N):
        evidence.straddle.append({"kind": kind, "ratio": float(worst[k]),
                                  "distance": float(dist[k]), "jump": float(jump[k])})


def _box_face_pairs(N: int, d: int, delta: float, generator: torch.Generator
                    ) -> tuple[Tensor, Tensor]:
    """Pairs straddling a face of ``A = [-1, 1]^d``: ``(1 - delta, 1 + delta)`` times the face
    coordinate, other coordinates uniform in ``A``."""
    base = 2 * torch.rand((N, d), generator=generator, dtype=torch.float64) - 1
    face = torch.randint(0, d, (N,), generator=generator)
    sign = torch.where(torch.rand(N, generator=generator, dtype=torch.float64) < 0.5, -1.0, 1.0
                       ).to(torch.float64)
    inside, outside = base.clone(), base.clone()
    rows = torch.arange(N)
    inside[rows, face] = sign * (1 - delta)
    outside[rows, face] = sign * (1 + delta)
    return inside, outside


def _counter_check(safeguard, env, generator: torch.Generator) -> dict[str, Any]:
    """One call on uniform actions at the current states: measured interventions (SPEC §5)
    against the change of the safeguard's ``interventions`` counter (``None`` if it has none)."""
    N, d = env.num_envs, env.model.action_dim
    a = (2 * torch.rand((N, d), generator=generator, dtype=torch.float64) - 1).to(env.dtype)
    before = _counters(safeguard).get("interventions")
    with torch.no_grad():
        out, err = call_safeguard(safeguard, a, env.state)
    if out is None:
        return {"error": err}
    after = _counters(safeguard).get("interventions")
    measured = int(((out - a).norm(dim=1) > INTERVENTION_THRESHOLD).sum())
    delta = None if before is None or after is None else after - before
    return {"measured": measured, "counter_delta": delta}


def _nonfinite_inputs(safeguard, env, evidence: Evidence) -> None:
    N, d = env.num_envs, env.model.action_dim
    for name, value in (("nan", float("nan")), ("inf", float("inf"))):
        a = torch.zeros((N, d), dtype=env.dtype, device=env.device)
        a[0, 0] = value
        out, err = call_safeguard(safeguard, a, env.state)
        evidence.nonfinite_input[name] = out is None
        evidence.nonfinite_input[f"{name}_result"] = (
            err if out is None else
            f"returned without raising (output finite: {bool(torch.isfinite(out).all())})")


def _training_path(safeguard, env, states: Tensor, actions: Tensor, tol: float,
                   wrapper_factory: Callable[[Any, Any], Any] | None) -> dict[str, Any]:
    """Step ``SafeguardActionWrapper(env, safeguard)`` from ``states`` with raw ``actions``;
    check the applied action (reconstructed from the realised transition) and the realised
    next state independently."""
    from safegbpo.safeguards import SafeguardActionWrapper

    factory = SafeguardActionWrapper if wrapper_factory is None else wrapper_factory
    wrapper = factory(env, safeguard)
    wrapper.reset(options={"state": states})
    with torch.no_grad():
        _, _, _, _, info = wrapper.step(actions.to(env.dtype))
    # the realised next state (on a truncating step the env has already reset: final_state)
    next_state = info.get("final_state", info["state"]).detach().double().cpu()
    noise = info["noise"].detach().double().cpu()
    oracle = SafeActionOracle(env, states)
    model = env.model
    # Eq 12 is exact: s' = f0 + B (a - a0) + E (w - w0); reconstruct the applied action a.
    f0 = torch.as_tensor(oracle.f0)
    B = torch.as_tensor(oracle.B)
    E = torch.as_tensor(oracle.E)
    low_w, high_w = model.noise_bounds(dtype=torch.float64)
    w0 = 0.5 * (low_w + high_w)
    rhs = next_state - f0 - (E @ (noise - w0).unsqueeze(-1)).squeeze(-1)
    applied = torch.as_tensor(oracle.a0) + torch.linalg.lstsq(B, rhs.unsqueeze(-1)).solution[..., 0]
    residual = (f0 + (B @ (applied - torch.as_tensor(oracle.a0)).unsqueeze(-1)).squeeze(-1)
                + (E @ (noise - w0).unsqueeze(-1)).squeeze(-1) - next_state).norm(dim=1)
    margins = oracle.margins(applied)
    applied_bad = margins.violation(tol)
    S_c, S_G = oracle.S_c, oracle.S_G
    next_gauge = np.array([point_gauge(S_G, p - S_c) for p in next_state.numpy()])
    next_bad = next_gauge > 1.0 + tol
    last = getattr(safeguard, "last_safe_action", None)
    mismatch = None
    if isinstance(last, Tensor) and tuple(last.shape) == tuple(applied.shape):
        mismatch = float((last.detach().double().cpu() - applied).norm(dim=1).max())
    return {
        "steps": int(states.shape[0]),
        "applied_violations": int(applied_bad.sum()),
        "next_state_violations": int(next_bad.sum()),
        "worst_applied_margin": float(np.max(margins.worst())),
        "worst_next_state_gauge": float(next_gauge.max()),
        "reconstruction_residual": float(residual.max()),
        "last_safe_action_mismatch": mismatch,
    }


def _without_uncertified_warnings(fn: Callable[..., Evidence]) -> Callable[..., Evidence]:
    """Run ``fn`` with the safeguards' :class:`~safegbpo.safeguards.UncertifiedActionWarning`
    silenced (the probe counts the flagged rows as evidence)."""

    @functools.wraps(fn)
    def silenced(*args: Any, **kwargs: Any) -> Evidence:
        from safegbpo.safeguards import UncertifiedActionWarning

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UncertifiedActionWarning)
            return fn(*args, **kwargs)

    return silenced


@_without_uncertified_warnings
def probe(
    safeguard: Any,
    env: Any,
    config: ProbeConfig = ProbeConfig(),
    *,
    seed: int = 0,
    tol: float = 1e-6,
    wrapper_factory: Callable[[Any, Any], Any] | None = None,
    progress: Callable[[str], None] | None = None,
) -> Evidence:
    """Collect the evidence of P1–P5 for ``safeguard`` on ``env`` (module docstring).

    Args:
        safeguard: any object following the safeguard protocol, built for ``env``.
        env: the :class:`~safegbpo.envs.SafeVectorEnv` the safeguard reads its states from.
        config: sample sizes and numerical parameters.
        seed: seed of the probe's own :class:`torch.Generator`.
        tol: P1 tolerance on the normalised margins (see :class:`spec.checks.oracle.Margins`).
        wrapper_factory: ``(env, safeguard) -> wrapped env`` for the training-path check
            (default :class:`safegbpo.safeguards.SafeguardActionWrapper`).
        progress: optional callback receiving one-line status messages.

    The safeguard's :class:`~safegbpo.safeguards.UncertifiedActionWarning` is silenced during
    the probe: the flagged rows are evidence (counted by P1), not noise for the console.
    """
    if not tol >= 0:
        raise ValueError(f"tol must be >= 0, got {tol}")
    gen = torch.Generator().manual_seed(int(seed))
    N, d = env.num_envs, env.model.action_dim
    ev = Evidence(tol=tol, batch=N)
    ev.counters["before"] = _counters(safeguard)
    cats, idx, states_all = [], [], []
    acts, outs, in_m, out_m, out_bad, ja, jf, lips = [], [], [], [], [], [], [], []
    flagged: list[np.ndarray] = []
    asymmetry: list[np.ndarray] = []
    warmed = False
    for r in range(config.rounds):
        states = sample_safe_states(env, N, gen, config.vertex_fraction)
        env.reset(options={"state": states})
        state = env.state
        oracle = SafeActionOracle(env, states)
        offset = r * N
        states_all.append(states.detach().double().cpu())
        if not warmed:  # warm-up call: first-call costs (compilation, caches) are not P5
            call_safeguard(safeguard, sample_actions(oracle, "uniform", gen).to(env.dtype), state)
            warmed = True
        for cat in config.categories:
            if progress:
                progress(f"round {r + 1}/{config.rounds}: {cat} actions")
            a = sample_actions(oracle, cat, gen).to(dtype=env.dtype, device=env.device)
            out, J_auto, J_fd, flags, asym = _jacobians(safeguard, a, state, config.fd_step,
                                                        ev)
            flagged.append(flags)
            asymmetry.append(asym)
            lip = _lipschitz(safeguard, a, state, out, config, gen, ev)
            m_in = oracle.margins(a)
            m_out = oracle.margins(out)
            cats.extend([cat] * N)
            idx.append(torch.arange(N) + offset)
            acts.append(a.detach().double().cpu())
            outs.append(out)
            in_m.append(m_in.worst())
            out_m.append(m_out.worst())
            out_bad.append(m_out.violation(tol))
            ja.append(J_auto)
            jf.append(J_fd)
            lips.append(lip)
        # continuity across the safe boundary and across the faces of A (bisection for jumps)
        inside, outside = boundary_pairs(oracle, gen, delta=config.straddle_delta)
        _bisect_jumps(safeguard, inside, outside, state, config.bisection_steps, "safe boundary",
                      ev)
        inside, outside = _box_face_pairs(N, d, config.straddle_delta, gen)
        _bisect_jumps(safeguard, inside, outside, state, config.bisection_steps, "face of A", ev)
        # P5: timed calls on fresh uniform actions
        for _ in range(config.timing_calls):
            a = sample_actions(oracle, "uniform", gen).to(dtype=env.dtype, device=env.device)
            t0 = time.perf_counter()
            with torch.no_grad():
                call_safeguard(safeguard, a, state)
            ev.times_forward.append(time.perf_counter() - t0)
            x = a.clone().requires_grad_(True)
            t0 = time.perf_counter()
            timed, _ = call_safeguard(safeguard, x, state)
            if timed is not None and timed.requires_grad:
                timed.sum().backward()
            ev.times_backward.append(time.perf_counter() - t0)
            env.reset(options={"state": states})
            ev.times_env_step.append(_env_step_time(env, gen))
            env.reset(options={"state": states})
    ev.flagged = np.concatenate(flagged)
    ev.fd_asymmetry = np.concatenate(asymmetry)
    ev.category = np.asarray(cats, dtype=object)
    ev.state_index = torch.cat(idx).numpy()
    ev.states = torch.cat(states_all).numpy()
    ev.actions = torch.cat(acts).numpy()
    ev.outputs = torch.cat(outs).numpy()
    ev.input_margin = np.concatenate(in_m)
    ev.output_margin = np.concatenate(out_m)
    ev.output_violation = np.concatenate(out_bad)
    ev.jac_auto = torch.cat(ja).numpy()
    ev.jac_fd = torch.cat(jf).numpy()
    ev.lipschitz_ratio = torch.cat(lips).numpy()
    ev.counter_check = _counter_check(safeguard, env, gen)
    if progress:
        progress("NaN/inf inputs")
    _nonfinite_inputs(safeguard, env, ev)
    if config.extra_p1:
        if progress:
            progress("P1 at states on/outside S_s and huge actions")
        ev.extra = _p1_extra(safeguard, env, config.rounds, tol, gen)
    ev.counters["after"] = _counters(safeguard)
    if config.training_path:
        if progress:
            progress("training path (SafeguardActionWrapper)")
        states = sample_safe_states(env, N, gen, config.vertex_fraction)
        oracle = SafeActionOracle(env, states)
        # the hardest raw actions: half outside A, half just outside the safe boundary
        a_out = sample_actions(oracle, "outside", gen)
        _, a_bnd = boundary_pairs(oracle, gen)
        pick = torch.rand((N, 1), generator=gen, dtype=torch.float64) < 0.5
        raw = torch.where(pick, a_out, a_bnd).to(dtype=env.dtype, device=env.device)
        try:
            ev.training_path = _training_path(safeguard, env, states, raw, tol, wrapper_factory)
        except Exception as err:  # noqa: BLE001
            ev.training_path = {"error": f"{type(err).__name__}: {err}"}
    return ev
