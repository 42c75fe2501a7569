"""Structured JSON logging: one line per record, a constant event name plus fields.

``log.info("order.submitted", extra={"symbol": ..., "event_id": ...})`` prints
``{"ts": ..., "level": "info", "service": ..., "event": "order.submitted", "symbol": ...}``.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog


def setup(service: str, level: str = "INFO") -> None:
    """Route stdlib logging through structlog's JSON renderer on stderr."""
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True, key="ts"),
        structlog.stdlib.ExtraAdder(),
    ]
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(),
        ],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("nats").setLevel("WARNING")
    structlog.contextvars.bind_contextvars(service=service)
