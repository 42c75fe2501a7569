"""The CLI's rich consoles: wrapped to the terminal on a terminal, never wrapped anywhere else."""

from __future__ import annotations

import os
import sys

from rich.console import Console

PIPED_WIDTH = 200
"""Columns of a table printed to something other than a terminal."""


def cli_console(*, stderr: bool = False) -> Console:
    """A rich :class:`Console` on stdout (or stderr) that wraps only when the stream is a terminal.

    Piped into a file, a log collector or a CI job, a message keeps each line whole: a path or a
    figure is never broken at the 80th column (rich's default width without a terminal), so it can be
    copied and searched, and tables are drawn :data:`PIPED_WIDTH` columns wide (``COLUMNS`` overrides).
    """
    stream = sys.stderr if stderr else sys.stdout
    tty = stream.isatty()
    return Console(stderr=stderr, soft_wrap=not tty, width=None if tty or "COLUMNS" in os.environ else PIPED_WIDTH)
