"""nox sessions of safegbpo. ``nox -l`` lists them; the README says what each one proves.

Every session installs the project with ``constraints.txt`` (which pins ``torch==2.13.0``, the
local CPU wheel on the project's machines) so no session ever pulls CUDA builds.
"""

from __future__ import annotations

import os

import nox

nox.options.sessions = ["tests"]
nox.options.reuse_existing_virtualenvs = True
nox.options.default_venv_backend = "venv"

PYTHON = "3.11"
CONSTRAINTS = ("-c", "constraints.txt")
WORKERS = os.environ.get("SAFEGBPO_WORKERS", "2")


def _install(session: nox.Session, extras: str = "test") -> None:
    session.install(*CONSTRAINTS, "torch==2.13.0")
    session.install(*CONSTRAINTS, "-e", f".[{extras}]")


def _pytest(session: nox.Session, *args: str) -> None:
    session.run("pytest", "-n", WORKERS, "--dist", "loadfile", *args, *session.posargs)


@nox.session(python=PYTHON)
def tests(session: nox.Session) -> None:
    """All fast suites (unit, property, gradcheck, reproduction checks), in parallel.

    Installs the ``ray`` extra so the Ray executor is tested on a local Ray instance.
    """
    _install(session, "test,ray")
    _pytest(session, "tests")


@nox.session(python=PYTHON)
def unit(session: nox.Session) -> None:
    """Unit tests only (no hypothesis property tests, no gradchecks)."""
    _install(session)
    _pytest(session, "tests", "-m", "not property and not gradcheck")


@nox.session(python=PYTHON)
def property(session: nox.Session) -> None:  # noqa: A001 - session name
    """Hypothesis property tests."""
    _install(session)
    _pytest(session, "tests", "-m", "property")


@nox.session(python=PYTHON)
def gradcheck(session: nox.Session) -> None:
    """Autograd gradchecks and finite-difference gradient tests."""
    _install(session)
    _pytest(session, "tests", "-m", "gradcheck")


@nox.session(python=PYTHON)
def spec(session: nox.Session) -> None:
    """Audit every built-in safeguard on every task against P1-P5 and Lemmas 1-3."""
    _install(session)
    # P1 at scale: 10^4 actions per task and safeguard (states inside/on/outside S_s, actions
    # up to 1e6) on top of the probe's samples (issue 10)
    session.run("python", "-m", "spec", "--all", "--p1-actions", "10000", "--json",
                "reports/spec.json", *session.posargs)


@nox.session(python=PYTHON)
def reproduce(session: nox.Session) -> None:
    """Run the reproduction grid (profile 'quick' by default) and write the compliance report."""
    _install(session)
    session.run("safegbpo", "reproduce", *(session.posargs or ["--profile", "quick"]))


@nox.session(python=PYTHON)
def report(session: nox.Session) -> None:
    """Write reports/compliance.md and reports/compliance.json from the results on disk, without
    retraining: ``results/paper`` when it holds run records (the paper campaign, also while it
    runs), else the newest ``results/<profile>`` (``safegbpo report``'s default; ``-- --results
    DIR`` picks another)."""
    _install(session)
    session.run("safegbpo", "report", *session.posargs)


@nox.session(python=PYTHON)
def bench(session: nox.Session) -> None:
    """Benchmarks: safeguard call times per variant and task (reports/bench.json); SHAC window
    time of a 10-seed population vs one seed (reports/bench_populations.json)."""
    _install(session)
    session.run("python", "benchmarks/bench_safeguards.py", *session.posargs)
    session.run("python", "benchmarks/bench_populations.py")


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    """ruff over the library, the spec, the tests and the benchmarks; mypy over the library
    and the spec (configuration in pyproject.toml)."""
    _install(session, "lint")
    session.run("ruff", "check", "safegbpo", "spec", "tests", "benchmarks", "noxfile.py")
    session.run("mypy")
