"""The JetStream runner: one node on durable consumers of ``NERTZ``, surviving restarts and outages.

A component's inputs come on **lanes**, durable pull consumers declared by the topology
(``nertz streams apply``). The lane holding its driver inputs is read in log order; a lane holding only
join partners is read when the node waits for one (the executor's factor snapshots and verdicts), so
the runner never pulls, and holds, market data it cannot use yet. What the runner guarantees:

- **Fold before publish, ack after the effect is durable.** The node has folded an input before its
  outputs are published; inputs are acknowledged only after those outputs are acknowledged by
  JetStream. Before any fetch that may block (the next batch, a partner the node waits for), every
  pending output is published and every consumed input acknowledged: nothing is held while waiting,
  so ``max_ack_pending`` can never stall delivery.
- **Restart = snapshot + tail.** On start the latest snapshot (``nertz-snapshots``) is restored, every
  lane is reset (ADR-60) to the position after it, and the component's own outputs after the
  snapshot's ``out_seq`` are read back. Steps before the last one that published are re-derived and
  checked against the log without publishing; the last one publishes only what is missing; then the
  node goes on live. So a SIGKILL anywhere gives the same log as no SIGKILL, and the stream's
  retention may drop anything older than the snapshot.
- **Log order, always.** A delivery already consumed (``stream seq <= lane position``) is acknowledged
  and skipped; a gap in the consumer's delivery sequence (a fetch reply lost in an outage, so a
  message would come back later, behind newer ones) resets the lane to its position and reads again.
- **Errors by branch** (:mod:`nertz_common.errors`): undecodable or invalid input → dead letter on
  ``sys.dlq.<service>`` + term; :class:`~nertz_common.errors.DomainRefusal` → its event is published,
  then the ack; :class:`~nertz_common.errors.TransientError` (a projection's database) → retried in
  place with backoff, keeping order; a bus outage (fetch or publish) → waited out with backoff, for as
  long as it lasts; :class:`~nertz_common.errors.InvariantViolation` → raised out of the runner: the
  process exits non-zero and a restart resumes from the snapshot.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec
import nats.errors
import nats.js.errors
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from nertz_common import bus, subjects, topology, version
from nertz_common import events as ev
from nertz_common.errors import DomainRefusal, InvariantViolation, PoisonError, TransientError
from nertz_common.metrics import LATENCY_BUCKETS, BusMetrics
from nertz_common.node.component import Call, Node, Output, Pos
from nertz_common.node.log import INPUT_SEQ, ORIGIN_SEQ, Record, ack_fields, log_range, read_log
from nertz_common.node.pull import ConsumerGone, Puller
from nertz_common.node.snapshot import Snapshot, SnapshotStore

log = logging.getLogger("nertz.kernel")

#: errors of a fetch, an ack or a publish that an outage explains (waited out, never fatal)
_BUS_DOWN = bus.OUTAGE
#: what reading or writing the snapshot bucket may raise besides an outage (not fatal: refold / retry)
_SNAPSHOT_STORE: tuple[type[BaseException], ...] = (*_BUS_DOWN, nats.js.errors.Error)
_SNAPSHOT_WRITE: tuple[type[BaseException], ...] = (ValueError, *_SNAPSHOT_STORE)


class KernelMetrics:
    """What every runner reports (``nertz_<service>_kernel_*``), beside the bus metrics."""

    def __init__(self, service: str, registry: CollectorRegistry) -> None:
        p = f"nertz_{service.replace('-', '_')}_kernel"
        self.steps = Counter(f"{p}_steps_total", "Driver inputs handled", ["component"], registry=registry)
        self.join_wait = Histogram(
            f"{p}_join_wait_seconds",
            "Wall time spent waiting for a join's partner, per wait",
            ["component", "partner"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.snapshots = Counter(
            f"{p}_snapshots_total", "Snapshots written, by outcome", ["component", "outcome"], registry=registry
        )
        self.snapshot_bytes = Gauge(
            f"{p}_snapshot_bytes", "Size of the last snapshot", ["component"], registry=registry
        )
        self.lane_resets = Counter(
            f"{p}_lane_resets_total", "Lanes reset to their position, by reason", ["lane", "reason"], registry=registry
        )
        self.skipped = Counter(
            f"{p}_redeliveries_skipped_total",
            "Deliveries already consumed, acked and skipped",
            ["lane"],
            registry=registry,
        )
        self.bus_down = Counter(
            f"{p}_bus_errors_total", "Fetch/publish errors waited out, by operation", ["operation"], registry=registry
        )
        self.degraded = Gauge(f"{p}_degraded", "1 while the bus is unreachable (degraded: bus)", registry=registry)
        self.restart_redo = Gauge(
            f"{p}_restart_tail_events",
            "Own outputs found after the snapshot at the last start",
            ["component"],
            registry=registry,
        )
        self.held = Gauge(f"{p}_held_inputs", "Driver inputs held while a join waits", ["component"], registry=registry)


@dataclass(eq=False)
class Lane:
    """One durable consumer of a runner and what it has consumed."""

    durable: str
    types: frozenset[type[ev.Event]]
    driver: bool
    pos: int = 0
    dseq: int = 0
    sub: Puller | None = None
    buf: deque[Msg] = field(default_factory=deque)
    epoch: int = -1  # the client's reconnect count when the lane was last reset


@dataclass
class Hooks:
    """Service glue around the runner (logging and metrics of outputs; never decisions).

    Attributes
    ----------
    published : callable, optional
        Called with the outputs of each flush once JetStream acknowledged them.
    after_flush : callable, optional
        Called after each flush (e.g. to refresh gauges from the component's state).
    """

    published: Callable[[list[Output]], None] | None = None
    after_flush: Callable[[], None] | None = None


class LaneReader:
    """Fetch, decode and order-check deliveries of lanes (shared by both runners).

    Parameters
    ----------
    js : JetStreamContext
    service : str
        For dead-letter records (``sys.dlq.<service>``).
    publisher : bus.Publisher
    metrics : BusMetrics
    kernel_metrics : KernelMetrics
    stop : asyncio.Event
    stream : str
    fetch_timeout_s : float
        Wait of one fetch, s.
    """

    def __init__(
        self,
        js: JetStreamContext,
        service: str,
        publisher: bus.Publisher,
        metrics: BusMetrics,
        kernel_metrics: KernelMetrics,
        stop: asyncio.Event,
        *,
        stream: str = subjects.STREAM,
        fetch_timeout_s: float = 0.5,
    ) -> None:
        self.js = js
        self.service = service
        self.publisher = publisher
        self.metrics = metrics
        self.km = kernel_metrics
        self.stop = stop
        self.stream = stream
        self.fetch_timeout_s = fetch_timeout_s
        self._backoff = 0.05
        # the labelled children, looked up once: ``labels()`` costs more than the rest of a message's checks
        self._events_in: dict[type[ev.Event], Any] = {}
        # events taken since the counters were last told (a counter's inc, with its lock, costs ~1 µs a
        # message: they are told once a batch, see :meth:`count`)
        self._taken: dict[type[ev.Event], int] = {}
        self._pending: dict[str, Any] = {}

    def _reconnects(self) -> int:
        """How many times the client reconnected (nats-py's ``stats``)."""
        nc = getattr(self.js, "_nc", None)
        return int(nc.stats.get("reconnects", 0)) if nc is not None else 0

    async def reset(self, lane: Lane, reason: str) -> None:
        """Reset ``lane``'s consumer so that the next delivery is the first after ``lane.pos``.

        Raises
        ------
        nats.js.errors.NotFoundError
            If the consumer was not declared (run ``nertz streams apply``).
        InvariantViolation
            If the server cannot reset consumers (nats-server < 2.14).
        """
        while True:
            try:
                await self.js.consumer_info(self.stream, lane.durable)
                try:
                    await self.js.reset_consumer(self.stream, lane.durable, seq=lane.pos + 1)
                except nats.js.errors.BadRequestError as e:
                    raise InvariantViolation(
                        f"expected nats-server >= 2.14 (consumer reset, ADR-60) for lane {lane.durable}: {e}"
                    ) from e
                if lane.sub is not None:
                    with contextlib.suppress(Exception):
                        await lane.sub.stop()
                    lane.sub = None
                puller = Puller(self.js._nc, self.stream, lane.durable)
                await puller.start()
                lane.sub = puller
                break
            except nats.js.errors.NotFoundError:
                raise
            except _BUS_DOWN as e:
                await self._down("reset", e)
                if self.stop.is_set():
                    return
        lane.buf.clear()
        lane.dseq = 0
        lane.epoch = self._reconnects()
        self.km.lane_resets.labels(lane=lane.durable, reason=reason).inc()
        log.info("lane.reset", extra={"lane": lane.durable, "from_seq": lane.pos + 1, "reason": reason})

    async def _unbind(self, lane: Lane) -> None:
        if lane.sub is not None:
            with contextlib.suppress(Exception):
                await lane.sub.stop()
            lane.sub = None

    def count(self) -> None:
        """Add the events taken since the last call to ``events_in_total`` (called at every fetch and close)."""
        if not self._taken:
            return
        taken, self._taken = self._taken, {}
        for t, n in taken.items():
            counted = self._events_in.get(t)
            if counted is None:
                counted = self._events_in[t] = self.metrics.events_in.labels(type=t.__name__)
            counted.inc(n)

    async def fetch(self, lane: Lane, batch: int) -> bool:
        """Fetch up to ``batch`` messages into ``lane.buf``; False when nothing came (or the bus is down)."""
        self.count()
        if lane.sub is None:
            await self.reset(lane, "bind")
            if lane.sub is None:
                return False
        elif lane.epoch != self._reconnects():
            # the connection was lost and made again: acks sent meanwhile may be lost for good (the
            # server would redeliver only after ack_wait, so "caught up" would wait); a reset sets the
            # ack floor to the lane's position and delivers what follows at once
            await self.reset(lane, "reconnect")
            if lane.sub is None:
                return False
        try:
            msgs = await lane.sub.fetch(batch, self.fetch_timeout_s)
        except nats.errors.TimeoutError:
            self._up()
            return False
        except nats.errors.NoRespondersError as e:
            # JetStream down, or the consumer gone: bind again, which waits out the first and raises
            # NotFoundError ("run nertz streams apply") for the second
            await self._down("fetch", e)
            await self._unbind(lane)
            return False
        except _BUS_DOWN as e:
            await self._down("fetch", e)
            return False
        except ConsumerGone:
            await self._unbind(lane)  # bound again (and found missing) on the next fetch
            return False
        self._up()
        lane.buf.extend(msgs)
        if msgs:  # the lag as the batch's last delivery reports it (once per fetch, not per message)
            gauge = self._pending.get(lane.durable)
            if gauge is None:
                gauge = self._pending[lane.durable] = self.metrics.consumer_pending.labels(consumer=lane.durable)
            gauge.set(ack_fields(msgs[-1].reply)[3])
        return bool(msgs)

    async def take(
        self, lane: Lane, msg: Msg, fields: tuple[int, int, int, int] | None = None
    ) -> tuple[ev.AnyEvent, Pos] | None:
        """Check one delivery's place in the log and decode it (``fields``: its :func:`ack_fields`, if
        the caller has them).

        Returns the event and its position, or None when the delivery is not to be handled: already
        consumed (acked now), out of sequence (the lane is reset), or undecodable (dead-lettered).
        """
        seq, dseq, _, _ = fields or ack_fields(msg.reply)
        if dseq != lane.dseq + 1:
            log.warning(
                "lane.delivery_gap",
                extra={"lane": lane.durable, "expected_dseq": lane.dseq + 1, "dseq": dseq,
                       "stream_seq": seq, "pos": lane.pos},
            )  # fmt: skip
            await self.reset(lane, "delivery_gap")
            return None
        lane.dseq = dseq
        if seq <= lane.pos:
            self.km.skipped.labels(lane=lane.durable).inc()
            await self.ack(msg)
            return None
        try:
            event = ev.decode(msg.data)
        except (msgspec.DecodeError, msgspec.ValidationError) as e:
            await self.dead_letter(msg, f"undecodable: {e}")
            lane.pos = seq
            return None
        taken = self._taken
        t = type(event)
        taken[t] = taken.get(t, 0) + 1
        h = msg.headers
        origin = seq
        if h:
            raw = h.get(ORIGIN_SEQ)
            if raw:
                origin = int(raw)
        return event, Pos(seq, origin)

    async def dead_letter(self, msg: Msg, reason: str) -> None:
        """Publish a ``DeadLettered`` record of ``msg`` (with its raw bytes), then terminate it."""
        seq = ack_fields(msg.reply)[0]
        record = bus.dead_letter_record(self.service, reason, msg.subject, seq, msg.data)
        await self.publish([record], None)
        with contextlib.suppress(Exception):
            await msg.term()
        log.error("message.dead_lettered", extra={"stream_seq": seq, "subject": msg.subject, "reason": reason[:300]})
        self.metrics.dead_letters.labels(reason=reason.split(":", 1)[0]).inc()

    async def publish(self, events: list[ev.Event], headers: list[dict[str, str]] | None) -> None:
        """Publish ``events`` in order, waiting out an outage for as long as it lasts.

        Raises
        ------
        bus.PublishError
            Only if a stop is requested while the bus is unreachable (nothing was lost: the inputs
            are not acknowledged and come again after the restart).
        """
        while True:
            try:
                await self.publisher.publish_many(events, headers=headers)
                self._up()
                return
            except bus.PublishError as e:
                if self.stop.is_set():
                    raise
                await self._down("publish", e)

    async def ack(self, msg: Msg) -> None:
        """Acknowledge ``msg`` (fire and forget; a lost ack only causes a redelivery, which is skipped)."""
        try:
            await msg.ack()
        except nats.errors.MsgAlreadyAckdError:
            pass
        except _BUS_DOWN as e:
            log.debug("ack.lost", extra={"error": repr(e)})

    async def _down(self, op: str, e: BaseException) -> None:
        self.km.bus_down.labels(operation=op).inc()
        self.km.degraded.set(1)
        log.warning("bus.unavailable", extra={"operation": op, "error": repr(e)[:200], "retry_in_s": self._backoff})
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stop.wait(), self._backoff)
        self._backoff = min(self._backoff * 2, 5.0)

    def _up(self) -> None:
        if self._backoff != 0.05:
            self.km.degraded.set(0)
            log.info("bus.available")
        self._backoff = 0.05

    async def close(self, lanes: Sequence[Lane]) -> None:
        """Unsubscribe the lanes (what they fetched and did not consume comes again after a restart)."""
        self.count()
        for lane in lanes:
            if lane.sub is not None:
                with contextlib.suppress(Exception):
                    await lane.sub.stop()
                lane.sub = None
            lane.buf.clear()


class ComponentRunner:
    """Run a :class:`~nertz_common.node.component.Node` on its lanes (see the module docstring).

    Parameters
    ----------
    node : Node
    js, publisher, metrics, registry, stop
        From the service's runtime.
    service : str
        Service name (dead letters, metrics).
    lanes : sequence of str
        The component's durable consumers, e.g. ``topology.LANES["executor"]``; exactly one holds
        its driver inputs.
    outputs : sequence of str
        Subject filters of what the component publishes (read back after a restart).
    snapshots : SnapshotStore, optional
        Where snapshots go; None disables them (every start refolds the whole log).
    config_hash : str
        Fingerprint of the decision configuration, recorded in snapshots.
    batch : int
        Messages per fetch.
    snapshot_every : int
        Take a snapshot after this many driver inputs ...
    snapshot_interval_s : float
        ... or this many seconds with at least one input, whichever comes first (and at stop).
    hooks : Hooks, optional
    answer : callable, optional
        ``async answer(call) -> answer``: asks the outside party a step's :class:`Call` (a model, an
        exchange). Calls of different scopes run concurrently; an answer recorded in the component's
        own outputs (after a restart) is served from there and the party is not asked again.
    max_held : int
        Stop reading driver inputs while the node holds this many for waiting steps (backpressure:
        the partner lanes and the answers are still read, so the waits can be met).
    quiesce_max_s : float
        Longest pause of the driver inputs to let a busy node come between steps for a due snapshot, s.

    Raises
    ------
    BuildError
        If no lane holds the driver inputs, some partner type is on no lane, or the component asks
        calls and no ``answer`` is given.
    """

    def __init__(
        self,
        node: Node,
        *,
        js: JetStreamContext,
        publisher: bus.Publisher,
        metrics: BusMetrics,
        registry: CollectorRegistry,
        stop: asyncio.Event,
        service: str,
        lanes: Sequence[str],
        outputs: Sequence[str],
        snapshots: SnapshotStore | None = None,
        config_hash: str = "",
        batch: int = 512,
        snapshot_every: int = 20_000,
        snapshot_interval_s: float = 60.0,
        hooks: Hooks | None = None,
        stream: str = subjects.STREAM,
        kernel_metrics: KernelMetrics | None = None,
        answer: Callable[[Call], Awaitable[Any]] | None = None,
        max_held: int = 20_000,
        quiesce_max_s: float = 5.0,
    ) -> None:
        from nertz_common.node.component import BuildError

        self.node = node
        self.answer = answer
        self.max_held = max_held
        self.js = js
        self.publisher = publisher
        self.stop = stop
        self.service = service
        self.stream = stream
        self.outputs = tuple(outputs)
        self.store = snapshots
        self.config_hash = config_hash
        self.batch = batch
        self.snapshot_every = snapshot_every
        self.snapshot_interval_s = snapshot_interval_s
        self.hooks = hooks or Hooks()
        self.km = kernel_metrics or KernelMetrics(service, registry)
        self._steps_counted = self.km.steps.labels(component=node.name)  # looked up once, told at each flush
        self._steps_told = 0  # steps already added to it (those of this process: a restore starts it)
        self.reader = LaneReader(js, service, publisher, metrics, self.km, stop, stream=stream)
        self.lanes = [Lane(d, topology.types_of(topology.spec(d).filter_subjects) & node.inputs, False) for d in lanes]
        drivers = [ln for ln in self.lanes if ln.types & node.drivers]
        if len(drivers) != 1 or not node.drivers <= drivers[0].types:
            raise BuildError(
                f"{node.name}: expected one lane with every driver input "
                f"{sorted(t.__name__ for t in node.drivers)}, lanes {[ln.durable for ln in self.lanes]} give "
                f"{[sorted(t.__name__ for t in ln.types) for ln in self.lanes]}"
            )
        self.driver = drivers[0]
        self.driver.driver = True
        self.lane_of: dict[type[ev.Event], Lane] = {}
        for ln in self.lanes:
            for t in ln.types:
                self.lane_of.setdefault(t, ln)
        missing = node.partners - set(self.lane_of)
        if missing:
            raise BuildError(f"{node.name}: no lane delivers {sorted(t.__name__ for t in missing)}")
        self.steps = 0
        self.out_seq = 0
        self._out: list[Output] = []
        # per lane, the last message consumed and not yet acked: with AckPolicy.ALL its ack acks every
        # one delivered before it, so a flush costs one ack per lane, not one per message
        self._acks: dict[str, Msg] = {}
        self._driver_acks: deque[tuple[int, Msg]] = deque()  # acked once the node is done with them
        self._known: dict[str, Record] = {}
        self._recorded: dict[str, Any] = {}
        self._redo: int | None = None
        self._config_changed = False
        self._calls: dict[str, asyncio.Task[Any]] = {}
        self._answers: deque[tuple[str, Any]] = deque()
        self._woken = asyncio.Event()
        self._fetches: dict[str, asyncio.Task[bool]] = {}
        self._quiescing: float | None = None  # since when driver inputs are held back for a snapshot
        self._partner_subjects: dict[str, bool] = {}
        self._held_warned = float("-inf")
        self._driver_idle = False  # the driver lane's last fetch came back empty
        self.held_warn_s = 30.0
        self.quiesce_max_s = quiesce_max_s
        self.fetch_wait_s = 1.0
        self._snap_steps = 0
        self._snap_wall = time.monotonic()
        self.started = asyncio.Event()
        self.restored_from: Snapshot | None = None

    # --- start ------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Restore the latest snapshot, read back the outputs after it, reset every lane to it.

        Raises
        ------
        InvariantViolation
            If the stream no longer holds the messages after the snapshot (or, without a snapshot,
            after the stream's start), so the state cannot be rebuilt.
        """
        snap = await self.store.latest(self.node.name) if self.store is not None else None
        if snap is not None:
            try:
                self.node.set_state(snap.node)
            except (msgspec.ValidationError, msgspec.DecodeError) as e:
                # a state this code cannot read (its shape changed): rebuild from the log instead
                log.warning("snapshot.unreadable", extra={"component": self.node.name, "error": str(e)[:300]})
                snap = None
        if snap is not None:
            self._config_changed = snap.code_version != version.VERSION
            if snap.config_hash and self.config_hash and snap.config_hash != self.config_hash:
                self._config_changed = True
                log.warning(
                    "snapshot.other_configuration",
                    extra={"component": self.node.name, "snapshot": snap.config_hash, "now": self.config_hash},
                )
            for ln in self.lanes:
                ln.pos = snap.positions.get(ln.durable, 0)
            self.out_seq = snap.out_seq
            self.steps = self._snap_steps = self._steps_told = snap.steps
            self.restored_from = snap
        rng = await log_range(self.js, self.stream)
        if rng.last_seq >= rng.first_seq:
            for ln in self.lanes:
                if rng.first_seq > ln.pos + 1:
                    covered = f"a snapshot up to {ln.pos}" if snap is not None else "no snapshot"
                    raise InvariantViolation(
                        f"{self.node.name}: the log starts at {rng.first_seq} but lane {ln.durable} needs "
                        f"everything after {ln.pos} ({covered}): the stream's retention dropped messages this "
                        f"component never folded, its state cannot be rebuilt"
                    )
        tail: list[Record] = []
        if rng.last_seq > self.out_seq:
            tail = await read_log(self.js, from_seq=self.out_seq + 1, filters=self.outputs, stream=self.stream)
        self._known = {r.event.event_id: r for r in tail}
        component = self.node.component
        self._recorded = {key: a for r in tail for key, a in component.recorded(r.event)}
        self._redo = max((r.input_seq or 0 for r in tail), default=None) if tail else None
        self.km.restart_redo.labels(component=self.node.name).set(len(tail))
        for ln in self.lanes:
            await self.reader.reset(ln, "start")
        if self._redo is not None:
            log.info(
                "restart.redo_step",
                extra={"component": self.node.name, "stream_seq": self._redo, "stored_outputs": len(tail)},
            )
        log.info(
            "component.started",
            extra={
                "component": self.node.name,
                "snapshot_steps": snap.steps if snap else 0,
                "positions": {ln.durable: ln.pos for ln in self.lanes},
                "out_seq": self.out_seq,
                "tail_outputs": len(tail),
                "redo_step": self._redo,
            },
        )
        self.started.set()

    # --- the loop ---------------------------------------------------------------------------------

    async def run(self) -> None:
        """Start, then handle inputs until the stop event; flush and snapshot at the end.

        One loop: answers that came back are handed to the node first, then partners, then driver
        inputs (unless the node holds ``max_held`` of them); when nothing is left, outputs are
        published and inputs acknowledged, a snapshot is taken if due, and the loop waits for the
        first of the fetches it needs (the driver lane, the partner lanes some step waits for) or an
        answer.

        Raises
        ------
        InvariantViolation
            A broken invariant in the component or the log (the process must exit non-zero).
        """
        await self.start()
        node = self.node
        try:
            while not self.stop.is_set():
                if await self._step_once():
                    continue
                await self._flush()
                await self._maybe_snapshot()
                await self._wait_for_input()
        finally:
            for t in [*self._fetches.values(), *self._calls.values()]:
                t.cancel()
            try:
                with contextlib.suppress(bus.PublishError):
                    await self._flush()  # a step in progress comes again after a restart (snapshot + tail)
                if node.idle and self.stop.is_set():
                    await self._maybe_snapshot(force=True)
            finally:
                await self.reader.close(self.lanes)

    async def _step_once(self) -> bool:
        """Hand the node one answer or one delivery; False when there is nothing it can take now."""
        node = self.node
        if self._answers:
            key, answer = self._answers.popleft()
            for o in node.answer(key, answer):
                self._emit(o)
            self._start_calls()
            return True
        for lane in self.lanes:
            if lane.buf and not lane.driver:
                await self._take(lane, lane.buf.popleft())
                self._start_calls()
                return True
        lane = self.driver
        if lane.buf and (
            (node.held < self.max_held and self._quiescing is None) or self._is_partner(lane.buf[0].subject)
        ):
            # held back (backpressure, a snapshot due) the driver lane still gives the partners at its
            # head: a lane that carries both (the validator's intents) must not starve a wait
            await self._take(lane, lane.buf.popleft())
            self._start_calls()
            return True
        return False

    def _is_partner(self, subject: str) -> bool:
        hit = self._partner_subjects.get(subject)
        if hit is None:
            domain, _, rest = subject.partition(".")
            kinds = topology.types_of([f"{domain}.{rest.partition('.')[0]}.>"])
            hit = self._partner_subjects[subject] = bool(kinds) and kinds <= self.node.partners
        return hit

    def _start_calls(self) -> None:
        """Start the calls the node's steps asked: from the record when it has them, else the party."""
        node = self.node
        if not node.asked:
            return
        asked, node.asked = node.asked, []
        for call, _ in asked:
            if call.key in self._recorded:
                self._answers.append((call.key, self._recorded.pop(call.key)))
                log.info("call.served_recorded", extra={"component": node.name, "key": call.key})
                continue
            if self.answer is None:
                raise InvariantViolation(f"{node.name}: a step asked {type(call).__name__} and nobody answers calls")
            self._calls[call.key] = asyncio.create_task(self._call(call), name=f"call-{call.key}")

    async def _call(self, call: Call) -> None:
        assert self.answer is not None
        try:
            answer = await self.answer(call)
        finally:
            self._calls.pop(call.key, None)
        self._answers.append((call.key, answer))
        self._woken.set()

    async def _wait_for_input(self) -> None:
        """Wait for the first of: a fetch the node needs (driver lane, wanted partner lanes), an answer."""
        node = self.node
        wanted = node.wanted()
        for lane in self.lanes:
            if lane.buf or lane.durable in self._fetches:
                continue
            open_ = (node.held < self.max_held and self._quiescing is None) or bool(lane.types & wanted)
            # a partner lane is read when a step waits for it, or while the driver lane has nothing new:
            # then whatever it holds (a stray, a malformed message) is buffered or dead-lettered, not
            # left pending for ever
            if open_ if lane.driver else (bool(lane.types & wanted) or self._driver_idle):
                self._fetches[lane.durable] = asyncio.create_task(self._fetch(lane, wanted))
        if self._answers:
            return
        if node.held >= self.max_held:
            self._held_back()
        self._woken.clear()
        waits: list[asyncio.Future[Any]] = [*self._fetches.values()]
        woken = asyncio.ensure_future(self._woken.wait())
        stopped = asyncio.ensure_future(self.stop.wait())
        try:
            await asyncio.wait([*waits, woken, stopped], return_when=asyncio.FIRST_COMPLETED, timeout=self.fetch_wait_s)
        finally:
            woken.cancel()
            stopped.cancel()
        for d, t in list(self._fetches.items()):
            if t.done():
                del self._fetches[d]
                t.result()  # re-raise what a fetch raised (a missing consumer)

    def _held_back(self) -> None:
        """Say, every ``held_warn_s``, that the driver lane is held back and which partner it waits for.

        Not an error by itself (the partner's producer may be restarting, or a model call slow): the
        log line and ``nertz_kernel_held_inputs`` tell an operator which join does not move.
        """
        now = time.monotonic()
        if now - self._held_warned >= self.held_warn_s:
            self._held_warned = now
            log.warning(
                "join.held_back",
                extra={"component": self.node.name, "held": self.node.held, "why": self.node.why()},
            )

    async def _fetch(self, lane: Lane, wanted: frozenset[type[ev.Event]]) -> bool:
        t0 = time.perf_counter()
        got = await self.reader.fetch(lane, self.batch)
        if lane.driver:
            self._driver_idle = not got
        else:
            for partner in lane.types & wanted:
                self.km.join_wait.labels(component=self.node.name, partner=partner.__name__).observe(
                    time.perf_counter() - t0
                )
        return got

    async def _take(self, lane: Lane, msg: Msg) -> None:
        got = await self.reader.take(lane, msg)
        if got is None:
            return
        event, pos = got
        node = self.node
        try:
            outs = node.feed(event, pos)
        except DomainRefusal as r:
            outs = [(r.event, node.step)]
        except (PoisonError, msgspec.ValidationError, ValueError) as e:
            lane.pos = pos.seq
            await self.reader.dead_letter(msg, f"invalid: {e}")
            return
        lane.pos = pos.seq
        if lane.driver:
            # the driver lane's messages are acked in log order once the node is done with them (a
            # partner on it too: acking it would ack the held drivers before it)
            self._driver_acks.append((pos.seq, msg))
        else:
            self._acks[lane.durable] = msg
        if lane.driver and type(event) in node.drivers:
            self.steps += 1
        for o in outs:
            self._emit(o)

    def _emit(self, out: Output) -> None:
        redo = self._redo
        if redo is not None:
            e, p = out
            rec = self._known.pop(e.event_id, None)
            if rec is not None:
                if rec.event != e:
                    raise self._diverged(e, p, rec)
                self._redo_done()
                return  # stored before the restart
            if p.seq < redo and self._config_changed:
                raise self._diverged(e, p, None)
            self._redo_done()
        self._out.append(out)

    def _redo_done(self) -> None:
        """After a restart: the re-derivation is over once every stored output was met, or the node
        has gone past the last stored step with nothing in progress."""
        node = self.node
        if not self._known or (node.idle and node.step.seq >= (self._redo or 0)):
            self._redo = None
            self._known = {}

    def _diverged(self, e: ev.Event, p: Pos, rec: Record | None) -> InvariantViolation:
        what = "differs from the stored event" if rec is not None else "is not on the log"
        return InvariantViolation(
            f"{self.node.name}: after the restart, step {p.seq} derives {type(e).__name__} {e.event_id}, which "
            f"{what}; the configuration or the code changed since the log was written. Take a snapshot "
            f"with the old version (graceful stop), or replay to see the difference (nertz replay)"
        )

    async def _flush(self) -> None:
        out = self._out
        if out:
            self._out = []
            events = [e for e, _ in out]
            headers = [{INPUT_SEQ: str(p.seq), ORIGIN_SEQ: str(p.origin)} for _, p in out]
            await self.reader.publish(events, headers)
            self.out_seq = max(self.out_seq, self.publisher.last_seq)
            if self.hooks.published is not None:
                self.hooks.published(out)
        da = self._driver_acks
        if da:
            done = self.node.pending_from()
            while da and da[0][0] < done:
                self._acks[self.driver.durable] = da.popleft()[1]
        if self._acks:
            acks, self._acks = self._acks, {}
            for m in acks.values():
                await self.reader.ack(m)
        self.km.held.labels(component=self.node.name).set(self.node.held)
        if self.steps != self._steps_told:
            self._steps_counted.inc(self.steps - self._steps_told)
            self._steps_told = self.steps
        if self.hooks.after_flush is not None:
            self.hooks.after_flush()

    def _snapshot_due(self) -> bool:
        new = self.steps - self._snap_steps
        if self.store is None or new <= 0:
            return False
        return new >= self.snapshot_every or time.monotonic() - self._snap_wall >= self.snapshot_interval_s

    async def _maybe_snapshot(self, force: bool = False) -> None:
        """Take a snapshot when one is due and the node is between steps.

        A node whose steps overlap (scoped waits) may never be between steps while driver inputs keep
        coming, so when a snapshot is due and the node is busy, the runner *quiesces*: it stops taking
        driver inputs (partners and answers still come) until the node is idle, for at most
        ``quiesce_max_s``; then it takes the snapshot, or gives up until the next interval.
        """
        if self._redo is not None:
            self._redo_done()
        if self.store is None:
            return
        due = force or self._snapshot_due()
        if not due:
            self._quiescing = None
            return
        if not self.node.idle or self._out or self._redo is not None or self._answers:
            if force:
                return
            now = time.monotonic()
            if self._quiescing is None:
                self._quiescing = now
            elif now - self._quiescing > self.quiesce_max_s:
                log.info("snapshot.postponed", extra={"component": self.node.name, "waits": len(self.node.waits)})
                self._quiescing = None
                self._snap_wall = now  # try again at the next interval
            return
        self._quiescing = None
        await self._advance_idle_lanes()
        snap = self.snapshot()
        try:
            await self.store.put(snap)
        except _SNAPSHOT_WRITE as e:
            self.km.snapshots.labels(component=self.node.name, outcome="error").inc()
            log.warning("snapshot.failed", extra={"component": self.node.name, "error": repr(e)[:300]})
            self._snap_wall = time.monotonic()  # retry at the next interval, not at every fetch
            return
        self._snap_steps = self.steps
        self._snap_wall = time.monotonic()
        self.km.snapshots.labels(component=self.node.name, outcome="ok").inc()
        log.info(
            "snapshot.written",
            extra={"component": self.node.name, "steps": self.steps, "positions": snap.positions},
        )

    async def _advance_idle_lanes(self) -> None:
        """Move a lane's position to the stream's end when nothing is left for it (a snapshot then covers
        the other producers' messages after its last input too, so retention may drop them)."""
        try:
            last = (await self.js.stream_info(self.stream)).state.last_seq
            for ln in self.lanes:
                if ln.buf or ln.pos >= last:
                    continue
                info = await self.js.consumer_info(self.stream, ln.durable)
                if info.num_pending == 0 and info.delivered.stream_seq <= ln.pos:
                    ln.pos = last
        except _SNAPSHOT_STORE as e:
            log.debug("snapshot.lanes_not_advanced", extra={"error": repr(e)})

    def snapshot(self) -> Snapshot:
        """Return the node's snapshot now (it must be between steps, every output published).

        Raises
        ------
        InvariantViolation
            If the node is mid-step.
        """
        return Snapshot(
            component=self.node.name,
            positions={ln.durable: ln.pos for ln in self.lanes},
            out_seq=max(self.out_seq, self.publisher.last_seq),
            origin=self.node.step.origin,
            steps=self.steps,
            node=self.node.get_state(),
            config_hash=self.config_hash,
            code_version=version.VERSION,
            taken_ns=time.time_ns(),
        )


Sink = Callable[[list[bus.Delivery]], Awaitable[None]]


class ProjectionRunner:
    """Run a projection (effects in a database that tracks its own position) on one lane.

    The projection keeps its position with its view (the eventsourcing tracking row); on start the lane
    is reset to the position after it. Batches go to ``sink`` whole; a :class:`TransientError` retries
    the batch in place with backoff (keeping log order), extending the messages' ack deadline.

    Parameters
    ----------
    lane : str
        The durable consumer (``projector``).
    position : callable
        Returns the highest stream sequence the projection has committed.
    sink : callable
        Projects one batch of deliveries (atomically with its tracking row).
    batch : int
        Messages per fetch (one transaction each).
    """

    def __init__(
        self,
        *,
        js: JetStreamContext,
        publisher: bus.Publisher,
        metrics: BusMetrics,
        registry: CollectorRegistry,
        stop: asyncio.Event,
        service: str,
        lane: str,
        position: Callable[[], Awaitable[int]],
        sink: Sink,
        batch: int = 1000,
        backoff_s: tuple[float, ...] = (0.1, 0.5, 1.0, 2.0, 5.0),
        stream: str = subjects.STREAM,
        kernel_metrics: KernelMetrics | None = None,
    ) -> None:
        self.js = js
        self.stop = stop
        self.metrics = metrics
        self.km = kernel_metrics or KernelMetrics(service, registry)
        self.reader = LaneReader(js, service, publisher, metrics, self.km, stop, stream=stream)
        self.lane = Lane(lane, frozenset(ev.ALL_EVENT_TYPES), True)
        self._position = position
        self._sink = sink
        self.batch = batch
        self._backoff_s = backoff_s
        self.started = asyncio.Event()

    async def run(self) -> None:
        """Project until the stop event."""
        self.lane.pos = await self._retry(self._position)
        await self.reader.reset(self.lane, "start")
        self.started.set()
        log.info("projection.started", extra={"lane": self.lane.durable, "pos": self.lane.pos})
        try:
            await self._loop()
        finally:
            await self.reader.close([self.lane])

    async def _loop(self) -> None:
        lane = self.lane
        while not self.stop.is_set():
            if not lane.buf and not await self.reader.fetch(lane, self.batch):
                continue
            batch: list[bus.Delivery] = []
            msgs: list[Msg] = []
            while lane.buf:
                m = lane.buf.popleft()
                fields = ack_fields(m.reply)
                got = await self.reader.take(lane, m, fields)
                if got is None:
                    if lane.dseq == 0:  # the lane was reset: what was fetched comes again
                        batch, msgs = [], []
                        break
                    continue
                event, pos = got
                batch.append(bus.Delivery(event, m, m.subject, pos.seq, fields[2], dict(m.headers or {})))
                msgs.append(m)
                lane.pos = pos.seq
            if not batch:
                continue
            if not await self._apply(batch):
                return
            await self.reader.ack(msgs[-1])  # AckPolicy.ALL: the last acks the batch

    async def _apply(self, batch: list[bus.Delivery]) -> bool:
        attempt = 0
        while True:
            t0 = time.perf_counter()
            try:
                await self._sink(batch)
                self.metrics.handler_seconds.labels(consumer=self.lane.durable).observe(time.perf_counter() - t0)
                return True
            except TransientError as e:
                delay = self._backoff_s[min(attempt, len(self._backoff_s) - 1)]
                attempt += 1
                self.metrics.naks.labels(consumer=self.lane.durable).inc()
                log.warning("batch.retry", extra={"delay_s": delay, "error": repr(e)[:300], "size": len(batch)})
                for d in batch:
                    with contextlib.suppress(*_BUS_DOWN, nats.errors.Error):
                        await d.msg.in_progress()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.stop.wait(), delay)
                if self.stop.is_set():
                    return False

    async def _retry(self, fn: Callable[[], Awaitable[Any]]) -> Any:
        attempt = 0
        while True:
            try:
                return await fn()
            except TransientError as e:
                delay = self._backoff_s[min(attempt, len(self._backoff_s) - 1)]
                attempt += 1
                log.warning("projection.position_unavailable", extra={"delay_s": delay, "error": repr(e)[:300]})
                await asyncio.sleep(delay)
