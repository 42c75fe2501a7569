"""The CLI's rich consoles: wrapped to the terminal on a terminal, never wrapped anywhere else."""

from __future__ import annotations

import sys

from rich.console import Console


def cli_console(*, stderr: bool = False) -> Console:
    """A rich :class:`Console` on stdout (or stderr) that wraps only when the stream is a terminal.

    Piped into a file, a log collector or a CI job, a message keeps each line whole: a path or a
    figure is never broken at the 80th column (rich's default width without a terminal), so it can be
    copied and searched. Tables still render at the console's width.
    """
    stream = sys.stderr if stderr else sys.stdout
    return Console(stderr=stderr, soft_wrap=not stream.isatty())
