"""One place that builds the rich consoles of the command-line tools."""

from __future__ import annotations

import os
import sys

from rich.console import Console

#: Width used when the output is not a terminal (a log file, CI): wide enough that audit and
#: verification tables keep their numbers on one line. ``COLUMNS`` still wins when set.
PIPE_WIDTH = 160


def make_console(*, stderr: bool = False) -> Console:
    """A rich console; wide when writing to a pipe or a file instead of wrapping at 80 columns."""
    stream = sys.stderr if stderr else sys.stdout
    width = None if stream.isatty() or "COLUMNS" in os.environ else PIPE_WIDTH
    return Console(stderr=stderr, width=width)
