"""Replay onto a real JetStream: order, dedup on re-publish, dead letters, pacing, stop, and the CLI."""

from __future__ import annotations

import asyncio
import gzip
import json
import lzma
import os
import subprocess
import sys
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from nertz_common import bus, subjects
from nertz_common import events as ev
from nertz_common.node.log import Record, read_log
from nertz_ingest.app import build_parser, parse_speed
from nertz_ingest.core.rejection import Rejected
from nertz_ingest.metrics import IngestMetrics
from nertz_ingest.replay import BUNDLED_INSTRUMENTS, dead_letter, load_instruments, parse_files, replay_files

pytestmark = pytest.mark.integration

LINEAR = {"t": "connect", "conn": "ws.2", "ts": 1.0, "addr": "wss://stream.bybit.com/v5/public/linear"}


def _ticker(ts_ms: int, price: str = "65000.5") -> str:
    return json.dumps(
        {"topic": "tickers.BTCUSDT", "type": "delta", "cs": ts_ms, "ts": ts_ms, "data": {"lastPrice": price}}
    )


def _recording(path: Path, frames: list[tuple[float, str]]) -> Path:
    lines = [{"t": "header", "format": 2}, LINEAR] + [
        {"t": "recv", "conn": "ws.2", "ts": t, "data": d} for t, d in frames
    ]
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    return path


def _csv_head(src: Path, dst_dir: Path, rows: int) -> Path:
    with lzma.open(src, "rt") as fh:
        head = [next(fh) for _ in range(rows + 1)]
    dst = dst_dir / src.name.replace(".xz", ".gz")
    dst.write_bytes(gzip.compress("".join(head).encode()))
    return dst


async def _read_all(js, expected: int) -> list[Record]:
    got = await read_log(js)
    assert len(got) == expected, f"expected {expected} messages on the log, was {len(got)}"
    return got


async def test_replay_slice_is_stored_in_order_without_duplicates_and_republish_stores_nothing(
    js_fresh, tmp_path: Path, csvs: tuple[Path, ...], recording: Path
) -> None:
    paths = [*(_csv_head(c, tmp_path, 2000) for c in csvs), recording]
    expected = [dead_letter(o) if isinstance(o, Rejected) else o for o in parse_files(paths)]
    assert len(expected) == 3 * 2000 + 2220
    pub = bus.Publisher(js_fresh)

    stats = await replay_files(pub, paths)
    assert (stats.stored, stats.duplicates, stats.published) == (len(expected), 0, len(expected))
    assert stats.events["Bar"] == 6075 and not stats.rejected

    got = await _read_all(js_fresh, len(expected))
    assert [d.event for d in got] == expected  # same events, same order
    assert len({d.event.event_id for d in got}) == len(got)
    assert [d.seq for d in got] == list(range(1, len(got) + 1))
    assert got[0].subject == subjects.for_event(expected[0])

    again = await replay_files(pub, paths)
    assert (again.stored, again.duplicates) == (0, len(expected))
    assert (await js_fresh.stream_info(subjects.STREAM)).state.messages == len(expected)


async def test_replay_bad_frames_are_counted_and_dead_lettered(js_fresh, tmp_path: Path) -> None:
    nan_book = (
        '{"topic":"orderbook.50.BTCUSDT","type":"snapshot","ts":1786310820100,'
        '"data":{"s":"BTCUSDT","b":[["NaN","1"]],"a":[["65001","1"]],"u":7,"seq":1}}'
    )
    path = _recording(
        tmp_path / "bad.jsonl",
        [(1786310820.0, _ticker(1786310820000)), (1786310820.1, '{"topic": nope'), (1786310820.2, nan_book),
         (1786310820.3, _ticker(1786310820300, "65001"))],
    )  # fmt: skip
    registry = CollectorRegistry()
    stats = await replay_files(bus.Publisher(js_fresh), [path], metrics=IngestMetrics(registry))
    assert dict(stats.rejected) == {"invalid_json": 1, "nan": 1}
    assert dict(stats.events) == {"Ticker": 2, "DeadLettered": 2}
    for reason in ("invalid_json", "nan"):
        assert registry.get_sample_value("nertz_market_ingest_rejected_total", {"reason": reason}) == 1

    msg = await js_fresh.get_last_msg(subjects.STREAM, subjects.dead_letter("market-ingest"))
    dl = ev.decode(msg.data)
    assert isinstance(dl, ev.DeadLettered) and dl.service == "market-ingest"
    assert dl.reason == "nan: expected price at b[0] > 0, was NaN" and dl.raw == nan_book
    assert dl.ts_event == 1786310820_200_000_000
    got = await _read_all(js_fresh, 4)
    assert [type(d.event).__name__ for d in got] == ["Ticker", "DeadLettered", "DeadLettered", "Ticker"]

    again = await replay_files(bus.Publisher(js_fresh), [path])
    assert again.stored == 0  # dead-letter ids are deterministic too


async def test_replay_speed_paces_by_receive_time(js_fresh, tmp_path: Path) -> None:
    # received 600 ms apart, exchange times 10 s apart: the recording is replayed as it was received
    path = _recording(tmp_path / "paced.jsonl", [(100.0, _ticker(1786310820000)), (100.6, _ticker(1786310830000))])
    stats = await replay_files(bus.Publisher(js_fresh), [path], speed=2.0)
    assert stats.stored == 2
    assert 0.28 <= stats.wall_s < 3.0  # 600 ms of receive time at 2x


async def test_replay_speed_paces_csv_bars_by_close_time(js_fresh, tmp_path: Path, csvs) -> None:
    csv = _csv_head(csvs[0], tmp_path, 3)  # three 1m bars: 2 minutes between the first and last close
    stats = await replay_files(bus.Publisher(js_fresh), [csv], speed=240.0)
    assert stats.stored == 3
    assert 0.45 <= stats.wall_s < 3.0  # 120 s at 240x = 0.5 s


async def test_replay_stop_event_ends_replay_early(js_fresh, tmp_path: Path) -> None:
    path = _recording(tmp_path / "slow.jsonl", [(100.0, _ticker(1786310820000)), (160.0, _ticker(1786310880000))])
    stop = asyncio.Event()
    asyncio.get_running_loop().call_later(0.3, stop.set)
    stats = await asyncio.wait_for(replay_files(bus.Publisher(js_fresh), [path], speed=1.0, stop=stop), 10)
    assert stats.stopped and stats.stored == 1


async def test_cli_replay_prints_summary_and_exits_0(js_fresh, nats_url: str, tmp_path: Path, csvs) -> None:
    csv = _csv_head(csvs[0], tmp_path, 100)
    env = {**os.environ, "NATS_URL": nats_url, "NERTZ_LOG_LEVEL": "WARNING"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "nertz_ingest", "replay", "--speed", "max", str(csv),
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, err.decode()
    # BTCUSDT's spec from the bundled instruments-info answer goes first
    assert out.decode().startswith(
        "replay done: 101 events published (Bar=100, InstrumentSpec=1); stored 101, duplicates 0;"
    ), out.decode()
    first = (await read_log(js_fresh))[0].event
    assert isinstance(first, ev.InstrumentSpec) and (first.symbol, first.qty_step, first.tick_size) == (
        "BTCUSDT", 0.001, 0.1,
    )  # fmt: skip
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "nertz_ingest", "replay", "--instruments", str(tmp_path / "nope.json"), str(csv),
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 2 and "expected an instruments-info answer" in err.decode(), err.decode()


async def test_replay_puts_each_symbols_spec_just_before_its_first_event(
    js_fresh, tmp_path: Path, csvs: tuple[Path, ...], recording: Path
) -> None:
    specs = load_instruments(BUNDLED_INSTRUMENTS)
    assert set(specs) == {"BTCUSDT", "ETHUSDT", "SOLUSDT", "DOGEUSDT"}
    assert (specs["DOGEUSDT"].tick_size, specs["DOGEUSDT"].qty_step, specs["DOGEUSDT"].min_notional_usdt) == (
        0.00001, 1.0, 5.0,
    )  # fmt: skip
    paths = [*(_csv_head(c, tmp_path, 50) for c in csvs[:2]), recording]  # BTC and ETH bars, then the recording
    outs = [dead_letter(o) if isinstance(o, Rejected) else o for o in parse_files(paths, instruments=specs)]
    announced = [(i, e) for i, e in enumerate(outs) if isinstance(e, ev.InstrumentSpec)]
    symbols = [e.symbol for _, e in announced]
    assert symbols[:2] == ["BTCUSDT", "ETHUSDT"] and sorted(symbols[2:]) == ["DOGEUSDT", "SOLUSDT"]  # CSVs first
    for i, spec in announced:
        first = outs[i + 1]
        assert first.symbol == spec.symbol  # type: ignore[attr-defined]
        assert not any(getattr(e, "symbol", None) == spec.symbol for e in outs[:i])  # nothing of it before
        assert (spec.ts_event, spec.ts_init) == (first.ts_event, first.ts_init)
        assert spec.event_id != specs[spec.symbol].event_id  # derived: the answer's spec and the first event
        assert (spec.tick_size, spec.qty_step) == (specs[spec.symbol].tick_size, specs[spec.symbol].qty_step)
    again = [o for o in parse_files(paths, instruments=specs) if isinstance(o, ev.InstrumentSpec)]
    assert again == [e for _, e in announced]  # a function of the files and the answer
    only_btc = parse_files(paths, symbols={"BTCUSDT"}, instruments=specs)
    assert [o.symbol for o in only_btc if isinstance(o, ev.InstrumentSpec)] == ["BTCUSDT"]

    stats = await replay_files(bus.Publisher(js_fresh), paths, instruments=specs)
    assert stats.events["InstrumentSpec"] == 4 and stats.stored == len(outs)
    got = await _read_all(js_fresh, len(outs))
    assert [d.event for d in got] == outs
    spec_subject = next(d.subject for d in got if isinstance(d.event, ev.InstrumentSpec))
    assert spec_subject.startswith("md.instrument.bybit.linear.")


def test_cli_arguments_parse_speed_and_symbols() -> None:
    args = build_parser().parse_args(
        ["replay", "--speed", "60", "--symbols", "BTCUSDT,ETHUSDT", "--symbols", "SOLUSDT", "a.csv"]
    )
    assert (args.speed, args.symbols, args.files) == (60.0, ["BTCUSDT,ETHUSDT", "SOLUSDT"], [Path("a.csv")])
    assert parse_speed("MAX") is None
    with pytest.raises(SystemExit):
        build_parser().parse_args(["replay", "--speed", "-1", "a.csv"])
