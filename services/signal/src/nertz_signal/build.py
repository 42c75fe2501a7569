"""How the signal component is built: the one place the service, replays and backtests share."""

from __future__ import annotations

from nertz_common.node.component import Node
from nertz_signal.core.config import SignalConfig
from nertz_signal.core.engine import SignalEngine


def build(cfg: SignalConfig) -> Node:
    """Return the signal node: a fresh engine on ``cfg``."""
    return Node(SignalEngine(cfg))
