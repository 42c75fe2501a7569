"""Bad market input stays out: bars back in time and second, different bars are dead-lettered with their
reason, counted and logged; identical repeats are dropped; a file that gives nothing exits non-zero."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from nertz_common import bus, subjects
from nertz_common import events as ev
from nertz_common.node.log import read_log
from nertz_ingest.adapters.log_position import last_bars, log_end
from nertz_ingest.metrics import IngestMetrics
from nertz_ingest.replay import replay_files

pytestmark = pytest.mark.integration

HEADER = "timestamp,open,high,low,close,volume\n"
ROWS = {  # minute -> a good row
    m: f"2025-05-30 16:{m:02d}:00+00:00,100,101,99,100.5,10\n" for m in range(30, 50)
}
LINEAR = {"t": "connect", "conn": "ws.2", "ts": 1.0, "addr": "wss://stream.bybit.com/v5/public/linear"}


def _csv(path: Path, rows: list[str]) -> Path:
    path.write_text(HEADER + "".join(rows))
    return path


def _kline(start_ms: int, close: str, *, confirm: bool) -> str:
    k = {"start": start_ms, "end": start_ms + 59_999, "interval": "1", "open": "100", "close": close, "high": "102",
         "low": "99", "volume": "5", "turnover": "500", "confirm": confirm, "timestamp": start_ms + 59_999}  # fmt: skip
    return json.dumps({"topic": "kline.1.BTCUSDT", "type": "snapshot", "ts": start_ms + 60_000, "data": [k]})


async def _cli(nats_url: str, *files: Path) -> tuple[int, str, str]:
    env = {**os.environ, "NATS_URL": nats_url, "NERTZ_LOG_LEVEL": "WARNING"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "nertz_ingest", "replay", *map(str, files),
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_replay_bars_back_in_time_and_conflicting_are_dead_lettered_counted_and_logged(
    js_fresh, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    conflicting = "2025-05-30 16:31:00+00:00,100,101,99,100.7,10\n"
    rows = [ROWS[30], ROWS[31], ROWS[32], ROWS[31], conflicting, ROWS[30], ROWS[33]]
    older = "2025-05-30 16:20:00+00:00,100,101,99,100.5,10\n"  # never seen: back in time
    csv = _csv(tmp_path / "BTCUSDT_1m.csv", [*rows, older, ROWS[34]])
    registry = CollectorRegistry()
    with caplog.at_level(logging.WARNING, logger="nertz.ingest"):
        stats = await replay_files(bus.Publisher(js_fresh), [csv], metrics=IngestMetrics(registry))

    assert dict(stats.rejected) == {"conflicting_bar": 1, "out_of_order": 1}
    assert stats.known == 2 and stats.events == {"Bar": 5, "DeadLettered": 2}
    for reason in ("conflicting_bar", "out_of_order"):
        assert registry.get_sample_value("nertz_market_ingest_rejected_total", {"reason": reason}) == 1
    logged = [r for r in caplog.records if r.getMessage() == "frame.rejected"]
    assert [r.reason for r in logged] == ["conflicting_bar", "out_of_order"]  # type: ignore[attr-defined]

    got = [r.event for r in await read_log(js_fresh)]
    kinds = [(type(e).__name__, e.open_time_ns if isinstance(e, ev.Bar) else e.reason.split(":")[0]) for e in got]
    m = 60_000_000_000
    t30 = 1_748_622_600_000_000_000  # 2025-05-30 16:30 UTC
    assert kinds == [("Bar", t30), ("Bar", t30 + m), ("Bar", t30 + 2 * m), ("DeadLettered", "conflicting_bar"),
                     ("Bar", t30 + 3 * m), ("DeadLettered", "out_of_order"), ("Bar", t30 + 4 * m)]  # fmt: skip
    bars = [e for e in got if isinstance(e, ev.Bar)]
    assert bars[1].close == 100.5  # the first bar of the interval stays; the second is refused
    dl = [e for e in got if isinstance(e, ev.DeadLettered)]
    assert all(d.service == "market-ingest" and ev.decode(d.raw.encode()).symbol == "BTCUSDT" for d in dl)  # type: ignore[union-attr]
    assert "100/101/99/100.5/10), was 100/101/99/100.7/10" in dl[0].reason
    assert stats.summary().splitlines()[1:] == [
        "rejected by reason (dead-lettered to sys.dlq.market-ingest):",
        "  conflicting_bar         1",
        "  out_of_order            1",
    ]


async def test_replay_closed_kline_frame_back_in_time_is_dead_lettered(js_fresh, tmp_path: Path) -> None:
    t = 1786310760000
    frames = [
        _kline(t, "101", confirm=True),
        _kline(t - 60_000, "100", confirm=True),  # back in time
        _kline(t, "101", confirm=True),  # an identical repeat
        _kline(t, "100.5", confirm=True),  # a second, different bar for the interval
    ]
    recv = [{"t": "recv", "conn": "ws.2", "ts": t / 1000 + 60 + i / 10, "data": d} for i, d in enumerate(frames)]
    lines = [{"t": "header", "format": 2}, LINEAR, *recv]
    path = tmp_path / "klines.jsonl"
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    stats = await replay_files(bus.Publisher(js_fresh), [path])
    assert dict(stats.rejected) == {"out_of_order": 1, "conflicting_bar": 1} and stats.known == 1
    got = [type(r.event).__name__ for r in await read_log(js_fresh)]
    assert got == ["Bar", "DeadLettered", "DeadLettered"]


async def test_replay_after_restart_bars_older_than_the_log_are_dead_lettered(js_fresh, tmp_path: Path) -> None:
    first = _csv(tmp_path / "BTCUSDT_1m.csv", [ROWS[m] for m in range(40, 45)])
    await replay_files(bus.Publisher(js_fresh), [first])
    logged = await last_bars(js_fresh)
    assert logged["BTCUSDT"].open_time_ns == 1_748_623_440_000_000_000  # 16:44
    end = await log_end(js_fresh, "market-ingest")
    assert end is not None and end.event == logged["BTCUSDT"]

    other = tmp_path / "other"
    other.mkdir()
    older = _csv(other / "BTCUSDT_1m.csv", [ROWS[m] for m in (38, 39, 45)])
    stats = await replay_files(
        bus.Publisher(js_fresh), [older], logged=logged, resume_after=end.event.event_id, js=js_fresh
    )
    assert stats.resumed_after is None  # the log's end is not in this file: judged against the log
    assert dict(stats.rejected) == {"out_of_order": 2} and stats.events["Bar"] == 1
    tail = [r.event for r in await read_log(js_fresh)][5:]
    assert [type(e).__name__ for e in tail] == ["DeadLettered", "DeadLettered", "Bar"]


async def test_cli_replay_prints_rejections_by_reason_and_exits_0_when_some_bars_pass(
    js_fresh, nats_url: str, tmp_path: Path
) -> None:
    csv = _csv(tmp_path / "BTCUSDT_1m.csv", [ROWS[30], ROWS[32], ROWS[31], ROWS[33]])
    rc, out, err = await _cli(nats_url, csv)
    assert rc == 0, err
    lines = out.splitlines()
    assert lines[0].startswith("replay done: 5 events published (Bar=3, DeadLettered=1, InstrumentSpec=1)")  # + spec
    assert "rejected 1 (out_of_order=1)" in lines[0]
    assert lines[1:] == ["rejected by reason (dead-lettered to sys.dlq.market-ingest):", "  out_of_order         1"]


async def test_cli_replay_exits_1_and_says_why_when_every_row_is_rejected(
    js_fresh, nats_url: str, tmp_path: Path
) -> None:
    rows = ["2025-05-30 16:30:00+00:00,-1,101,99,100,10\n", "2025-05-30 16:31:00+00:00,100,101,99,NaN,10\n",
            "not,a,row\n", "2025-05-30 16:33:00+00:00,100,99,101,100,10\n"]  # fmt: skip
    csv = _csv(tmp_path / "BTCUSDT_1m.csv", rows)
    rc, out, err = await _cli(nats_url, csv)
    assert rc == 1, (out, err)
    assert "rejected by reason (dead-lettered to sys.dlq.market-ingest):" in out
    assert err.strip().splitlines()[-1] == (
        "error: accepted nothing from 4 records: rejected 4 "
        "(bad_row=1, high_below_low=1, nan=1, non_positive_price=1), dead-lettered to sys.dlq.market-ingest"
    )
    assert (await js_fresh.stream_info(subjects.STREAM)).state.messages == 4  # the dead letters


async def test_cli_replay_exits_1_on_a_file_without_rows(js_fresh, nats_url: str, tmp_path: Path) -> None:
    rc, _, err = await _cli(nats_url, _csv(tmp_path / "BTCUSDT_1m.csv", []))
    assert rc == 1 and "error: accepted nothing: the files hold no records" in err
