"""``nertz data fetch``: Bybit V5 linear klines through pybit, paged, into the kline CSVs the tools read.

The file written is the one market-ingest's reader takes (:mod:`nertz_ingest.core.csv_bars`, named as
:func:`nertz_ingest.adapters.recording.csv_symbol_interval` wants) and the bundled ``data/bybit_kline_1m/``
files are: ``<SYMBOL>_<n>m.csv`` (``.csv.xz`` with ``--xz``), the header
``timestamp,open,high,low,close,volume``, one closed bar a line in ascending open time, the open time in
ISO 8601 UTC with ``+00:00`` (``2025-05-30 16:39:00+00:00``, as the bundled files; the reader also takes
epoch ms, but the bundled form makes a fetched file equal to the bundled rows byte for byte), prices
(USDT) and volume (base coin) as Bybit's strings, verbatim. Bybit's turnover column is dropped (the
reader has none). The reader names a file's interval in minutes (``_<n>m``), so only Bybit's minute
intervals are fetched (1, 3, 5, 15, 30, 60, 120, 240, 360, 720); D, W and M have no such name.

How a symbol is fetched (Bybit's ``GET /v5/market/kline``, DOC ``market/kline.mdx``: ``start``/``end``
inclusive, in ms; ``limit`` ≤ 1000; the list newest first):

- **plan**: the bars wanted are split into pages of at most 1000 (:func:`plan_pages`); a bar is wanted
  only once closed (its end ≤ now, :func:`closed_before`; "now" is a parameter, and the server time of
  each answer bounds it too, so a client clock running ahead never writes a candle still open);
- **new file, or bars before an existing file's first**: pages go backwards from the newest, so what
  was fetched is always contiguous with what is kept; an empty page is checked with one more call
  (``end`` only, ``limit=1``): nothing older means the symbol's history starts there, else paging jumps
  to the older bar (an exchange gap, not the end of history);
- **after an existing file's last bar**: pages go forwards (a resume extends the file, it never
  refetches it);
- **merge**: each page is sorted, rows outside its window dropped, overlaps de-duplicated (a bar kept
  from the file stays as it was, :func:`merge`); the file is then checked for continuity and its gaps
  (missing bar ranges) reported, never filled (:func:`find_gaps`);
- **write**: the whole file, atomically (a temporary file renamed over it, or an object uploaded whole:
  :mod:`nertz_common.storage`, so ``--out`` may be ``s3://bucket/prefix``). A symbol that fails half-way
  writes the contiguous part it fetched, and the next run carries on from there.

REST calls go through market-ingest's :class:`~nertz_ingest.adapters.bybit_rest.BybitRest` (timeouts,
retCode 10006 rate-limit waits, retries of transient failures; a refusal such as an unknown symbol,
retCode 10001, is not retried).
"""

from __future__ import annotations

import itertools
import logging
import lzma
import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from nertz_cli.console import cli_console
from nertz_ingest.core import csv_bars
from nertz_ingest.core.rejection import BadInput, Rejected

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID

    from nertz_common.storage import Storage
    from nertz_ingest.adapters.bybit_rest import BybitRest

MINUTE_MS = 60_000
MAX_PAGE = 1000
"""Bybit's largest kline page (``limit`` ≤ 1000)."""
INTERVALS_MIN = (1, 3, 5, 15, 30, 60, 120, 240, 360, 720)
"""Bybit's kline intervals of a whole number of minutes: the ones a ``<SYMBOL>_<n>m.csv`` name can hold."""
ENVS = ("mainnet", "testnet", "demo")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_SYMBOL = re.compile(r"[A-Z0-9]{2,30}")
_INTERVAL = re.compile(r"(?P<n>\d+)\s*(?P<unit>m|min|h)?")
_COMPRESSIONS = ("", ".xz", ".gz")


class BadKline(ValueError):
    """A kline row from Bybit that the CSV reader would reject (fail fast: corrupt data is worse than none)."""


# --- the pure part: plan, rows, merge, gaps ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Page:
    """One ``/v5/market/kline`` request: the bars with ``start_ms <= open time <= end_ms``.

    Attributes
    ----------
    start_ms, end_ms : int
        Open time of the first and of the last bar of the window, UNIX ms (Bybit's ``start`` and
        ``end``, both inclusive).
    bars : int
        Bars in the window (the request's ``limit``), 1..1000.
    """

    start_ms: int
    end_ms: int
    bars: int


@dataclass(frozen=True, slots=True)
class Gap:
    """Missing bars: every open time from ``first_ms`` to ``last_ms`` (UNIX ms, inclusive) is absent.

    Attributes
    ----------
    first_ms, last_ms : int
        Open time of the first and the last missing bar, UNIX ms.
    bars : int
        Bars missing.
    """

    first_ms: int
    last_ms: int
    bars: int


def parse_interval(text: str) -> int:
    """Return the bar length in minutes of ``--interval``: Bybit's name (``1``, ``5``, ``60``) or ``5m``, ``1h``.

    Raises
    ------
    ValueError
        If it is not one of Bybit's minute intervals (D, W and M included: a ``<SYMBOL>_<n>m.csv`` name
        cannot hold them).
    """
    m = _INTERVAL.fullmatch(text.strip().lower())
    minutes = int(m["n"]) * (60 if m["unit"] == "h" else 1) if m else None
    if minutes not in INTERVALS_MIN:
        raise ValueError(
            f"expected a Bybit interval of minutes ({', '.join(map(str, INTERVALS_MIN))}; or 5m, 1h, 4h), "
            f"was {text!r} (D, W and M have no <SYMBOL>_<n>m.csv name the tools read)"
        )
    return minutes


def file_name(symbol: str, minutes: int, xz: bool = False) -> str:
    """Return the name the tools read a kline CSV by: ``BTCUSDT_1m.csv``, ``ETHUSDT_60m.csv.xz``.

    Raises
    ------
    ValueError
        If ``symbol`` is not 2-30 of A-Z 0-9, or ``minutes`` < 1.
    """
    if not _SYMBOL.fullmatch(symbol):
        raise ValueError(f"expected a symbol of 2-30 of A-Z 0-9 (e.g. BTCUSDT), was {symbol!r}")
    if minutes < 1:
        raise ValueError(f"expected minutes >= 1, was {minutes}")
    return f"{symbol}_{minutes}m.csv" + (".xz" if xz else "")


def closed_before(now_ms: int, interval_ms: int) -> int:
    """Return the open time of the candle still open at ``now_ms`` (UNIX ms): every bar opened before it
    is closed (its end ≤ now), it and later ones are not."""
    return now_ms // interval_ms * interval_ms


def plan_pages(
    since_ms: int, until_ms: int, interval_ms: int, *, backwards: bool = False, limit: int = MAX_PAGE
) -> list[Page]:
    """Split the bars opened in ``[since_ms, until_ms)`` into ``/v5/market/kline`` pages of ≤ ``limit`` bars.

    Open times are multiples of the interval (Bybit's grid, UTC); the pages do not overlap and cover
    every open time of the range once, oldest page first (newest first with ``backwards``).

    Parameters
    ----------
    since_ms, until_ms : int
        The range of open times, UNIX ms, ``since`` inclusive, ``until`` exclusive (clip ``until`` to
        :func:`closed_before` to leave the open candle out).
    interval_ms : int
        Bar length, ms.
    backwards : bool
        Order the pages newest first.
    limit : int
        Bars per page at most (Bybit: 1..1000).

    Raises
    ------
    ValueError
        If ``interval_ms`` < 1 or ``limit`` is not in 1..1000.
    """
    if interval_ms < 1:
        raise ValueError(f"expected interval_ms >= 1, was {interval_ms}")
    if not 1 <= limit <= MAX_PAGE:
        raise ValueError(f"expected limit in 1..{MAX_PAGE}, was {limit}")
    first = -(-since_ms // interval_ms) * interval_ms
    n = -(-(until_ms - first) // interval_ms) if until_ms > first else 0
    bounds = [(a, min(a + limit, n)) for a in range(0, n, limit)]
    if backwards:
        bounds = [(max(0, b - limit), b) for b in range(n, 0, -limit)]
    return [Page(first + a * interval_ms, first + (b - 1) * interval_ms, b - a) for a, b in bounds]


def iso_utc(ms: int) -> str:
    """Return an open time (UNIX ms) as the bundled files write it: ``2025-05-30 16:39:00+00:00``."""
    return (_EPOCH + timedelta(milliseconds=ms)).isoformat(sep=" ")


def kline_line(row: Sequence[Any], symbol: str, minutes: int) -> tuple[int, str]:
    """Turn one Bybit REST kline row into ``(open time, CSV line)``.

    Parameters
    ----------
    row : sequence of str
        ``[startTime (ms), open, high, low, close, volume, turnover]``, Bybit's strings.
    symbol : str
        The symbol the row is of.
    minutes : int
        Bar length, minutes.

    Returns
    -------
    (int, str)
        The open time, UNIX ms, and ``timestamp,open,high,low,close,volume`` (no newline): the open time
        as :func:`iso_utc`, the numbers as Bybit wrote them, the turnover dropped.

    Raises
    ------
    BadKline
        If the row has fewer than 6 fields, a start that is not epoch ms on the interval's grid, or the
        reader would reject the line (not numeric, NaN, high below low...).
    """
    if len(row) < 6:
        raise BadKline(f"{symbol}: expected a kline row [startTime, open, high, low, close, volume, ...], was {row!r}")
    try:
        start = int(row[0])
    except (TypeError, ValueError):
        raise BadKline(f"{symbol}: expected the kline's startTime in epoch ms, was {row[0]!r}") from None
    if start % (minutes * MINUTE_MS):
        raise BadKline(f"{symbol}: expected a startTime that is a multiple of {minutes * MINUTE_MS} ms, was {start}")
    line = ",".join([iso_utc(start), *(str(x) for x in row[1:6])])
    parsed = csv_bars.parse_row(line, symbol, minutes)
    if isinstance(parsed, Rejected):
        raise BadKline(f"{symbol}: Bybit sent a bar the reader rejects ({parsed.reason}: {parsed.detail}): {row!r}")
    return start, line


def page_lines(
    rows: Iterable[Sequence[Any]], page: Page, open_before_ms: int, symbol: str, minutes: int
) -> list[tuple[int, str]]:
    """Return the bars of one page's answer that are inside its window and closed, oldest first.

    Parameters
    ----------
    rows : iterable of sequence of str
        Bybit's ``result.list`` (newest first; any order is taken).
    page : Page
        The window asked for: rows outside it are dropped (an overlap, or more than was asked).
    open_before_ms : int
        Open time of the candle still open (:func:`closed_before`), UNIX ms: it and later ones are dropped.
    symbol, minutes
        As :func:`kline_line`.

    Raises
    ------
    BadKline
        As :func:`kline_line`.
    """
    out = (kline_line(r, symbol, minutes) for r in rows)
    return sorted(x for x in out if page.start_ms <= x[0] <= page.end_ms and x[0] < open_before_ms)


def merge(kept: Mapping[int, str], new: Iterable[tuple[int, str]]) -> tuple[dict[int, str], int]:
    """Merge fetched bars into the kept ones (open time ms → CSV line).

    A bar already there stays as it was: overlapping pages and bars the file had are de-duplicated.

    Returns
    -------
    (dict, int)
        Every bar by ascending open time, and how many were added.
    """
    rows = dict(kept)
    added = 0
    for start, line in new:
        if start not in rows:
            rows[start] = line
            added += 1
    return dict(sorted(rows.items())), added


def find_gaps(opens: Sequence[int], interval_ms: int) -> list[Gap]:
    """Return the ranges of bars missing between the first and the last of ``opens``.

    Parameters
    ----------
    opens : sequence of int
        Open times, UNIX ms, ascending.
    interval_ms : int
        Bar length, ms.

    Raises
    ------
    ValueError
        If the open times are not strictly ascending, or two are not a whole number of bars apart.
    """
    gaps: list[Gap] = []
    for a, b in itertools.pairwise(opens):
        step = b - a
        if step <= 0 or step % interval_ms:
            raise ValueError(
                f"expected open times ascending by multiples of {interval_ms} ms, was {iso_utc(a)} then {iso_utc(b)}"
            )
        if step > interval_ms:
            gaps.append(Gap(a + interval_ms, b - interval_ms, step // interval_ms - 1))
    return gaps


def parse_existing(lines: Iterable[str], where: str) -> dict[int, str]:
    """Read an existing kline CSV: open time (UNIX ms) → its line as it is (newline removed).

    The header (if any) and blank lines are skipped. The timestamp may be in any form the reader takes.

    Raises
    ------
    ValueError
        If a line's timestamp cannot be read, or the open times are not strictly ascending
        (``where`` and the line number are named).
    """
    rows: dict[int, str] = {}
    last = -1
    for n, raw in enumerate(lines, start=1):
        line = raw.rstrip("\r\n")
        if not line.strip() or (n == 1 and line.strip().lower().replace(" ", "") == csv_bars.HEADER):
            continue
        try:
            start = csv_bars.parse_time_ns(line.split(",", 1)[0]) // 1_000_000
        except BadInput as e:
            raise ValueError(f"{where}:{n}: {e.detail}") from None
        if start <= last:
            raise ValueError(f"{where}:{n}: expected open times ascending, was {iso_utc(start)} after {iso_utc(last)}")
        rows[start] = line
        last = start
    return rows


def render(rows: Mapping[int, str]) -> str:
    """Return the file's text: the header, then each bar's line by ascending open time, ``\\n``-terminated."""
    return "".join([csv_bars.HEADER, "\n", *(rows[k] + "\n" for k in sorted(rows))])


# --- fetching one symbol (I/O) ---------------------------------------------------------------------


@dataclass
class SymbolReport:
    """What fetching one symbol did.

    Attributes
    ----------
    symbol, target : str
        The symbol, and its file (path or URL).
    bars : int
        Bars in the file afterwards.
    new : int
        Bars this run added.
    kept : int or None
        Bars the existing file had (None: there was no file).
    first_ms, last_ms : int or None
        Open time of the file's first and last bar, UNIX ms.
    gaps : list of Gap
        Missing bar ranges between them.
    pages : int
        ``/v5/market/kline`` calls made (the probes of empty pages included).
    written : bool
        Whether the file was (re)written.
    error : str or None
        Why the symbol failed (None: it did not).
    """

    symbol: str
    target: str
    bars: int = 0
    new: int = 0
    kept: int | None = None
    first_ms: int | None = None
    last_ms: int | None = None
    gaps: list[Gap] = field(default_factory=list)
    pages: int = 0
    written: bool = False
    error: str | None = None


OnProgress = Callable[[int, int], None]
"""``progress(bars_done, bars_planned)``."""


async def fetch_symbol(
    rest: BybitRest,
    storage: Storage,
    symbol: str,
    minutes: int,
    target: str,
    *,
    since_ms: int | None,
    until_ms: int,
    now_ms: int,
    xz: bool,
    say: Callable[[str], None] = lambda _: None,
    progress: OnProgress = lambda done, total: None,
) -> SymbolReport:
    """Fetch the closed bars of ``symbol`` opened in ``[since_ms, until_ms)`` into ``target``, resuming it.

    An existing ``target`` is kept and extended: forwards from its last bar to ``until_ms``, and
    backwards from its first bar to ``since_ms`` when that is earlier; nothing it has is refetched.

    Parameters
    ----------
    rest : BybitRest
        Market REST client (timeouts, rate-limit waits and retries are its own).
    storage : Storage
        Where ``target`` is read and written (a local path or an fsspec URL).
    symbol : str
        Linear symbol, e.g. ``BTCUSDT``.
    minutes : int
        Bar length, minutes (one of :data:`INTERVALS_MIN`).
    target : str
        The file, named :func:`file_name`; ``.xz`` compresses it.
    since_ms : int or None
        First open time wanted, UNIX ms, inclusive; None = from the existing file's last bar on.
    until_ms : int
        End of the open times wanted, UNIX ms, exclusive.
    now_ms : int
        The current time, UNIX ms: only bars whose end ≤ now are written (the server time of each
        answer bounds it too).
    xz : bool
        Compress the file (xz) — must agree with ``target``'s name.
    say : callable
        Receives a line for the operator (resuming, up to date, where history starts).
    progress : callable
        ``progress(bars_done, bars_planned)`` after each page.

    Returns
    -------
    SymbolReport
        ``error`` is set, rather than raised, when Bybit refuses the request (``retCode`` and message),
        the network is still down after the client's retries, a row is bad, or the file cannot be read
        or written.

    Raises
    ------
    ValueError
        If ``since_ms`` is None and ``target`` does not exist.
    """
    from nertz_common.storage import StorageError
    from nertz_ingest.adapters.bybit_rest import RestError
    from nertz_ingest.adapters.recording import SourceFile

    report = SymbolReport(symbol, target)
    iv = minutes * MINUTE_MS
    kept: dict[int, str] = {}
    try:
        if storage.exists(target):
            source = SourceFile(target, storage=storage)
            kept = parse_existing(source.lines(), target)
            if source.truncated:
                raise ValueError(f"{target} is cut short ({source.truncated}): move it away to fetch it anew")
            find_gaps(list(kept), iv)  # on the interval's grid, or it is not this interval's file
            report.kept = len(kept)
    except (StorageError, OSError, ValueError) as e:
        report.error = f"cannot resume {target}: {e}"
        return report
    if since_ms is None and not kept:
        raise ValueError(f"expected --since for {target}, which does not exist yet")
    hi = min(until_ms, closed_before(now_ms, iv))
    if kept:
        first, last = min(kept), max(kept)
        head = plan_pages(since_ms, first, iv, backwards=True) if since_ms is not None else []
        tail = plan_pages(last + iv, hi, iv)
        say(
            f"{symbol}: resuming {target} ({len(kept):,} bars, {_minute(first)} → {_minute(last)} UTC): "
            + ("up to date" if not head and not tail else "fetching only what it lacks")
        )
    else:
        head, tail = plan_pages(since_ms or 0, hi, iv, backwards=True), []
    total = sum(p.bars for p in head + tail)
    done = 0
    fetched: list[tuple[int, str]] = []
    progress(0, total)
    try:
        floor: int | None = None  # backwards, after an empty page: the newest older bar there is
        lo = since_ms or 0
        for page in head:
            if floor is not None and page.start_ms > floor:  # known empty
                done += page.bars
                progress(done, total)
                continue
            got = await _page(rest, report, symbol, minutes, page, hi)
            done += page.bars
            progress(done, total)
            fetched += got
            if not got:
                floor = await _older(rest, report, symbol, minutes, page.start_ms - 1)
                if floor is None or floor < lo:
                    span = f"{_minute(lo)} to {_minute(page.end_ms)} UTC"
                    say(f"{symbol}: Bybit has no bar from {span}: nothing older to fetch")
                    break
        done = sum(p.bars for p in head)
        progress(done, total)
        for page in tail:
            fetched += await _page(rest, report, symbol, minutes, page, hi)
            done += page.bars
            progress(done, total)
    except (RestError, BadKline) as e:
        report.error = f"{symbol}: {_short(e, rest.url)}" + (
            f" (kept the {len(fetched):,} bars fetched before)" if fetched else ""
        )
    rows, report.new = merge(kept, fetched)
    opens = list(rows)
    report.bars = len(rows)
    if opens:
        report.first_ms, report.last_ms = opens[0], opens[-1]
        report.gaps = find_gaps(opens, iv)
    if report.new:
        data = render(rows).encode()
        try:
            storage.write_bytes(target, lzma.compress(data) if xz else data)
            report.written = True
        except (StorageError, OSError) as e:
            report.error = f"{symbol}: could not write {target}: {e}"
    return report


async def _page(
    rest: BybitRest, report: SymbolReport, symbol: str, minutes: int, page: Page, hi: int
) -> list[tuple[int, str]]:
    answer = await rest.call(
        "get_kline", category="linear", symbol=symbol, interval=str(minutes), start=page.start_ms, end=page.end_ms,
        limit=page.bars,
    )  # fmt: skip
    report.pages += 1
    open_before = min(hi, closed_before(answer.server_ms, minutes * MINUTE_MS))
    return page_lines(answer.result.get("list") or [], page, open_before, symbol, minutes)


async def _older(rest: BybitRest, report: SymbolReport, symbol: str, minutes: int, end_ms: int) -> int | None:
    answer = await rest.call("get_kline", category="linear", symbol=symbol, interval=str(minutes), end=end_ms, limit=1)
    report.pages += 1
    starts = [int(r[0]) for r in answer.result.get("list") or [] if r and str(r[0]).isdigit()]
    return max((s for s in starts if s <= end_ms), default=None)


def _short(e: Exception, url: str) -> str:
    text = re.sub(r"^(\w+)\(\{[^}]*\}\) ", r"\1 ", str(e))  # the request's parameters: long, and known
    errno = re.search(r"\[Errno -?\d+\][^\"'()]+", text)
    if errno and ": connection error: " in text:  # requests' repr of a refused connection: keep its reason
        text = f"{text.split(': connection error: ')[0]}: could not connect to {url} ({errno[0].strip()})"
    return text


def _minute(ms: int | None) -> str:
    return "-" if ms is None else iso_utc(ms)[:16]


# --- the command ------------------------------------------------------------------------------------

app = typer.Typer(no_args_is_help=True)
err = cli_console(stderr=True)
out = cli_console()


@app.callback()
def data_files() -> None:
    """Market data files: fetch Bybit klines into the kline CSVs that backtest and replay read."""


_HELP = """Fetch Bybit V5 linear klines (closed bars only) through pybit into <SYMBOL>_<n>m.csv[.xz] files under --out.

Each file has the format of the bundled data/bybit_kline_1m/ files, which `nertz backtest` and
`python -m nertz_ingest replay` read: `timestamp,open,high,low,close,volume`, the bar's open time in UTC
(`2025-05-30 16:39:00+00:00`), Bybit's numbers verbatim. Pages of 1000 bars; rate limits (retCode 10006)
are waited out and network errors retried; a file is written atomically. A file already there is
extended from its last bar (and back to --since if that is earlier), never fetched again; gaps (missing
bars) are reported, never filled. Ends with a table per symbol (bars, first, last, gaps). Exit codes:
0 done, 1 a symbol failed (unknown symbol: Bybit's retCode 10001 and message; network still down after
the retries), 2 bad arguments.

\b
Examples:
  nertz data fetch --symbols BTCUSDT,ETHUSDT --interval 1 \\
      --since 2025-05-01 --until 2025-06-01 --out data/fetched
  nertz data fetch --symbols BTCUSDT,ETHUSDT --out data/fetched    # later: extend the files up to now
  nertz backtest data/fetched/*.csv
"""


@app.command("fetch", help=_HELP)
def fetch(
    symbols: Annotated[str, typer.Option(help="comma-separated linear symbols, e.g. BTCUSDT,ETHUSDT")],
    interval: Annotated[
        str, typer.Option(help="bar length: a Bybit interval of minutes (1 3 5 15 30 60 120 240 360 720), or 5m, 1h")
    ] = "1",
    since: Annotated[
        str | None,
        typer.Option(help="first bar's open time, UTC (2025-05-01 or 2025-05-01T12:00); needed for a new file"),
    ] = None,
    until: Annotated[str, typer.Option(help="end of the open times, UTC, exclusive")] = "now",
    out_dir: Annotated[
        str, typer.Option("--out", help="directory (or URL: s3://bucket/prefix) of the files")
    ] = "data/fetched",
    env: Annotated[
        str, typer.Option(envvar="BYBIT_ENV", help="Bybit environment: mainnet, testnet or demo (= mainnet's data)")
    ] = "mainnet",
    rest_url: Annotated[
        str | None,
        typer.Option(
            envvar="NERTZ_BYBIT__REST_URL", help="REST base URL instead of --env's (e.g. a fake on 127.0.0.1)"
        ),
    ] = None,
    xz: Annotated[bool, typer.Option("--xz/--no-xz", help="compress the files (.csv.xz)")] = False,
    attempts: Annotated[int, typer.Option(min=1, max=20, help="tries of each request (network, 5xx, rate limit)")] = 5,
    timeout: Annotated[float, typer.Option(min=0.1, help="timeout of one request, s")] = 10.0,
) -> None:
    """Fetch klines into kline CSVs (the command's help is :data:`_HELP`); exit 0, 1 (a symbol failed) or 2 (usage)."""
    from nertz_common import aio
    from nertz_common.errors import ConfigurationError
    from nertz_common.storage import Storage, StorageError, is_remote, join
    from nertz_ingest.adapters.bybit_rest import REST_URLS, BybitRest

    now_ms = time.time_ns() // 1_000_000
    try:
        names = [s.strip().upper() for s in symbols.split(",") if s.strip()]
        if not names:
            raise ValueError(f"--symbols: expected symbols separated by commas, was {symbols!r}")
        minutes = parse_interval(interval)
        targets = {s: join(out_dir, file_name(s, minutes, xz)) for s in names}
        since_ms = None if since is None else _utc_ms(since, "--since", now_ms)
        until_ms = _utc_ms(until, "--until", now_ms)
        if since_ms is not None and since_ms >= until_ms:
            raise ValueError(f"expected --since before --until, was {since} ≥ {until}")
        env = "mainnet" if env.strip().lower() == "live" else env.strip().lower()
        if env not in ENVS:
            raise ValueError(f"--env: expected one of {', '.join(ENVS)}, was {env!r}")
        storage = Storage.from_env() if is_remote(out_dir) else Storage()
        for target in targets.values():
            _check_target(storage, target, since_ms is None)
    except (ValueError, ConfigurationError) as e:
        err.print(f"[red]error:[/] {e}")
        raise typer.Exit(2) from None
    except StorageError as e:  # the store is down or refuses: not a usage error
        err.print(f"[red]error:[/] {e}")
        raise typer.Exit(1) from None
    url = rest_url or REST_URLS[env]
    rest = BybitRest(url, timeout_s=timeout, attempts=attempts)
    err.print(f"fetching {interval_label(minutes)} klines of {', '.join(names)} from {url} into {out_dir}")
    try:
        with _progress() as bars, _rest_notes(bars.console, attempts):
            reports = aio.run(_fetch_all(rest, storage, targets, minutes, since_ms, until_ms, now_ms, xz, bars))
    finally:
        rest.close()
    print_summary(reports, minutes, out)
    raise typer.Exit(1 if any(r.error for r in reports) else 0)


def interval_label(minutes: int) -> str:
    """Return ``1m``, ``5m``, ``1h``, ``4h``... for a bar length in minutes."""
    return f"{minutes // 60}h" if minutes % 60 == 0 else f"{minutes}m"


async def _fetch_all(
    rest: BybitRest, storage: Storage, targets: Mapping[str, str], minutes: int, since_ms: int | None,
    until_ms: int, now_ms: int, xz: bool, bars: Progress,
) -> list[SymbolReport]:  # fmt: skip
    reports = []
    for symbol, target in targets.items():
        task = bars.add_task(symbol, total=None)

        def show(done: int, total: int, task: TaskID = task) -> None:
            bars.update(task, completed=done, total=total)

        report = await fetch_symbol(
            rest, storage, symbol, minutes, target, since_ms=since_ms, until_ms=until_ms, now_ms=now_ms, xz=xz,
            say=bars.console.print, progress=show,
        )  # fmt: skip
        reports.append(report)
        if report.error:
            bars.console.print(f"[red]error:[/] {report.error}")
    return reports


def print_summary(reports: Sequence[SymbolReport], minutes: int, console: Console) -> None:
    """Print a table of what was fetched (symbol, bars, new, first, last, gaps), the files written, each gap."""
    t = Table(title=f"{interval_label(minutes)} klines (open times, UTC)")
    for col in ("symbol", "bars", "new", "first", "last", "gaps"):
        t.add_column(col, justify="right" if col in ("bars", "new", "gaps") else "left", no_wrap=True)
    for r in reports:
        t.add_row(
            r.symbol if not r.error else f"[red]{r.symbol}[/]", f"{r.bars:,}", f"{r.new:,}", _minute(r.first_ms),
            _minute(r.last_ms), f"{len(r.gaps)} ({sum(g.bars for g in r.gaps):,} bars)" if r.gaps else "0",
        )  # fmt: skip
    console.print(t)
    written = [r.target for r in reports if r.written]
    if written:
        console.print(f"written: {', '.join(written)}")
    for r in reports:
        for g in r.gaps[:10]:
            console.print(f"gap {r.symbol}: {_minute(g.first_ms)} → {_minute(g.last_ms)} UTC missing ({g.bars:,} bars)")
        if len(r.gaps) > 10:
            console.print(f"gap {r.symbol}: ... and {len(r.gaps) - 10} more")
    failed = [r for r in reports if r.error]
    if failed:
        names = ", ".join(r.symbol for r in failed)
        console.print(f"[red]{len(failed)} of {len(reports)} symbol(s) failed:[/] {names}")


def _utc_ms(text: str, name: str, now_ms: int) -> int:
    if text.strip().lower() == "now":
        return now_ms
    try:
        t = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"{name}: expected a UTC time like 2025-05-01 or 2025-05-01T12:00, was {text!r}") from None
    if t.tzinfo is None:
        t = t.replace(tzinfo=UTC)
    return (t - _EPOCH) // timedelta(milliseconds=1)


def _check_target(storage: Storage, target: str, needs_file: bool) -> None:
    stem = target.removesuffix(".xz")
    others = [stem + c for c in _COMPRESSIONS if stem + c != target and storage.exists(stem + c)]
    if others:
        raise ValueError(
            f"{others[0]} exists: fetch with{'' if others[0].endswith('.xz') else 'out'} --xz to extend it "
            f"(two copies of a symbol would both be read by `nertz backtest` on the directory)"
        )
    if needs_file and not storage.exists(target):
        raise ValueError(f"--since is needed: {target} does not exist yet, so there is no last bar to resume from")


@contextmanager
def _progress() -> Iterator[Progress]:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(
        TextColumn("{task.description:<12}"), BarColumn(), MofNCompleteColumn(), TextColumn("bars"),
        TimeRemainingColumn(), console=err,
    ) as progress:  # fmt: skip
        yield progress


class _Notes(logging.Handler):
    def __init__(self, console: Console, attempts: int) -> None:
        super().__init__(logging.WARNING)
        self.console = console
        self.attempts = attempts

    def emit(self, record: logging.LogRecord) -> None:
        outcome = str(getattr(record, "outcome", record.getMessage()))
        if outcome == "refused" or (outcome.startswith("http_4") and outcome not in ("http_409", "http_429")):
            return  # not retried: the symbol's error says it
        what = f"{outcome.replace('_', ' ')} (tried up to {self.attempts} times in all)"
        self.console.print(f"[yellow]Bybit {getattr(record, 'endpoint', 'request')}:[/] {what}")


@contextmanager
def _rest_notes(console: Console, attempts: int) -> Iterator[None]:
    """Show the REST client's warnings (rate limited, timeout...) as one line each instead of raw log records."""
    logger = logging.getLogger("nertz.ingest.rest")
    handler, propagate = _Notes(console, attempts), logger.propagate
    logger.addHandler(handler)
    logger.propagate = False
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.propagate = propagate
