"""Audits: one safeguard on one task (:func:`audit`), or every registered safeguard map on every
registered task plus the lemmas (:func:`run_all`, what ``python -m spec --all`` and
``nox -s spec`` run).

An audit builds the task's vector env (the project's certified safe set unless another is
given), builds the safeguard exactly as training does (``make_safeguard(name, env,
**options)``, ``'module:Class'`` for user safeguards), probes it — the bare map *and* the
``SafeguardActionWrapper`` path that training steps through — and returns the P1–P5 checks
compared with the Table 1 expectations (:mod:`spec.checks.expectations`).  An audit *passes*
iff P1 and P2 hold, plus every property named in ``required``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from safegbpo.tasks import task_names
from spec.checks.defaults import DEFAULT_SAMPLES
from spec.checks.expectations import (
    PROPERTIES,
    audited_variants,
    expectations_for,
    get_variant,
    variant_for,
)
from spec.checks.lemmas import check_lemma1, check_lemma2, check_lemma3
from spec.checks.probe import ProbeConfig
from spec.checks.properties import check_properties
from spec.checks.results import UNEXPECTED, AuditResult, CheckResult
from spec.metadata import collect_metadata

__all__ = ["DEFAULT_SAMPLES", "SPEC_FORMAT", "audit", "run_all", "summarise", "spec_exit_code"]

SPEC_FORMAT = "safegbpo-spec/1"


def audit(
    task: str,
    safeguard: str = "bp",
    *,
    options: Mapping[str, Any] | None = None,
    samples: int = DEFAULT_SAMPLES,
    seed: int = 0,
    tol: float = 1e-6,
    required: Iterable[str] = (),
    safe_set: Any = None,
    num_envs: int | None = None,
    config: ProbeConfig | None = None,
    label: str | None = None,
    progress: Callable[[str], None] | None = None,
) -> AuditResult:
    """Audit ``safeguard`` on ``task`` (module docstring).

    Args:
        task: a registered task (:func:`safegbpo.tasks.get_task`).
        safeguard: ``'bp'``, ``'rm'`` or ``'module:Class'``.
        options: keyword options of ``make_safeguard`` (``mapping``, ``centre``,
            ``passthrough``, ...).
        samples: number of audited states (rounded up to whole env batches).
        seed: seeds the env and every draw of the probe.
        tol: P1 tolerance on the normalised margins.
        required: properties (``'P3'``, ...) that must hold in addition to P1 and P2.
        safe_set: ``None`` (the project's certified set), a set-file path or a ``SafeSet``.
        num_envs: states per batch (default: the task's).
        config: probe parameters (default: :class:`ProbeConfig` with rounds from ``samples``).
        label: report label (default: the variant's row label, or the safeguard name).

    Raises:
        ValueError: unknown task/safeguard/option, ``samples < 1``, unknown required property.
    """
    from safegbpo.envs import make_vec
    from safegbpo.safeguards import make_safeguard

    if samples < 1:
        raise ValueError(f"samples must be >= 1, got {samples}")
    required = tuple(required)
    unknown = set(required) - set(PROPERTIES)
    if unknown:
        raise ValueError(f"unknown required properties {sorted(unknown)}; expected among "
                         f"{list(PROPERTIES)}")
    options = dict(options or {})
    start = time.perf_counter()
    env = make_vec(task, num_envs=num_envs, seed=seed, safe_set=safe_set)
    env.reset(seed=seed)
    guard = make_safeguard(safeguard, env, **options)
    rounds = math.ceil(samples / env.num_envs)
    if config is None:
        config = ProbeConfig(rounds=rounds)
    variant = variant_for(safeguard, options)
    checks, ev = check_properties(guard, env, config=config, seed=seed, tol=tol,
                                  expectations=expectations_for(safeguard, options),
                                  required=required, progress=progress)
    return AuditResult(
        task=task, safeguard=safeguard, options=options,
        label=label or (variant.label if variant is not None else safeguard),
        seed=seed,
        samples={"states": config.rounds * env.num_envs, "actions": ev.num_samples,
                 "batch": env.num_envs, "straddle_pairs": len(ev.straddle)},
        checks=checks, seconds=time.perf_counter() - start)


def run_all(
    *,
    tasks: Sequence[str] | None = None,
    variants: Sequence[str] | None = None,
    samples: int = DEFAULT_SAMPLES,
    seed: int = 0,
    tol: float = 1e-6,
    lemmas: bool = True,
    safe_sets: Mapping[str, Any] | None = None,
    backend: str | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Audit every registered map variant (``variants``: their keys, default all:
    :func:`spec.checks.expectations.audited_variants`) on every task (default: every
    registered task) and check Lemmas 1–3.  ``backend`` is the built-in safeguards' backend
    (default: theirs, :data:`safegbpo.safeguards.DEFAULT_BACKEND`; recorded in ``settings``).
    Returns the ``reports/spec.json`` document::

        {"format", "metadata", "settings", "audits": [AuditResult.to_dict()],
         "lemmas": [CheckResult.to_dict()], "summary": {...}}
    """
    from safegbpo.safeguards import BACKENDS, DEFAULT_BACKEND, SAFEGUARDS

    if backend is not None and backend not in BACKENDS:
        raise ValueError(f"unknown safeguard backend {backend!r}; expected one of "
                         f"{list(BACKENDS)}")
    tasks = list(task_names()) if tasks is None else list(tasks)
    keys = [v.key for v in audited_variants()] if variants is None else list(variants)
    chosen = [get_variant(k) for k in keys]
    audits: list[AuditResult] = []
    for task in tasks:
        for variant in chosen:
            if progress:
                progress(f"audit {variant.label} on {task}")
            options = dict(variant.options)
            if backend is not None and variant.safeguard in SAFEGUARDS:
                options["backend"] = backend
            audits.append(audit(task, variant.safeguard, options=options,
                                samples=samples, seed=seed, tol=tol,
                                safe_set=(safe_sets or {}).get(task), label=variant.label))
    lemma_checks: list[CheckResult] = []
    if lemmas:
        from safegbpo.envs import make_vec

        if progress:
            progress("Lemma 1 and Lemma 3 (explicit zonotopes)")
        lemma_checks.append(check_lemma1(seed=seed))
        for task in tasks:
            if progress:
                progress(f"Lemma 2 on {task}")
            env = make_vec(task, seed=seed, safe_set=(safe_sets or {}).get(task))
            check = check_lemma2(env, seed=seed)
            check.check = f"Lemma 2 ({task})"
            lemma_checks.append(check)
        lemma_checks.append(check_lemma3(seed=seed))
    doc = {
        "format": SPEC_FORMAT,
        "metadata": collect_metadata({"spec": seed}),
        "settings": {"samples": samples, "seed": seed, "tol": tol, "tasks": list(tasks),
                     "variants": keys, "backend": backend or DEFAULT_BACKEND},
        "audits": [a.to_dict() for a in audits],
        "lemmas": [c.to_dict() for c in lemma_checks],
    }
    doc["summary"] = summarise(doc)
    return doc


def summarise(doc: Mapping[str, Any]) -> dict[str, Any]:
    """Counts of a spec document: audits passed (P1/P2 + required), unexpected outcomes,
    lemmas holding."""
    audits = [AuditResult.from_dict(a) for a in doc.get("audits", [])]
    lemmas = [CheckResult.from_dict(c) for c in doc.get("lemmas", [])]
    unexpected = [f"{a.label} on {a.task}: {c.check}" for a in audits for c in a.unexpected]
    unexpected += [c.check for c in lemmas if c.outcome == UNEXPECTED]
    return {
        "audits": len(audits),
        "audits_passed": sum(a.passed for a in audits),
        "failed_audits": [f"{a.label} on {a.task}" for a in audits if not a.passed],
        "unexpected": unexpected,
        "lemmas": len(lemmas),
        "lemmas_holding": sum(c.holds is True for c in lemmas),
    }


def spec_exit_code(doc: Mapping[str, Any]) -> int:
    """``python -m spec``'s exit code: 0 iff no check contradicts its expectation (Table 1 and
    the lemmas).  A failure that *is* expected — BP's rank loss (P3) — does not count, a P1 or
    P2 failure always does unless SPEC §5 predicts it (the orthogonal ray mask's jump)."""
    summary = doc.get("summary") or summarise(doc)
    return 1 if summary["unexpected"] else 0
