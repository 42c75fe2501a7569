"""The live feed: Bybit V5 public linear market data, through pybit, onto the log.

The handler glue between pybit (:mod:`nertz_ingest.adapters.bybit_ws`, :mod:`nertz_ingest.adapters.bybit_rest`),
the core and the bus. Frames go through **the same parser as replay** (:func:`nertz_ingest.replay.make_parser`),
with their receive time as ``ts_init``, so a recording of what the live feed received replays to the very
same events.

Start-up, in order:

1. instruments-info for every symbol → one ``InstrumentSpec`` each (an unknown symbol stops the feed:
   :class:`LiveError`);
2. the WebSocket connects and subscribes ``orderbook.<depth>``, ``publicTrade``, ``kline.<interval>`` and
   ``tickers`` per symbol (one request per topic); frames wait in a queue;
3. kline backfill: ``backfill_bars`` closed bars per symbol and interval, paged backwards, published as
   closed ``Bar``\\ s in time order, before any live frame, each marked ``warmup`` (they build the
   signal's indicators and state and never produce an intent: a month-old signal is not a trade);
4. then frames flow: queue → parser → ``Publisher.publish_many`` (log order = receive order).

The universe (``NERTZ_UNIVERSE__ENABLED``, :class:`~nertz_ingest.universe.UniverseHunter`): before step 1
the hunter chooses the symbols from Bybit's tickers, and again every ``refresh_s``. A change goes on
the log as ``UniverseChanged`` through the pump, in log order with the frames; from there on a removed
symbol's frames are dropped and its topics unsubscribed (pybit no longer replays them); an added
symbol gets steps 1 and 3 (its ``InstrumentSpec``, its backfill marked ``warmup``), then its topics are
subscribed on the open connection. The other symbols' topics are not touched: no reconnect, no resync.

Integrity (ARCHITECTURE.md §3 market-ingest):

- a ``FeedGap`` from the parser (``u`` gap, crossed or locked book, a rejected book frame) → the book's
  topic is resubscribed (``unsubscribe`` + ``subscribe``), so the server sends a fresh snapshot, which
  the parser answers with ``FeedResynced``; no snapshot within ``resync_timeout_s`` → resubscribe again
  (twice), then a new connection;
- no frame of a symbol's book for ``stale_s`` → ``FeedStale``, the book is marked for resync and
  resubscribed; still nothing after as long again → a new connection;
- a lost connection: every live book emits ``FeedGap`` ("connection lost"), pybit reconnects and
  replays the subscriptions, and the fresh snapshots resync the books. If pybit gives up, a new
  connection is made with exponential backoff and jitter, until it works or the feed is stopped;
- a closed kline that skips bars of its series (frames were lost) → the skipped closed bars are fetched
  by REST and published before it, so each bar series stays complete and in time order (these bars,
  like the backfill, are not in a recording of the frames, and are marked ``warmup``: they arrive late);
- bad frames never stop the feed: each is counted by reason, logged and dead-lettered in log order,
  exactly as in replay;
- every bar, from REST or the WebSocket, passes the series guard (:mod:`nertz_ingest.core.series`),
  started from the log's last closed bar of each symbol: a bar back in time or a second, different bar for
  one interval is dead-lettered (``out_of_order``, ``conflicting_bar``), an identical repeat dropped;
- a bus outage is waited out however long it lasts (:class:`~nertz_ingest.adapters.durable.DurablePublisher`):
  the pump waits, frames queue up to ``queue_max`` and beyond it are dropped, which resyncs the books
  and refills the skipped bars by REST once the bus is back.

Wall-clock reads here are infrastructure (receive times, timeouts, staleness); the core never reads a clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
import time
from collections import Counter
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field

import msgspec
from nats.js import JetStreamContext
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, wait_exponential_jitter

from nertz_common import events as ev
from nertz_common.bus import Publisher
from nertz_common.ids import derive_id
from nertz_ingest.adapters.bybit_rest import MAX_PAGE, BybitRest, RestError
from nertz_ingest.adapters.bybit_ws import ConnStatus, Item, PublicFeed
from nertz_ingest.adapters.durable import TRANSIENT, DurablePublisher
from nertz_ingest.adapters.log_position import last_closed_bars
from nertz_ingest.core.bybit import KLINE_INTERVAL_MS
from nertz_ingest.core.rejection import BadInput, Rejected
from nertz_ingest.core.rest import instrument_spec, kline_bars
from nertz_ingest.core.series import BarGuard
from nertz_ingest.metrics import IngestMetrics
from nertz_ingest.replay import SERVICE, dead_letter, make_parser, screen
from nertz_ingest.settings import IngestConfig
from nertz_ingest.universe import UniverseHunter

log = logging.getLogger("nertz.ingest.live")

FrameTap = Callable[[str, int], None]
"""Called with every received frame and its receive time (ns) before it is parsed (the recorder)."""

_RESYNC_TRIES = 3


class LiveError(Exception):
    """An operator error found at start-up (e.g. a symbol Bybit does not list): stop, say what."""


#: why a symbol the universe adds cannot be served yet (tried again at the next refresh)
_ADD_FAILED: tuple[type[BaseException], ...] = (LiveError, RestError, *TRANSIENT)


class _Head(msgspec.Struct):
    topic: str = ""
    op: str = ""


@dataclass(eq=False)
class _Step:
    """A universe step for the pump: publish ``events`` where it sits among the frames, then stop
    serving ``remove`` and start serving ``add``; ``done`` is set once it is all through."""

    events: list[ev.Event]
    done: asyncio.Future[None]
    remove: list[str] = field(default_factory=list)
    add: list[str] = field(default_factory=list)


@dataclass
class LiveStats:
    """What the live feed did.

    Attributes
    ----------
    frames : int
        Frames received (data, acks, pongs, garbage).
    events : Counter
        Events published, by type name (``DeadLettered`` included).
    stored, duplicates : int
        Events the stream stored, and dropped as duplicates (known bars, never sent, included).
    rejected : Counter
        Rejected frames, REST rows and bars, by reason.
    backfill_bars, backfill_pages : int
        Closed bars published from REST, and kline pages fetched.
    gaps, resyncs, stale, resubscribes, reconnects, dropped, filled : int
        Book gaps, resyncs, stale feeds, topic resubscribes, reconnects (pybit's and ours), frames
        dropped on a full queue, closed bars the WebSocket skipped and REST filled in.
    bus_outages : int
        Bus outages waited out; ``bus_outage_s`` their total length, s.
    """

    frames: int = 0
    events: Counter[str] = field(default_factory=Counter)
    stored: int = 0
    duplicates: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    backfill_bars: int = 0
    backfill_pages: int = 0
    gaps: int = 0
    resyncs: int = 0
    stale: int = 0
    resubscribes: int = 0
    reconnects: int = 0
    dropped: int = 0
    filled: int = 0
    bus_outages: int = 0
    bus_outage_s: float = 0.0

    def summary(self) -> str:
        """One line for the operator."""
        by_type = ", ".join(f"{k}={v}" for k, v in sorted(self.events.items())) or "none"
        rejected = ", ".join(f"{k}={v}" for k, v in sorted(self.rejected.items())) or "none"
        return (
            f"live feed stopped: {self.frames} frames; {sum(self.events.values())} events ({by_type}); "
            f"stored {self.stored}, duplicates {self.duplicates}; backfill {self.backfill_bars} bars in "
            f"{self.backfill_pages} pages; rejected {sum(self.rejected.values())} ({rejected}); gaps {self.gaps}, "
            f"resyncs {self.resyncs}, stale {self.stale}, resubscribes {self.resubscribes}, "
            f"reconnects {self.reconnects}, dropped {self.dropped}, bars filled {self.filled}; "
            f"bus outages {self.bus_outages} ({self.bus_outage_s:.1f} s)"
        )


def live_topics(symbols: Sequence[str], depth: int, intervals: Sequence[str]) -> list[str]:
    """Return the Bybit topics of the live feed, per symbol: book, trades, klines, ticker."""
    out = []
    for s in symbols:
        out.append(f"orderbook.{depth}.{s}")
        out.append(f"publicTrade.{s}")
        out.extend(f"kline.{i}.{s}" for i in intervals)
        out.append(f"tickers.{s}")
    return out


class LiveFeed:
    """Bybit's live public linear feed onto the log.

    Parameters
    ----------
    publisher : Publisher
        Where events go (``Nats-Msg-Id`` = ``event_id``).
    symbols : sequence of str
        Bybit linear symbols, e.g. ``["BTCUSDT", "ETHUSDT"]``.
    config : IngestConfig
        Parser settings (book top N, conflation) and ``config.live`` (topics, timeouts, backfill...).
    ws_url : str
        WebSocket base URL (``wss://stream.bybit.com`` or ``ws://127.0.0.1:PORT``).
    rest : BybitRest
        The REST client (instruments-info, klines).
    testnet : bool
        pybit's ``testnet`` flag (only matters for Bybit's own hosts).
    metrics : IngestMetrics, optional
    tap : callable(raw, recv_ns), optional
        Sees every frame before it is parsed (the recorder). Its failures are logged, never fatal.
    stop : asyncio.Event, optional
        When set, the feed closes the socket, publishes what it holds and returns.
    logged_until : mapping of str to int, optional
        Per symbol, the ``ts_event`` (UNIX ns) of the last closed bar already on the log: the backfill
        publishes only bars closing after it, so a restart adds nothing the log has (the server's
        duplicate window is only minutes long). Default: the ``ts_event`` of each ``logged`` bar.
    logged : mapping of str to Bar, optional
        Per symbol, the last closed bar on the log
        (:func:`~nertz_ingest.adapters.log_position.last_closed_bars`): no bar series may go back
        before it. Not the last bar, which may be an update of an open bar whose predecessor the socket
        missed: the backfill then fills that one in.
    js : JetStreamContext, optional
        Lets a publish retried after a bus outage skip what reached the log; with it, a symbol the
        universe adds later resumes from its last bar on the log.
    universe : UniverseHunter, optional
        Choose the symbols from Bybit's tickers at start and every ``refresh_s`` (``symbols`` is then
        the universe before the first refresh, e.g. the log's last ``UniverseChanged``).
    """

    def __init__(
        self,
        publisher: Publisher,
        symbols: Sequence[str],
        *,
        config: IngestConfig,
        ws_url: str,
        rest: BybitRest,
        testnet: bool = False,
        metrics: IngestMetrics | None = None,
        tap: FrameTap | None = None,
        stop: asyncio.Event | None = None,
        logged_until: Mapping[str, int] | None = None,
        logged: Mapping[str, ev.Bar] | None = None,
        js: JetStreamContext | None = None,
        universe: UniverseHunter | None = None,
    ) -> None:
        if not symbols:
            raise ValueError("expected at least one symbol")
        self.publisher = publisher
        self.symbols = list(dict.fromkeys(symbols))
        self.config = config
        self.live = config.live
        self.rest = rest
        self.metrics = metrics
        self.tap = tap
        self.stop = stop or asyncio.Event()
        if logged_until is None:
            logged_until = {symbol: bar.ts_event for symbol, bar in (logged or {}).items()}
        self.logged_until = dict(logged_until)
        self.guard = BarGuard(logged)
        self.out = DurablePublisher(publisher, SERVICE, js=js, metrics=metrics, stop=self.stop)
        self.js = js
        self.hunter = universe
        self._resumed = set(self.symbols)  # symbols whose log position the caller gave (logged, logged_until)
        self.stats = LiveStats()
        self.parser = make_parser(config, self.symbols)
        self.topics = live_topics(self.symbols, self.live.depth, self.live.intervals)
        self.book_topics = [t for t in self.topics if t.startswith("orderbook.")]
        self.feed = PublicFeed(
            self.topics,
            self._put,
            url=ws_url,
            testnet=testnet,
            ping_interval_s=self.live.ping_interval_s,
            ping_timeout_s=self.live.ping_timeout_s,
            retries=self.live.ws_retries,
        )
        self._queue: asyncio.Queue[Item | _Step | None] = asyncio.Queue(maxsize=self.live.queue_max)
        self._head = msgspec.json.Decoder(_Head)
        self._logged: Counter[str] = Counter()
        self._last_frame: dict[str, float] = {}  # symbol -> monotonic time of its last data frame
        self._last_book: dict[str, float] = {}  # book topic -> monotonic time of its last frame
        self._stale_since: dict[str, float] = {}  # book topic -> when its FeedStale was decided
        self._pending: dict[str, tuple[float, int]] = {}  # book topic -> (resubscribed at, tries)
        self._want: dict[str, str] = {}  # book topic -> why it must be resubscribed
        self._last_closed: dict[tuple[str, str], int] = {  # (symbol, interval) -> open time of its last closed bar, ns
            (b.symbol, b.interval): b.open_time_ns for b in (logged or {}).values() if b.closed
        }
        self._overflow = False
        self._gave_up = False
        self._dead_since: float | None = None
        self._started = time.monotonic()
        self._tap_failed = False

    # --- run --------------------------------------------------------------------------------------

    async def run(self) -> LiveStats:
        """Start up (instruments, connect, backfill), then feed until :attr:`stop` is set.

        Returns
        -------
        LiveStats

        Raises
        ------
        LiveError
            If a symbol is unknown to Bybit.
        RestError
            If instruments-info or the backfill still fails after every retry.
        PublishError
            If a stop is requested while the bus is away (a restart resumes from the log's end), or an
            ack names another stream.
        """
        try:
            if self.hunter is not None:
                await self._publish(await self._first_universe(self.hunter))
            await self._publish(await self._instruments(self.symbols))
            if not await self._connect_first():
                return self.stats
            await self._publish(await self._backfill(self.symbols))
            self._reset_watch()
            pump = asyncio.create_task(self._pump(), name="live-pump")
            health = asyncio.create_task(self._health(), name="live-health")
            stopper = asyncio.create_task(self.stop.wait())
            tasks = {pump, health, stopper}
            if self.hunter is not None:
                tasks.add(asyncio.create_task(self._universe(self.hunter), name="live-universe"))
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for t in tasks - {pump, stopper}:
                t.cancel()
            await self.feed.close()
            if pump not in done:
                await self._queue.put(None)  # after every frame already queued
                await pump
            stopper.cancel()
            for t in done:
                if t is not stopper and t.exception() is not None:
                    raise t.exception()  # type: ignore[misc]
            for t in tasks - {pump, stopper}:
                with contextlib.suppress(asyncio.CancelledError):
                    await t
        finally:
            await self.feed.close()
        log.info("live.stopped", extra={"summary": self.stats.summary()})
        return self.stats

    async def _instruments(self, symbols: Sequence[str]) -> list[ev.Event]:
        out: list[ev.Event] = []
        for symbol in symbols:
            entry, server_ms = await self.rest.instrument(symbol)
            if entry is None:
                where = self.rest.url
                raise LiveError(f"expected {symbol} among Bybit's linear instruments at {where}, was absent")
            try:
                out.append(instrument_spec(entry, server_ms))
            except BadInput as bad:
                raw = msgspec.json.encode(entry).decode()
                topic = f"instruments-info.{symbol}"
                r = Rejected(bad.reason, bad.detail, raw, topic=topic, ts_ns=server_ms * 1_000_000)
                self._rejected(r)
                out.append(dead_letter(r))
        specs = sum(isinstance(e, ev.InstrumentSpec) for e in out)
        log.info("live.instruments", extra={"symbols": list(symbols), "specs": specs})
        return out

    async def _connect_first(self) -> bool:
        log.info("live.connecting", extra={"url": self.feed.url, "topics": len(self.topics)})
        return await self._connect(first=True)

    async def _backfill(self, symbols: Sequence[str]) -> list[ev.Event]:
        if self.live.backfill_bars <= 0:
            return []
        streams: list[list[ev.Bar]] = []
        dead: list[ev.Event] = []
        for symbol in symbols:
            for interval in self.live.intervals:
                rows, server_ms, pages = await self.rest.kline_history(symbol, interval, self.live.backfill_bars)
                bars, rejected = kline_bars(symbol, interval, rows, server_ms)
                bars = warmup(bars[-self.live.backfill_bars :])
                after = self.logged_until.get(symbol)
                if after is not None:
                    bars = [b for b in bars if b.ts_event > after]  # the log has the rest already
                served = self._last_closed.get((symbol, interval))
                if served is not None:  # served before (the universe took it out and back in)
                    bars = [b for b in bars if b.open_time_ns > served]
                self.stats.backfill_pages += pages
                self.stats.backfill_bars += len(bars)
                streams.append(bars)
                for r in rejected:
                    self._rejected(r)
                    dead.append(dead_letter(r))
                log.info(
                    "live.backfilled",
                    extra={
                        "symbol": symbol, "interval": interval, "bars": len(bars), "pages": pages,
                        "server_ms": server_ms, "logged_until_ns": after,
                        "first_open_ms": bars[0].open_time_ns // 1_000_000 if bars else None,
                        "last_open_ms": bars[-1].open_time_ns // 1_000_000 if bars else None,
                    },
                )  # fmt: skip
        for bars in streams:
            if bars:
                self._last_closed[(bars[-1].symbol, bars[-1].interval)] = bars[-1].open_time_ns
        merged = heapq.merge(*streams, key=lambda b: (b.ts_event, b.symbol, b.interval))
        return [*dead, *merged]

    # --- the universe -----------------------------------------------------------------------------

    async def _first_universe(self, hunter: UniverseHunter) -> list[ev.Event]:
        """Choose the universe before start-up (a failed refresh keeps the one given) and serve it."""
        change = await self._ask(hunter)
        self._serve(hunter.symbols)
        self.feed.topics = list(self.topics)
        await self._resume_from_log(self.symbols)
        return [change] if change is not None else []

    async def _universe(self, hunter: UniverseHunter) -> None:
        while True:
            await self._sleep(hunter.refresh_s)
            if self.stop.is_set():
                return
            change = await self._ask(hunter)
            want = hunter.symbols
            remove = [s for s in self.symbols if s not in want]
            add = [s for s in want if s not in self.symbols]  # with any a failed step left out
            if change is not None or remove:
                await self._step([change] if change is not None else [], remove=remove)
            if add:
                events, ready = await self._prepare(add)
                await self._step(events, add=ready)

    async def _ask(self, hunter: UniverseHunter) -> ev.UniverseChanged | None:
        try:
            return await hunter.refresh()
        except RestError as e:
            log.error("universe.refresh_failed", extra={"error": str(e), "kept": hunter.symbols})
            return None

    async def _prepare(self, symbols: Sequence[str]) -> tuple[list[ev.Event], list[str]]:
        """Return what goes on the log before the symbols are served (their specs and backfills) and
        the symbols ready; one that fails is left out (logged) and tried again at the next refresh."""
        events: list[ev.Event] = []
        ready: list[str] = []
        for symbol in symbols:
            try:
                await self._resume_from_log([symbol])
                out = [*await self._instruments([symbol]), *await self._backfill([symbol])]
            except _ADD_FAILED as e:
                log.error("universe.add_failed", extra={"symbol": symbol, "error": str(e)})
                continue
            events.extend(out)
            ready.append(symbol)
        return events, ready

    async def _step(self, events: list[ev.Event], *, remove: Sequence[str] = (), add: Sequence[str] = ()) -> None:
        step = _Step(events, asyncio.get_running_loop().create_future(), list(remove), list(add))
        await self._queue.put(step)
        await step.done

    async def _apply(self, step: _Step) -> None:
        await self._publish(step.events)
        if step.remove:
            gone = set(step.remove)
            self._serve([s for s in self.symbols if s not in gone])
            topics = live_topics(step.remove, self.live.depth, self.live.intervals)
            for topic in topics:
                for watch in (self._last_book, self._stale_since, self._pending, self._want):
                    watch.pop(topic, None)
            for symbol in step.remove:
                self._last_frame.pop(symbol, None)
                if self.metrics:
                    with contextlib.suppress(KeyError):
                        self.metrics.last_update_age.remove(symbol)
            await self.feed.unsubscribe(topics)
        if step.add:
            self._serve([*self.symbols, *step.add])
            topics = live_topics(step.add, self.live.depth, self.live.intervals)
            now = time.monotonic()
            for topic in topics:
                if topic.startswith("orderbook."):
                    self._last_book[topic] = now
            failed = await self.feed.subscribe(topics)
            if failed:  # their books go stale, which rebuilds the connection with every topic
                log.warning("universe.subscribe_failed", extra={"topics": failed})
        log.info("universe.served", extra={"symbols": self.symbols, "added": step.add, "removed": step.remove})
        if not step.done.done():
            step.done.set_result(None)

    def _serve(self, symbols: Sequence[str]) -> None:
        self.symbols = list(dict.fromkeys(symbols))
        self.parser.serve(self.symbols)
        self.topics = live_topics(self.symbols, self.live.depth, self.live.intervals)
        self.book_topics = [t for t in self.topics if t.startswith("orderbook.")]
        if self.metrics:
            self.metrics.universe_size.set(len(self.symbols))

    async def _resume_from_log(self, symbols: Sequence[str]) -> None:
        """Start the symbols not yet known from their last bar on the log (the guard, the backfill)."""
        todo = [s for s in symbols if s not in self._resumed]
        if todo and self.js is not None:
            logged = await last_closed_bars(self.js, todo)
            self.guard.resume(logged)
            for symbol, bar in logged.items():
                self.logged_until.setdefault(symbol, bar.ts_event)
                if bar.closed:
                    self._last_closed.setdefault((symbol, bar.interval), bar.open_time_ns)
        self._resumed.update(todo)

    # --- thread -> loop ---------------------------------------------------------------------------

    def _put(self, item: Item) -> None:
        try:
            self._queue.put_nowait(item)
        except asyncio.QueueFull:
            self._overflow = True
            if item[0] == "frame":
                self.stats.dropped += 1
                if self.metrics:
                    self.metrics.frames_dropped.inc()

    # --- pump: frames -> parser -> bus ------------------------------------------------------------

    async def _pump(self) -> None:
        batch_max = self.config.publish_window
        while True:
            item = await self._queue.get()
            items = [item]
            while len(items) < batch_max and not self._queue.empty():
                items.append(self._queue.get_nowait())
            events: list[ev.Event] = []
            received: list[int] = []
            end = False
            if self._overflow:
                self._overflow = False
                reason = "frames dropped: the queue to the parser was full"
                self._invalidate_all(reason, time.time_ns(), events, resubscribe="overflow")
            for it in items:
                if it is None:
                    end = True
                    break
                if isinstance(it, _Step):
                    await self._publish(events)  # what came before it, first
                    events = []
                    await self._apply(it)
                    continue
                kind, value, ns = it
                if kind == "frame":
                    out: list[ev.Event] = []
                    self._on_frame(value, ns, out)
                    events.extend(await self._fill_bars(out))
                    received.append(ns)
                elif kind == "status":
                    self._on_status(value, ns, events)  # type: ignore[arg-type]
                elif kind == "stale":
                    self._on_stale(value, ns, events)
            await self._publish(events)
            if received and self.metrics:
                now = time.time_ns()
                for ns in received:
                    self.metrics.publish_latency.observe(max(0, now - ns) / 1e9)
            if self._want:
                want, self._want = self._want, {}
                for topic, reason in want.items():
                    await self._resubscribe(topic, reason)
            if self.metrics:
                self.metrics.queue_depth.set(self._queue.qsize())
            if end:
                return

    def _on_frame(self, raw: str, recv_ns: int, out: list[ev.Event]) -> None:
        self.stats.frames += 1
        if self.tap is not None:
            try:
                self.tap(raw, recv_ns)
            except Exception as e:
                if not self._tap_failed:
                    log.error("live.tap_failed", extra={"error": repr(e)})
                self._tap_failed = True
        try:
            head = self._head.decode(raw)
            topic = head.topic
            label = topic or ("control" if head.op else "invalid")
        except (msgspec.DecodeError, msgspec.ValidationError):
            topic, label = "", "invalid"
        if self.metrics:
            self.metrics.frames.labels(topic=label).inc()
        if topic:
            now = time.monotonic()
            self._last_frame[topic.rsplit(".", 1)[-1]] = now
            if topic.startswith("orderbook."):
                self._last_book[topic] = now
                self._stale_since.pop(topic, None)
        for o in self.parser.feed(raw, recv_ns):
            if isinstance(o, Rejected):
                self._rejected(o)
                out.append(dead_letter(o))
                continue
            if isinstance(o, ev.FeedGap):
                self._on_gap(o)
                if o.topic in self.book_topics and o.topic not in self._pending:
                    self._want[o.topic] = "gap"
            elif isinstance(o, ev.FeedResynced):
                self._on_resynced(o)
            out.append(o)
        if topic in self._pending:
            book = self.parser.books.get(topic)
            if book is not None and book.status == "live":  # a fresh snapshot is in
                del self._pending[topic]

    async def _fill_bars(self, out: list[ev.Event]) -> list[ev.Event]:
        """Return ``out`` with, before each closed bar that skips bars of its series, the skipped ones
        fetched by REST (frames were lost: a reconnect, a full queue, a bad frame), so each series
        stays complete and in time order. A failed fetch is logged and the bar goes on alone."""
        if not any(isinstance(e, ev.Bar) and e.closed for e in out):
            return out
        filled: list[ev.Event] = []
        for e in out:
            if isinstance(e, ev.Bar) and e.closed:
                filled.extend(await self._missing_before(e))
                key = (e.symbol, e.interval)
                self._last_closed[key] = max(self._last_closed.get(key, 0), e.open_time_ns)
            filled.append(e)
        return filled

    async def _missing_before(self, bar: ev.Bar) -> list[ev.Event]:
        last = self._last_closed.get((bar.symbol, bar.interval))
        dur_ms = KLINE_INTERVAL_MS.get(bar.interval)
        if last is None:  # the first closed bar of its series: nothing before it to fill from
            log.info(
                "live.series_started",
                extra={"symbol": bar.symbol, "interval": bar.interval, "open_ms": bar.open_time_ns // 1_000_000},
            )
            return []
        if not dur_ms:  # D/W/M: no fixed length to count the missing bars by
            return []
        dur_ns = dur_ms * 1_000_000
        missing = (bar.open_time_ns - last) // dur_ns - 1
        if missing <= 0:
            return []
        want = min(missing, max(self.live.backfill_bars, MAX_PAGE))
        end_ms = bar.open_time_ns // 1_000_000 - 1
        try:
            rows, server_ms, _ = await self.rest.kline_history(bar.symbol, bar.interval, want, end_ms=end_ms)
        except RestError as e:
            log.error("live.fill_failed", extra={"symbol": bar.symbol, "interval": bar.interval, "error": str(e)})
            return []
        bars, rejected = kline_bars(bar.symbol, bar.interval, rows, server_ms)
        out: list[ev.Event] = []
        for r in rejected:
            self._rejected(r)
            out.append(dead_letter(r))
        gap = warmup([b for b in bars if last < b.open_time_ns < bar.open_time_ns])
        out.extend(gap)
        self.stats.filled += len(gap)
        if self.metrics:
            self.metrics.bars_filled.labels(symbol=bar.symbol).inc(len(gap))
        log.warning(
            "live.bars_filled",
            extra={
                "symbol": bar.symbol, "interval": bar.interval, "missing": missing, "filled": len(gap),
                "after_open_ms": last // 1_000_000, "before_open_ms": bar.open_time_ns // 1_000_000,
            },
        )  # fmt: skip
        return out

    def _on_status(self, status: ConnStatus, ns: int, out: list[ev.Event]) -> None:
        if status == "reconnecting":
            log.warning("live.reconnecting", extra={"url": self.feed.url})
            self._invalidate_all("connection lost: reconnecting", ns, out)
        elif status in ("reconnected", "rebuilt"):
            self.stats.reconnects += 1
            if self.metrics:
                self.metrics.reconnects.labels(kind="pybit" if status == "reconnected" else "rebuild").inc()
            log.info("live.reconnected", extra={"kind": status})
            self._reset_watch()
        elif status == "gave_up":
            log.error("live.pybit_gave_up", extra={"url": self.feed.url})
            self._gave_up = True
        else:
            log.info("live.connected", extra={"url": self.feed.url})

    def _on_stale(self, topic: str, ns: int, out: list[ev.Event]) -> None:
        last = self._last_book.get(topic, self._started)
        idle = time.monotonic() - last
        if idle < self.live.stale_s:
            return  # a frame came in meanwhile
        symbol = topic.rsplit(".", 1)[-1]
        self.stats.stale += 1
        if self.metrics:
            self.metrics.stale.labels(symbol=symbol).inc()
        log.warning("feed.stale", extra={"symbol": symbol, "topic": topic, "stale_s": round(idle, 3)})
        out.append(
            ev.FeedStale(
                event_id=derive_id("FeedStale", symbol, topic, ns),
                ts_event=ns,
                ts_init=ns,
                symbol=symbol,
                topic=topic,
                stale_s=round(idle, 3),
            )
        )
        book = self.parser.books.get(topic)
        if book is not None:
            # untrusted until a fresh snapshot: the book waits for one (which emits FeedResynced); its
            # FeedGap is not published, FeedStale says it
            book.invalidate(f"stale: no update for {idle:.1f} s", ns, ns)
        self._pending.pop(topic, None)
        self._want[topic] = "stale"

    def _invalidate_all(self, reason: str, ns: int, out: list[ev.Event], resubscribe: str | None = None) -> None:
        # every book is untrusted until its next snapshot: after a reconnect pybit resubscribes (the
        # topics are pending); after lost frames we resubscribe (``resubscribe`` = the reason)
        now = time.monotonic()
        for topic, book in self.parser.books.items():
            gaps = book.invalidate(reason, ns, ns)
            for g in gaps:
                if isinstance(g, ev.FeedGap):
                    self._on_gap(g)
            out.extend(gaps)
            if topic in self.book_topics and book.status != "live":
                if resubscribe:
                    self._pending.pop(topic, None)
                    self._want[topic] = resubscribe
                else:
                    self._pending[topic] = (now, 0)

    def _on_gap(self, gap: ev.FeedGap) -> None:
        self.stats.gaps += 1
        if self.metrics:
            self.metrics.book_gaps.labels(symbol=gap.symbol).inc()
        log.warning("book.gap", extra={"symbol": gap.symbol, "topic": gap.topic, "reason": gap.reason})

    def _on_resynced(self, event: ev.FeedResynced) -> None:
        self.stats.resyncs += 1
        self._pending.pop(event.topic, None)
        if self.metrics:
            self.metrics.book_resyncs.labels(symbol=event.symbol).inc()
        log.info("book.resynced", extra={"symbol": event.symbol, "topic": event.topic, "update_id": event.update_id})

    def _rejected(self, r: Rejected) -> None:
        self.stats.rejected[r.reason] += 1
        if self.metrics:
            self.metrics.rejected.labels(reason=r.reason).inc()
        self._logged[r.reason] += 1
        level = logging.WARNING if self._logged[r.reason] <= self.config.log_rejections else logging.DEBUG
        log.log(
            level,
            "frame.rejected",
            extra={"reason": r.reason, "detail": r.detail[:300], "topic": r.topic, "raw": r.raw[:200]},
        )

    async def _publish(self, events: list[ev.Event]) -> None:
        if not events:
            return
        events = self._screen(events)
        stored = await self.out.publish_many(events, window=self.config.publish_window)
        self.stats.stored += stored
        self.stats.duplicates += len(events) - stored
        self.stats.bus_outages, self.stats.bus_outage_s = self.out.outages, self.out.outage_s
        for e in events:
            self.stats.events[type(e).__name__] += 1

    def _screen(self, events: list[ev.Event]) -> list[ev.Event]:
        # every bar, whatever its source, in log order through the series guard
        if not any(type(e) is ev.Bar for e in events):
            return events
        out: list[ev.Event] = []
        for e in events:
            if type(e) is not ev.Bar:
                out.append(e)
                continue
            screened = screen(e, self.guard)  # type: ignore[arg-type]
            if screened is None:
                self.stats.duplicates += 1
            elif isinstance(screened, Rejected):
                self._rejected(screened)
                out.append(dead_letter(screened))
            else:
                out.append(screened)
        return out

    async def _resubscribe(self, topic: str, reason: str) -> None:
        tries = self._pending.get(topic, (0.0, 0))[1] + 1
        self._pending[topic] = (time.monotonic(), tries)
        sent = await self.feed.resubscribe(topic)
        self.stats.resubscribes += 1
        if self.metrics:
            self.metrics.resubscribes.labels(reason=reason).inc()
        log.info("live.resubscribe", extra={"topic": topic, "reason": reason, "try": tries, "sent": sent})

    # --- health: staleness, resync timeouts, the connection watchdog ------------------------------

    def _reset_watch(self) -> None:
        now = time.monotonic()
        for topic in self.book_topics:
            self._last_book[topic] = max(self._last_book.get(topic, now), now)
        self._stale_since.clear()
        self._pending = {t: (now, 0) for t in self._pending}
        self._gave_up = False
        self._dead_since = None

    async def _health(self) -> None:
        tick = min(1.0, self.live.stale_s / 4, self.live.resync_timeout_s / 4)
        while True:
            await asyncio.sleep(tick)
            now = time.monotonic()
            if self.metrics:
                for s in self.symbols:
                    self.metrics.last_update_age.labels(symbol=s).set(now - self._last_frame.get(s, self._started))
            if self.feed.alive():
                self._dead_since = None
            elif self._dead_since is None:
                self._dead_since = now
            grace = max(2.0, 2 * tick)
            if self._gave_up or (self._dead_since is not None and now - self._dead_since > grace):
                await self._rebuild("pybit gave up" if self._gave_up else "connection dead")
                continue
            escalate = None
            for topic in self.book_topics:
                idle = now - self._last_book.get(topic, now)
                if idle <= self.live.stale_s:
                    continue
                since = self._stale_since.get(topic)
                if since is None:
                    self._stale_since[topic] = now
                    self._put(("stale", topic, time.time_ns()))
                elif now - since > self.live.stale_s:
                    escalate = f"{topic} still stale after a resubscribe"
            for topic, (sent_at, tries) in list(self._pending.items()):
                if now - sent_at <= self.live.resync_timeout_s or topic in self._stale_since:
                    continue
                if tries >= _RESYNC_TRIES:
                    escalate = f"{topic} not resynced after {tries} resubscribes"
                else:
                    await self._resubscribe(topic, "resync_timeout")
            if escalate:
                await self._rebuild(escalate)

    async def _rebuild(self, reason: str) -> None:
        log.warning("live.rebuild", extra={"reason": reason})
        if await self._connect(first=False):
            self._reset_watch()

    async def _connect(self, *, first: bool) -> bool:
        """Connect (first) or rebuild the connection, with exponential backoff and jitter until it works
        or a stop is requested; return False on a stop."""

        def _log_retry(state: RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome else None
            log.warning(
                "live.connect_failed",
                extra={"attempt": state.attempt_number, "error": repr(exc), "next_s": round(state.upcoming_sleep, 2)},
            )

        initial = self.live.reconnect_initial_s
        retrying = AsyncRetrying(
            retry=retry_if_exception_type(Exception),
            wait=wait_exponential_jitter(multiplier=initial, max=self.live.reconnect_max_s, jitter=initial),
            stop=lambda _: self.stop.is_set(),
            sleep=self._sleep,
            before_sleep=_log_retry,
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    if self.stop.is_set():
                        return False
                    if first:
                        await self.feed.connect()
                    else:
                        await self.feed.rebuild()
        except Exception:
            if self.stop.is_set():
                return False
            raise
        return not self.stop.is_set()

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stop.wait(), seconds)


def warmup(bars: list[ev.Bar]) -> list[ev.Bar]:
    """Return ``bars`` marked as backfilled (``Bar.warmup``): state for the signal, never an intent.

    The id stays the bar's (a function of symbol, interval and open time), so the same bar from the
    WebSocket is a duplicate of it, whichever came first.
    """
    return [msgspec.structs.replace(b, warmup=True) for b in bars]


def symbols_of(values: Collection[str]) -> list[str]:
    """Normalise a list of symbols (upper case, no blanks, no repeats, order kept)."""
    return list(dict.fromkeys(s.strip().upper() for v in values for s in v.split(",") if s.strip()))
