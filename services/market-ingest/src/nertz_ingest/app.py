"""Composition root of market-ingest: command line → settings → runtime → replay.

``python -m nertz_ingest replay --help`` documents the command. Everything is built here and passed
down; nothing else in the package reads the environment or the command line.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import nats.js.errors
import pydantic

from nertz_common import events as ev
from nertz_common import subjects
from nertz_common.bus import PublishError
from nertz_common.runtime import runtime, settle_heap
from nertz_common.settings import load
from nertz_common.storage import Storage, StorageSettings, Target, is_remote, local_path
from nertz_ingest.adapters.bybit_rest import REST_URLS, BybitRest, RestError
from nertz_ingest.adapters.bybit_ws import WS_URLS
from nertz_ingest.adapters.durable import TRANSIENT
from nertz_ingest.adapters.log_position import last_bars, last_closed_bars, last_universe, log_end
from nertz_ingest.adapters.recorder import RawPublisher, RecordingWriter
from nertz_ingest.adapters.recording import RecordingError, Sources
from nertz_ingest.adapters.rotation import RotatingRecorder
from nertz_ingest.live import FrameTap, LiveError, LiveFeed, symbols_of
from nertz_ingest.metrics import IngestMetrics
from nertz_ingest.replay import BUNDLED_INSTRUMENTS, SERVICE, load_instruments, replay_files
from nertz_ingest.settings import IngestSettings, LiveConfig
from nertz_ingest.universe import UniverseHunter

log = logging.getLogger("nertz.ingest")

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130

DESCRIPTION = """\
Nertz market-ingest: Bybit V5 public linear market data onto the NERTZ log.

It parses raw Bybit frames (orderbook, publicTrade, kline, tickers) and kline CSVs into md.* events:
conflated top-N BookSnapshot, TradeBatch, Bar, merged Ticker, and FeedGap/FeedResynced when an order
book loses updates. Bad frames never stop it: each is counted by reason, logged, and dead-lettered to
sys.dlq.market-ingest.

Commands:
  replay   feed recordings through the same parsing code the live feed uses.
  live     the live Bybit V5 feed through pybit (WebSocket + REST backfill), with the same settings and
           parser: what it receives replays to the same events.
"""

LIVE_EPILOG = """\
what it does:
  1. GET /v5/market/instruments-info per symbol -> InstrumentSpec (tick size, qty step, min qty);
     a symbol Bybit does not list stops it (exit 2).
  2. WebSocket /v5/public/linear (pybit): orderbook.<depth>, publicTrade, kline.<interval> (1 and
     --intervals) and tickers per symbol; frames queue up while
  3. GET /v5/market/kline backfills NERTZ_INGEST__LIVE__BACKFILL_BARS closed bars per symbol and
     interval (pages of 1000, newest first), published as closed Bars in time order; then
  4. frames flow: parsed exactly as by 'replay' (receive time = ts_init), published in receive order.
  With NERTZ_UNIVERSE__ENABLED, step 0 (and every REFRESH_S): GET /v5/market/tickers and
  instruments-info; the USDT perpetuals trading with 24 h turnover >= MIN_TURNOVER_USDT and spread
  <= MAX_SPREAD, ranked by turnover, capped at MAX_SYMBOLS, are served; a change is a UniverseChanged
  on sys.universe.all, then the removed symbols' topics are unsubscribed and the added ones get 1-3
  and their topics subscribed, on the same connection.
  Order books: a u gap or a crossed/locked book -> FeedGap, the topic is resubscribed, the fresh
  snapshot -> FeedResynced; no book update for STALE_S -> FeedStale + resubscribe, then a new
  connection; a lost connection -> FeedGap per book, pybit reconnects and resubscribes (if it gives
  up: new connections with exponential backoff and jitter). A closed kline that skips bars (lost
  frames) first has the skipped closed bars fetched by REST. REST: retCode 10006 waits for
  X-Bapi-Limit-Reset-Timestamp, 5xx/timeouts are retried with backoff. Bad frames are counted,
  logged and dead-lettered to sys.dlq.market-ingest; they never stop the feed.

settings (environment):
  BYBIT_ENV                            mainnet (default) | testnet | demo (demo trading has no public
                                       stream: its market data is mainnet's, so demo uses mainnet hosts)
  NERTZ_SYMBOLS                        default symbols, JSON list (default ["BTCUSDT","ETHUSDT","SOLUSDT"])
  NERTZ_INGEST__LIVE__DEPTH            50 (default) or 200
  NERTZ_INGEST__LIVE__INTERVALS        kline intervals, JSON list (default ["1"]; "1" is always added)
  NERTZ_INGEST__LIVE__WS_URL           WebSocket host override, e.g. ws://127.0.0.1:18080 (a fake server)
  NERTZ_INGEST__LIVE__REST_URL         REST host override, e.g. http://127.0.0.1:18080
  NERTZ_INGEST__LIVE__BACKFILL_BARS    closed bars per symbol and interval at start (default 43200 = 30
                                       days of 1m: EMA 55 + the 30-day ATR median; bars already on
                                       the log are skipped; 0 = none)
  NERTZ_INGEST__LIVE__STALE_S          seconds without a book update before FeedStale (default 10)
  NERTZ_INGEST__LIVE__RESYNC_TIMEOUT_S seconds to wait for a fresh snapshot after a resubscribe (10)
  NERTZ_INGEST__LIVE__REST_TIMEOUT_S   one REST request's timeout (10); REST_ATTEMPTS tries per call (5)
  NERTZ_INGEST__LIVE__RATE_LIMIT_MAX_WAIT_S   longest wait for a rate-limit reset (30)
  NERTZ_INGEST__LIVE__RECONNECT_INITIAL_S / _MAX_S   backoff between new connections (0.5 .. 30)
  NERTZ_INGEST__LIVE__WS_RETRIES       pybit's attempts per reconnect before it gives up (10)
  NERTZ_UNIVERSE__ENABLED              true: the coin hunter chooses the symbols from Bybit's tickers
                                       (default false: the symbols are NERTZ_SYMBOLS / --symbols)
  NERTZ_UNIVERSE__REFRESH_S            seconds between two choices (21600 = 6 h); one at start
  NERTZ_UNIVERSE__MIN_TURNOVER_USDT    least 24 h turnover (10000000); __MAX_SPREAD largest
                                       (ask - bid) / mid (0.002); __MAX_SYMBOLS cap (5)
  NERTZ_UNIVERSE__PIN_SYMBOLS          true: NERTZ_SYMBOLS always stay in (default false)
  NERTZ_INGEST__BOOK_DEPTH, NERTZ_INGEST__BOOK_MIN_INTERVAL_MS, NATS_URL, NERTZ_METRICS_PORT,
  NERTZ_LOG_LEVEL                      as for 'replay'
  No API key is needed (public data only).

It runs until SIGINT/SIGTERM, then closes the socket, publishes what it holds and prints a summary.
exit status: 0 stopped, 1 publish or REST failure, 2 bad usage/settings/unknown symbol or no stream.

examples:
  BYBIT_ENV=testnet python -m nertz_ingest live --symbols BTCUSDT,ETHUSDT --depth 200 --intervals 1,5
  python -m nertz_ingest live --record var/live.jsonl.xz        # keep the raw frames; replay them later:
  python -m nertz_ingest replay --speed 1 var/live.jsonl.xz
  python -m nertz_ingest live --record s3://bucket/rec/bybit.jsonl.xz   # hourly files uploaded to S3/OSS
  python -m nertz_ingest replay s3://bucket/rec/                 # every recording in it, merged in time
  python -m nertz_common.testing.fake_bybit --port 18080 &      # a local fake Bybit, then:
  python -m nertz_ingest live --ws-url ws://127.0.0.1:18080 --rest-url http://127.0.0.1:18080 --depth 200
"""

REPLAY_EPILOG = """\
recording formats (compressed by extension: .xz, .gz, or plain):
  *.jsonl              cryptofeed "format 2" recording: a {"t":"header","format":2} line, then
                       connect/send/recv/http records; the recv frames of connections to
                       .../v5/public/linear are replayed, stamped with their recorded receive time.
  <SYMBOL>_<n>m.csv    Bybit kline CSV "timestamp,open,high,low,close,volume" (ISO bar open time
                       with +00:00); each row becomes a closed Bar at its close time.
  Several files are merged into one time-ordered log (frames by receive time, bars by close time,
  ties by symbol). A FILE is a path or a URL (s3://bucket/rec/x.jsonl.xz; NERTZ_STORAGE__* and
  AWS_* configure S3 and Alibaba OSS, see README "Object storage"); a directory or a glob
  (s3://bucket/rec/, var/rec/*.jsonl.xz) stands for the recordings in it.

speeds:
  max   publish as fast as the stream acknowledges (default)
  1     real time: events are paced by their ts_event differences
  60    60x faster than real time (one hour of data per minute); any positive number works

settings (environment):
  NATS_URL                            NATS server (default nats://127.0.0.1:4222); the NERTZ stream
                                      must exist (apply the topology first)
  NERTZ_INGEST__BOOK_DEPTH            levels per side in BookSnapshot (default 50)
  NERTZ_INGEST__BOOK_MIN_INTERVAL_MS  exchange ms between two snapshots of one book (default 100)
  NERTZ_INGEST__PUBLISH_WINDOW        events per pipelined publish window (default 1000)
  NERTZ_METRICS_PORT                  serve Prometheus /metrics on this port (default 0 = off)
  NERTZ_LOG_LEVEL                     JSON logs on stderr (default INFO)

Bars are checked per series (symbol, interval): a bar older than the last bar of its series (on the
log or in the files), or a second bar for the same interval with other prices or volume, is rejected
(out_of_order, conflicting_bar) and dead-lettered like a bad row; an identical repeat is dropped.

Each symbol's trading rules (tick size, qty step, minimum qty and notional) go on the log as one
InstrumentSpec just before its first event, from an instruments-info answer (--instruments; default
the bundled copy of Bybit's real answer, data/bybit_instruments_linear.json; 'none' = no specs).

Events have deterministic ids (Nats-Msg-Id). A replay resumes where the log ends: files it (or a
crashed run of it) already replayed are parsed again but only what follows the log's last
market-ingest event is published, so a restart adds no duplicate and leaves no gap. A NATS outage is
waited out however long it lasts (logged as bus.degraded, metric nertz_market_ingest_bus_degraded).
A summary is printed at the end, with the rejections by reason.
exit status: 0 done, 1 publish failed or nothing accepted (every record rejected, or no records),
2 bad usage/settings/file, 130 interrupted.

example:
  python -m nertz_ingest replay --speed max data/bybit_kline_1m/*.csv.xz data/cryptofeed/BYBIT.linear.jsonl.xz
"""


def parse_speed(text: str) -> float | None:
    """Parse ``--speed``: ``max`` (None) or a number > 0.

    Raises
    ------
    argparse.ArgumentTypeError
        If ``text`` is neither.
    """
    if text.strip().lower() == "max":
        return None
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected 'max' or a number > 0, was {text!r}")
    return value


def parse_target(text: str) -> Path | str:
    """Parse a file argument: a URL stays a string (``s3://b/k``), a path becomes a ``Path``."""
    return text if is_remote(text) else Path(text)


def build_parser() -> argparse.ArgumentParser:
    """Return the command-line parser."""
    fmt = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(prog="python -m nertz_ingest", description=DESCRIPTION, formatter_class=fmt)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    rp = sub.add_parser(
        "replay",
        help="replay recordings onto the log",
        description="Replay Bybit recordings (cryptofeed JSONL, kline CSV) onto the NERTZ log.",
        epilog=REPLAY_EPILOG,
        formatter_class=fmt,
    )
    rp.add_argument(
        "files", nargs="+", type=parse_target, metavar="FILE",
        help="recordings to replay (merged in time order): paths, URLs, directories",
    )  # fmt: skip
    rp.add_argument(
        "--speed",
        type=parse_speed,
        default=None,
        metavar="max|1|60|X",
        help="'max' (default) or a time factor: 1 = real time, 60 = 60x",
    )
    rp.add_argument(
        "--symbols",
        action="append",
        default=None,
        metavar="SYM[,SYM...]",
        help="only these symbols (comma-separated or repeated; default: every symbol in the files)",
    )
    rp.add_argument(
        "--progress",
        action="store_true",
        help="show the progress bar even when stderr is not a terminal",
    )
    rp.add_argument(
        "--instruments",
        default=str(BUNDLED_INSTRUMENTS),
        metavar="FILE|none",
        help="instruments-info answer whose specs go on the log before each symbol's first event "
        "(default: the bundled data/bybit_instruments_linear.json; 'none' = no specs)",
    )
    lp = sub.add_parser(
        "live",
        help="the live Bybit V5 feed onto the log",
        description="Ingest Bybit V5 public linear market data live (pybit WebSocket + REST backfill).",
        epilog=LIVE_EPILOG,
        formatter_class=fmt,
    )
    lp.add_argument(
        "--symbols",
        action="append",
        default=None,
        metavar="SYM[,SYM...]",
        help="symbols (comma-separated or repeated; default NERTZ_SYMBOLS)",
    )
    lp.add_argument("--depth", type=int, choices=(50, 200), default=None, help="order book topic depth (default 50)")
    lp.add_argument(
        "--intervals",
        default=None,
        metavar="I[,I...]",
        help="kline intervals, e.g. 1,5,60 (1 is always included; default NERTZ_INGEST__LIVE__INTERVALS)",
    )
    lp.add_argument(
        "--backfill", type=int, default=None, metavar="BARS", help="closed bars to backfill per symbol and interval"
    )
    lp.add_argument("--ws-url", default=None, metavar="URL", help="WebSocket host override (e.g. a fake server)")
    lp.add_argument("--rest-url", default=None, metavar="URL", help="REST host override (e.g. a fake server)")
    lp.add_argument(
        "--record",
        type=parse_target,
        default=None,
        metavar="PATH|URL",
        help="also write every received frame with its receive time to PATH (*.jsonl.xz|.gz|.jsonl; "
        "'replay' reads it back to the same events); a URL (s3://bucket/rec/bybit.jsonl.xz) is written to "
        "--spool and each finished file uploaded",
    )
    lp.add_argument(
        "--record-rotate-min",
        type=float,
        default=None,
        metavar="MIN",
        help="start a new recording file every MIN minutes of receive time, named <stem>-<UTC start> "
        "(default: 60 for a URL, never for a path; 0 = never)",
    )
    lp.add_argument(
        "--spool",
        type=Path,
        default=Path("var/spool"),
        metavar="DIR",
        help="where recordings to a URL are written before upload; an earlier run's leftovers are uploaded "
        "first (default var/spool)",
    )
    lp.add_argument(
        "--record-raw",
        action="store_true",
        help="also copy every received frame to the RAW stream (raw.bybit.linear.<topic>, short retention)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    settings = load(IngestSettings)  # exits 2 (EXIT_USAGE) listing every bad setting
    if args.command == "live":
        return live_main(settings, args)
    symbols = _symbols(args.symbols)
    storage = Storage(load(StorageSettings)) if any(map(is_remote, [*args.files, args.instruments])) else Storage()
    try:
        Sources(args.files, symbols, storage=storage)  # fail on a missing or unknown file before connecting
        instruments = None if args.instruments.lower() == "none" else load_instruments(args.instruments, storage)
    except (RecordingError, OSError) as e:  # StorageError included: bucket, credentials, network
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE
    progress = args.progress or sys.stderr.isatty()
    settle_heap()
    return asyncio.run(replay(settings, args.files, args.speed, symbols, progress, instruments))


async def replay(
    settings: IngestSettings,
    files: Sequence[Target],
    speed: float | None,
    symbols: frozenset[str] | None,
    progress: bool,
    instruments: Mapping[str, ev.InstrumentSpec] | None = None,
) -> int:
    """Replay ``files`` onto the log with the service runtime; print the summary; return the exit status.

    ``instruments``: each symbol's rules, published before its first event (None = none).
    """
    async with runtime(SERVICE, settings) as rt:
        try:
            await rt.js.stream_info(subjects.STREAM)
        except nats.js.errors.NotFoundError:
            print(
                f"error: stream {subjects.STREAM} not found on {settings.nats_url}: apply the topology first",
                file=sys.stderr,
            )
            return EXIT_USAGE
        try:
            end = await log_end(rt.js, SERVICE)
            logged = await last_bars(rt.js)
        except TRANSIENT as e:
            print(f"error: cannot read where the log ends on {settings.nats_url}: {e!r}", file=sys.stderr)
            return EXIT_FAILED
        if end is not None:
            log.info("replay.log_end", extra={"stream_seq": end.seq, "event_id": end.event.event_id})
        try:
            stats = await replay_files(
                rt.publisher,
                files,
                speed,
                symbols=symbols,
                config=settings.ingest,
                metrics=IngestMetrics(rt.registry),
                progress=progress,
                stop=rt.stop,
                logged=logged,
                resume_after=end.event.event_id if end is not None else None,
                js=rt.js,
                instruments=instruments,
            )
        except RecordingError as e:
            print(f"error: {e}", file=sys.stderr)
            return EXIT_USAGE
        except PublishError as e:
            log.error("replay.publish_failed", extra={"error": str(e)})
            print(f"error: {e}", file=sys.stderr)
            return EXIT_FAILED
        log.info("replay.done", extra={"summary": stats.summary()})
    print(stats.summary(), flush=True)
    why = stats.nothing_accepted()
    if why is not None:
        log.error("replay.nothing_accepted", extra={"reason": why})
        print(f"error: {why}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_INTERRUPTED if stats.stopped else EXIT_OK


def _symbols(values: list[str] | None) -> frozenset[str] | None:
    if not values:
        return None
    return frozenset(s.strip().upper() for v in values for s in v.split(",") if s.strip())


def live_main(settings: IngestSettings, args: argparse.Namespace) -> int:
    """Run ``live`` from parsed arguments; return the exit status."""
    overrides = {
        k: v
        for k, v in {
            "depth": args.depth,
            "intervals": args.intervals,
            "backfill_bars": args.backfill,
            "ws_url": args.ws_url,
            "rest_url": args.rest_url,
        }.items()
        if v is not None
    }
    try:
        live_cfg = LiveConfig(**{**settings.ingest.live.model_dump(), **overrides})
    except pydantic.ValidationError as e:
        print(f"invalid live settings:\n{e}", file=sys.stderr)
        return EXIT_USAGE
    settings = settings.model_copy(update={"ingest": settings.ingest.model_copy(update={"live": live_cfg})})
    symbols = symbols_of(args.symbols or settings.symbols)
    if not symbols:
        print("error: expected at least one symbol (--symbols or NERTZ_SYMBOLS)", file=sys.stderr)
        return EXIT_USAGE
    rotate_min = args.record_rotate_min
    if rotate_min is not None and not rotate_min >= 0:
        print(f"error: --record-rotate-min: expected >= 0, was {rotate_min}", file=sys.stderr)
        return EXIT_USAGE
    storage = Storage(load(StorageSettings)) if args.record is not None and is_remote(args.record) else None
    recording = Recording(args.record, rotate_min, args.spool, storage) if args.record is not None else None
    settle_heap()
    return asyncio.run(live(settings, symbols, recording, args.record_raw))


class Recording:
    """Where ``live --record`` goes: a path or URL, its rotation and the spool of a URL's files.

    Parameters
    ----------
    target : Path or str
        The recording's path or URL.
    rotate_min : float, optional
        Minutes of receive time per file; None = 60 for a URL, one file for a path; 0 = one file.
    spool : Path
        Local directory of a URL's files before upload.
    storage : Storage, optional
        How the URL is reached (default: settings from the environment).
    """

    def __init__(
        self, target: Target, rotate_min: float | None = None, spool: Path = Path("var/spool"),
        storage: Storage | None = None,
    ) -> None:  # fmt: skip
        self.target = target
        self.rotate_min = (60.0 if is_remote(target) else 0.0) if rotate_min is None else rotate_min
        self.spool = spool
        self.storage = storage

    def writer(self, raw_sink: RawPublisher | None, url: str) -> RecordingWriter | RotatingRecorder:
        """Open the recording: a :class:`RecordingWriter` for a path without rotation (as before), else a
        :class:`RotatingRecorder`.

        Raises
        ------
        OSError
            If it cannot be created (exists, a bad directory, the store unreachable or refusing).
        ValueError
            If the name has no recording suffix.
        """
        if not is_remote(self.target) and not self.rotate_min:
            return RecordingWriter(local_path(self.target), raw_sink, url=url)
        rotate_ns = round(self.rotate_min * 60e9)
        return RotatingRecorder(self.target, self.spool, raw_sink, rotate_ns=rotate_ns, storage=self.storage, url=url)


async def live(
    settings: IngestSettings,
    symbols: Sequence[str],
    record: Path | Recording | None = None,
    record_raw: bool = False,
) -> int:
    """Run the live feed with the service runtime until stopped; print the summary; return the exit status.

    ``record``: also write every received frame with its receive time to this file or :class:`Recording`
    (replayable); ``record_raw``: also copy every frame to the ``RAW`` stream (short retention, for forensics).
    """
    if isinstance(record, Path):
        record = Recording(record)
    cfg = settings.ingest.live
    ws_url = cfg.ws_url or WS_URLS[settings.bybit_env]
    rest_url = cfg.rest_url or REST_URLS[settings.bybit_env]
    async with runtime(SERVICE, settings) as rt:
        try:
            await rt.js.stream_info(subjects.STREAM)
        except nats.js.errors.NotFoundError:
            print(
                f"error: stream {subjects.STREAM} not found on {settings.nats_url}: apply the topology first",
                file=sys.stderr,
            )
            return EXIT_USAGE
        writer: RecordingWriter | RotatingRecorder | None = None
        tap: FrameTap | None = None
        if record is not None or record_raw:
            raw_sink = None
            if record_raw:
                try:
                    await rt.js.stream_info(subjects.RAW_STREAM)
                except nats.js.errors.NotFoundError:
                    print(f"error: stream {subjects.RAW_STREAM} not found: apply the topology first", file=sys.stderr)
                    return EXIT_USAGE
                raw_sink = RawPublisher(rt.js)
            url = f"{ws_url}/v5/public/linear"
            try:
                writer = RecordingWriter(None, raw_sink, url=url) if record is None else record.writer(raw_sink, url)
            except (OSError, ValueError) as e:
                print(f"error: cannot record to {record.target if record else None}: {e}", file=sys.stderr)
                return EXIT_USAGE
            tap = writer.write
        metrics = IngestMetrics(rt.registry)
        rest = BybitRest(
            rest_url,
            timeout_s=cfg.rest_timeout_s,
            attempts=cfg.rest_attempts,
            rate_limit_max_wait_s=cfg.rate_limit_max_wait_s,
            metrics=metrics,
        )
        log.info(
            "live.starting",
            extra={"env": settings.bybit_env, "ws_url": ws_url, "rest_url": rest_url, "symbols": list(symbols)},
        )
        hunter = None
        if settings.universe.enabled:
            current = await last_universe(rt.js)
            suggester = None
            if settings.universe.qwen and settings.dashscope_api_key is not None:
                from nertz_ingest.adapters.qwen import QwenSuggester  # the dashscope SDK only when asked for

                suggester = QwenSuggester(
                    settings.dashscope_api_key.get_secret_value().strip(), settings.universe.qwen_model,
                    base_url=settings.dashscope_base_url, timeout_s=settings.universe.qwen_timeout_s,
                    attempts=settings.universe.qwen_attempts,
                )  # fmt: skip
            hunter = UniverseHunter(
                rest, settings.universe, symbols, current=current.symbols if current else None, metrics=metrics,
                suggester=suggester,
            )  # fmt: skip
            symbols = hunter.symbols
        logged = await last_closed_bars(rt.js, symbols)  # where each bar series resumes
        feed = LiveFeed(
            rt.publisher,
            symbols,
            config=settings.ingest,
            ws_url=ws_url,
            rest=rest,
            testnet=settings.bybit_env == "testnet",
            metrics=metrics,
            tap=tap,
            stop=rt.stop,
            logged=logged,
            js=rt.js,
            universe=hunter,
        )
        try:
            stats = await feed.run()
        except LiveError as e:
            print(f"error: {e}", file=sys.stderr)
            return EXIT_USAGE
        except (RestError, PublishError) as e:
            log.error("live.failed", extra={"error": str(e)})
            print(f"error: {e}", file=sys.stderr)
            return EXIT_FAILED
        finally:
            rest.close()
            if hunter is not None and hunter.suggester is not None:
                await hunter.suggester.close()
            if writer is not None:
                try:
                    await writer.aclose()
                except OSError as e:  # RecordingWriteError: the file holds what was written before; or upload
                    log.error("live.record_failed", extra={"path": str(record and record.target), "error": repr(e)})
                log.info("live.recorded", extra={"path": str(record and record.target), "frames": writer.frames})
    print(stats.summary(), flush=True)
    return EXIT_OK
