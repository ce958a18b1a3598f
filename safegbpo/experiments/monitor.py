"""The independent safe-state monitor of the reproduction's training runs.

While a run trains, every :class:`~safegbpo.envs.SafeVectorEnv` step of the process is observed
through the environments' explicit step-observer hook (:func:`safegbpo.envs.observe_steps`);
after each step the *realised* next state of every environment (``info['final_state']`` on
truncation, else ``info['state']``) is tested for membership in the env's safe state zonotope
``S_s = <c, G>`` and the feasible box ``S`` by the project's one membership test of realised
states, :func:`safegbpo.sets.membership.state_membership`: exactly and without LPs, from the
safe set's own H-representation (:attr:`safegbpo.safesets.SafeSet.hrep`, ``F s <= h``, SPEC
§11), a state is inside when its gauge ``max_k f_k^T (s - c) / (h_k - f_k^T c)`` (and that of
the box ``S``) is ``<= 1 + 1e-7`` -- the same test that gives PCRPO its cost signal (SPEC §12).
The monitor is independent of the safeguard (whichever backend it uses) and of the runner;
training and evaluation environments are both monitored.
Counters are flushed to ``runs/<id>/safety_monitor.json`` at every episode end and accumulate
over resumed attempts (steps replayed after a resume are checked again).

Populations: when the seeds of one configuration train together
(:func:`safegbpo.experiments.runner.train_population`), one monitor per seed observes the same
steps and counts only the rows of its seed (``member`` of ``members``): the population's envs
are laid out member by member (:func:`safegbpo.algorithms.member_rows`: one block of rows per
seed in the training env, two in the evaluation env), so every seed's report -- and its run
record's ``safety`` entry -- counts exactly the states that seed realised, as if it had trained
alone.

:func:`safety_monitor` is the executors' ``monitor`` hook (:data:`MONITOR`): a context manager
``(spec, run_dir, *, member=0, members=1) -> SafetyMonitor`` whose
:meth:`SafetyMonitor.report` becomes the run record's ``safety`` entry.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from safegbpo.algorithms import member_rows
from safegbpo.envs import observe_steps
from safegbpo.experiments.grid import RunSpec
from safegbpo.io import atomic_write_text
from safegbpo.sets.membership import SAFETY_TOLERANCE, StateMembership, state_membership

__all__ = ["MONITOR", "SAFETY_TOLERANCE", "SafetyMonitor", "safety_monitor"]

MONITOR = "safegbpo.experiments.monitor:safety_monitor"

_MONITOR_FILE = "safety_monitor.json"
_MAX_EXAMPLES = 5


class SafetyMonitor:
    """Counts realised states outside the safe state zonotope (module docstring).

    Use :func:`safety_monitor` (a context manager that registers :meth:`observe` as a step
    observer for the duration of a run).  ``member`` / ``members``: the seed's index in the
    population that trains it and the population's size (module docstring); the monitor checks
    that seed's rows of every env.
    """

    def __init__(self, spec: RunSpec, run_dir: Path | None = None,
                 tol: float = SAFETY_TOLERANCE, *, member: int = 0, members: int = 1) -> None:
        if isinstance(members, bool) or not isinstance(members, int) or members < 1 \
                or not isinstance(member, int) or not 0 <= member < members:
            raise ValueError(f"member {member!r} of a population of {members!r}")
        self.spec = spec
        self.member, self.members = member, members
        self.path = None if run_dir is None else Path(run_dir) / _MONITOR_FILE
        self.tol = float(tol)
        self.env_steps = 0
        self.states = 0
        self.violations = 0
        self.max_gauge = 0.0
        self.examples: list[dict[str, Any]] = []
        self.attempts = 1
        self._sets: dict[int, StateMembership] = {}
        if self.path is not None and self.path.is_file():
            previous = json.loads(self.path.read_text())
            self.env_steps = int(previous.get("env_steps", 0))
            self.states = int(previous.get("states", 0))
            self.violations = int(previous.get("violations", 0))
            self.max_gauge = float(previous.get("max_gauge", 0.0))
            self.examples = list(previous.get("examples", []))
            self.attempts = int(previous.get("attempts", 1)) + 1

    def _set_of(self, env: Any) -> StateMembership:
        """The membership test of the env's ``S_s`` and box ``S`` (built once per env)."""
        key = id(env)
        if key not in self._sets:
            self._sets[key] = state_membership(env.safe_set, env.model.state_bounds(),
                                               self.tol)
        return self._sets[key]

    def gauges(self, env: Any, states: np.ndarray) -> np.ndarray:
        """Gauge of each realised state ``(B, n) -> (B,)`` w.r.t. ``S_s`` and the box ``S``
        (the larger of the two; ``<= 1`` iff inside both; ``nan`` for a non-finite state), exact
        from the H-representation (:meth:`safegbpo.sets.membership.StateMembership.gauges`)."""
        return self._set_of(env).gauges(states)

    def observe(self, env: Any, info: Mapping[str, Any]) -> None:
        """Check this seed's realised states of one ``env.step`` (its ``info``)."""
        realised = info.get("final_state", info.get("state"))
        if realised is None:
            raise ValueError("env.step info has neither 'final_state' nor 'state'")
        if self.members > 1:
            realised = realised[member_rows(env, self.member, self.members)]
        states = realised.detach().cpu().numpy().astype(np.float64)
        states = states.reshape(states.shape[0], -1)
        gauges = self.gauges(env, states)
        self.env_steps += 1
        self.states += states.shape[0]
        finite = np.isfinite(gauges)
        if finite.any():
            self.max_gauge = max(self.max_gauge, float(gauges[finite].max()))
        bad = np.flatnonzero(~finite | (gauges > 1.0 + self.tol))
        self.violations += int(bad.size)
        for i in bad[: max(0, _MAX_EXAMPLES - len(self.examples))]:
            self.examples.append({"env_step": self.env_steps, "env": int(i),
                                  "state": states[i].tolist(), "gauge": float(gauges[i])})
        if "final_state" in info:
            self.flush()

    def report(self) -> dict[str, Any]:
        return {
            "monitored": True,
            "rule": f"realised state in S_s and S: gauge <= 1 + {self.tol:g} (exact, H-rep)",
            "safeguarded": self.spec.variant_fields.get("safeguard") is not None,
            "env_steps": self.env_steps,
            "states": self.states,
            "violations": self.violations,
            "max_gauge": self.max_gauge,
            "examples": self.examples,
            "attempts": self.attempts,
        }

    def flush(self) -> None:
        if self.path is None:
            return
        atomic_write_text(self.path, json.dumps(self.report(), indent=1))


@contextmanager
def safety_monitor(spec: RunSpec, run_dir: Path | None = None, *, member: int = 0,
                   members: int = 1) -> Iterator[SafetyMonitor]:
    """Monitor every ``SafeVectorEnv.step`` of this context while the block runs (a step
    observer, :func:`safegbpo.envs.observe_steps`) -- the rows of seed ``member`` of a
    population of ``members`` -- and flush the counters at the end."""
    monitor = SafetyMonitor(spec, run_dir, member=member, members=members)
    try:
        with observe_steps(monitor.observe):
            yield monitor
    finally:
        monitor.flush()
