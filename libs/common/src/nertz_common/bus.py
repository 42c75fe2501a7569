"""The bus on nats-py: a checked publisher and an ordered, ack-after-effect consumer.

Bus discipline (STYLE.md §5): every publish sets ``Nats-Msg-Id = event_id`` and checks its ack; a
consumer acks only after the handler's effect is durable; transient failures are nak'd with backoff;
poison messages are dead-lettered to ``sys.dlq.<service>`` and terminated; shutdown drains.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

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
from nertz_common.metrics import BusMetrics

log = logging.getLogger("nertz.bus")

MSG_ID = "Nats-Msg-Id"
#: header naming the stream sequence of the input message that caused an event (wall-clock-free
#: bookkeeping used by rebuilds; never part of a payload)
INPUT_SEQ = "Nertz-Input-Seq"


class TransientError(Exception):
    """A failure worth retrying later (database down, venue timeout): the message is nak'd."""


class PoisonError(Exception):
    """A message that can never be handled: it is dead-lettered and terminated."""


class PublishError(Exception):
    """A publish whose ack was missing or wrong after every retry."""


_RETRYABLE = (
    nats.errors.NoRespondersError,
    nats.errors.TimeoutError,
    nats.js.errors.ServiceUnavailableError,
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


async def connect(url: str, name: str, first_connect_s: float = 15.0) -> NATS:
    """Connect to NATS; once connected, reconnects never give up and a stale connection is found fast.

    Raises
    ------
    ConnectionError
        If the first connection is not made within ``first_connect_s`` seconds.
    """

    async def _on_error(e: Exception) -> None:
        log.warning("nats.error", extra={"error": repr(e)})

    async def _on_disconnect() -> None:
        closing = bool(conn) and (conn[0].is_closed or conn[0].is_draining)
        log.log(logging.INFO if closing else logging.WARNING, "nats.disconnected")

    async def _on_reconnect() -> None:
        log.info("nats.reconnected")

    async def _on_closed() -> None:
        log.info("nats.closed")

    connecting = nats.connect(
        servers=url,
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
    conn: list[NATS] = []  # the callbacks need the client, which exists only once connected
    try:
        conn.append(await asyncio.wait_for(connecting, first_connect_s))
        return conn[0]
    except (TimeoutError, OSError, nats.errors.NoServersError) as e:
        raise ConnectionError(f"could not connect to NATS at {url} within {first_connect_s:.0f} s: {e!r}") from e


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
        return ack.seq

    async def publish_many(
        self,
        events: Iterable[ev.Event],
        headers: Callable[[ev.Event], dict[str, str]] | None = None,
        window: int = 1000,
    ) -> int:
        """Publish events pipelined in windows, checking every ack, in order.

        NATS keeps one connection's publishes in order, so the log order is the iteration order.
        One window is in flight at a time: its acks are all checked (in order) before the next window
        is sent. Returns how many were stored (duplicates excluded). A window whose acks fail
        (timeout, no responders, 503) is re-published with the same ids (dedup makes that safe).

        Raises
        ------
        PublishError
            If a window still fails after the retry budget, or an ack names another stream.
        nats.js.errors.APIError
            If the stream refuses an event (e.g. ``BadRequestError``); not retried.
        """
        stored = 0
        batch: list[ev.Event] = []
        for event in events:
            batch.append(event)
            if len(batch) >= window:
                stored += await self._publish_window(batch, headers)
                batch = []
        if batch:
            stored += await self._publish_window(batch, headers)
        return stored

    async def _publish_window(
        self, batch: Sequence[ev.Event], headers: Callable[[ev.Event], dict[str, str]] | None
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
                    h = {MSG_ID: event.event_id}
                    if headers is not None:
                        h.update(headers(event))
                    await nc.publish(subjects.for_event(event), ev.encode(event), reply=f"{reply}{i}", headers=h)
                    if i % _YIELD_EVERY == _YIELD_EVERY - 1:
                        await asyncio.sleep(0)  # let the flusher write and the acks come in meanwhile
                if w.left:
                    await asyncio.wait_for(w.done, timeout=self._timeout_s * 5)
                acks = [_decode_ack(a) for a in w.acks]  # raises the first failure, in order
            except (TimeoutError, *_RETRYABLE, nats.errors.OutboundBufferLimitError) as e:
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
            self._metrics.events_out.labels(type=type(event).__name__, outcome=outcome).inc()


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


Outcome = Literal["ack", "nak", "dead"]
Handler = Callable[[Delivery], Awaitable[None]]
BatchHandler = Callable[[list[Delivery]], Awaitable[None]]


class Consumer:
    """A durable pull consumer on ``NERTZ`` that delivers decoded events in log order.

    Parameters
    ----------
    js : JetStreamContext
    durable : str
        The consumer name declared by the topology (``nertz streams apply``).
    service : str
        Service name, for the dead-letter subject ``sys.dlq.<service>``.
    publisher : Publisher
        Used for dead-letter records.
    metrics : BusMetrics
    max_deliver : int
        After this many deliveries of a failing message it is dead-lettered and terminated.
    """

    def __init__(
        self,
        js: JetStreamContext,
        durable: str,
        service: str,
        publisher: Publisher,
        metrics: BusMetrics | None = None,
        *,
        stream: str = subjects.STREAM,
        max_deliver: int = 8,
        backoff_s: tuple[float, ...] = (0.1, 0.5, 1.0, 2.0, 5.0),
    ) -> None:
        self._js = js
        self.durable = durable
        self._service = service
        self._publisher = publisher
        self._metrics = metrics
        self._stream = stream
        self._max_deliver = max_deliver
        self._backoff_s = backoff_s
        self._sub: JetStreamContext.PullSubscription | None = None
        self._stopping = asyncio.Event()

    async def start(self) -> None:
        """Bind to the durable consumer.

        Raises
        ------
        nats.js.errors.NotFoundError
            If the consumer was not declared (run ``nertz streams apply``).
        """
        await self._js.consumer_info(self._stream, self.durable)
        self._sub = await self._js.pull_subscribe_bind(self.durable, stream=self._stream)

    def stop(self) -> None:
        """Ask the loop to finish the batch in hand and return."""
        self._stopping.set()

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    async def fetch(self, batch: int = 256, timeout_s: float = 0.5) -> list[Delivery]:
        """Fetch up to ``batch`` messages, decoding each; poison is dead-lettered and terminated.

        Returns an empty list when nothing arrived within ``timeout_s``.
        """
        assert self._sub is not None, "call start() first"
        try:
            msgs = await self._sub.fetch(batch, timeout=timeout_s)
        except (TimeoutError, nats.errors.TimeoutError):
            return []
        out: list[Delivery] = []
        for m in msgs:
            md = m.metadata
            try:
                event = ev.decode(m.data)
            except (msgspec.DecodeError, msgspec.ValidationError) as e:
                await self.dead_letter(m, f"undecodable: {e}")
                continue
            out.append(
                Delivery(
                    event=event,
                    msg=m,
                    subject=m.subject,
                    stream_seq=md.sequence.stream,
                    num_delivered=md.num_delivered,
                    headers=dict(m.headers or {}),
                )
            )
            if self._metrics:
                self._metrics.events_in.labels(type=type(event).__name__).inc()
                self._metrics.consumer_pending.labels(consumer=self.durable).set(md.num_pending)
        return out

    async def dead_letter(self, msg: Msg, reason: str) -> None:
        """Write a dead-letter record with the raw message, then terminate it."""
        seq = msg.metadata.sequence.stream
        await self._publisher.publish(dead_letter_record(self._service, reason, msg.subject, seq, msg.data))
        await msg.term()
        log.error(
            "message.dead_lettered",
            extra={"stream_seq": seq, "subject": msg.subject, "reason": reason[:200]},
        )
        if self._metrics:
            self._metrics.dead_letters.labels(reason=reason.split(":", 1)[0]).inc()

    async def settle(self, d: Delivery, handler: Handler) -> Outcome:
        """Run ``handler`` on one delivery and ack or dead-letter it; return which.

        A :class:`TransientError` is retried in place with backoff, holding the message and
        extending its ack deadline (``+WPI``): a nak would let later messages overtake it and break
        log order. After ``max_deliver`` attempts the message is dead-lettered. If a stop is
        requested meanwhile, the message is nak'd for immediate redelivery and ``"nak"`` returned.
        """
        attempt = d.num_delivered
        while True:
            t0 = time.perf_counter()
            try:
                await handler(d)
            except PoisonError as e:
                await self.dead_letter(d.msg, f"poison: {e}")
                return "dead"
            except (msgspec.ValidationError, ValueError) as e:
                await self.dead_letter(d.msg, f"invalid: {e}")
                return "dead"
            except TransientError as e:
                if attempt >= self._max_deliver:
                    await self.dead_letter(d.msg, f"retries_exhausted: {e}")
                    return "dead"
                if not await self._back_off(d, attempt, e):
                    await d.nak(0)
                    return "nak"
                attempt += 1
                continue
            await d.ack()
            if self._metrics:
                self._metrics.handler_seconds.labels(consumer=self.durable).observe(time.perf_counter() - t0)
            return "ack"

    async def _back_off(self, d: Delivery, attempt: int, e: Exception) -> bool:
        """Sleep the backoff of ``attempt`` keeping ``d`` in progress; False if a stop came first."""
        delay = self._backoff_s[min(attempt - 1, len(self._backoff_s) - 1)]
        log.warning("message.retry", extra={"stream_seq": d.stream_seq, "delay_s": delay, "error": repr(e)})
        if self._metrics:
            self._metrics.naks.labels(consumer=self.durable).inc()
        await d.msg.in_progress()
        try:
            await asyncio.wait_for(self._stopping.wait(), delay)
            return False
        except TimeoutError:
            return True

    async def run(self, handler: Handler, batch: int = 256) -> None:
        """Handle messages one by one in log order until :meth:`stop`."""
        while not self._stopping.is_set():
            deliveries = await self.fetch(batch)
            for i, d in enumerate(deliveries):
                if await self.settle(d, handler) == "nak":  # stopping: hand the rest back
                    for rest in deliveries[i + 1 :]:
                        await rest.nak(0)
                    return

    async def run_batch(self, handler: BatchHandler, batch: int = 512) -> None:
        """Handle whole fetched batches (e.g. one Postgres transaction per batch) until :meth:`stop`.

        The handler's effect must be atomic for the batch; then every message is acked. A
        :class:`TransientError` retries the whole batch in place with backoff.
        """
        while not self._stopping.is_set():
            deliveries = await self.fetch(batch)
            if not deliveries:
                continue
            attempt = 1
            while True:
                t0 = time.perf_counter()
                try:
                    await handler(deliveries)
                    break
                except TransientError as e:
                    for d in deliveries[1:]:
                        await d.msg.in_progress()
                    if not await self._back_off(deliveries[0], attempt, e):
                        for d in deliveries:
                            await d.nak(0)
                        return
                    attempt += 1
            for d in deliveries:
                await d.ack()
            if self._metrics:
                self._metrics.handler_seconds.labels(consumer=self.durable).observe(time.perf_counter() - t0)

    async def drain(self) -> None:
        """Stop fetching and unsubscribe (in-flight acks were already sent)."""
        self.stop()
        if self._sub is not None:
            with contextlib.suppress(Exception):
                await self._sub.unsubscribe()


@dataclass(slots=True, frozen=True)
class Recorded:
    """One message of the log read back for a rebuild: its event, stream sequence and headers."""

    event: ev.AnyEvent
    stream_seq: int
    subject: str
    headers: dict[str, str]


async def iter_history(
    js: JetStreamContext,
    filter_subjects: Sequence[str],
    *,
    upto_seq: int | None = None,
    stream: str = subjects.STREAM,
    batch: int = 1000,
    fetch_timeout_s: float = 1.0,
    max_stalls: int = 5,
) -> AsyncIterator[Recorded]:
    """Yield the log's messages on ``filter_subjects`` from the start, in order (ephemeral, AckNone).

    Reads up to ``upto_seq`` (inclusive) or, when None, up to what the stream held when called.
    Undecodable messages are skipped (their consumer dead-lettered them already). A fetch that
    returns nothing ends the read only when the server has nothing pending for it: on a busy machine
    an empty fetch is not the end of the log, and a rebuild must never stop short silently.

    Raises
    ------
    TimeoutError
        If ``max_stalls`` fetches in a row bring nothing while messages are still pending.
    """
    from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

    info = await js.stream_info(stream)
    last = info.state.last_seq if upto_seq is None else min(upto_seq, info.state.last_seq)
    if last == 0:
        return
    cfg = ConsumerConfig(
        ack_policy=AckPolicy.NONE,
        deliver_policy=DeliverPolicy.ALL,
        filter_subjects=list(filter_subjects),
        inactive_threshold=30.0,
        mem_storage=True,
    )
    sub = await js.pull_subscribe(filter_subjects[0], stream=stream, config=cfg)
    try:
        stalls = 0
        while True:
            try:
                msgs = await sub.fetch(batch, timeout=fetch_timeout_s)
            except (TimeoutError, nats.errors.TimeoutError) as e:
                if (await sub.consumer_info()).num_pending == 0:
                    return  # every matching message up to the stream's end was read
                stalls += 1
                if stalls >= max_stalls:
                    raise TimeoutError(f"expected the log up to seq {last}, the read stalled") from e
                continue
            stalls = 0
            for m in msgs:
                md = m.metadata
                seq = md.sequence.stream
                if seq > last:
                    return
                with contextlib.suppress(msgspec.DecodeError, msgspec.ValidationError):
                    yield Recorded(ev.decode(m.data), seq, m.subject, dict(m.headers or {}))
                if seq >= last or md.num_pending == 0:
                    return
    finally:
        with contextlib.suppress(Exception):
            await sub.unsubscribe()


async def read_history(
    js: JetStreamContext,
    filter_subjects: Sequence[str],
    *,
    upto_seq: int | None = None,
    stream: str = subjects.STREAM,
    batch: int = 1000,
) -> list[Recorded]:
    """Return :func:`iter_history` as a list (for logs that fit in memory, e.g. one service's output)."""
    return [r async for r in iter_history(js, filter_subjects, upto_seq=upto_seq, stream=stream, batch=batch)]
