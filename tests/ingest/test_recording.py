"""Reading recordings (cryptofeed JSONL, kline CSV, compressed or not), merging, and the full bundled replay."""

from __future__ import annotations

import gzip
import json
import lzma
from collections import Counter, defaultdict
from pathlib import Path

import pytest

from nertz_common import events as ev
from nertz_ingest.adapters.recording import (
    RawFrame,
    RecordingError,
    SourceFile,
    Sources,
    csv_symbol_interval,
    detect_kind,
)
from nertz_ingest.core.rejection import Rejected
from nertz_ingest.replay import parse_files

HEADER = {"t": "header", "format": 2, "exchange": "BYBIT"}
TICKER = (
    '{"topic":"tickers.BTCUSDT","type":"delta","cs":1,"ts":1786310820000,"data":{"symbol":"BTCUSDT","lastPrice":"1"}}'
)


def _write_jsonl(path: Path, records: list[dict | str]) -> Path:
    text = "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records)
    opener = {".xz": lzma.open, ".gz": gzip.open}.get(path.suffix, open)
    with opener(path, "wt", encoding="utf-8") as fh:
        fh.write(text)
    return path


def _mixed_recording(path: Path) -> Path:
    return _write_jsonl(
        path,
        [
            HEADER,
            {"t": "connect", "conn": "ws.2", "ts": 1.0, "addr": "wss://stream.bybit.com/v5/public/linear"},
            {"t": "connect", "conn": "ws.3", "ts": 1.0, "addr": "wss://stream.bybit.com/v5/public/spot"},
            {"t": "send", "conn": "ws.2", "ts": 1.5, "data": '{"op":"subscribe"}'},
            {"t": "recv", "conn": "ws.3", "ts": 1.9, "data": "spot frame"},
            {"t": "recv", "conn": "ws.2", "ts": 2.0000015, "data": TICKER},
            "{not json",
            {"t": "recv", "conn": "ws.2", "ts": 3.25, "data": TICKER},
        ],
    )


@pytest.mark.parametrize("suffix", [".jsonl", ".jsonl.gz", ".jsonl.xz"])
def test_recording_cryptofeed_reads_only_linear_recv_frames(tmp_path: Path, suffix: str) -> None:
    path = _mixed_recording(tmp_path / f"BYBIT{suffix}")
    src = SourceFile(path)
    out = list(src.records())
    assert [type(o).__name__ for o in out] == ["RawFrame", "Rejected", "RawFrame"]
    assert out[0] == RawFrame(2_000_002_000, TICKER, f"{path}:6")  # receive time rounded to the µs
    assert isinstance(out[1], Rejected) and out[1].reason == "bad_recording_line" and out[1].ts_ns == 2_000_002_000
    assert src.position() == path.stat().st_size


def test_recording_without_header_raises_recording_error(tmp_path: Path) -> None:
    path = _write_jsonl(tmp_path / "x.jsonl", [{"t": "recv", "conn": "ws.2", "ts": 1.0, "data": "{}"}])
    with pytest.raises(RecordingError, match="header"):
        list(SourceFile(path).records())


def test_recording_kind_and_csv_name_are_read_from_the_file_name() -> None:
    assert detect_kind(Path("a/BYBIT.linear.jsonl.xz")) == "jsonl"
    assert detect_kind(Path("BTCUSDT_1m.csv.gz")) == "kline_csv"
    assert csv_symbol_interval(Path("data/SOLUSDT_15m.csv.xz")) == ("SOLUSDT", 15)
    with pytest.raises(RecordingError):
        detect_kind(Path("notes.txt"))
    with pytest.raises(RecordingError):
        csv_symbol_interval(Path("btc.csv"))


def test_recording_csv_files_merge_by_close_time_then_symbol(tmp_path: Path) -> None:
    rows = {
        "ETHUSDT": ["2025-05-30 16:39:00+00:00,1,1,1,1,1", "2025-05-30 16:40:00+00:00,1,1,1,1,1"],
        "BTCUSDT": ["2025-05-30 16:40:00+00:00,1,1,1,1,1", "bad", "2025-05-30 16:41:00+00:00,1,1,1,1,1"],
    }
    paths = []
    for sym, lines in rows.items():
        p = tmp_path / f"{sym}_1m.csv.gz"
        p.write_bytes(gzip.compress(("timestamp,open,high,low,close,volume\n" + "\n".join(lines) + "\n").encode()))
        paths.append(p)
    out = list(Sources(paths))
    got = [(o.symbol, o.open_time_ns % 10**12) if isinstance(o, ev.Bar) else o.reason for o in out]  # type: ignore[union-attr]
    minute = 60 * 10**9
    t39 = 1_748_623_140_000_000_000 % 10**12
    assert got == [
        ("ETHUSDT", t39),
        ("BTCUSDT", t39 + minute),
        "bad_row",  # stays after the BTC row it followed
        ("ETHUSDT", t39 + minute),
        ("BTCUSDT", t39 + 2 * minute),
    ]
    assert out[2].source.endswith("BTCUSDT_1m.csv.gz:3")  # type: ignore[union-attr]


def test_recording_symbols_filter_skips_other_csv_files(csvs: tuple[Path, ...]) -> None:
    assert [f.path.name for f in Sources(list(csvs), symbols={"ETHUSDT"}).files] == ["ETHUSDT_1m.csv.xz"]


def test_recording_bundled_replays_with_contiguous_u_and_no_gaps(frames, recording: Path) -> None:
    last_u: dict[str, int] = {}
    for f in frames:
        m = json.loads(f.raw)
        topic = m.get("topic", "")
        if topic.startswith("orderbook."):
            u = m["data"]["u"]
            if m["type"] == "delta":
                assert u == last_u[topic] + 1, (topic, u)
            last_u[topic] = u
    out = list(parse_files([recording]))
    counts = Counter(type(o).__name__ for o in out)
    assert counts == {"BookSnapshot": 1285, "Ticker": 758, "TradeBatch": 102, "Bar": 75}
    by_topic: dict[str, list[int]] = defaultdict(list)
    for o in out:
        if isinstance(o, ev.BookSnapshot):
            by_topic[o.symbol].append(o.update_id)
            assert o.bids[0][0] < o.asks[0][0] and len(o.bids) == len(o.asks) == 50
    assert set(by_topic) == {"BTCUSDT", "ETHUSDT", "SOLUSDT", "DOGEUSDT"}
    for symbol, us in by_topic.items():
        assert us == sorted(us) and us[-1] == last_u[f"orderbook.200.{symbol}"]  # the last state is published
    ids = [o.event_id for o in out if isinstance(o, ev.Event)]
    assert len(ids) == len(set(ids))


def test_recording_bundled_book_snapshots_respect_100ms_interval(recording: Path) -> None:
    last: dict[str, int] = {}
    for o in parse_files([recording]):
        if isinstance(o, ev.BookSnapshot):
            if o.symbol in last:
                assert o.ts_event - last[o.symbol] >= 100_000_000
            last[o.symbol] = o.ts_event


def test_recording_bundled_csvs_parse_without_rejections(csvs: tuple[Path, ...]) -> None:
    out = list(parse_files(list(csvs)))
    assert len(out) == 3 * 43_200 and all(isinstance(o, ev.Bar) for o in out)
    closes = [(o.ts_event, o.symbol) for o in out]  # type: ignore[union-attr]
    assert closes == sorted(closes)


def test_recording_parsing_same_files_twice_gives_identical_encoded_events(
    csvs: tuple[Path, ...], recording: Path
) -> None:
    paths = [csvs[2], recording]
    first = [ev.encode(o) for o in parse_files(paths) if isinstance(o, ev.Event)]
    second = [ev.encode(o) for o in parse_files(paths) if isinstance(o, ev.Event)]
    assert first == second and len(first) == 43_200 + 2220
