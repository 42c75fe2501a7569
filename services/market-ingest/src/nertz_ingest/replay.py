"""Replay recordings through the core onto the log: the handler glue between files, parser and bus.

:func:`parse_files` yields what the files become (events and rejections, in log order) with no I/O
beyond reading them; :func:`replay_files` publishes that, paced or not, and dead-letters rejections
to ``sys.dlq.market-ingest``.
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
from nertz_ingest.adapters.recording import RawFrame, Sources
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
        None = as fast as possible; otherwise events are paced by their ``ts_event`` differences
        divided by ``speed`` (1 = real time, 60 = one hour per minute).
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
    logged: Counter[str] = Counter()
    window = config.publish_window
    batch: list[ev.Event] = []
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

    async def flush() -> None:
        nonlocal batch
        if batch:
            stored = await publisher.publish_many(batch, window=window)
            stats.stored += stored
            stats.duplicates += len(batch) - stored
            batch = []
        bar.update(sources.position() - bar.n)
        bar.set_postfix(events=stats.published, rejected=sum(stats.rejected.values()), refresh=False)

    t0 = time.perf_counter()
    first_ts: int | None = None
    last_ts = 0
    wall0 = 0.0
    try:
        for record in sources:
            stats.records += 1
            if metrics:
                metrics.records.labels(kind="frame" if isinstance(record, RawFrame) else "csv_row").inc()
            for out in outputs_of(record, parser):
                if isinstance(out, Rejected):
                    event: ev.Event = dead_letter(out)
                    _on_rejected(out, stats, metrics, logged, config.log_rejections)
                else:
                    event = out
                    if isinstance(event, ev.FeedGap | ev.FeedResynced):
                        _on_status(event, metrics)
                stats.events[type(event).__name__] += 1
                if speed is not None:
                    last_ts = max(last_ts, event.ts_event)
                    if first_ts is None:
                        first_ts, wall0 = last_ts, time.monotonic()
                    delay = wall0 + (last_ts - first_ts) / 1e9 / speed - time.monotonic()
                    if delay > 0:
                        await flush()
                        await _sleep(delay, stop)
                        if stop is not None and stop.is_set():
                            break
                batch.append(event)
                if len(batch) >= window:
                    await flush()
            if stop is not None and stop.is_set():
                stats.stopped = True
                break
        await flush()
    finally:
        bar.close()
        stats.wall_s = time.perf_counter() - t0
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
