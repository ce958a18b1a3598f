"""The ``safegbpo`` command: one parser assembled from one module per subcommand.

The library's commands live in this package -- ``safegbpo safe-set`` (:mod:`.safe_set`),
``safegbpo train`` (:mod:`.train`) and ``safegbpo reproduce`` (:mod:`.reproduce`); their shared
options (one vocabulary: ``--task``, ``--safe-set FILE``, ``--safe-sets DIR``, ...) are in
:mod:`.options`.  Other packages add subcommands through the ``safegbpo.commands`` entry-point
group: each entry point names a ``register(subparsers)`` function.  That is how the
executable specification contributes ``safegbpo audit`` and ``safegbpo report``
(``spec.cli``, declared in ``pyproject.toml``) while the library never imports ``spec``.

Every module must import: a broken command fails the whole CLI with its traceback instead of
silently disappearing.  ``ValueError`` and ``FileNotFoundError`` raised by a command are bad
input: the message is printed and the exit code is 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from importlib.metadata import entry_points

__all__ = ["BUILTIN_COMMANDS", "ENTRY_POINT_GROUP", "build_parser", "command_names", "main"]

#: Modules of the library's own subcommands (each defines ``register(subparsers)``).
BUILTIN_COMMANDS: tuple[str, ...] = (
    "safegbpo.cli.safe_set",
    "safegbpo.cli.train",
    "safegbpo.cli.reproduce",
)
#: Entry-point group through which other packages (``spec``) add subcommands.
ENTRY_POINT_GROUP = "safegbpo.commands"


def build_parser() -> argparse.ArgumentParser:
    """The ``safegbpo`` parser: the built-in commands, then the entry points' (by name)."""
    parser = argparse.ArgumentParser(
        prog="safegbpo",
        description="Provably safe RL from analytic gradients: safe sets, safeguards, "
        "training, audits and the paper's reproduction.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in BUILTIN_COMMANDS:
        importlib.import_module(name).register(sub)
    for entry in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        entry.load()(sub)
    return parser


def command_names() -> tuple[str, ...]:
    """The subcommands the ``safegbpo`` parser offers."""
    actions = [a for a in build_parser()._actions
               if isinstance(a, argparse._SubParsersAction)]
    return tuple(actions[0].choices) if actions else ()


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``safegbpo`` with ``argv`` (default: ``sys.argv[1:]``); returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code = args.func(args)
    except (ValueError, FileNotFoundError) as err:
        print(f"safegbpo {args.command}: error: {err}", file=sys.stderr)
        return 2
    return int(code or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
