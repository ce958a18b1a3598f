"""``python -m spec``: the executable specification (what ``nox -s spec`` runs).

    python -m spec --all --json reports/spec.json

The parser and the entry point are :func:`spec.cli.spec_main`.
"""

import sys

from spec.cli import spec_main as main

__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(main())
