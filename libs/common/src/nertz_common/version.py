"""The code's version, recorded in snapshots, bundles and reports.

``NERTZ_VERSION`` if set (the Docker image sets it at build time); else the package version plus the git
commit of the checkout when there is one (``0.1.0+g1a2b3c4``, ``-dirty`` with local changes).
"""

from __future__ import annotations

import os
import subprocess
from functools import cache
from importlib import metadata
from pathlib import Path


@cache
def version() -> str:
    """Return the code version (computed once)."""
    env = os.environ.get("NERTZ_VERSION")
    if env:
        return env
    try:
        base = metadata.version("nertz-common")
    except metadata.PackageNotFoundError:
        base = "0+unknown"
    root = Path(__file__).resolve().parents[4]
    if (root / ".git").exists():
        try:
            sha = subprocess.run(
                ["git", "-C", str(root), "describe", "--always", "--dirty", "--abbrev=10"],
                capture_output=True, text=True, timeout=2, check=True,
            ).stdout.strip()  # fmt: skip
            if sha:
                return f"{base}+g{sha}"
        except (OSError, subprocess.SubprocessError):
            pass
    return base


def __getattr__(name: str) -> str:
    if name == "VERSION":
        return version()
    raise AttributeError(name)
