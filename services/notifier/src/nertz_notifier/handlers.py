"""The glue between the log, the core and Telegram: fold the log on start, then post, record, acknowledge.

Start-up (before anything is posted):

1. the ``notifier`` durable consumer's acknowledgement floor ``F`` is read: every event up to ``F`` was
   handled (its posts were made and recorded) before the last stop or crash;
2. the notifier's view of the log (``exec.>``, ``llm.override.>``, ``sys.>``) up to ``F`` is folded into
   the state (:func:`nertz_notifier.core.state.fold`), then its own records after ``F``
   (``sys.notify.>``, ``sys.dlq.notifier``): a post made and recorded but not yet acknowledged when the
   process died is known, so it is not made again;
3. the consumer is reset to ``F + 1`` (ADR-60), so what was delivered and not acknowledged comes again
   at once rather than after ``ack_wait``.

Then the kernel's :class:`~nertz_common.node.effects.EffectRunner` hands every event over in log order;
for each, :func:`~nertz_notifier.core.decide.decide` says what to post (nothing already on the log), the
post is sent, and its record — ``NotificationPosted`` with Telegram's message id, or ``DeadLettered``
on ``sys.dlq.notifier`` when Telegram refused it for good — is published (ack checked, ``Nats-Msg-Id`` =
its derived id) before the next post and before the event is acknowledged. A SIGKILL anywhere leaves
either a record on the log (the post is not made again) or no post at all (it is made after the
restart); only a kill between Telegram's answer and the record's ack — milliseconds — can repeat one.

Events older than ``max_age_s`` by the wall clock are not posted (a first start on a month of log, or a
restart after a long outage, must not flood the chat); they still enter the state. This is the one use
of the wall clock: whether a post is still worth sending, never what it says.

One notifier per chat: two processes would both post.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, wait_exponential_jitter

from nertz_common import bus, subjects, topology
from nertz_common import events as ev
from nertz_common.heartbeat import Progress
from nertz_common.node.effects import EffectRunner
from nertz_common.node.log import read_log
from nertz_notifier.adapters.telegram import Refused, Stopping, TelegramSender
from nertz_notifier.core.decide import NotifierConfig, Post, decide, posted, refused
from nertz_notifier.core.state import SERVICE, NotifierState, evolve, fold
from nertz_notifier.metrics import NotifierMetrics

log = logging.getLogger("nertz.notifier")

DURABLE = "notifier"
#: the notifier's own records, read to the end of the stream at start
OWN_RECORDS = (subjects.filter_of("sys", "notify"), subjects.dead_letter(SERVICE))
_BUS_TRANSIENT: tuple[type[BaseException], ...] = (bus.PublishError, *bus.OUTAGE)


class Notifier:
    """Post what the log says to Telegram, once per event (see the module docstring).

    Parameters
    ----------
    js, nc : JetStreamContext, NATS
    publisher : bus.Publisher
    sender : TelegramSender
    config : NotifierConfig
    metrics : NotifierMetrics
    stop : asyncio.Event
    max_age_s : float
        Events older than this by the wall clock are not posted, s; 0 = any age.
    clock : callable
        Wall clock, UNIX ns (only for ``max_age_s``).
    stream : str
    """

    def __init__(
        self,
        *,
        js: JetStreamContext,
        nc: NATS,
        publisher: bus.Publisher,
        sender: TelegramSender,
        config: NotifierConfig,
        metrics: NotifierMetrics,
        stop: asyncio.Event,
        max_age_s: float = 0.0,
        clock: Callable[[], int] = time.time_ns,
        stream: str = subjects.STREAM,
    ) -> None:
        self.js, self.nc, self.publisher, self.sender = js, nc, publisher, sender
        self.config, self.metrics, self.stop = config, metrics, stop
        self.max_age_ns = round(max_age_s * 1e9)
        self.clock = clock
        self.stream = stream
        self.spec = topology.spec(DURABLE)
        self.state: NotifierState = config.initial_state()
        self.handled = 0
        self.ready = asyncio.Event()
        self.runner = EffectRunner(js=js, nc=nc, spec=self.spec, effect=self.handle, stop=stop, stream=stream)

    def progress(self) -> Progress:
        """What the heartbeats report: events handled, the last record's stream sequence."""
        return Progress(steps=self.handled, out_seq=self.publisher.last_seq)

    async def load(self) -> int:
        """Fold the log into the state and reset the consumer to its acknowledgement floor + 1; return the
        floor (steps 1-3 of the module docstring).

        Raises
        ------
        nats.js.errors.NotFoundError
            If the ``NERTZ`` stream does not exist (run ``nertz streams apply``).
        """
        floor = await self.runner.ack_floor()
        # bars only move the clock, and a daily post already made is one of the records folded below: a
        # start need not read a month of bars
        facts = [f for f in self.spec.filter_subjects if f != subjects.filter_of("md", "bar")]
        handled = await read_log(self.js, to_seq=floor, filters=facts, stream=self.stream)
        own = await read_log(self.js, from_seq=floor + 1, filters=OWN_RECORDS, stream=self.stream)
        state = fold(self.config.initial_state(), (r.event for r in handled))
        self.state = fold(state, (r.event for r in own))
        await self.runner.rewind()  # from the floor + 1, now
        log.info(
            "notifier.loaded",
            extra={"ack_floor": floor, "events": len(handled), "records_after_floor": len(own),
                   "posted": len(self.state.posted), "refused": len(self.state.refused),
                   "open_trades": len(self.state.risk)},
        )  # fmt: skip
        return floor

    async def run(self) -> None:
        """Check the token, fold the log, then post until ``stop`` is set.

        Raises
        ------
        ConfigurationError
            If Telegram refuses the token.
        """
        runner = self.runner
        try:
            await self.sender.start()
            await self.load()
            self.ready.set()
            await runner.run()
        except Stopping:
            log.info("notifier.stopped_while_waiting")  # the event in hand stays unacknowledged

    async def handle(self, event: ev.Event) -> None:
        """Post what ``event`` calls for and record each post on the log (the effect runner acks after).

        Raises
        ------
        ConfigurationError
            If Telegram refuses the token.
        Stopping
            If ``stop`` is set while a post waits to be sent again (the event is not acknowledged).
        bus.PublishError
            If a record cannot be published before the stop (the post may be repeated after a restart).
        """
        posts = decide(self.state, event, self.config)
        self.state = evolve(self.state, event)
        for post in posts:
            if self.max_age_ns and self.clock() - event.ts_event > self.max_age_ns:
                self.metrics.posts.labels(kind=post.kind, outcome="stale").inc()
                log.debug("notifier.stale", extra={"kind": post.kind, "source_event_id": post.source_event_id})
                continue
            record = await self._post(post, event)
            await self._record(record)
            self.state = evolve(self.state, record)
        self.handled += 1

    async def _post(self, post: Post, event: ev.Event) -> ev.NotificationPosted | ev.DeadLettered:
        fields = {"kind": post.kind, "source_event_id": post.source_event_id, "correlation_id": post.correlation_id}
        try:
            message = await self.sender.send(post)
        except Refused as e:
            self.metrics.posts.labels(kind=post.kind, outcome="refused").inc()
            log.warning("notifier.refused", extra={**fields, "reason": e.reason})
            own = post.source_event_id == event.event_id
            raw = ev.encode(event).decode() if own else ""
            return refused(post, event, e.reason, subjects.for_event(event) if own else "", raw)
        self.metrics.posts.labels(kind=post.kind, outcome="ok").inc()
        log.info(
            "notifier.posted",
            extra={**fields, "message_id": message.message_id, "reply_to_message_id": post.reply_to_message_id},
        )
        return posted(post, event, str(message.chat.id), message.message_id)

    async def _record(self, record: ev.Event) -> None:
        """Publish ``record``, waiting out a bus outage (until ``stop``: then the last error is raised)."""

        def say(state: RetryCallState) -> None:
            error = state.outcome.exception() if state.outcome else None
            log.warning("notifier.record_retry", extra={"event_id": record.event_id, "error": repr(error)})

        async for attempt in AsyncRetrying(
            retry=retry_if_exception_type(_BUS_TRANSIENT), wait=wait_exponential_jitter(multiplier=0.2, max=5.0),
            stop=lambda _: self.stop.is_set(), before_sleep=say, reraise=True,
        ):  # fmt: skip
            with attempt:
                await self.publisher.publish(record)
