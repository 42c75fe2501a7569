"""Ingest resumes where the log ends: a NATS server killed in the middle of a replay's publish and
restarted later is waited out, and a replay killed and started again adds no duplicate and leaves no gap."""

from __future__ import annotations

import asyncio
import gzip
import lzma
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from nertz_common import bus, subjects, topology
from nertz_common import events as ev
from nertz_common.infra import free_port, start_nats
from nertz_common.node.log import read_log
from nertz_ingest.core.rejection import Rejected
from nertz_ingest.metrics import IngestMetrics
from nertz_ingest.replay import BUNDLED_INSTRUMENTS, dead_letter, load_instruments, parse_files, replay_files

pytestmark = pytest.mark.integration

ROWS = 20_000  # per symbol: enough windows that the faults land in the middle of the replay


def _csv_heads(csvs: tuple[Path, ...], dst: Path, rows: int = ROWS) -> list[Path]:
    out = []
    for src in csvs:
        with lzma.open(src, "rt") as fh:
            head = [next(fh) for _ in range(rows + 1)]
        path = dst / src.name.replace(".xz", ".gz")
        path.write_bytes(gzip.compress("".join(head).encode()))
        out.append(path)
    return out


def _expected(paths: list[Path], instruments: Path | None = None) -> list[ev.Event]:
    specs = None if instruments is None else load_instruments(instruments)
    outs = parse_files(paths, instruments=specs)
    return [dead_letter(o) if isinstance(o, Rejected) else o for o in outs]  # type: ignore[misc]


async def _until(cond: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"expected {what} within {timeout_s:.0f} s")
        await asyncio.sleep(0.005)


async def _assert_log_is(js, expected: list[ev.Event]) -> None:  # type: ignore[no-untyped-def]
    got = await read_log(js)
    ids = [r.event.event_id for r in got]
    assert len(set(ids)) == len(ids), f"{len(ids) - len(set(ids))} duplicates on the log"
    assert len(got) == len(expected), f"expected {len(expected)} events on the log, was {len(got)}"
    assert [r.event for r in got] == expected  # every event once, in order: no gap, no duplicate
    assert [r.seq for r in got] == list(range(1, len(got) + 1))


async def test_replay_waits_out_a_nats_kill_mid_publish_and_the_log_holds_every_bar_once_in_order(
    tmp_path: Path, csvs: tuple[Path, ...]
) -> None:
    paths = _csv_heads(csvs, tmp_path)
    expected = _expected(paths)
    server = start_nats(tmp_path / "nats", free_port())
    nc = None
    try:
        nc = await bus.connect(server.url, "market-ingest-test")
        js = nc.jetstream(timeout=5)
        await topology.recreate(js)
        registry = CollectorRegistry()
        metrics = IngestMetrics(registry)
        # a short retry budget, so that this outage outlasts the publisher's own retries (as a long one would)
        pub = bus.Publisher(js, nc=nc, timeout_s=0.5, retry_s=1.0)
        replay = asyncio.create_task(replay_files(pub, paths, metrics=metrics, js=js))

        await _until(lambda: pub.last_seq >= len(expected) // 4 or replay.done(), 60, "a quarter of the log")
        assert not replay.done() and pub.last_seq < len(expected), "the replay ended before the fault"
        server.kill(signal.SIGKILL)  # in the middle of a window's publish
        killed_at, acked_at_kill = time.monotonic(), pub.last_seq

        def degraded() -> bool:
            return registry.get_sample_value("nertz_market_ingest_bus_degraded") == 1

        await _until(lambda: degraded() or replay.done(), 30, "the replay to report 'degraded: bus'")
        assert not replay.done(), replay.result() if not replay.exception() else replay.exception()
        await asyncio.sleep(max(0.0, killed_at + 4.0 - time.monotonic()))  # the outage lasts 4 s
        assert not replay.done() and pub.last_seq == acked_at_kill
        await asyncio.to_thread(server.restart)

        stats = await asyncio.wait_for(replay, 120)
        # degraded from the first failed attempt (after the publisher's 1 s budget) until the acks came back
        assert stats.bus_outages >= 1 and stats.bus_outage_s >= 1.0
        assert registry.get_sample_value("nertz_market_ingest_bus_degraded") == 0
        outage_s = registry.get_sample_value("nertz_market_ingest_bus_outage_seconds_total")
        assert outage_s == pytest.approx(stats.bus_outage_s)
        assert (registry.get_sample_value("nertz_market_ingest_bus_errors_total", {"error": "PublishError"}) or 0) >= 1
        await _assert_log_is(js, expected)
    finally:
        if nc is not None:
            await nc.close()
        server.stop()


async def test_replay_killed_and_started_again_resumes_where_the_log_ends(
    js_fresh, nats_url: str, tmp_path: Path, csvs: tuple[Path, ...]
) -> None:
    paths = _csv_heads(csvs, tmp_path)
    expected = _expected(paths, BUNDLED_INSTRUMENTS)  # the CLI puts each symbol's spec before its first bar
    assert sum(isinstance(e, ev.InstrumentSpec) for e in expected) == 3
    env = {**os.environ, "NATS_URL": nats_url, "NERTZ_LOG_LEVEL": "WARNING"}
    cmd = [sys.executable, "-m", "nertz_ingest", "replay", *map(str, paths)]

    first = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        stored = 0
        deadline = time.monotonic() + 60
        while stored < len(expected) // 3 and first.poll() is None and time.monotonic() < deadline:
            stored = (await js_fresh.stream_info(subjects.STREAM)).state.messages
            await asyncio.sleep(0.01)
        first.send_signal(signal.SIGKILL)  # a crash: no drain, a window maybe half stored
    finally:
        first.wait(30)
    assert first.returncode == -signal.SIGKILL, "the replay ended before it was killed"
    on_log = (await js_fresh.stream_info(subjects.STREAM)).state.messages
    assert 0 < on_log < len(expected)

    again = await asyncio.create_subprocess_exec(*cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = await asyncio.wait_for(again.communicate(), 120)
    assert again.returncode == 0, err.decode()
    summary = out.decode().splitlines()[0]
    assert f"{len(expected) - on_log} events published" in summary, summary
    assert "duplicates 0;" in summary and f"resumed after {on_log} events already on the log" in summary
    await _assert_log_is(js_fresh, expected)

    rerun = await asyncio.create_subprocess_exec(*cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = await asyncio.wait_for(rerun.communicate(), 120)
    assert rerun.returncode == 0, err.decode()  # everything is on the log already: nothing to add, not a failure
    assert out.decode().startswith("replay done: 0 events published (none)")
    assert (await js_fresh.stream_info(subjects.STREAM)).state.messages == len(expected)
