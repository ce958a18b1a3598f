"""The safeguard properties P1–P5 of SPEC §3 as executable checks.

Each ``check_pX(evidence, ...)`` turns the evidence collected by
:func:`spec.checks.probe.probe` into a :class:`spec.checks.results.CheckResult` with a verdict
and the numbers it rests on;
:func:`check_properties` runs the probe and all five checks for any object following the
safeguard protocol.  The verdict rules (thresholds justified where they are defined):

* **P1** (required) — every sampled output is safe (the independent oracle of
  :mod:`spec.checks.oracle`: nonlinear model at the vertices of ``W``, exact point containment;
  tolerance ``tol`` on the normalised margins) **or explicitly flagged** by the safeguard as
  uncertified (``last_uncertified``: no certified safe action exists there), also at states on
  and outside the boundary of ``S_s`` and for actions up to ``1e6``
  (:data:`spec.checks.probe.HUGE_ACTION`); no non-finite output, no exception on a finite input,
  NaN and inf inputs raise, and on the training path (``SafeguardActionWrapper``) the action the
  env actually applied — reconstructed from the realised transition — is safe and the realised
  next state lies in ``S_s``.
* **P2** (required) — every autograd Jacobian finite (also before any masking: a safeguard
  whose solver layers count replaced non-finite gradient entries fails), and every
  finite-difference Lipschitz ratio (random directions at step ``1e-5``, and segments across
  the safe boundary and the faces of ``A`` bisected towards jumps) at most
  :data:`LIPSCHITZ_BOUND`.
* **P3** — at the generic samples (uniform in ``A``: the range of the tanh-squashed policies of
  SPEC §8; the boundary/edge samples sit where C1 may legitimately fail, and outside ``A`` a
  safeguard may clamp radially) every autograd Jacobian has full numerical rank
  (``sigma_min > RANK_TOL``) and at least :data:`GRADCHECK_MIN_AGREEMENT` of them agree with
  central finite differences.  The rank outside ``A`` is reported, not judged.
* **P4** — no intervention (``||g(a) - a|| > 1e-6``) on a clearly safe input (normalised margin
  ``<= 1 - SAFE_BAND``); reports the intervention rates.
* **P5** — the fastest timed batched forward call costs at most :data:`P5_STEP_FACTOR` unsafe
  environment steps of the same batch (the fastest timed one), on the same machine in the same
  process (minimum: the least-disturbed measurement on a shared machine).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np

from spec.checks.expectations import Expectation, expectations_for
from spec.checks.probe import INTERVENTION_THRESHOLD, Evidence, ProbeConfig, probe
from spec.checks.results import CheckResult

__all__ = [
    "LIPSCHITZ_BOUND",
    "RANK_TOL",
    "GRADCHECK_ATOL",
    "GRADCHECK_RTOL",
    "GRADCHECK_MIN_AGREEMENT",
    "SAFE_BAND",
    "NONSMOOTH_TOL",
    "P5_BUDGET",
    "P5_STEP_FACTOR",
    "GENERIC_CATEGORIES",
    "check_p1",
    "check_p2",
    "check_p3",
    "check_p4",
    "check_p5",
    "check_properties",
]

LIPSCHITZ_BOUND = 1e3
"""Largest admissible finite-difference ratio.  Projections are 1-Lipschitz and the ray masks'
constants are bounded by the set geometry (``lam_S/lam_A`` plus the angular variation of
``lam_S``: O(1)-O(10) for the audited sets); a jump ``J`` on a bisected boundary segment shows
as a ratio ``~ 8e3 J / t*`` after 14 steps (:class:`spec.checks.probe.ProbeConfig`), i.e. above
1e3 for any jump larger than ~1e-1 of the set's size ``t*`` and growing without bound as the steps
shrink.  Solver noise (~1e-8, ~5e-6 for the projection of interior points) over the final
segment length ~1e-7 t* stays below ~50."""

RANK_TOL = 1e-6
"""Numerical rank threshold on singular values of the action Jacobian (actions live in
``[-1, 1]^d``, so the Jacobian's scale is O(1)).  Implicit differentiation leaves ~1e-8 in the
null direction of a projection; a genuine local diffeomorphism of this problem class has
``sigma_min`` orders of magnitude above 1e-6."""

GRADCHECK_ATOL = 1e-3
GRADCHECK_RTOL = 1e-2
"""Gradcheck agreement ``max |J_auto - J_fd| <= ATOL + RTOL max |J_fd|``: the central difference
with step ``1e-4`` of outputs accurate to ~1e-8 carries ~1e-4 noise; 1e-3 leaves a margin of
ten while any wrong derivative (a dropped term, the identity instead of the mask's Jacobian) is
off by O(0.1-1)."""

GRADCHECK_MIN_AGREEMENT = 0.99
"""Share of the *smooth* generic samples that must pass the gradcheck.  Non-smooth samples are
excluded explicitly, not absorbed by a loose threshold: a sample whose one-sided difference
quotients disagree (``max |J_fwd - J_bwd| > NONSMOOTH_TOL``) has a kink (set edge, active-set
change, the tightened boundary: C1 fails there legitimately, "almost everywhere" in Table 1)
inside its FD stencil; it is counted and reported, and the agreement is measured on the rest.
Among smooth samples only FD noise can disagree (~1e-4 against the 1e-3 tolerance), so 99%
leaves room for one noisy sample in a hundred, while a gradient bug on more than 1% of the
smooth samples fails (the previous 90% let a bug on <10% of the samples pass)."""

NONSMOOTH_TOL = 1e-2
"""One-sided FD quotients (step ``1e-4``) of a C1 map differ by ``~h |g''| + noise/h``, i.e.
~1e-4 here; a kink in the stencil makes them differ by O(0.1-1).  1e-2 separates the two."""

SAFE_BAND = 1e-4
"""Inputs count as *clearly safe* for P4 when their normalised margin is ``<= 1 - 1e-4``: the
built-in problems are tightened by 1e-6 (so actions within ~1e-6 of the boundary are projected
by design), and the band keeps such borderline actions out of the verdict."""

P5_STEP_FACTOR = 50.0
"""P5 bound: one batched safeguard call may cost at most 50 unsafe env steps of the same batch
(fastest timed call vs fastest timed step, same machine, same process: the ratio is
independent of the machine's speed and robust to other load).
Why 50: the paper's Table 6 reports safeguarded training at 5-10x the wall clock of unsafe
training; a training iteration costs several env-step equivalents besides the step itself
(policy forward/backward, the simulator's backward pass, the critic), so a safeguard at ~50
steps keeps training within that range, while the generic conic solvers the brief measured at
30-260 env steps make the paper's budgets infeasible on a laptop (the cvxpylayers backend
fails this bound; the exact backend meets it with a wide margin: measured 2-17x)."""

P5_BUDGET = P5_STEP_FACTOR
"""Deprecated alias of :data:`P5_STEP_FACTOR` (P5 used to be an absolute 0.1 s per action,
which no safeguard could miss)."""

GENERIC_CATEGORIES = ("uniform",)
"""Categories P3 is judged on (module docstring)."""


def _expect(check: CheckResult, expectation: Expectation | None) -> CheckResult:
    if expectation is not None:
        check.expected = expectation.holds
        check.expectation = expectation.text
    return check


def _by_category(ev: Evidence, mask: np.ndarray) -> dict[str, int]:
    return {cat: int(mask[ev.category == cat].sum()) for cat in dict.fromkeys(ev.category)}


def check_p1(ev: Evidence, expectation: Expectation | None = None) -> CheckResult:
    """P1: every output in ``A ∩ A_s(s)``; NaN/inf raise; training path safe."""
    flagged = ev.flagged if ev.flagged.shape == ev.output_violation.shape else \
        np.zeros_like(ev.output_violation)
    bad = ev.output_violation & ~flagged
    extra = ev.extra or {}
    x_bad = np.asarray(extra.get("violation", np.empty(0, dtype=bool)), dtype=bool)
    x_flag = np.asarray(extra.get("flagged", np.zeros_like(x_bad)), dtype=bool)
    x_unflagged = x_bad & ~x_flag
    nonfinite = ~np.all(np.isfinite(ev.outputs), axis=1)
    raises = {k: ev.nonfinite_input.get(k) for k in ("nan", "inf")}
    tp = ev.training_path
    measured: dict[str, Any] = {
        "samples": ev.num_samples,
        "violations": int(bad.sum()),
        "violation_rate": float(bad.mean()) if bad.size else 0.0,
        "violations_by_category": _by_category(ev, bad),
        "worst_margin": float(np.max(ev.output_margin)) if bad.size else None,
        "nonfinite_outputs": int(nonfinite.sum()),
        "errors_on_finite_input": len(ev.call_errors),
        "nan_input_raises": raises["nan"],
        "inf_input_raises": raises["inf"],
        "tolerance": ev.tol,
        "flagged_uncertified": int(flagged.sum()),
        "unsafe_but_flagged": int((ev.output_violation & flagged).sum()),
        "offset_and_huge_samples": int(x_bad.size),
        "offset_and_huge_violations_unflagged": int(x_unflagged.sum()),
        "offset_and_huge_flagged": int(x_flag.sum()),
        "offset_and_huge_unsafe_but_flagged": int((x_bad & x_flag).sum()),
        "max_action_magnitude": extra.get("max_action"),
        "total_p1_samples": int(ev.num_samples + x_bad.size),
        "training_path": tp,
    }
    reasons = []
    if x_unflagged.any():
        kinds = extra["kind"][x_unflagged]
        j = int(np.flatnonzero(x_unflagged)[np.argmax(extra["margin"][x_unflagged])])
        reasons.append(f"{int(x_unflagged.sum())}/{x_bad.size} outputs at states on/outside "
                       f"S_s or for huge actions unsafe and NOT flagged (worst margin "
                       f"{extra['margin'][j]:.6g}, {extra['kind'][j]}; kinds "
                       f"{sorted(set(kinds.tolist()))})")
    for message in extra.get("errors", []):
        reasons.append(f"raised on a finite input: {message}")
    if bad.any():
        i = int(np.flatnonzero(bad)[np.argmax(ev.output_margin[bad])])
        reasons.append(f"{int(bad.sum())}/{bad.size} outputs unsafe and not flagged (worst "
                       f"normalised margin {ev.output_margin[i]:.6g} > 1 + {ev.tol:g}; e.g. action "
                       f"{np.round(ev.actions[i], 6).tolist()} -> "
                       f"{np.round(ev.outputs[i], 6).tolist()} at state "
                       f"{np.round(ev.states[ev.state_index[i]], 6).tolist()}, "
                       f"category {ev.category[i]})")
    if ev.call_errors:
        reasons.append(f"raised/failed on {len(ev.call_errors)} finite input batch(es): "
                       f"{ev.call_errors[0]}")
    for key in ("nan", "inf"):
        if raises[key] is not True:
            reasons.append(f"{key} input: {ev.nonfinite_input.get(key + '_result', 'not tested')}")
    if tp is None:
        pass
    elif "error" in tp:
        reasons.append(f"training path failed: {tp['error']}")
    else:
        if tp["applied_violations"]:
            reasons.append(f"training path: the env applied {tp['applied_violations']}/"
                           f"{tp['steps']} unsafe actions (worst margin "
                           f"{tp['worst_applied_margin']:.6g})")
        if tp["next_state_violations"]:
            reasons.append(f"training path: {tp['next_state_violations']}/{tp['steps']} "
                           f"realised next states left S_s (worst gauge "
                           f"{tp['worst_next_state_gauge']:.6g})")
    holds = not reasons
    details = "; ".join(reasons) if reasons else (
        f"all {bad.size} outputs certified in A ∩ A_s(s) (worst normalised margin "
        f"{measured['worst_margin']:.6g}); NaN/inf inputs raise"
        + ("" if tp is None else f"; training path: {tp['steps']} applied actions and next "
                                 "states safe"))
    return _expect(CheckResult("P1", "maps every action to a safe action", holds, measured,
                               details, required=True), expectation)


def check_p2(ev: Evidence, expectation: Expectation | None = None,
             lipschitz_bound: float = LIPSCHITZ_BOUND) -> CheckResult:
    """P2: finite Jacobians and bounded local Lipschitz ratios (incl. boundary straddles)."""
    finite_j = np.all(np.isfinite(ev.jac_auto), axis=(1, 2))
    lip = ev.lipschitz_ratio
    straddle = {kind: [s["ratio"] for s in ev.straddle if s["kind"] == kind]
                for kind in dict.fromkeys(s["kind"] for s in ev.straddle)}
    straddle_max = {k: float(np.max(v)) for k, v in straddle.items() if v}
    with np.errstate(invalid="ignore"):
        norms = np.array([np.linalg.norm(J, 2) if np.all(np.isfinite(J)) else np.inf
                          for J in ev.jac_auto])
    before = ev.counters.get("before", {}).get("nonfinite_gradients")
    after = ev.counters.get("after", {}).get("nonfinite_gradients")
    masked = None if before is None or after is None else after - before
    lip_max = float(np.max(lip)) if lip.size else 0.0
    worst_straddle = max(straddle_max.values(), default=0.0)
    measured = {
        "samples": ev.num_samples,
        "nonfinite_jacobians": int((~finite_j).sum()),
        "lipschitz_fd_max": lip_max,
        "lipschitz_fd_median": float(np.median(lip)) if lip.size else 0.0,
        "jacobian_norm_max": float(np.max(norms)) if norms.size else 0.0,
        "straddle_ratio_max": straddle_max,
        "straddle_pairs": len(ev.straddle),
        "lipschitz_bound": lipschitz_bound,
        "masked_nonfinite_gradients": masked,
        "gradient_errors": len(ev.grad_errors),
    }
    reasons = []
    if (~finite_j).any():
        i = int(np.argmax(~finite_j))
        reasons.append(f"{int((~finite_j).sum())}/{finite_j.size} Jacobians contain NaN/inf "
                       f"(e.g. at action {np.round(ev.actions[i], 6).tolist()}, "
                       f"{ev.category[i]})")
    if ev.grad_errors:
        reasons.append(f"no usable gradient: {ev.grad_errors[0]}")
    if masked:
        reasons.append(f"the safeguard replaced {int(masked)} non-finite gradient entries by "
                       "zero (its derivative is not finite there; the zeros hide it)")
    if not lip_max <= lipschitz_bound:
        i = int(np.argmax(lip))
        reasons.append(f"finite-difference ratio {lip_max:.4g} > {lipschitz_bound:g} at action "
                       f"{np.round(ev.actions[i], 6).tolist()} ({ev.category[i]}): not locally "
                       "Lipschitz (jump)")
    for kind, value in straddle_max.items():
        if not value <= lipschitz_bound:
            pair = max((s for s in ev.straddle if s["kind"] == kind), key=lambda s: s["ratio"])
            reasons.append(f"jump across the {kind}: output distance {pair['jump']:.4g} over "
                           f"input distance {pair['distance']:.3g} (ratio {value:.4g})")
    holds = not reasons
    details = "; ".join(reasons) if reasons else (
        f"all Jacobians finite; Lipschitz estimates <= {max(lip_max, worst_straddle):.4g} "
        f"(bound {lipschitz_bound:g}), no jump across the safe boundary or the faces of A")
    return _expect(CheckResult("P2", "subdifferentiable: continuous, locally Lipschitz, finite "
                                     "derivatives", holds, measured, details, required=True),
                   expectation)


def check_p3(ev: Evidence, expectation: Expectation | None = None,
             rank_tol: float = RANK_TOL) -> CheckResult:
    """P3: full-rank Jacobians and gradcheck agreement at generic samples."""
    generic = np.isin(ev.category, GENERIC_CATEGORIES)
    J = ev.jac_auto[generic]
    F = ev.jac_fd[generic]
    d = J.shape[-1] if J.ndim == 3 else 0
    usable = np.all(np.isfinite(J), axis=(1, 2)) & np.all(np.isfinite(F), axis=(1, 2))
    if not usable.any():
        return _expect(CheckResult("P3", "C1 with full-rank Jacobians (local diffeomorphism)",
                                   None, {"generic_samples": int(generic.sum())},
                                   "no finite Jacobian at any generic sample (see P2)"),
                       expectation)
    sv = np.linalg.svd(J[usable], compute_uv=False)
    smin = sv[:, -1]
    ranks = (sv > rank_tol).sum(axis=1)
    full = ranks == d
    err_all = np.abs(J[usable] - F[usable]).max(axis=(1, 2))
    scale = np.abs(F[usable]).max(axis=(1, 2))
    asym = ev.fd_asymmetry[generic][usable] if ev.fd_asymmetry.shape == ev.category.shape \
        else np.zeros(int(usable.sum()))
    smooth = ~(asym > NONSMOOTH_TOL)  # NaN asymmetry (no FD) counts as smooth: judged
    agree_all = err_all <= GRADCHECK_ATOL + GRADCHECK_RTOL * scale
    agree = agree_all[smooth]
    err = err_all[smooth] if smooth.any() else err_all
    unsafe_in = ev.input_margin[generic][usable] > 1.0 + ev.tol
    outside = (ev.category == "outside") & np.all(np.isfinite(ev.jac_auto), axis=(1, 2))
    outside_full = (np.linalg.svd(ev.jac_auto[outside], compute_uv=False)[:, -1] > rank_tol
                    if outside.any() else np.zeros(0, dtype=bool))
    measured = {
        "generic_samples": int(usable.sum()),
        "full_rank_fraction": float(full.mean()),
        "rank_histogram": {str(r): int((ranks == r).sum()) for r in range(d + 1)},
        "sigma_min_quantiles": {q: float(np.quantile(smin, float(q)))
                                for q in ("0.0", "0.05", "0.5", "0.95", "1.0")},
        "rank_deficient_on_unsafe_inputs": (float((~full[unsafe_in]).mean())
                                            if unsafe_in.any() else None),
        "rank_deficient_on_safe_inputs": (float((~full[~unsafe_in]).mean())
                                          if (~unsafe_in).any() else None),
        "full_rank_fraction_outside_A": (float(outside_full.mean()) if outside_full.size
                                         else None),
        "gradcheck_agreement": float(agree.mean()) if agree.size else None,
        "gradcheck_smooth_samples": int(smooth.sum()),
        "gradcheck_nonsmooth_excluded": int((~smooth).sum()),
        "gradcheck_agreement_all_samples": float(agree_all.mean()),
        "gradcheck_min_agreement": GRADCHECK_MIN_AGREEMENT,
        "gradcheck_max_error": float(err.max()),
        "gradcheck_median_error": float(np.median(err)),
        "rank_tol": rank_tol,
    }
    reasons = []
    if not full.all():
        reasons.append(f"{int((~full).sum())}/{full.size} Jacobians rank-deficient "
                       f"(sigma_min <= {rank_tol:g}; "
                       f"{int((~full & unsafe_in).sum())} of them at unsafe inputs)")
    if not agree.size:
        reasons.append("no smooth generic sample for the gradcheck")
    elif agree.mean() < GRADCHECK_MIN_AGREEMENT:
        reasons.append(f"autograd disagrees with finite differences at "
                       f"{int((~agree).sum())}/{agree.size} smooth samples (max error "
                       f"{err.max():.3g}; {int((~smooth).sum())} non-smooth samples excluded)")
    holds = not reasons
    details = "; ".join(reasons) if reasons else (
        f"full rank at all {full.size} generic samples (sigma_min >= {smin.min():.3g}); "
        f"gradcheck agrees at {agree.mean():.0%} of {agree.size} smooth samples "
        f"({int((~smooth).sum())} with a kink in the FD stencil excluded)")
    return _expect(CheckResult("P3", "C1 with full-rank Jacobians (local diffeomorphism)",
                               holds, measured, details), expectation)


def check_p4(ev: Evidence, expectation: Expectation | None = None) -> CheckResult:
    """P4: interventions only on unsafe actions; intervention rates."""
    dist = np.linalg.norm(ev.outputs - ev.actions, axis=1)
    finite = np.isfinite(dist)
    intervened = (dist > INTERVENTION_THRESHOLD) | ~finite
    clearly_safe = ev.input_margin <= 1.0 - SAFE_BAND
    unsafe = ev.input_margin > 1.0 + ev.tol
    uniform = ev.category == "uniform"

    def rate(mask: np.ndarray) -> float | None:
        return float(intervened[mask].mean()) if mask.any() else None

    measured = {
        "intervention_rate_uniform": rate(uniform),
        "unsafe_fraction_uniform": float(unsafe[uniform].mean()) if uniform.any() else None,
        "intervention_rate_safe_inputs": rate(clearly_safe),
        "intervention_rate_unsafe_inputs": rate(unsafe),
        "interventions_on_safe_inputs": int((intervened & clearly_safe).sum()),
        "safe_inputs": int(clearly_safe.sum()),
        "counter_check": ev.counter_check,
    }
    holds = not bool((intervened & clearly_safe).any())
    if holds:
        details = (f"intervenes only on unsafe actions (rate "
                   f"{measured['intervention_rate_uniform']:.1%} on uniform actions, "
                   f"{measured['unsafe_fraction_uniform']:.1%} of them unsafe)")
    else:
        details = (f"intervenes on {measured['interventions_on_safe_inputs']}/"
                   f"{measured['safe_inputs']} clearly safe inputs (mean displacement "
                   f"{dist[intervened & clearly_safe].mean():.3g}); intervention rate on uniform "
                   f"actions {measured['intervention_rate_uniform']:.1%}")
    cc = ev.counter_check
    if cc.get("counter_delta") is not None and cc["counter_delta"] != cc.get("measured"):
        details += (f"; WARNING: the safeguard's interventions counter moved by "
                    f"{cc['counter_delta']:g} for {cc['measured']} measured interventions")
    return _expect(CheckResult("P4", "intervenes rarely (only on unsafe actions)", holds,
                               measured, details), expectation)


def check_p5(ev: Evidence, expectation: Expectation | None = None,
             factor: float = P5_STEP_FACTOR) -> CheckResult:
    """P5: the fastest batched forward call costs at most ``factor`` unsafe env steps of the
    same batch (:data:`P5_STEP_FACTOR`; module docstring)."""
    fwd = np.asarray(ev.times_forward)
    bwd = np.asarray(ev.times_backward)
    steps = np.asarray(ev.times_env_step)
    if fwd.size == 0 or steps.size == 0:
        return _expect(CheckResult("P5", "computes quickly", None, {}, "no timed call"),
                       expectation)
    # the fastest timed call against the fastest timed env step: on a shared machine the
    # minimum is the least-disturbed measurement (timeit's rule); medians are reported too
    ratio = float(np.min(fwd) / np.min(steps))
    measured = {
        "batch": ev.batch,
        "median_forward_s": float(np.median(fwd)),
        "median_forward_backward_s": float(np.median(bwd)) if bwd.size else None,
        "median_forward_per_action_s": float(np.median(fwd)) / ev.batch,
        "median_env_step_s": float(np.median(steps)),
        "min_forward_s": float(np.min(fwd)),
        "min_env_step_s": float(np.min(steps)),
        "env_steps_per_call": ratio,
        "env_steps_per_call_median": float(np.median(fwd) / np.median(steps)),
        "bound_env_steps_per_call": factor,
        "timed_calls": int(fwd.size),
    }
    holds = ratio <= factor
    details = (f"fastest {np.min(fwd) * 1e3:.2f} ms per batched call of {ev.batch} = "
               f"{ratio:.1f} unsafe env steps ({np.min(steps) * 1e3:.3f} ms each; medians "
               f"{np.median(fwd) * 1e3:.2f} / {np.median(steps) * 1e3:.3f} ms; "
               f"forward+backward {np.median(bwd) * 1e3:.1f} ms); bound {factor:g} env steps")
    return _expect(CheckResult("P5", "computes quickly", holds, measured, details), expectation)


def check_properties(
    safeguard: Any,
    env: Any,
    *,
    config: ProbeConfig = ProbeConfig(),
    seed: int = 0,
    tol: float = 1e-6,
    expectations: Mapping[str, Expectation] | None = None,
    required: Iterable[str] = (),
    wrapper_factory: Callable[[Any, Any], Any] | None = None,
    progress: Callable[[str], None] | None = None,
) -> tuple[list[CheckResult], Evidence]:
    """Probe ``safeguard`` (any object following the safeguard protocol) on ``env`` and return
    the checks P1–P5 and the evidence.

    Args:
        expectations: per property (default: those of a user-supplied safeguard, i.e. P1/P2
            expected, no statement on P3–P5; see :func:`spec.checks.expectations.expectations_for`).
        required: extra properties whose failure fails the audit (P1/P2 always are).
    """
    expectations = dict(expectations or expectations_for("custom"))
    ev = probe(safeguard, env, config, seed=seed, tol=tol, wrapper_factory=wrapper_factory,
               progress=progress)
    checks = [
        check_p1(ev, expectations.get("P1")),
        check_p2(ev, expectations.get("P2")),
        check_p3(ev, expectations.get("P3")),
        check_p4(ev, expectations.get("P4")),
        check_p5(ev, expectations.get("P5")),
    ]
    required = set(required)
    for c in checks:
        if c.check in required:
            c.required = True
    return checks, ev
