"""Read recordings: cryptofeed "format 2" JSONL of raw Bybit frames, and Bybit kline CSVs.

Both may be compressed; the extension decides (``.xz``, ``.gz``, else plain text).

- **cryptofeed format 2** (``*.jsonl``): line 1 is ``{"t":"header","format":2,...}``; then one record
  per line, ``{"t":"connect","conn":"BYBIT.ws.2","ts":<s>,"addr":"wss://.../v5/public/linear"}``,
  ``{"t":"recv","conn":..,"ts":<receive time, epoch s (float)>,"data":"<raw frame text>"}``, and
  ``send``/``http`` records. Only ``recv`` records of connections whose ``connect`` address ends with
  ``/v5/public/linear`` are read (spot and REST traffic are skipped).
- **kline CSV** (``<SYMBOL>_<n>m.csv``): ``timestamp,open,high,low,close,volume``; the symbol and the
  interval come from the file name.

:class:`Sources` merges any number of files into one time-ordered stream of records: frames by receive
time, bars by close time, ties broken by symbol, then by file order; a file's own order is kept.
"""

from __future__ import annotations

import gzip
import heapq
import io
import lzma
import re
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO, Literal, TypeAlias, cast

import msgspec

from nertz_common import events as ev
from nertz_ingest.core import csv_bars
from nertz_ingest.core.rejection import Rejected

LINEAR_ADDR_SUFFIX = "/v5/public/linear"
_CSV_NAME = re.compile(r"(?P<symbol>[A-Z0-9]{2,30})_(?P<minutes>\d+)m\.csv")

Kind = Literal["cryptofeed", "kline_csv"]


class RecordingError(ValueError):
    """A file that is not a recording this module reads (an operator error: stop, say which file)."""


@dataclass(frozen=True, slots=True)
class RawFrame:
    """One frame as received.

    Attributes
    ----------
    recv_ns : int
        Receive time, UNIX ns (the recording's epoch seconds, rounded to the microsecond).
    raw : str
        The frame's JSON text, exactly as received.
    source : str
        ``"path:line"``, for logs.
    """

    recv_ns: int
    raw: str
    source: str


Record: TypeAlias = RawFrame | ev.Bar | Rejected
"""What a recording yields: a frame to parse, a bar parsed from CSV, or a rejected line/row."""


class _Line(msgspec.Struct):
    t: str
    conn: str = ""
    ts: float | None = None
    addr: str = ""
    data: str | None = None
    format: int | None = None


def detect_kind(path: Path) -> Kind:
    """Tell a file's format from its name (compression suffix ignored).

    Raises
    ------
    RecordingError
        If the name ends in neither ``.csv`` nor ``.jsonl``.
    """
    name = _strip_compression(path.name)
    if name.endswith(".csv"):
        return "kline_csv"
    if name.endswith(".jsonl"):
        return "cryptofeed"
    raise RecordingError(f"expected a *.jsonl (cryptofeed) or *.csv (kline) file, optionally .xz/.gz, was {path}")


def csv_symbol_interval(path: Path) -> tuple[str, int]:
    """Return ``(symbol, minutes)`` from a kline CSV name like ``BTCUSDT_1m.csv.xz``.

    Raises
    ------
    RecordingError
        If the name is not ``<SYMBOL>_<n>m.csv[.xz|.gz]``.
    """
    m = _CSV_NAME.fullmatch(_strip_compression(path.name))
    if not m or int(m["minutes"]) < 1:
        raise RecordingError(f"expected a kline CSV named <SYMBOL>_<n>m.csv[.xz|.gz], was {path.name}")
    return m["symbol"], int(m["minutes"])


class SourceFile:
    """One opened recording; :meth:`position` is how many bytes of the file (compressed) were consumed.

    Parameters
    ----------
    path : Path
    addr_suffix : str
        For cryptofeed files: read ``recv`` records of connections whose address ends with this.
    """

    def __init__(self, path: Path, addr_suffix: str = LINEAR_ADDR_SUFFIX) -> None:
        self.path = path
        self.kind: Kind = detect_kind(path)
        self.size = path.stat().st_size
        self.addr_suffix = addr_suffix
        self._raw: IO[bytes] | None = None
        self._done = False

    def position(self) -> int:
        """Bytes of the file consumed so far (of the compressed file, when compressed)."""
        if self._done:
            return self.size
        if self._raw is None or self._raw.closed:
            return 0
        return self._raw.tell()

    def symbol(self) -> str | None:
        """The symbol of a kline CSV (None for a multi-symbol recording)."""
        return csv_symbol_interval(self.path)[0] if self.kind == "kline_csv" else None

    def lines(self) -> Iterator[str]:
        """Yield the text lines (decompressing by extension); closes the file at the end."""
        raw = open(self.path, "rb")  # noqa: SIM115 - closed below, and position() reads it meanwhile
        self._raw = raw
        name = self.path.name
        stream: IO[bytes]
        if name.endswith(".xz"):
            stream = cast(IO[bytes], lzma.LZMAFile(raw))  # noqa: SIM115 - closed with the text wrapper below
        elif name.endswith(".gz"):
            stream = cast(IO[bytes], gzip.GzipFile(fileobj=raw))
        else:
            stream = raw
        try:
            with io.TextIOWrapper(stream, encoding="utf-8", errors="replace", newline="") as text:
                yield from text
        finally:
            raw.close()
            self._done = True

    def records(self) -> Iterator[Record]:
        """Yield this file's records in file order (frames for cryptofeed, bars for CSV)."""
        if self.kind == "kline_csv":
            return self._csv_records()
        return self._cryptofeed_records()

    def _csv_records(self) -> Iterator[Record]:
        symbol, minutes = csv_symbol_interval(self.path)
        last_ns = 0
        for n, item in enumerate(csv_bars.parse_lines(self.lines(), symbol, minutes), start=2):
            if isinstance(item, Rejected):
                yield replace(item, ts_ns=last_ns, source=f"{self.path}:{n}")
            else:
                last_ns = item.ts_event
                yield item

    def _cryptofeed_records(self) -> Iterator[Record]:
        dec = msgspec.json.Decoder(_Line)
        wanted: dict[str, bool] = {}  # conn -> its address ends with addr_suffix
        last_ns = 0
        for n, line in enumerate(self.lines(), start=1):
            try:
                rec = dec.decode(line)
            except msgspec.DecodeError as e:
                if n == 1:
                    raise RecordingError(
                        f"expected a cryptofeed format 2 header on line 1 of {self.path}: {e}"
                    ) from None
                yield Rejected(
                    "bad_recording_line", f"line {n}: {e}", line.rstrip("\n"), ts_ns=last_ns, source=f"{self.path}:{n}"
                )
                continue
            if n == 1:
                if rec.t != "header" or rec.format != 2:
                    was = f"t={rec.t!r} format={rec.format!r}"
                    raise RecordingError(f"expected line 1 of {self.path} to be {{'t':'header','format':2}}, was {was}")
                continue
            if rec.t == "connect":
                wanted[rec.conn] = rec.addr.endswith(self.addr_suffix)
            elif rec.t == "recv" and wanted.get(rec.conn):
                if rec.ts is None or rec.data is None or not rec.ts >= 0:
                    detail = f"line {n}: expected a recv record with ts >= 0 and data, was ts={rec.ts!r}"
                    yield Rejected(
                        "bad_recording_line", detail, line.rstrip("\n"), ts_ns=last_ns, source=f"{self.path}:{n}"
                    )
                    continue
                last_ns = round(rec.ts * 1_000_000) * 1000
                yield RawFrame(last_ns, rec.data, f"{self.path}:{n}")


class Sources:
    """Several recordings merged into one time-ordered stream of records.

    Parameters
    ----------
    paths : sequence of Path
        Cryptofeed JSONL and kline CSV files, in any mix (compressed or not).
    symbols : collection of str, optional
        Kline CSVs of other symbols are skipped entirely (frames are filtered by the parser). None = all.
    addr_suffix : str
        Which cryptofeed connections to read (default: Bybit V5 public linear).

    Raises
    ------
    RecordingError
        If a file's name is neither a cryptofeed nor a kline CSV name.
    FileNotFoundError
        If a file does not exist.
    """

    def __init__(
        self,
        paths: Sequence[Path],
        symbols: Collection[str] | None = None,
        addr_suffix: str = LINEAR_ADDR_SUFFIX,
    ) -> None:
        files = [SourceFile(Path(p), addr_suffix) for p in paths]
        self.files = [f for f in files if symbols is None or f.symbol() is None or f.symbol() in symbols]

    @property
    def total_bytes(self) -> int:
        """Size of all files, bytes (as stored, i.e. compressed)."""
        return sum(f.size for f in self.files)

    def position(self) -> int:
        """Bytes consumed so far over all files."""
        return sum(f.position() for f in self.files)

    def __iter__(self) -> Iterator[Record]:
        streams = [_keyed(f.records(), f.symbol() or "", i) for i, f in enumerate(self.files)]
        for _, item in heapq.merge(*streams, key=lambda kv: kv[0]):
            yield item


def _keyed(records: Iterator[Record], symbol: str, index: int) -> Iterator[tuple[tuple[int, str, int], Record]]:
    for r in records:
        if isinstance(r, RawFrame):
            yield (r.recv_ns, symbol, index), r
        elif isinstance(r, ev.Bar):
            yield (r.ts_event, r.symbol, index), r
        else:
            yield (r.ts_ns, symbol, index), r


def _strip_compression(name: str) -> str:
    for suffix in (".xz", ".gz"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name
