"""The notifier without a bot token: it says that it is off and idles until SIGTERM/SIGINT (exit 0).

It serves ``/metrics`` (``nertz_notifier_enabled 0``, so a health check and Prometheus see it up) and
never connects anywhere: no NATS, no Telegram. Kept apart from the composition root so that an idle
notifier does not even import the bus or the Telegram library.
"""

from __future__ import annotations

import asyncio
import logging
import signal

from prometheus_client import CollectorRegistry

from nertz_common import logs, metrics
from nertz_common.settings import CommonSettings
from nertz_notifier.metrics import NotifierMetrics

SERVICE = "notifier"

log = logging.getLogger("nertz.notifier")


async def idle(settings: CommonSettings) -> None:
    """Say that the notifier is off (no bot token), serve ``/metrics``, and wait for SIGTERM/SIGINT."""
    logs.setup(SERVICE, settings.log_level)
    registry = CollectorRegistry()
    NotifierMetrics(registry).enabled.set(0)
    metrics.serve(settings.metrics_port, registry, settings.metrics_addr)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    log.warning(
        "notifier.off",
        extra={"reason": "no Telegram bot token: set NERTZ_NOTIFIER__BOT_TOKEN (or TELEGRAM_BOT_TOKEN) and "
               "NERTZ_NOTIFIER__CHAT_ID (or TELEGRAM_CHAT_ID) to post; idling until stopped"},
    )  # fmt: skip
    await stop.wait()
    log.info("service.stopped")
