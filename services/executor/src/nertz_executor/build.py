"""How the executor component is built: the one place the service, replays and backtests share."""

from __future__ import annotations

from nertz_common.node.component import Node
from nertz_executor.core.component import Executor
from nertz_executor.core.config import ExecutorConfig


def build(config: ExecutorConfig) -> Node:
    """Return the executor node on the paper venue."""
    return Node(Executor(config))
