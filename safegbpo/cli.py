"""Command-line interface: ``safegbpo <command> ...``.

Each subsystem contributes its subcommands through a ``register(subparsers)`` function in its
own ``cli`` module; this file only assembles them, so importing the CLI stays cheap and a
subsystem that fails to import names itself in the error instead of breaking every command.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

# Modules that contribute subcommands (each defines ``register(subparsers)``).
_SUBSYSTEMS: tuple[str, ...] = (
    "safegbpo.safesets.cli",
    "safegbpo.experiments.cli",
    "safegbpo.experiments.reproduce_cli",
    "spec.cli",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="safegbpo",
        description="Provably safe RL from analytic gradients: safe sets, safeguards, "
        "training, audits and the paper's reproduction.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in _SUBSYSTEMS:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as err:
            if err.name == name:  # subsystem not built yet
                continue
            raise
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
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
