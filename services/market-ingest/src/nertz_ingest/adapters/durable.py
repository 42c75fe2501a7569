"""Publish until the stream acknowledges, however long the bus is away (STYLE.md §4: transient → retry).

:class:`~nertz_common.bus.Publisher` retries a window for ``retry_s`` seconds, then raises
:class:`~nertz_common.bus.PublishError`. Ingest has nowhere to put its events but the log, so it waits
out an outage of any length instead: "no responders", timeouts, a full reconnect buffer, a dropped or
reconnecting connection are all transient. Memory stays bounded: the caller's one batch is held while
the bus is away; the replay reads nothing more meanwhile, and the live feed's frame queue is bounded
(a full queue drops frames, which resyncs the books and refills the bars once the bus is back).

Re-publishing a batch is safe within the stream's duplicate window (same ``Nats-Msg-Id``). An outage
can outlast that window, so before a retry the batch is trimmed to what follows the log's end: one
connection's publishes are stored in order, so what reached the log of a failed batch is a prefix of
it, ending at the last event market-ingest has on the log.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence

from nats.js import JetStreamContext

from nertz_common import events as ev
from nertz_common.bus import OUTAGE, Publisher, PublishError
from nertz_ingest.adapters.log_position import log_end
from nertz_ingest.metrics import IngestMetrics

log = logging.getLogger("nertz.ingest")

#: what a bus outage raises (the shared list) and a publish whose retry budget ran out
TRANSIENT: tuple[type[BaseException], ...] = (PublishError, *OUTAGE)

HEALTHY, DEGRADED = "ok", "degraded: bus"


class DurablePublisher:
    """Publish batches in order, retrying through bus outages until acknowledged or stopped.

    Parameters
    ----------
    publisher : Publisher
        The checked publisher (``Nats-Msg-Id`` = ``event_id``).
    service : str
        Whose events these are (its dead letters are on ``sys.dlq.<service>``).
    js : JetStreamContext, optional
        Reads the log's end before a retry (see the module docstring); None = re-publish the whole
        batch and rely on the duplicate window.
    metrics : IngestMetrics, optional
        ``bus_degraded``, ``bus_errors_total``, ``bus_outage_seconds_total``.
    stop : asyncio.Event, optional
        Set = give up waiting (the batch is not acknowledged; a restart resumes where the log ends).
    backoff_initial_s, backoff_max_s : float
        Wait between two attempts while the bus is away, s (doubling from the first to the second).

    Attributes
    ----------
    health : str
        ``"ok"`` or ``"degraded: bus"`` (while a batch waits for the bus).
    outages : int
        Outages waited out (or being waited out).
    outage_s : float
        Seconds spent waiting for the bus, over all outages.
    """

    def __init__(
        self,
        publisher: Publisher,
        service: str,
        *,
        js: JetStreamContext | None = None,
        metrics: IngestMetrics | None = None,
        stop: asyncio.Event | None = None,
        backoff_initial_s: float = 0.1,
        backoff_max_s: float = 2.0,
    ) -> None:
        if not 0 < backoff_initial_s <= backoff_max_s:
            raise ValueError(
                f"expected 0 < backoff_initial_s <= backoff_max_s, was {backoff_initial_s} and {backoff_max_s}"
            )
        self.publisher = publisher
        self.service = service
        self.js = js
        self.metrics = metrics
        self.stop = stop or asyncio.Event()
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self.health = HEALTHY
        self.outages = 0
        self.outage_s = 0.0
        self._since: float | None = None
        self._last_log = 0.0

    async def publish_many(self, events: Sequence[ev.Event], window: int = 1000) -> int:
        """Publish ``events`` in order; return how many the stream stored (duplicates excluded).

        Events found on the log after a failed attempt count as stored.

        Raises
        ------
        PublishError
            Only if :attr:`stop` is set while the bus is away, or an ack names another stream.
        nats.js.errors.APIError
            If the stream refuses an event for good (e.g. ``BadRequestError``); not retried.
        """
        pending = events
        stored = 0
        backoff = self.backoff_initial_s
        while True:
            try:
                if self._since is not None:
                    pending, on_log = await self._after_log_end(pending)
                    stored += on_log
                n = await self.publisher.publish_many(pending, window=window) if pending else 0
            except TRANSIENT as e:
                if isinstance(e, PublishError) and "expected ack from stream" in str(e):
                    raise
                if self.stop.is_set():
                    raise PublishError(
                        f"stopped while the bus was away: {len(pending)} events not acknowledged "
                        f"(a restart resumes where the log ends): {e!r}"
                    ) from e
                self._down(e, backoff)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.stop.wait(), backoff)
                backoff = min(backoff * 2, self.backoff_max_s)
                continue
            self._up()
            return stored + n

    async def _after_log_end(self, batch: Sequence[ev.Event]) -> tuple[Sequence[ev.Event], int]:
        if self.js is None or not batch:
            return batch, 0
        end = await log_end(self.js, self.service)
        if end is None:
            return batch, 0
        last = end.event.event_id
        for i in range(len(batch) - 1, -1, -1):
            if batch[i].event_id == last:
                log.info("bus.resumed_at_log_end", extra={"event_id": last, "stream_seq": end.seq, "on_log": i + 1})
                return batch[i + 1 :], i + 1
        return batch, 0

    def _down(self, e: BaseException, backoff_s: float) -> None:
        now = time.monotonic()
        if self.metrics:
            self.metrics.bus_errors.labels(error=type(e).__name__).inc()
            self.metrics.bus_degraded.set(1)
        if self._since is None:
            self._since = self._last_log = now
            self.outages += 1
            self.health = DEGRADED
            log.warning("bus.degraded", extra={"health": DEGRADED, "error": repr(e)[:300], "retry_in_s": backoff_s})
        elif now - self._last_log >= 30.0:
            self._last_log = now
            log.warning(
                "bus.still_degraded",
                extra={"health": DEGRADED, "outage_s": round(now - self._since, 1), "error": repr(e)[:300]},
            )

    def _up(self) -> None:
        if self._since is None:
            return
        outage = time.monotonic() - self._since
        self._since = None
        self.outage_s += outage
        self.health = HEALTHY
        if self.metrics:
            self.metrics.bus_degraded.set(0)
            self.metrics.bus_outage_seconds.inc(outage)
        log.info("bus.recovered", extra={"health": HEALTHY, "outage_s": round(outage, 3)})
