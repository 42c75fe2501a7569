"""The bus on nats-py: the connection, a checked publisher, and the delivery and dead-letter records.

Bus discipline (STYLE.md §5): every publish sets ``Nats-Msg-Id = event_id`` and checks its ack. Reading
the log (durable consumers, ack after effect, dead letters, restarts) is the kernel's job, in one place:
:mod:`nertz_common.node.nats_runner`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec
import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from tenacity import (
    AsyncRetrying,
    retry_if_exception_type,
    stop_after_delay,
    wait_exponential_jitter,
)

from nertz_common import events as ev
from nertz_common import subjects
from nertz_common.errors import TransientError
from nertz_common.metrics import BusMetrics
from nertz_common.node import log as log_headers

log = logging.getLogger("nertz.bus")

MSG_ID = log_headers.MSG_ID
# headers of a derived event's step (wall-clock-free bookkeeping of restarts and replays; never payload)
INPUT_SEQ = log_headers.INPUT_SEQ
ORIGIN_SEQ = log_headers.ORIGIN_SEQ


class PublishError(TransientError):
    """A publish whose ack was missing or wrong after every retry."""


_RETRYABLE = (
    nats.errors.NoRespondersError,
    nats.errors.TimeoutError,
    nats.js.errors.ServiceUnavailableError,
)


#: what a bus outage raises in a fetch, an ack or a publish (a leader election, a restarting or
#: killed server, a lost connection): waited out, never fatal
OUTAGE: tuple[type[BaseException], ...] = (
    TimeoutError,
    OSError,  # ConnectionError included
    nats.errors.TimeoutError,
    nats.errors.NoRespondersError,
    nats.errors.ConnectionClosedError,
    nats.errors.ConnectionReconnectingError,
    nats.errors.OutboundBufferLimitError,
    nats.errors.StaleConnectionError,
    nats.errors.FlushTimeoutError,
    nats.errors.UnexpectedEOF,
    nats.js.errors.ServiceUnavailableError,
    nats.js.errors.ServerError,
)

_YIELD_EVERY = 200
"""Pipelined publishes yield to the event loop every this many messages (flush, read acks)."""

_NO_RESPONDERS = b"\x00no responders"


# nats-py's public ``publish`` spends ~3 µs per message re-validating subjects and headers we build
# ourselves; with the pinned nats-py the HPUB command is queued directly (same buffer, same flusher).
class _Ack(msgspec.Struct):
    stream: str = ""
    seq: int = 0
    duplicate: bool = False
    error: dict[str, Any] | None = None


_ack_decoder = msgspec.json.Decoder(_Ack)


@dataclass(slots=True)
class _AckWindow:
    left: int
    done: asyncio.Future[None]
    acks: list[bytes | None] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.acks = [None] * self.left


def _decode_ack(raw: bytes | None) -> _Ack:
    if raw is None:
        raise TimeoutError("ack missing")
    if raw is _NO_RESPONDERS:
        raise nats.errors.NoRespondersError
    ack = _ack_decoder.decode(raw)
    if ack.error is not None:
        nats.js.errors.APIError.from_error(ack.error)  # raises the typed error (503 is retried)
    return ack


def servers(url: str) -> list[str]:
    """Return the server URLs of ``url``: one URL, or several separated by commas (a cluster's nodes).

    ``nats://nats-1:4222,nats://nats-2:4222,nats://nats-3:4222`` names every node of a cluster, so a
    process started while one node is down still connects (nats-py takes a list, not a comma string).

    Raises
    ------
    ValueError
        If ``url`` names no server.
    """
    found = [u.strip() for u in url.split(",") if u.strip()]
    if not found:
        raise ValueError(f"expected one NATS URL or several separated by commas, was {url!r}")
    return found


async def connect(url: str, name: str, first_connect_s: float = 15.0) -> NATS:
    """Connect to NATS; once connected, reconnects never give up and a stale connection is found fast.

    ``url`` is one server or a cluster's nodes separated by commas (:func:`servers`). A service
    started while NATS is down (a restart during an outage) waits for it: the first connection is
    tried again and again, with a ``nats.waiting`` warning every few seconds, for up to
    ``first_connect_s`` seconds.

    Raises
    ------
    ConnectionError
        If the first connection is not made within ``first_connect_s`` seconds.
    ValueError
        If ``url`` names no server.
    """

    async def _on_error(e: Exception) -> None:
        log.warning("nats.error", extra={"error": repr(e)})

    async def _on_disconnect() -> None:
        closing = bool(conn) and (conn[0].is_closed or conn[0].is_draining)
        log.log(logging.INFO if closing else logging.WARNING, "nats.disconnected")
        if conn and not closing:
            _drop_unsent(conn[0])

    async def _on_reconnect() -> None:
        log.info("nats.reconnected")

    async def _on_closed() -> None:
        log.info("nats.closed")

    conn: list[NATS] = []  # the callbacks need the client, which exists only once connected
    t0 = time.monotonic()
    while True:
        connecting = nats.connect(
            servers=servers(url),
            name=name,
            connect_timeout=2,
            reconnect_time_wait=0.25,
            max_reconnect_attempts=-1,
            ping_interval=5,
            max_outstanding_pings=3,
            error_cb=_on_error,
            disconnected_cb=_on_disconnect,
            reconnected_cb=_on_reconnect,
            closed_cb=_on_closed,
        )
        left = first_connect_s - (time.monotonic() - t0)
        try:
            conn.append(fast_headers(await asyncio.wait_for(connecting, max(0.1, min(5.0, left)))))
            return conn[0]
        except (TimeoutError, OSError, nats.errors.NoServersError) as e:
            waited = time.monotonic() - t0
            if waited >= first_connect_s:
                raise ConnectionError(
                    f"could not connect to NATS at {url} within {first_connect_s:.0f} s: {e!r}"
                ) from e
            log.warning("nats.waiting", extra={"url": url, "waited_s": round(waited, 1), "error": repr(e)[:200]})


#: what ``bytes.strip()`` strips (ASCII whitespace), for the same strip on decoded ASCII text
_ASCII_WS = " \t\n\r\x0b\x0c"


def parse_header_lines(raw: bytes) -> dict[str, str]:
    """Parse a NATS header block (``Name: Value\\r\\n`` lines) as the pinned nats-py does, ~3x cheaper.

    nats-py's ``Client._parse_header_lines`` decodes each line and tests every character of each name
    with a generator (~4.5 µs for the three headers a runner's delivery carries, once per message in
    every consumer); an ASCII block (all of ours) is decoded once here, in ~1.3 µs. The result is the
    same for every input: a block with other bytes is handed to nats-py's parser.
    """
    if not raw.isascii():
        parsed: dict[str, str] = NATS._parse_header_lines(raw)
        return parsed
    out: dict[str, str] = {}
    for line in raw.decode("ascii").split("\r\n"):
        name, sep, value = line.partition(":")
        if sep:
            key = name.strip(_ASCII_WS)
            if "".join(key.split()) == key:  # a name with whitespace inside is skipped, like nats-py
                out[key] = value.strip(_ASCII_WS)
    return out


def fast_headers(nc: NATS) -> NATS:
    """Make ``nc`` parse the headers of the messages it receives with :func:`parse_header_lines`."""
    nc._parse_header_lines = parse_header_lines  # type: ignore[method-assign]
    return nc


def _drop_unsent(nc: NATS) -> None:
    # What nats-py buffered but had not written when the connection died: without this, it would be
    # written after the reconnect, *after* the messages lost with the dead socket that came before
    # it, and the stream would store them out of order. Publishes, acks and pull requests are all
    # retried or redelivered (a publish by its missing ack); subscriptions are replayed by nats-py.
    # Pinned nats-py: ``_pending`` is the outgoing buffer.
    pending = getattr(nc, "_pending", None)
    if isinstance(pending, list) and pending:
        log.info("nats.unsent_dropped", extra={"commands": len(pending)})
        pending.clear()
        nc._pending_data_size = 0


class Publisher:
    """Publish events to the ``NERTZ`` stream, checking every ack.

    ``NoRespondersError``/timeouts (a leader election, a restarting server) are retried with
    exponential backoff and jitter for up to ``retry_s`` seconds with the same ``Nats-Msg-Id``, so a
    retry can never store a duplicate.
    """

    def __init__(
        self,
        js: JetStreamContext,
        metrics: BusMetrics | None = None,
        *,
        nc: NATS | None = None,
        stream: str = subjects.STREAM,
        timeout_s: float = 2.0,
        retry_s: float = 20.0,
    ) -> None:
        self._js = js
        # pipelined publishes go out on the connection itself; nats-py keeps the JetStream
        # context's connection private, so callers that have it (the runtime) pass it
        self._nc: NATS = nc if nc is not None else js._nc
        self._metrics = metrics
        self._stream = stream
        self._timeout_s = timeout_s
        self._retry_s = retry_s
        # pipelined publishes (publish_many): one wildcard reply subscription, acks kept per window
        self._inbox = ""
        self._windows: dict[int, _AckWindow] = {}
        self._next_window = 0
        #: the highest stream sequence this publisher was acknowledged (0 before any publish)
        self.last_seq = 0
        self._counted: dict[tuple[type[ev.Event], str], Any] = {}

    async def publish(self, event: ev.Event, headers: dict[str, str] | None = None) -> int:
        """Publish one event and return its stream sequence.

        Raises
        ------
        PublishError
            If no valid ack arrived within the retry budget, or the ack names another stream.
        """
        subject = subjects.for_event(event)
        payload = ev.encode(event)
        t0 = time.perf_counter()
        try:
            async for attempt in AsyncRetrying(
                retry=retry_if_exception_type(_RETRYABLE),
                wait=wait_exponential_jitter(multiplier=0.05, max=2.0),
                stop=stop_after_delay(self._retry_s),
                reraise=True,
            ):
                with attempt:
                    if attempt.retry_state.attempt_number > 1 and self._metrics:
                        self._metrics.publish_retries.labels(reason="no_responders").inc()
                    ack = await self._js.publish(
                        subject,
                        payload,
                        timeout=self._timeout_s,
                        headers={MSG_ID: event.event_id, **(headers or {})},
                    )
        except _RETRYABLE as e:
            self._count(event, "error")
            raise PublishError(f"no ack for {type(event).__name__} {event.event_id}: {e!r}") from e
        self._check(ack.stream, event)
        self._count(event, "duplicate" if ack.duplicate else "ok")
        if self._metrics:
            self._metrics.publish_seconds.observe(time.perf_counter() - t0)
        self.last_seq = max(self.last_seq, ack.seq)
        return ack.seq

    async def publish_many(
        self,
        events: Iterable[ev.Event],
        headers: Callable[[ev.Event], dict[str, str]] | Sequence[dict[str, str]] | None = None,
        window: int = 1000,
    ) -> int:
        """Publish events pipelined in windows, checking every ack, in order.

        NATS keeps one connection's publishes in order, so the log order is the iteration order.
        One window is in flight at a time: its acks are all checked (in order) before the next window
        is sent. Returns how many were stored (duplicates excluded). A window whose acks fail
        (timeout, no responders, 503) is re-published with the same ids (dedup makes that safe).

        Parameters
        ----------
        events : iterable of Event
        headers : callable or sequence of dict, optional
            Extra headers per event: a function of the event, or one dict per event in order.
        window : int
            Events in flight at once.

        Raises
        ------
        PublishError
            If a window still fails after the retry budget, or an ack names another stream.
        nats.js.errors.APIError
            If the stream refuses an event (e.g. ``BadRequestError``); not retried.
        """
        stored = 0
        batch: list[ev.Event] = []
        if headers is None or callable(headers):
            fn = headers
            for event in events:
                batch.append(event)
                if len(batch) >= window:
                    stored += await self._publish_window(batch, fn)
                    batch = []
            if batch:
                stored += await self._publish_window(batch, fn)
            return stored
        items = list(events)
        if len(items) != len(headers):
            raise ValueError(f"expected one header dict per event, was {len(headers)} for {len(items)}")
        for i in range(0, len(items), window):
            stored += await self._publish_window(items[i : i + window], list(headers[i : i + window]))
        return stored

    async def _publish_window(
        self,
        batch: Sequence[ev.Event],
        headers: Callable[[ev.Event], dict[str, str]] | list[dict[str, str]] | None,
    ) -> int:
        # A lean pipelined publish on the JetStream context's connection. nats-py's publish_async
        # costs a semaphore, a NUID, a future with a done callback and a dataclass PubAck per
        # message: half of a replay's CPU. Here acks arrive on one wildcard inbox (``<inbox>.<w>_<i>``)
        # and are decoded with msgspec; every one is checked, in order, before the next window.
        nc = self._nc
        if not self._inbox:
            inbox = nc.new_inbox() + "."
            sub = await nc.subscribe(inbox + "*", cb=self._on_ack, pending_msgs_limit=1_000_000)
            if self._inbox:  # another window subscribed meanwhile: keep one inbox
                await sub.unsubscribe()
            else:
                self._inbox = inbox
        deadline = time.monotonic() + self._retry_s
        n = len(batch)
        while True:
            wid = self._next_window
            self._next_window += 1
            w = self._windows[wid] = _AckWindow(n, asyncio.get_running_loop().create_future())
            reply = f"{self._inbox}{wid}_"
            try:
                for i, event in enumerate(batch):
                    if not nc.is_connected:  # buffered now, it would reach the stream after a reconnect, out of order
                        raise nats.errors.ConnectionReconnectingError
                    h = {MSG_ID: event.event_id}
                    if headers is not None:
                        h.update(headers[i] if isinstance(headers, list) else headers(event))
                    await nc.publish(subjects.for_event(event), ev.encode(event), reply=f"{reply}{i}", headers=h)
                    if i % _YIELD_EVERY == _YIELD_EVERY - 1:
                        await asyncio.sleep(0)  # let the flusher write and the acks come in meanwhile
                if w.left:
                    await asyncio.wait_for(w.done, timeout=self._timeout_s * 5)
                acks = [_decode_ack(a) for a in w.acks]  # raises the first failure, in order
            except (
                TimeoutError,
                *_RETRYABLE,
                nats.errors.OutboundBufferLimitError,
                nats.errors.ConnectionReconnectingError,
            ) as e:
                if time.monotonic() > deadline:
                    raise PublishError(f"window of {n} not acked: {e!r}") from e
                if self._metrics:
                    self._metrics.publish_retries.labels(reason="window").inc()
                await asyncio.sleep(0.2)
                continue
            finally:
                del self._windows[wid]  # late acks of an abandoned window are ignored
            stored = 0
            for event, ack in zip(batch, acks, strict=True):
                self._check(ack.stream, event)
                self._count(event, "duplicate" if ack.duplicate else "ok")
                stored += not ack.duplicate
                if ack.seq > self.last_seq:
                    self.last_seq = ack.seq
            return stored

    async def _on_ack(self, msg: Msg) -> None:
        wid, _, idx = msg.subject[len(self._inbox) :].partition("_")
        try:
            w = self._windows.get(int(wid))
            i = int(idx)
        except ValueError:
            return  # not one of ours
        if w is None or not 0 <= i < len(w.acks) or w.acks[i] is not None:
            return
        hdrs = msg.headers
        w.acks[i] = _NO_RESPONDERS if hdrs and hdrs.get("Status") == "503" else msg.data
        w.left -= 1
        if w.left == 0 and not w.done.done():
            w.done.set_result(None)

    def _check(self, stream: str, event: ev.Event) -> None:
        if stream != self._stream:
            raise PublishError(f"expected ack from stream {self._stream}, was {stream} ({event.event_id})")

    def _count(self, event: ev.Event, outcome: str) -> None:
        if self._metrics:
            key = (type(event), outcome)
            counted = self._counted.get(key)
            if counted is None:  # the labelled child, looked up once (``labels()`` costs more than the ack check)
                counted = self._counted[key] = self._metrics.events_out.labels(type=key[0].__name__, outcome=outcome)
            counted.inc()


@dataclass(slots=True)
class Delivery:
    """One decoded message from a durable consumer."""

    event: ev.AnyEvent
    msg: Msg
    subject: str
    stream_seq: int
    num_delivered: int
    headers: dict[str, str] = field(default_factory=dict)

    async def ack(self) -> None:
        """Acknowledge: the effect of this message is durable."""
        await self.msg.ack()

    async def nak(self, delay_s: float) -> None:
        """Ask for redelivery after ``delay_s`` seconds."""
        await self.msg.nak(delay=delay_s)


def dead_letter_record(service: str, reason: str, subject: str, stream_seq: int, raw: bytes) -> ev.DeadLettered:
    """Return the ``DeadLettered`` record of the message at ``stream_seq`` (for ``sys.dlq.<service>``).

    Its id names the service and the sequence, so a retried dead-letter is stored once. The reason is
    cut at 500 characters and the raw bytes (UTF-8, replaced) at 10,000. The time is the wall clock:
    a dead letter is an infrastructure record, not a decision.
    """
    now = time.time_ns()
    return ev.DeadLettered(
        event_id=f"dlq-{service}-{stream_seq}",
        ts_event=now,
        ts_init=now,
        service=service,
        reason=reason[:500],
        subject=subject,
        stream_seq=stream_seq,
        raw=raw.decode("utf-8", "replace")[:10_000],
    )
