"""The runtime every service's composition root builds on: logging, metrics, the NATS connection,
a checked publisher, durable consumers, and a clean shutdown on SIGTERM/SIGINT (drain, then exit).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass, field

from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from prometheus_client import CollectorRegistry

from nertz_common import bus, logs, metrics
from nertz_common.settings import CommonSettings

log = logging.getLogger("nertz.runtime")


@dataclass
class Runtime:
    """What a service's handlers are given: connection, publisher, metrics, and the stop signal."""

    service: str
    nc: NATS
    js: JetStreamContext
    publisher: bus.Publisher
    metrics: metrics.BusMetrics
    registry: CollectorRegistry
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    _consumers: list[bus.Consumer] = field(default_factory=list)

    async def consumer(self, durable: str, **kwargs: object) -> bus.Consumer:
        """Bind a durable consumer declared by the topology; it is drained at shutdown."""
        c = bus.Consumer(self.js, durable, self.service, self.publisher, self.metrics, **kwargs)  # type: ignore[arg-type]
        await c.start()
        self._consumers.append(c)
        return c

    async def until_stopped(self, *work: Awaitable[None]) -> None:
        """Run ``work`` until it ends or a stop is requested; then stop consumers and wait for it.

        An exception in any task stops the others and is re-raised (the process exits non-zero and
        redelivery resumes the work after a restart).
        """
        tasks = [asyncio.ensure_future(w) for w in work]
        stopper = asyncio.ensure_future(self.stop.wait())
        done, _ = await asyncio.wait([*tasks, stopper], return_when=asyncio.FIRST_COMPLETED)
        for c in self._consumers:
            c.stop()
        failed = [t for t in done if t is not stopper and t.exception() is not None]
        if failed:
            for t in tasks:
                t.cancel()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        stopper.cancel()
        for r in results:
            if isinstance(r, BaseException) and not isinstance(r, asyncio.CancelledError):
                raise r


@contextlib.asynccontextmanager
async def runtime(service: str, settings: CommonSettings) -> AsyncIterator[Runtime]:
    """Build the runtime of ``service``: JSON logs, ``/metrics``, NATS, publisher, signal handlers."""
    logs.setup(service, settings.log_level)
    registry = CollectorRegistry()
    m = metrics.BusMetrics(service, registry)
    metrics.serve(settings.metrics_port, registry)
    nc = await bus.connect(settings.nats_url, service)
    js = nc.jetstream(timeout=5)
    rt = Runtime(service, nc, js, bus.Publisher(js, m, nc=nc), m, registry)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, rt.stop.set)
    log.info(
        "service.started",
        extra={"config_hash": settings.fingerprint(), "nats_url": settings.nats_url},
    )
    try:
        yield rt
    finally:
        for c in rt._consumers:
            await c.drain()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(nc.drain(), 10)
        log.info("service.stopped")
