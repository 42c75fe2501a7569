"""Replay recordings through the core onto the log: the handler glue between files, parser and bus.

:func:`parse_files` yields what the files become (events and rejections, in log order) with no I/O
beyond reading them; :func:`replay_files` publishes that, paced or not, and dead-letters rejections
to ``sys.dlq.market-ingest``.

At ``--speed max`` the replay parses the next window while the stream acknowledges the previous one
(one window in flight, every ack checked in order before the next window goes out), so the parser
and nats-server work in parallel; see ``bench/bench_ingest.py`` for the figures.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import time
from collections import Counter
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from tqdm import tqdm

from nertz_common import events as ev
from nertz_common.bus import Publisher
from nertz_common.ids import derive_id
from nertz_ingest.adapters.recording import RawFrame, Sources, record_time_ns
from nertz_ingest.core.bybit import BybitParser, Output
from nertz_ingest.core.rejection import Rejected
from nertz_ingest.metrics import IngestMetrics
from nertz_ingest.settings import IngestConfig

SERVICE = "market-ingest"
log = logging.getLogger("nertz.ingest")


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
        Events the stream dropped as duplicates (same ``Nats-Msg-Id`` within its window).
    rejected : Counter
        Rejected frames and rows, by reason.
    wall_s : float
        Wall time of the replay, s.
    stopped : bool
        True if a stop was requested before the end.
    """

    records: int = 0
    events: Counter[str] = field(default_factory=Counter)
    stored: int = 0
    duplicates: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    wall_s: float = 0.0
    stopped: bool = False

    @property
    def published(self) -> int:
        """Events published (stored + duplicates)."""
        return sum(self.events.values())

    @property
    def events_per_s(self) -> float:
        """Events published per wall second."""
        return self.published / self.wall_s if self.wall_s > 0 else 0.0

    def summary(self) -> str:
        """One line for the operator."""
        by_type = ", ".join(f"{k}={v}" for k, v in sorted(self.events.items())) or "none"
        rejected = ", ".join(f"{k}={v}" for k, v in sorted(self.rejected.items())) or "none"
        state = "stopped early" if self.stopped else "done"
        return (
            f"replay {state}: {self.published} events published ({by_type}); stored {self.stored}, "
            f"duplicates {self.duplicates}; {self.records} records read; "
            f"rejected {sum(self.rejected.values())} ({rejected}); "
            f"wall {self.wall_s:.2f} s, {self.events_per_s:,.0f} events/s"
        )


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


def outputs_of(record: RawFrame | ev.Bar | Rejected, parser: BybitParser) -> list[Output]:
    """Turn one record into outputs: a frame goes through the parser, a bar or a rejection passes."""
    if isinstance(record, RawFrame):
        out = parser.feed(record.raw, record.recv_ns)
        return [replace(o, source=record.source) if isinstance(o, Rejected) else o for o in out]
    return [record]


def parse_files(
    paths: Sequence[Path],
    *,
    symbols: Collection[str] | None = None,
    config: IngestConfig | None = None,
) -> Iterator[Output]:
    """Yield the events and rejections that ``paths`` become, in log order (no bus involved).

    Raises
    ------
    RecordingError
        If a file is not a recording this service reads.
    """
    config = config or IngestConfig()
    parser = make_parser(config, symbols)
    for record in Sources(paths, symbols):
        yield from outputs_of(record, parser)


async def replay_files(
    publisher: Publisher,
    paths: Sequence[Path],
    speed: float | None = None,
    *,
    symbols: Collection[str] | None = None,
    config: IngestConfig | None = None,
    metrics: IngestMetrics | None = None,
    progress: bool = False,
    stop: asyncio.Event | None = None,
) -> ReplayStats:
    """Parse ``paths`` in log order and publish the events (pipelined, acks checked per window).

    Parameters
    ----------
    publisher : Publisher
        Where events go (``Nats-Msg-Id`` = ``event_id``, so a re-publish stores nothing new).
    paths : sequence of Path
        Cryptofeed JSONL recordings and kline CSVs (``.xz``/``.gz`` or plain), merged in time order.
    speed : float, optional
        None = as fast as possible; otherwise records are paced by their recorded time divided by
        ``speed`` (1 = real time, 60 = one hour per minute): a frame by its receive time, a CSV bar
        by its close time (the merge order of the files, so the clock never goes back).
    symbols : collection of str, optional
        Only these symbols (None = every symbol in the files).
    config : IngestConfig, optional
        Book depth, conflation interval, publish window.
    metrics : IngestMetrics, optional
        Counters to update (records, rejections, gaps, resyncs).
    progress : bool
        Show a tqdm progress bar (bytes of the files consumed) on stderr.
    stop : asyncio.Event, optional
        When set, the replay publishes what it holds and returns (``stopped`` = True).

    Returns
    -------
    ReplayStats

    Raises
    ------
    RecordingError
        If a file is not a recording this service reads.
    PublishError
        If the stream does not acknowledge a window within the publisher's retry budget.
    """
    if speed is not None and not speed > 0:
        raise ValueError(f"expected speed > 0 or None (max), was {speed}")
    config = config or IngestConfig()
    parser = make_parser(config, symbols)
    sources = Sources(paths, symbols)
    stats = ReplayStats()
    counts: dict[type, int] = {}
    logged: Counter[str] = Counter()
    window = config.publish_window
    batch: list[ev.Event] = []
    in_flight: asyncio.Task[int] | None = None  # the window being acknowledged
    in_flight_n = 0
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
            if speed is not None:
                last_t = max(last_t, record_time_ns(record))
                if first_t is None:
                    first_t, wall0 = last_t, time.monotonic()
                delay = wall0 + (last_t - first_t) / 1e9 / speed - time.monotonic()
                if delay > 0:
                    await flush(wait=True)
                    await _sleep(delay, stop)
                    if stop is not None and stop.is_set():
                        break
            for out in outputs_of(record, parser) if is_frame else (record,):
                if type(out) is Rejected:
                    event: ev.Event = dead_letter(out)
                    _on_rejected(out, stats, metrics, logged, config.log_rejections)
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
            if stop is not None and stop.is_set():
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
    if stop is not None and stop.is_set():
        stats.stopped = True
    return stats


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
