"""Replay recordings through the core onto the log: the handler glue between files, parser and bus.

:func:`parse_files` yields what the files become (events and rejections, in log order) with no I/O
beyond reading them; :func:`replay_files` publishes that, paced or not, and dead-letters rejections
to ``sys.dlq.market-ingest``. Bars pass the series guard (:mod:`nertz_ingest.core.series`): a bar back
in time or a second, different bar for one interval is dead-lettered; an identical repeat is dropped.

Each symbol's trading rules go on the log just before that symbol's first event: one
``InstrumentSpec`` per symbol from an instruments-info answer (by default the bundled copy of Bybit's
real answer, ``data/bybit_instruments_linear.json``), its ``ts_event``/``ts_init`` those of the
symbol's first event and its id derived from the spec's and that event's (:class:`SpecAnnouncer`), so
the executor rounds orders as the live feed's specs would make it, and a replay of the same files
gives the same specs.

A replay restarted after a crash resumes where the log ends: it is given the last event it put on the
log, parses the files from the start (so the books, tickers and bar series are rebuilt exactly) without
publishing, and publishes from the event after that one. Files that do not hold that event are
replayed whole, their bars judged against the log's last bar of each symbol.

Bus outages are waited out for as long as they last (:class:`~nertz_ingest.adapters.durable.DurablePublisher`).

At ``--speed max`` the replay parses the next window while the stream acknowledges the previous one
(one window in flight, every ack checked in order before the next window goes out), so the parser
and nats-server work in parallel; see ``bench/bench_ingest.py`` for the figures.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sys
import time
from collections import Counter
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import msgspec
from nats.js import JetStreamContext
from tqdm import tqdm

from nertz_common import events as ev
from nertz_common.bus import Publisher
from nertz_common.ids import derive_id
from nertz_common.storage import Storage, Target
from nertz_ingest.adapters.durable import DurablePublisher
from nertz_ingest.adapters.recording import RawFrame, RecordingError, Sources, record_time_ns
from nertz_ingest.core.bybit import BybitParser, Output
from nertz_ingest.core.rejection import BadInput, Rejected
from nertz_ingest.core.rest import instruments_answer
from nertz_ingest.core.series import BarGuard
from nertz_ingest.metrics import IngestMetrics
from nertz_ingest.settings import IngestConfig

SERVICE = "market-ingest"
log = logging.getLogger("nertz.ingest")

#: the bundled copy of Bybit's instruments-info answer for the bundled data's symbols (data/SOURCES.md §4)
BUNDLED_INSTRUMENTS = Path(__file__).resolve().parents[4] / "data" / "bybit_instruments_linear.json"


def load_instruments(path: Target, storage: Storage | None = None) -> dict[str, ev.InstrumentSpec]:
    """Read an instruments-info answer (Bybit's envelope, or the bundled copy; a local path or a URL) into
    each symbol's spec.

    Raises
    ------
    RecordingError
        If the file cannot be read or is not an instruments-info answer.
    """
    try:
        specs = instruments_answer(json.loads((storage or Storage()).read_bytes(path)))
    except (OSError, ValueError, AttributeError) as e:
        raise RecordingError(f"expected an instruments-info answer (JSON) in {path}, could not read it: {e}") from None
    except BadInput as e:
        raise RecordingError(f"expected an instruments-info answer in {path}: {e.reason}: {e.detail}") from None
    return {s.symbol: s for s in specs}


class SpecAnnouncer:
    """Put each symbol's ``InstrumentSpec`` on the log just before the first event of that symbol.

    The announced spec is the answer's with ``ts_event``/``ts_init`` of that first event and the id
    ``derive_id("InstrumentSpec", "replay", spec id, first event id)``: a function of the files and the
    answer, so a replay again (or resumed) gives the same event. Symbols the files never name are not
    announced; symbols the answer lacks get none (on paper their orders go unrounded).

    Parameters
    ----------
    specs : mapping of str to InstrumentSpec, optional
        The rules by symbol (:func:`load_instruments`); None or empty = announce nothing.
    """

    __slots__ = ("_pending",)

    def __init__(self, specs: Mapping[str, ev.InstrumentSpec] | None = None) -> None:
        self._pending = dict(specs or {})

    def around(self, outs: list[Output]) -> list[Output]:
        """Return ``outs`` with the spec of each symbol not seen before inserted before its first event."""
        if not self._pending:
            return outs
        out: list[Output] = []
        for o in outs:
            if isinstance(o, ev.InstrumentEvent) and o.symbol in self._pending:
                spec = self._pending.pop(o.symbol)
                out.append(
                    msgspec.structs.replace(
                        spec,
                        event_id=derive_id("InstrumentSpec", "replay", spec.event_id, o.event_id),
                        ts_event=o.ts_event,
                        ts_init=o.ts_init,
                    )
                )
            out.append(o)
        return out


@dataclass
class ReplayStats:
    """What a replay did.

    Attributes
    ----------
    records : int
        Records read: raw frames and CSV rows (including rejected ones).
    events : Counter
        Events emitted, by type name (``DeadLettered`` included), in log order.
    stored : int
        Events the stream stored (new messages).
    duplicates : int
        Events the stream dropped as duplicates (same ``Nats-Msg-Id`` within its window), plus
        identical repeats of a bar that were never sent (``known``).
    known : int
        Bars dropped as nothing new: identical repeats, updates of a bar that has closed.
    rejected : Counter
        Rejected frames, rows and bars, by reason.
    skipped : int
        Events (dead letters included) already on the log: the part of the files before the resume point.
    skipped_dead : int
        Dead letters among ``skipped``.
    resumed_after : str, optional
        The ``event_id`` of the log's last market-ingest event the replay resumed after; None = from
        the start.
    bus_outages : int
        Bus outages waited out; ``bus_outage_s`` their total length, s.
    wall_s : float
        Wall time of the replay, s.
    stopped : bool
        True if a stop was requested before the end.
    """

    records: int = 0
    events: Counter[str] = field(default_factory=Counter)
    stored: int = 0
    duplicates: int = 0
    known: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    skipped: int = 0
    skipped_dead: int = 0
    resumed_after: str | None = None
    bus_outages: int = 0
    bus_outage_s: float = 0.0
    wall_s: float = 0.0
    stopped: bool = False

    @property
    def published(self) -> int:
        """Events published (stored + duplicates)."""
        return sum(self.events.values())

    @property
    def accepted(self) -> int:
        """Events the files gave besides dead letters: published, already on the log, or known bars."""
        skipped_good = self.skipped - self.skipped_dead
        return self.published - self.events.get("DeadLettered", 0) + skipped_good + self.known

    @property
    def events_per_s(self) -> float:
        """Events published per wall second."""
        return self.published / self.wall_s if self.wall_s > 0 else 0.0

    def summary(self) -> str:
        """What the operator reads at the end: one line, then the rejections by reason, if any."""
        by_type = ", ".join(f"{k}={v}" for k, v in sorted(self.events.items())) or "none"
        rejected = ", ".join(f"{k}={v}" for k, v in sorted(self.rejected.items())) or "none"
        state = "stopped early" if self.stopped else "done"
        resumed = f"; resumed after {self.skipped} events already on the log" if self.resumed_after else ""
        outages = f"; waited out {self.bus_outages} bus outages ({self.bus_outage_s:.1f} s)" if self.bus_outages else ""
        line = (
            f"replay {state}: {self.published} events published ({by_type}); stored {self.stored}, "
            f"duplicates {self.duplicates}; {self.records} records read{resumed}; "
            f"rejected {sum(self.rejected.values())} ({rejected}){outages}; "
            f"wall {self.wall_s:.2f} s, {self.events_per_s:,.0f} events/s"
        )
        if not self.rejected:
            return line
        width = max(len(k) for k in self.rejected)
        rows = "\n".join(f"  {k:<{width}}  {v:>8,}" for k, v in self._by_count())
        return f"{line}\nrejected by reason (dead-lettered to sys.dlq.{SERVICE}):\n{rows}"

    def _by_count(self) -> list[tuple[str, int]]:
        return sorted(self.rejected.items(), key=lambda kv: (-kv[1], kv[0]))

    def nothing_accepted(self) -> str | None:
        """Return why nothing was accepted (the operator's error message), None if something was."""
        if self.accepted or self.stopped:
            return None
        if not self.records:
            return "accepted nothing: the files hold no records"
        if self.rejected:
            rejected = ", ".join(f"{k}={v}" for k, v in self._by_count())
            return (
                f"accepted nothing from {self.records} records: rejected {sum(self.rejected.values())} "
                f"({rejected}), dead-lettered to sys.dlq.{SERVICE}"
            )
        return f"accepted nothing: the {self.records} records gave no events (acks, other symbols or markets only)"


def dead_letter(rejected: Rejected, service: str = SERVICE) -> ev.DeadLettered:
    """Return the dead-letter record of a rejection (deterministic id from the raw input and its time).

    ``ts_event``/``ts_init`` are the rejection's ``ts_ns`` (the frame's receive time, or the last good
    CSV row's time), so a replay reproduces the record exactly.
    """
    return ev.DeadLettered(
        event_id=derive_id("DeadLettered", service, rejected.reason, rejected.ts_ns, rejected.raw),
        ts_event=rejected.ts_ns,
        ts_init=rejected.ts_ns,
        service=service,
        reason=f"{rejected.reason}: {rejected.detail}"[:500],
        raw=rejected.raw[:10_000],
    )


def make_parser(config: IngestConfig, symbols: Collection[str] | None = None) -> BybitParser:
    """Build the frame parser from the configuration."""
    return BybitParser(top_n=config.book_depth, min_interval_ms=config.book_min_interval_ms, symbols=symbols)


def outputs_of(record: RawFrame | ev.Bar | Rejected, parser: BybitParser, guard: BarGuard) -> list[Output]:
    """Turn one record into outputs: a frame goes through the parser, a rejection passes; every bar then
    passes the series guard (a known bar is dropped, a bad one becomes its rejection)."""
    if type(record) is RawFrame:
        out: list[Output] = []
        for o in parser.feed(record.raw, record.recv_ns):
            if type(o) is ev.Bar:
                screened = screen(o, guard)  # type: ignore[arg-type]
                if screened is None:
                    continue
                o = screened
            out.append(replace(o, source=record.source) if type(o) is Rejected else o)
        return out
    if type(record) is ev.Bar:
        bar = screen(record, guard)  # type: ignore[arg-type]
        return [] if bar is None else [bar]
    return [record]  # type: ignore[list-item]


def screen(bar: ev.Bar, guard: BarGuard) -> ev.Bar | Rejected | None:
    """Return ``bar`` if it is new to its series, its rejection if it is bad, None if it is known."""
    verdict = guard.check(bar)
    if verdict == "new":
        return bar
    return None if verdict == "known" else verdict


def parse_files(
    paths: Sequence[Target],
    *,
    symbols: Collection[str] | None = None,
    config: IngestConfig | None = None,
    logged: Mapping[str, ev.Bar] | None = None,
    instruments: Mapping[str, ev.InstrumentSpec] | None = None,
    storage: Storage | None = None,
) -> Iterator[Output]:
    """Yield the events and rejections that ``paths`` become, in log order (no bus involved).

    ``logged``: per symbol, the last bar already on the log, which each bar series must not go back
    before (None = a fresh log). ``instruments``: the rules by symbol to announce before each
    symbol's first event (:class:`SpecAnnouncer`; None = none). ``storage``: how URLs are read
    (default: settings from the environment).

    Raises
    ------
    RecordingError
        If a file is not a recording this service reads.
    StorageError
        If a URL's store cannot be read.
    """
    config = config or IngestConfig()
    parser = make_parser(config, symbols)
    guard = BarGuard(logged)
    specs = SpecAnnouncer(instruments)
    for record in Sources(paths, symbols, storage=storage):
        yield from specs.around(outputs_of(record, parser, guard))


async def replay_files(
    publisher: Publisher,
    paths: Sequence[Target],
    speed: float | None = None,
    *,
    symbols: Collection[str] | None = None,
    config: IngestConfig | None = None,
    metrics: IngestMetrics | None = None,
    progress: bool = False,
    stop: asyncio.Event | None = None,
    logged: Mapping[str, ev.Bar] | None = None,
    resume_after: str | None = None,
    js: JetStreamContext | None = None,
    instruments: Mapping[str, ev.InstrumentSpec] | None = None,
) -> ReplayStats:
    """Parse ``paths`` in log order and publish the events (pipelined, acks checked per window).

    Parameters
    ----------
    publisher : Publisher
        Where events go (``Nats-Msg-Id`` = ``event_id``, so a re-publish stores nothing new).
    paths : sequence of Path or str
        Cryptofeed JSONL recordings and kline CSVs (``.xz``/``.gz`` or plain), merged in time order:
        local paths or URLs, a directory or a glob standing for the recordings in it.
    speed : float, optional
        None = as fast as possible; otherwise records are paced by their recorded time divided by
        ``speed`` (1 = real time, 60 = one hour per minute): a frame by its receive time, a CSV bar
        by its close time (the merge order of the files, so the clock never goes back).
    symbols : collection of str, optional
        Only these symbols (None = every symbol in the files).
    config : IngestConfig, optional
        Book depth, conflation interval, publish window.
    metrics : IngestMetrics, optional
        Counters to update (records, rejections, gaps, resyncs, bus outages).
    progress : bool
        Show a tqdm progress bar (bytes of the files consumed) on stderr.
    stop : asyncio.Event, optional
        When set, the replay publishes what it holds and returns (``stopped`` = True).
    logged : mapping of str to Bar, optional
        Per symbol, the last bar on the log (:func:`~nertz_ingest.adapters.log_position.last_bars`):
        no bar series may go back before it. None = a fresh log.
    resume_after : str, optional
        The ``event_id`` of the last market-ingest event on the log
        (:func:`~nertz_ingest.adapters.log_position.log_end`): events up to it are parsed but not
        published (the bar series are rebuilt from the files, ``logged`` is not used). If the files
        never produce it, they are replayed whole, judged against ``logged`` (a second pass).
    js : JetStreamContext, optional
        Lets a publish retried after an outage skip what reached the log (see
        :class:`~nertz_ingest.adapters.durable.DurablePublisher`).
    instruments : mapping of str to InstrumentSpec, optional
        Each symbol's rules, published before its first event (:class:`SpecAnnouncer`); None = none.

    Returns
    -------
    ReplayStats

    Raises
    ------
    RecordingError
        If a file is not a recording this service reads.
    PublishError
        If a stop is requested while the bus is away (a restart resumes where the log ends), or an ack
        names another stream.
    """
    if speed is not None and not speed > 0:
        raise ValueError(f"expected speed > 0 or None (max), was {speed}")
    config = config or IngestConfig()
    stop = stop or asyncio.Event()
    durable = DurablePublisher(publisher, SERVICE, js=js, metrics=metrics, stop=stop)
    args = (durable, paths, speed, symbols, config, metrics, progress, stop, instruments)
    if resume_after is None:
        stats, _ = await _replay_pass(*args, logged, None)
    else:
        # the files rebuild the series state up to the resume point themselves, as the first run did
        stats, found = await _replay_pass(*args, None, resume_after)
        if not found and not stats.stopped:
            log.warning(
                "replay.resume_point_absent",
                extra={"event_id": resume_after, "detail": "the log's last market-ingest event is not in these files"},
            )
            stats, _ = await _replay_pass(*args, logged, None)
    stats.bus_outages, stats.bus_outage_s = durable.outages, durable.outage_s
    return stats


async def _replay_pass(
    publisher: DurablePublisher,
    paths: Sequence[Target],
    speed: float | None,
    symbols: Collection[str] | None,
    config: IngestConfig,
    metrics: IngestMetrics | None,
    progress: bool,
    stop: asyncio.Event,
    instruments: Mapping[str, ev.InstrumentSpec] | None,
    logged: Mapping[str, ev.Bar] | None,
    resume_after: str | None,
) -> tuple[ReplayStats, bool]:
    parser = make_parser(config, symbols)
    guard = BarGuard(logged)
    specs = SpecAnnouncer(instruments)
    sources = Sources(paths, symbols)
    stats = ReplayStats()
    counts: dict[type, int] = {}
    logged_reasons: Counter[str] = Counter()
    window = config.publish_window
    batch: list[ev.Event] = []
    in_flight: asyncio.Task[int] | None = None  # the window being acknowledged
    in_flight_n = 0
    skipping = resume_after is not None
    known_skipped = 0
    count_frame = count_row = None
    if metrics:
        count_frame, count_row = metrics.records.labels(kind="frame"), metrics.records.labels(kind="csv_row")
    bar = tqdm(
        total=sources.total_bytes,
        unit="B",
        unit_scale=True,
        unit_divisor=1024,
        desc="replay",
        file=sys.stderr,
        disable=not progress,
        dynamic_ncols=True,
    )

    async def settle() -> None:
        nonlocal in_flight
        if in_flight is not None:
            task, in_flight = in_flight, None
            stored = await task
            stats.stored += stored
            stats.duplicates += in_flight_n - stored

    async def flush(wait: bool) -> None:
        # one window in flight: the previous one is fully acked before the next one is sent
        nonlocal batch, in_flight, in_flight_n
        await settle()
        if batch:
            in_flight = asyncio.create_task(publisher.publish_many(batch, window=max(window, len(batch))))
            in_flight_n = len(batch)
            batch = []
            if wait:
                await settle()
        if not bar.disable:
            bar.update(sources.position() - bar.n)
            bar.set_postfix(events=sum(counts.values()), rejected=sum(stats.rejected.values()), refresh=False)

    t0 = time.perf_counter()
    first_t: int | None = None
    last_t = 0
    wall0 = 0.0
    try:
        for record in sources:
            stats.records += 1
            is_frame = type(record) is RawFrame
            if count_frame is not None and count_row is not None:
                (count_frame if is_frame else count_row).inc()
            if speed is not None and not skipping:
                last_t = max(last_t, record_time_ns(record))
                if first_t is None:
                    first_t, wall0 = last_t, time.monotonic()
                delay = wall0 + (last_t - first_t) / 1e9 / speed - time.monotonic()
                if delay > 0:
                    await flush(wait=True)
                    await _sleep(delay, stop)
                    if stop.is_set():
                        break
            for out in specs.around(outputs_of(record, parser, guard)):
                if skipping:  # already on the log: rebuild the state, publish nothing
                    event: ev.Event = dead_letter(out) if type(out) is Rejected else out  # type: ignore[assignment]
                    stats.skipped += 1
                    stats.skipped_dead += type(out) is Rejected
                    skipping = event.event_id != resume_after
                    known_skipped = guard.known
                    continue
                if type(out) is Rejected:
                    event = dead_letter(out)
                    _on_rejected(out, stats, metrics, logged_reasons, config.log_rejections)
                else:
                    event = out  # type: ignore[assignment]
                    if type(event) is ev.FeedGap or type(event) is ev.FeedResynced:
                        _on_status(event, metrics)  # type: ignore[arg-type]
                t = type(event)
                counts[t] = counts.get(t, 0) + 1
                batch.append(event)
            if len(batch) >= window:
                await flush(wait=False)
            elif in_flight is not None and stats.records % 128 == 0:
                await asyncio.sleep(0)  # let the window in flight send and take its acks meanwhile
            if stop.is_set():
                stats.stopped = True
                break
        await flush(wait=True)
    finally:
        if in_flight is not None and not in_flight.done():
            in_flight.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await in_flight
        bar.close()
        stats.wall_s = time.perf_counter() - t0
        stats.events.update({t.__name__: n for t, n in counts.items()})
    if stop.is_set():
        stats.stopped = True
    stats.known = guard.known - known_skipped
    stats.duplicates += stats.known
    if resume_after is not None and not skipping:
        stats.resumed_after = resume_after
        log.info("replay.resumed", extra={"event_id": resume_after, "skipped": stats.skipped})
    return stats, not skipping


async def _sleep(delay_s: float, stop: asyncio.Event | None) -> None:
    if stop is None:
        await asyncio.sleep(delay_s)
        return
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), delay_s)


def _on_rejected(
    r: Rejected, stats: ReplayStats, metrics: IngestMetrics | None, logged: Counter[str], log_max: int
) -> None:
    stats.rejected[r.reason] += 1
    if metrics:
        metrics.rejected.labels(reason=r.reason).inc()
    logged[r.reason] += 1
    level = logging.WARNING if logged[r.reason] <= log_max else logging.DEBUG
    log.log(
        level,
        "frame.rejected",
        extra={"reason": r.reason, "detail": r.detail[:300], "topic": r.topic, "source": r.source, "raw": r.raw[:200]},
    )


def _on_status(event: ev.FeedGap | ev.FeedResynced, metrics: IngestMetrics | None) -> None:
    if isinstance(event, ev.FeedGap):
        if metrics:
            metrics.book_gaps.labels(symbol=event.symbol).inc()
        log.warning("book.gap", extra={"symbol": event.symbol, "topic": event.topic, "reason": event.reason})
    else:
        if metrics:
            metrics.book_resyncs.labels(symbol=event.symbol).inc()
        log.info("book.resynced", extra={"symbol": event.symbol, "topic": event.topic, "update_id": event.update_id})
