"""How the executor component is built: the one place the service, replays and backtests share."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from nertz_common import events as ev
from nertz_common.node.component import Node
from nertz_executor.core.component import Executor
from nertz_executor.core.config import ExecutorConfig


def build(
    config: ExecutorConfig, reconfigure: Callable[[Mapping[str, ev.ConfigValue]], ExecutorConfig] | None = None
) -> Node:
    """Return the executor node on the paper venue (``reconfigure``: see :class:`Executor`)."""
    return Node(Executor(config, reconfigure=reconfigure))
