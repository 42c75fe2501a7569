"""Composition root of market-ingest: command line → settings → runtime → replay.

``python -m nertz_ingest replay --help`` documents the command. Everything is built here and passed
down; nothing else in the package reads the environment or the command line.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

import nats.js.errors
import pydantic

from nertz_common import subjects
from nertz_common.bus import PublishError
from nertz_common.runtime import runtime
from nertz_ingest.adapters.recording import RecordingError, Sources
from nertz_ingest.metrics import IngestMetrics
from nertz_ingest.replay import SERVICE, replay_files
from nertz_ingest.settings import IngestSettings

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
  (live)   the live pybit WebSocket feed and the recorder come in a later issue; the live feed will
           run with the same settings and parser, and its frames will replay identically.
"""

REPLAY_EPILOG = """\
recording formats (compressed by extension: .xz, .gz, or plain):
  *.jsonl              cryptofeed "format 2" recording: a {"t":"header","format":2} line, then
                       connect/send/recv/http records; the recv frames of connections to
                       .../v5/public/linear are replayed, stamped with their recorded receive time.
  <SYMBOL>_<n>m.csv    Bybit kline CSV "timestamp,open,high,low,close,volume" (ISO bar open time
                       with +00:00); each row becomes a closed Bar at its close time.
  Several files are merged into one time-ordered log (frames by receive time, bars by close time,
  ties by symbol).

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

Events have deterministic ids (Nats-Msg-Id), so replaying the same files again within the stream's
duplicate window stores nothing new. A one-line summary is printed at the end.
exit status: 0 done, 1 publish failed, 2 bad usage/settings/file, 130 interrupted.

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
    rp.add_argument("files", nargs="+", type=Path, metavar="FILE", help="recordings to replay (merged in time order)")
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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        settings = IngestSettings()
    except pydantic.ValidationError as e:
        print(f"invalid settings:\n{e}", file=sys.stderr)
        return EXIT_USAGE
    symbols = _symbols(args.symbols)
    try:
        Sources(args.files, symbols)  # fail on a missing or unknown file before connecting
    except (RecordingError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE
    progress = args.progress or sys.stderr.isatty()
    return asyncio.run(replay(settings, args.files, args.speed, symbols, progress))


async def replay(
    settings: IngestSettings,
    files: Sequence[Path],
    speed: float | None,
    symbols: frozenset[str] | None,
    progress: bool,
) -> int:
    """Replay ``files`` onto the log with the service runtime; print the summary; return the exit status."""
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
            stats = await replay_files(
                rt.publisher,
                files,
                speed,
                symbols=symbols,
                config=settings.ingest,
                metrics=IngestMetrics(rt.registry),
                progress=progress,
                stop=rt.stop,
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
    return EXIT_INTERRUPTED if stats.stopped else EXIT_OK


def _symbols(values: list[str] | None) -> frozenset[str] | None:
    if not values:
        return None
    return frozenset(s.strip().upper() for v in values for s in v.split(",") if s.strip())
