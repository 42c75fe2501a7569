"""Read recordings: JSONL of raw Bybit frames (ours, or cryptofeed's), and Bybit kline CSVs.

All may be compressed; the extension decides (``.xz``, ``.gz``, else plain text). A compressed file may
be a concatenation of complete streams (what the recorder writes); one whose last stream is cut short
(a crash while writing) is read up to the cut, then a ``bad_recording_line`` rejection says so.

- **nertz raw frames** (``*.jsonl``, written by :mod:`nertz_ingest.adapters.recorder`): line 1 is
  ``{"t":"header","format":"nertz-raw-frames","version":1,"venue":"bybit","channel":"linear",...}``;
  then one frame per line, ``{"recv_ns":<receive time, UNIX ns>,"frame":"<raw frame text>"}``.
- **cryptofeed format 2** (``*.jsonl``): line 1 is ``{"t":"header","format":2,...}``; then one record
  per line, ``{"t":"connect","conn":"BYBIT.ws.2","ts":<s>,"addr":"wss://.../v5/public/linear"}``,
  ``{"t":"recv","conn":..,"ts":<receive time, epoch s (float)>,"data":"<raw frame text>"}``, and
  ``send``/``http`` records. Only ``recv`` records of connections whose ``connect`` address ends with
  ``/v5/public/linear`` are read (spot and REST traffic are skipped).
- **kline CSV** (``<SYMBOL>_<n>m.csv``): ``timestamp,open,high,low,close,volume``; the symbol and the
  interval come from the file name.

:class:`Sources` merges any number of files into one time-ordered stream of records: frames by receive
time, bars by close time, ties broken by symbol, then by file order; a file's own order is kept.

A file is a local path or a URL (``s3://bucket/rec/x.jsonl.xz``, read as a stream, see
:mod:`nertz_common.storage`); a directory or a glob (``s3://bucket/rec/``, ``var/rec/*.jsonl.xz``) stands
for the recordings in it, in name order (rotated files, :mod:`nertz_ingest.adapters.rotation`).
"""

from __future__ import annotations

import gzip
import heapq
import io
import lzma
import re
import zlib
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO, Literal, TypeAlias, cast

import msgspec

from nertz_common import events as ev
from nertz_common.storage import Storage, Target, is_remote, local_path, name_of
from nertz_ingest.adapters.recorder import FORMAT as RAW_FORMAT
from nertz_ingest.adapters.recorder import VERSION as RAW_VERSION
from nertz_ingest.adapters.recorder import FrameLine
from nertz_ingest.core import csv_bars
from nertz_ingest.core.rejection import Rejected

LINEAR_ADDR_SUFFIX = "/v5/public/linear"
_CSV_NAME = re.compile(r"(?P<symbol>[A-Z0-9]{2,30})_(?P<minutes>\d+)m\.csv")

Kind = Literal["jsonl", "kline_csv"]
"""A file's kind by name: JSONL frames (nertz or cryptofeed, told by the header) or a kline CSV."""


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
    format: int | str | None = None
    version: int | None = None


def detect_kind(path: Target) -> Kind:
    """Tell a file's format from its name (compression suffix ignored); ``path`` may be a URL.

    Raises
    ------
    RecordingError
        If the name ends in neither ``.csv`` nor ``.jsonl``.
    """
    name = _strip_compression(name_of(path))
    if name.endswith(".csv"):
        return "kline_csv"
    if name.endswith(".jsonl"):
        return "jsonl"
    raise RecordingError(f"expected a *.jsonl (frames) or *.csv (kline) file, optionally .xz/.gz, was {path}")


def csv_symbol_interval(path: Target) -> tuple[str, int]:
    """Return ``(symbol, minutes)`` from a kline CSV name like ``BTCUSDT_1m.csv.xz``.

    Raises
    ------
    RecordingError
        If the name is not ``<SYMBOL>_<n>m.csv[.xz|.gz]``.
    """
    name = name_of(path)
    m = _CSV_NAME.fullmatch(_strip_compression(name))
    if not m or int(m["minutes"]) < 1:
        raise RecordingError(f"expected a kline CSV named <SYMBOL>_<n>m.csv[.xz|.gz], was {name}")
    return m["symbol"], int(m["minutes"])


class SourceFile:
    """One opened recording; :meth:`position` is how many bytes of the file (compressed) were consumed.

    Parameters
    ----------
    path : Path or str
        A local path or a URL (kept as a ``Path`` when local).
    addr_suffix : str
        For cryptofeed files: read ``recv`` records of connections whose address ends with this.
    storage : Storage, optional
        How URLs are read (default: settings from the environment).

    Attributes
    ----------
    truncated : str
        Set when the compressed data ended early (the decompressor's error), else ``""``.

    Raises
    ------
    RecordingError
        If the name is not a recording's.
    FileNotFoundError
        If there is no such file (or object).
    StorageError
        If a URL's store cannot be reached or refuses access.
    """

    def __init__(self, path: Target, addr_suffix: str = LINEAR_ADDR_SUFFIX, storage: Storage | None = None) -> None:
        self.path: Path | str = str(path) if is_remote(path) else local_path(path)
        self.kind: Kind = detect_kind(self.path)
        self._storage = storage or Storage()
        self.size = self._storage.size(self.path)
        self.addr_suffix = addr_suffix
        self._raw: IO[bytes] | None = None
        self._done = False
        self.truncated = ""

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
        with self._storage.open_read(self.path) as raw:  # position() reads it meanwhile
            self._raw = raw
            name = name_of(self.path)
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
            except (EOFError, lzma.LZMAError, gzip.BadGzipFile, zlib.error) as e:
                self.truncated = f"{type(e).__name__}: {e}"  # a cut last stream: keep what came before
            finally:
                self._done = True

    def records(self) -> Iterator[Record]:
        """Yield this file's records in file order (frames for JSONL, bars for CSV).

        Raises
        ------
        RecordingError
            If a JSONL file's first line is not a header this module reads.
        """
        if self.kind == "kline_csv":
            return self._csv_records()
        return self._jsonl_records()

    def _csv_records(self) -> Iterator[Record]:
        symbol, minutes = csv_symbol_interval(self.path)
        last_ns = 0
        n = 1
        for n, item in enumerate(csv_bars.parse_lines(self.lines(), symbol, minutes), start=2):
            if isinstance(item, Rejected):
                yield replace(item, ts_ns=last_ns, source=f"{self.path}:{n}")
            else:
                last_ns = item.ts_event
                yield item
        if self.truncated:
            yield self._cut(n, last_ns)

    def _jsonl_records(self) -> Iterator[Record]:
        lines = self.lines()
        first = next(lines, "")
        try:
            head = msgspec.json.decode(first, type=_Line)
        except msgspec.DecodeError as e:
            raise RecordingError(f"expected a recording header on line 1 of {self.path}: {e}") from None
        if head.t == "header" and head.format == RAW_FORMAT:
            if head.version is None or not 1 <= head.version <= RAW_VERSION:
                raise RecordingError(
                    f"expected {RAW_FORMAT} version 1..{RAW_VERSION} in {self.path}, was {head.version!r}"
                )
            return self._nertz_records(lines)
        if head.t == "header" and head.format == 2:
            return self._cryptofeed_records(lines)
        was = f"t={head.t!r} format={head.format!r}"
        raise RecordingError(
            f"expected line 1 of {self.path} to be a header with format {RAW_FORMAT!r} or 2 (cryptofeed), was {was}"
        )

    def _nertz_records(self, lines: Iterator[str]) -> Iterator[Record]:
        dec = msgspec.json.Decoder(FrameLine)
        path = self.path
        last_ns = 0
        n = 1
        for n, line in enumerate(lines, start=2):
            try:
                rec = dec.decode(line)
            except msgspec.DecodeError as e:
                yield Rejected(
                    "bad_recording_line", f"line {n}: {e}", line.rstrip("\n"), ts_ns=last_ns, source=f"{path}:{n}"
                )
                continue
            if rec.recv_ns < 0:
                detail = f"line {n}: expected recv_ns >= 0, was {rec.recv_ns}"
                yield Rejected("bad_recording_line", detail, line.rstrip("\n"), ts_ns=last_ns, source=f"{path}:{n}")
                continue
            last_ns = rec.recv_ns
            yield RawFrame(last_ns, rec.frame, f"{path}:{n}")
        if self.truncated:
            yield self._cut(n, last_ns)

    def _cryptofeed_records(self, lines: Iterator[str]) -> Iterator[Record]:
        dec = msgspec.json.Decoder(_Line)
        wanted: dict[str, bool] = {}  # conn -> its address ends with addr_suffix
        last_ns = 0
        n = 1
        for n, line in enumerate(lines, start=2):
            try:
                rec = dec.decode(line)
            except msgspec.DecodeError as e:
                yield Rejected(
                    "bad_recording_line", f"line {n}: {e}", line.rstrip("\n"), ts_ns=last_ns, source=f"{self.path}:{n}"
                )
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
        if self.truncated:
            yield self._cut(n, last_ns)

    def _cut(self, line: int, ts_ns: int) -> Rejected:
        detail = f"compressed data ends early after line {line} (a recording cut by a crash?): {self.truncated}"
        return Rejected("bad_recording_line", detail, "", ts_ns=ts_ns, source=f"{self.path}:{line + 1}")


class Sources:
    """Several recordings merged into one time-ordered stream of records.

    Parameters
    ----------
    paths : sequence of Path or str
        Cryptofeed JSONL and kline CSV files, in any mix (compressed or not): local paths or URLs; a
        directory or a glob stands for the recordings in it (:func:`expand`).
    symbols : collection of str, optional
        Kline CSVs of other symbols are skipped entirely (frames are filtered by the parser). None = all.
    addr_suffix : str
        Which cryptofeed connections to read (default: Bybit V5 public linear).
    storage : Storage, optional
        How URLs are read (default: settings from the environment).

    Raises
    ------
    RecordingError
        If a file's name is neither a cryptofeed nor a kline CSV name.
    FileNotFoundError
        If a file does not exist.
    StorageError
        If a URL's store cannot be reached or refuses access.
    """

    def __init__(
        self,
        paths: Sequence[Target],
        symbols: Collection[str] | None = None,
        addr_suffix: str = LINEAR_ADDR_SUFFIX,
        storage: Storage | None = None,
    ) -> None:
        storage = storage or Storage()
        files = [SourceFile(p, addr_suffix, storage) for p in expand(paths, storage)]
        self.files = [f for f in files if symbols is None or f.symbol() is None or f.symbol() in symbols]

    @property
    def total_bytes(self) -> int:
        """Size of all files, bytes (as stored, i.e. compressed)."""
        return sum(f.size for f in self.files)

    def position(self) -> int:
        """Bytes consumed so far over all files."""
        return sum(f.position() for f in self.files)

    def __iter__(self) -> Iterator[Record]:
        if len(self.files) == 1:
            yield from self.files[0].records()
            return
        streams = [_keyed(f.records(), f.symbol() or "", i) for i, f in enumerate(self.files)]
        for *_, item in heapq.merge(*streams):  # keys are unique: records are never compared
            yield item


def expand(paths: Sequence[Target], storage: Storage | None = None) -> list[Target]:
    """Return ``paths`` with each directory or glob replaced by the recordings in it (``*.jsonl``,
    ``*.csv``, optionally ``.xz``/``.gz``), in name order; other paths are kept as given.

    Raises
    ------
    StorageError
        If a URL's store cannot be listed.
    """
    storage = storage or Storage()
    out: list[Target] = []
    for p in paths:
        found = storage.expand(p)
        if found == [str(p)] or found == [p]:
            out.append(p)
        else:
            out += [f for f in found if _strip_compression(name_of(f)).endswith((".jsonl", ".csv"))]
    return out


def record_time_ns(record: Record) -> int:
    """Return when a record happened, UNIX ns: a frame's receive time, a bar's close, a rejection's time.

    This is the merge order of :class:`Sources` and the pacing clock of a replay at a chosen speed.
    """
    if isinstance(record, RawFrame):
        return record.recv_ns
    if isinstance(record, ev.Bar):
        return record.ts_event
    return record.ts_ns


def _keyed(records: Iterator[Record], symbol: str, index: int) -> Iterator[tuple[int, str, int, int, Record]]:
    for n, r in enumerate(records):
        if isinstance(r, RawFrame):
            yield r.recv_ns, symbol, index, n, r
        elif isinstance(r, ev.Bar):
            yield r.ts_event, r.symbol, index, n, r
        else:
            yield r.ts_ns, symbol, index, n, r


def _strip_compression(name: str) -> str:
    for suffix in (".xz", ".gz"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name
