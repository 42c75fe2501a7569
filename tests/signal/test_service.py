"""The signal service on the kernel against a real JetStream: publish before ack, restart from a
snapshot (also after the stream dropped its oldest messages), and the process itself."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys

import pytest

from nertz_common import bus, runtime, subjects
from nertz_common import events as ev
from nertz_common.errors import InvariantViolation
from nertz_common.node.log import read_log
from nertz_common.node.snapshot import SnapshotStore
from nertz_common.settings import KernelSettings
from nertz_signal import app
from nertz_signal.core.config import SignalConfig
from nertz_signal.core.engine import SignalEngine
from nertz_signal.settings import SignalSettings

pytestmark = pytest.mark.integration

#: The defaults with the stop's ATR on the bars' own 1m series: these runs last 300 minutes, and the
#: default ATR of 4 h bars needs a day of them before it can set a stop
MINUTE_STOPS = SignalConfig(stop_timeframe="1")


@pytest.fixture
def bars_300(trend_then_jump) -> list[ev.Bar]:
    """300 BTCUSDT 1m bars: up-trend + jump, down-trend + drop, up-trend + jump (100 bars each)."""
    return [
        *trend_then_jump("BTCUSDT", n=99, start=0),
        *trend_then_jump("BTCUSDT", n=99, start=100, direction=-1),
        *trend_then_jump("BTCUSDT", n=99, start=200),
    ]


def expected(bars: list[ev.Bar]) -> list[ev.Event]:
    engine = SignalEngine(MINUTE_STOPS)
    return [e for b in bars for e in engine.on_bar(b)]


async def run_until(nats_url: str, js, n_snapshots: int, **kernel) -> None:
    """Run the signal component in-process until it has published ``n_snapshots`` factor snapshots."""
    settings = SignalSettings(NATS_URL=nats_url, signal=MINUTE_STOPS, kernel=KernelSettings(**kernel))
    async with runtime.runtime("signal", settings) as rt:
        try:
            _, runner = await app.start(rt, settings)
            task = asyncio.create_task(runner.run())
            for _ in range(1000):
                got = await read_log(js, filters=[subjects.filter_of("sig", "factor")])
                if len(got) >= n_snapshots:
                    break
                assert not task.done(), task.exception()
                await asyncio.sleep(0.02)
            rt.stop.set()
            await asyncio.wait_for(task, 10)
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT):
                with contextlib.suppress(Exception):
                    asyncio.get_running_loop().remove_signal_handler(sig)


async def test_service_300_bars_publishes_300_snapshots_in_order_with_headers(js_fresh, nats_url, bars_300):
    pub = bus.Publisher(js_fresh)
    assert await pub.publish_many(bars_300) == 300
    await run_until(nats_url, js_fresh, 300)
    want = expected(bars_300)
    got = await read_log(js_fresh, filters=[subjects.filter_of("sig")])
    assert [r.event for r in got] == want
    assert sum(isinstance(r.event, ev.IntentProposed) for r in got) >= 1
    bar_seq = {b.event_id: i + 1 for i, b in enumerate(bars_300)}
    for i, r in enumerate(got):
        e = r.event
        if isinstance(e, ev.IntentProposed):
            assert isinstance(got[i + 1].event, ev.FactorSnapshot) and got[i + 1].event.intent_id == e.event_id
        bar_id = e.bar_id if isinstance(e, ev.FactorSnapshot) else e.causation_id
        assert r.input_seq == r.origin == bar_seq[bar_id]  # the bar's position: its step and its origin
    info = await js_fresh.consumer_info(subjects.STREAM, "signal")
    assert info.ack_floor.stream_seq == 300 and info.num_ack_pending == 0


async def test_service_restart_resumes_from_its_snapshot_and_matches_uninterrupted_run(js_fresh, nats_url, bars_300):
    pub = bus.Publisher(js_fresh)
    await pub.publish_many(bars_300[:150])
    await run_until(nats_url, js_fresh, 150)
    snap = await (await SnapshotStore.open(js_fresh)).latest("signal")
    last = (await js_fresh.stream_info(subjects.STREAM)).state.last_seq
    # 150 steps; the lane had nothing left, so the snapshot covers the whole log (outputs included)
    assert snap is not None and snap.steps == 150 and snap.positions == {"signal": last} and last > 150
    await pub.publish_many(bars_300[150:])
    await run_until(nats_url, js_fresh, 300)
    got = await read_log(js_fresh, filters=[subjects.filter_of("sig")])
    assert [r.event for r in got] == expected(bars_300)


async def test_service_restart_after_the_oldest_messages_were_dropped_rebuilds_from_the_snapshot(
    js_fresh, nats_url, bars_300
):
    pub = bus.Publisher(js_fresh)
    await pub.publish_many(bars_300[:200])
    await run_until(nats_url, js_fresh, 200)
    last = (await js_fresh.stream_info(subjects.STREAM)).state.last_seq
    await js_fresh.purge_stream(subjects.STREAM, seq=last)  # drops everything but the last message
    assert (await js_fresh.stream_info(subjects.STREAM)).state.first_seq == last
    await pub.publish_many(bars_300[200:])
    await run_until(nats_url, js_fresh, 101)  # the last stored snapshot survived the purge, + 100 new
    got = [r.event for r in await read_log(js_fresh, filters=[subjects.filter_of("sig")])]
    want = expected(bars_300)
    assert got[-len(expected(bars_300)) + len(expected(bars_300[:200])) :] == want[len(expected(bars_300[:200])) :]
    assert got[0] == want[len(expected(bars_300[:200])) - 1]


async def test_service_without_a_snapshot_on_a_trimmed_stream_refuses_to_guess(js_fresh, nats_url, bars_300):
    pub = bus.Publisher(js_fresh)
    await pub.publish_many(bars_300[:50])
    await js_fresh.purge_stream(subjects.STREAM, seq=20)
    settings = SignalSettings(NATS_URL=nats_url, signal=MINUTE_STOPS, kernel=KernelSettings(snapshots=False))
    async with runtime.runtime("signal", settings) as rt:
        try:
            _, runner = await app.start(rt, settings)
            with pytest.raises(InvariantViolation, match="retention dropped messages"):
                await runner.start()
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT):
                with contextlib.suppress(Exception):
                    asyncio.get_running_loop().remove_signal_handler(sig)


async def test_service_restart_with_another_configuration_and_a_stale_snapshot_fails_loudly(
    js_fresh, nats_url, bars_300
):
    pub = bus.Publisher(js_fresh)
    await pub.publish_many(bars_300[:120])
    await run_until(nats_url, js_fresh, 120, snapshot_every=1_000_000, snapshot_interval_s=1e9, snapshots=False)
    # no snapshot: a restart re-derives every step, and with another threshold the intents differ
    settings = SignalSettings(
        NATS_URL=nats_url,
        signal=SignalConfig(entry_threshold=5.0, stop_timeframe="1"),
        kernel=KernelSettings(snapshots=False),
    )
    async with runtime.runtime("signal", settings) as rt:
        try:
            _, runner = await app.start(rt, settings)
            with pytest.raises(InvariantViolation, match="the configuration or the code changed"):
                await asyncio.wait_for(runner.run(), 20)
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT):
                with contextlib.suppress(Exception):
                    asyncio.get_running_loop().remove_signal_handler(sig)


async def test_service_process_runs_and_stops_on_sigterm(js_fresh, nats_url, bars_300):
    pub = bus.Publisher(js_fresh)
    await pub.publish_many(bars_300[:100])
    env = {**os.environ, "NATS_URL": nats_url, "NERTZ_METRICS_PORT": "0", "NERTZ_SIGNAL__STOP_TIMEFRAME": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "nertz_signal"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        for _ in range(1000):
            if len(await read_log(js_fresh, filters=[subjects.filter_of("sig", "factor")])) >= 100:
                break
            assert proc.poll() is None
            await asyncio.sleep(0.02)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            _, err = proc.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    assert proc.returncode == 0, err.decode()[-2000:]
    assert b"intent.proposed" in err and b"snapshot.written" in err and b"service.stopped" in err
