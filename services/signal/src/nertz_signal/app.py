"""Composition root of the signal service: build everything, rebuild state, consume until stopped."""

from __future__ import annotations

import logging

from prometheus_client import CollectorRegistry

from nertz_common import bus
from nertz_common.runtime import runtime
from nertz_signal.adapters.rebuild import rebuild
from nertz_signal.core.config import SignalConfig
from nertz_signal.core.engine import SignalEngine
from nertz_signal.handlers import SignalHandler
from nertz_signal.metrics import SignalMetrics
from nertz_signal.settings import SignalSettings

SERVICE = "signal"
DURABLE = "signal"

log = logging.getLogger("nertz.signal")


def build_handler(cfg: SignalConfig, publisher: bus.Publisher, registry: CollectorRegistry) -> SignalHandler:
    """Return the delivery handler: a fresh engine on ``cfg``, publishing through ``publisher``."""
    return SignalHandler(SignalEngine(cfg), publisher, SignalMetrics(registry))


async def serve(settings: SignalSettings) -> None:
    """Run the signal service until SIGTERM/SIGINT: rebuild state from the log, then consume in order.

    Raises
    ------
    nats.js.errors.NotFoundError
        If the ``NERTZ`` stream or the ``signal`` consumer is missing (run ``nertz streams apply``).
    """
    async with runtime(SERVICE, settings) as rt:
        handler = build_handler(settings.signal, rt.publisher, rt.registry)
        await rebuild(handler.engine, rt.js, DURABLE)
        consumer = await rt.consumer(DURABLE)
        cfg = settings.signal
        log.info(
            "signal.ready",
            extra={
                "entry_threshold": cfg.entry_threshold,
                "weights": cfg.weights.as_dict(),
                "stop_mode": cfg.stop_mode,
                "risk_per_trade": cfg.risk_per_trade,
                "max_leverage": cfg.max_leverage,
            },
        )
        await rt.until_stopped(consumer.run_batch(handler.handle_batch))
