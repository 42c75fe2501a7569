"""The effect runner: follow one durable consumer in log order and perform an outside effect per event.

A component's outputs are events; some events are instructions to the outside world (an order to
send to an exchange, a message to post). An **adapter** performs them — I/O, never a decision — and
records what the outside party answered as new events. This runner is the one way an adapter reads
the log (consuming it is the kernel's job, like :mod:`nertz_common.node.nats_runner`):

- its durable consumer is ensured at start (it exists only where the adapter runs, e.g. the Bybit
  venue's ``venue-bybit``; :data:`nertz_common.topology.VENUE_CONSUMERS`);
- events are handed to ``effect(event)`` one at a time, in log order; a message is acknowledged only
  after its effect returned, so a crash mid-effect redelivers it and the effect must be idempotent
  (the Bybit adapter's ``orderLinkId`` look-up);
- an undecodable message is logged and acknowledged (its producer dead-lettered it already);
- a bus outage, a "no responders" or a deleted consumer is waited out (consumer ensured again).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

import nats.errors
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext

from nertz_common import bus, subjects, topology
from nertz_common import events as ev
from nertz_common.node.pull import ConsumerGone, Puller

log = logging.getLogger("nertz.effects")

_UNAVAILABLE: tuple[type[BaseException], ...] = (ConsumerGone, *bus.OUTAGE)


class EffectRunner:
    """Run ``effect`` on every event of ``spec``'s consumer, in log order (see the module docstring).

    Parameters
    ----------
    js, nc : JetStreamContext, NATS
    spec : ConsumerSpec
        The adapter's durable consumer.
    effect : callable
        ``await effect(event)``; raising stops the runner (the message is not acknowledged).
    stop : asyncio.Event
    batch : int
        Messages per pull request.
    retry_s : float
        Wait after the bus or the consumer went away, s.
    """

    def __init__(
        self,
        *,
        js: JetStreamContext,
        nc: NATS,
        spec: topology.ConsumerSpec,
        effect: Callable[[ev.Event], Awaitable[None]],
        stop: asyncio.Event,
        batch: int = 16,
        stream: str = subjects.STREAM,
        retry_s: float = 1.0,
    ) -> None:
        self.js, self.nc, self.spec, self.effect, self.stop = js, nc, spec, effect, stop
        self.batch, self.stream, self.retry_s = batch, stream, retry_s
        self.handled = 0

    async def ensure(self) -> None:
        """Create the consumer unless it exists."""
        await topology.ensure_consumer(self.js, self.spec, self.stream)

    async def ack_floor(self) -> int:
        """Ensure the consumer and return its acknowledgement floor (the last position every effect
        before which is done; 0 before any)."""
        await self.ensure()
        info = await self.js.consumer_info(self.stream, self.spec.durable)
        return info.ack_floor.stream_seq if info.ack_floor is not None else 0

    async def rewind(self) -> None:
        """Deliver again from the acknowledgement floor + 1: whatever was delivered but not acknowledged
        (an effect a crash interrupted) comes first, in log order, not after ``ack_wait``."""
        await self.js.reset_consumer(self.stream, self.spec.durable)

    async def run(self) -> None:
        """Follow the consumer until ``stop`` is set."""
        await self.ensure()
        puller = Puller(self.nc, self.stream, self.spec.durable)
        await puller.start()
        try:
            while not self.stop.is_set():
                try:
                    msgs = await puller.fetch(self.batch, 1.0)
                except nats.errors.TimeoutError:
                    continue
                except _UNAVAILABLE as e:
                    log.warning("effects.unavailable", extra={"consumer": self.spec.durable, "error": repr(e)})
                    await puller.stop()
                    await asyncio.sleep(self.retry_s)
                    with contextlib.suppress(Exception):
                        await self.ensure()
                    puller = Puller(self.nc, self.stream, self.spec.durable)
                    await puller.start()
                    continue
                for msg in msgs:
                    try:
                        event = ev.decode(msg.data)
                    except Exception as e:
                        log.error("effects.undecodable", extra={"subject": msg.subject, "error": repr(e)})
                    else:
                        await self.effect(event)
                        self.handled += 1
                    await msg.ack()
        finally:
            await puller.stop()
