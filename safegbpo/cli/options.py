"""The options every ``safegbpo`` command spells the same way (one CLI vocabulary).

* ``--task TASK`` / ``--tasks TASK [TASK ...]`` -- a task of the registry
  (:func:`safegbpo.tasks.get_task`: a key such as ``pendulum``, or a ``TaskSpec`` as
  ``package.module:ATTR``); validated by the command (an unknown task is exit code 2 with the
  list of tasks);
* ``--safe-set FILE`` -- one safe-set file (``safegbpo-safe-set/1``) instead of the project's
  certified set;
* ``--safe-sets DIR`` -- a directory with one ``<task>.json`` per task (e.g.
  ``../shared/reference/safe_sets``);
* ``--backend exact|cvxpylayers`` -- the built-in safeguards' backend
  (:data:`safegbpo.safeguards.BACKENDS`: the exact H-representation of SPEC §11, or the paper's
  Eq 6 programs through cvxpylayers);
* ``--env-option KEY=VALUE`` (repeatable) -- an option of the task's environment (the registry
  entry's ``env_options``, e.g. the energy task's ``profiles``); ``safegbpo reproduce`` spells
  it ``TASK.KEY=VALUE``;
* ``--variants KEY [KEY ...]`` -- safeguard variants of the registry
  (:mod:`safegbpo.safeguards.variants`) by key;
* ``--jobs N`` and other counts -- :func:`positive_int`.

``spec.cli`` uses the same helpers for ``safegbpo audit``, ``safegbpo report`` and
``python -m spec``.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterable, Sequence
from typing import Any

from safegbpo.tasks import get_task, task_names, tasks

__all__ = [
    "add_backend_option",
    "add_env_option_option",
    "add_safe_set_option",
    "add_safe_sets_option",
    "add_task_option",
    "add_tasks_option",
    "env_options_help",
    "parse_key_values",
    "parse_task_key_values",
    "positive_int",
    "resolve_tasks",
    "task_help",
]


def task_help() -> str:
    """Help text of ``--task``: the registered tasks (and the import-path form)."""
    return (f"one of {', '.join(task_names())} (the task registry) or a TaskSpec as "
            "package.module:ATTR")


def add_task_option(parser: argparse.ArgumentParser, *, required: bool = True) -> None:
    """``--task TASK``."""
    parser.add_argument("--task", required=required, default=None, metavar="TASK",
                        help=task_help())


def add_tasks_option(parser: argparse.ArgumentParser) -> None:
    """``--tasks TASK [TASK ...]`` (default: every registered task)."""
    parser.add_argument("--tasks", nargs="+", default=None, metavar="TASK",
                        help=f"{task_help()}; default: every registered task")


def resolve_tasks(names: Iterable[str] | None) -> list[str]:
    """``names`` (default: every registered task), each checked by :func:`get_task`
    (``ValueError`` naming an unknown one)."""
    chosen = list(task_names()) if names is None else list(names)
    for name in chosen:
        get_task(name)
    return chosen


def add_safe_set_option(parser: argparse.ArgumentParser, help: str | None = None) -> None:
    """``--safe-set FILE`` (``dest='safe_set'``)."""
    parser.add_argument("--safe-set", dest="safe_set", default=None, metavar="FILE",
                        help=help or "safe-set file (safegbpo-safe-set/1) instead of the "
                                     "project's certified set")


def add_safe_sets_option(parser: argparse.ArgumentParser, help: str | None = None) -> None:
    """``--safe-sets DIR`` (``dest='safe_sets'``)."""
    parser.add_argument("--safe-sets", dest="safe_sets", default=None, metavar="DIR",
                        help=help or "use DIR/<task>.json as safe sets instead of the "
                                     "project's own (e.g. ../shared/reference/safe_sets)")


def add_backend_option(parser: argparse.ArgumentParser, *, default: str | None = None) -> None:
    """``--backend exact|cvxpylayers`` (``dest='backend'``); ``default=None`` leaves the choice
    to the safeguard (the built-in ones default to ``'exact'``) and passes nothing to a user
    class."""
    from safegbpo.safeguards import BACKENDS, DEFAULT_BACKEND

    fallback = f"default {default}" if default is not None else (
        f"default: the safeguard's own ({DEFAULT_BACKEND} for the built-in ones)")
    parser.add_argument("--backend", default=default, choices=BACKENDS, metavar="BACKEND",
                        help=f"safeguard backend: {' | '.join(BACKENDS)} (exact: the exact "
                             f"H-representation, SPEC §11; cvxpylayers: the paper's Eq 6 "
                             f"programs); {fallback}")


def env_options_help(*, reproduce: bool = False) -> str:
    """The env options of the registered tasks with their defaults (help of ``--env-option``;
    ``reproduce``: the defaults of a reproduction, ``TaskSpec.reproduce_env_options``)."""
    parts = [f"{key}: " + ", ".join(
        f"{name} (default {value!r})" for name, value in
        {**spec.env_options, **(spec.reproduce_env_options if reproduce else {})}.items())
             for key, spec in tasks().items() if spec.env_options]
    return "; ".join(parts) if parts else "no registered task has env options"


def add_env_option_option(parser: argparse.ArgumentParser, *, per_task: bool = False) -> None:
    """``--env-option KEY=VALUE`` (repeatable, ``dest='env_option'``); ``per_task``: spelled
    ``TASK.KEY=VALUE``, with the defaults of a reproduction (``safegbpo reproduce``, which runs
    several tasks)."""
    form = "TASK.KEY=VALUE" if per_task else "KEY=VALUE"
    parser.add_argument("--env-option", dest="env_option", action="append", default=[],
                        metavar=form,
                        help=f"an option of the task's environment, repeatable (values parsed "
                             f"as JSON when possible); {env_options_help(reproduce=per_task)}")


def parse_task_key_values(items: Sequence[str] | None, flag: str = "--env-option"
                          ) -> dict[str, dict[str, Any]]:
    """``['task.key=value', ...]`` -> ``{task: {key: value}}`` (the task is everything before
    the last ``.`` of the left-hand side; values as in :func:`parse_key_values`)."""
    out: dict[str, dict[str, Any]] = {}
    for item in items or []:
        left, sep, _ = item.partition("=")
        task, dot, key = left.rpartition(".")
        if not sep or not dot or not task or not key:
            raise ValueError(f"{flag} expects TASK.KEY=VALUE, got {item!r}")
        out.setdefault(task, {}).update(parse_key_values([item[len(task) + 1:]], flag))
    return out


def positive_int(text: str) -> int:
    """argparse type: a positive integer (``--jobs``, ``--samples``, ...)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def parse_key_values(items: Sequence[str] | None, flag: str = "--option") -> dict[str, Any]:
    """``['key=value', ...]`` -> dict; values parsed as JSON when possible (``1e-6``, ``true``,
    ``"x"``), else kept as strings."""
    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"{flag} expects key=value, got {item!r}")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out
