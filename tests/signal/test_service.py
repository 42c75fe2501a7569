"""The signal service against a real JetStream: consumer → engine → publish before ack, rebuild, process."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time

import nats.errors
import pytest
from prometheus_client import CollectorRegistry

from nertz_common import bus, subjects
from nertz_common import events as ev
from nertz_signal.adapters.rebuild import rebuild
from nertz_signal.app import build_handler
from nertz_signal.core.config import SignalConfig
from nertz_signal.core.engine import SignalEngine
from nertz_signal.handlers import SignalHandler

pytestmark = pytest.mark.integration


@pytest.fixture
def bars_300(trend_then_jump) -> list[ev.Bar]:
    """300 BTCUSDT 1m bars: up-trend + jump, down-trend + drop, up-trend + jump (100 bars each)."""
    return [
        *trend_then_jump("BTCUSDT", n=99, start=0),
        *trend_then_jump("BTCUSDT", n=99, start=100, direction=-1),
        *trend_then_jump("BTCUSDT", n=99, start=200),
    ]


def expected(bars: list[ev.Bar]) -> list[ev.Event]:
    engine = SignalEngine(SignalConfig())
    return [e for b in bars for e in engine.on_bar(b)]


async def read_back(js, n: int, filter_subject: str = "sig.>", timeout_s: float = 10.0) -> list[tuple[ev.Event, dict]]:
    """Read ``n`` messages of ``filter_subject`` from the start of the stream (ephemeral consumer)."""
    sub = await js.pull_subscribe(filter_subject, stream=subjects.STREAM)
    got: list[tuple[ev.Event, dict]] = []
    deadline = time.monotonic() + timeout_s
    while len(got) < n and time.monotonic() < deadline:
        try:
            msgs = await sub.fetch(n - len(got), timeout=0.5)
        except (TimeoutError, nats.errors.TimeoutError):
            continue
        got += [(ev.decode(m.data), dict(m.headers or {})) for m in msgs]
    await sub.unsubscribe()
    return got


async def consume_until(js, handler: SignalHandler, registry: CollectorRegistry, symbol: str, n: int) -> None:
    """Run the real consumer loop with ``handler`` until it has published ``n`` snapshots for ``symbol``."""
    consumer = bus.Consumer(js, "signal", "signal", handler._publisher)
    await consumer.start()
    task = asyncio.create_task(consumer.run(handler))
    deadline = time.monotonic() + 20
    while (registry.get_sample_value("nertz_signal_snapshots_total", {"symbol": symbol}) or 0) < n:
        assert time.monotonic() < deadline, "timed out waiting for snapshots"
        assert not task.done(), task.exception()
        await asyncio.sleep(0.02)
    consumer.stop()
    await asyncio.wait_for(task, 5)
    await consumer.drain()


async def wait_ack_floor(js, seq: int) -> None:
    for _ in range(200):
        if (await js.consumer_info(subjects.STREAM, "signal")).ack_floor.stream_seq >= seq:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"ack floor never reached {seq}")


async def test_service_300_bars_publishes_300_snapshots_in_order(js_fresh, bars_300):
    pub = bus.Publisher(js_fresh)
    assert await pub.publish_many(bars_300) == 300
    registry = CollectorRegistry()
    handler = build_handler(SignalConfig(), pub, registry)
    await consume_until(js_fresh, handler, registry, "BTCUSDT", 300)

    want = expected(bars_300)
    got = await read_back(js_fresh, len(want))
    assert [ev.encode(e) for e, _ in got] == [ev.encode(e) for e in want]
    snaps = [e for e, _ in got if isinstance(e, ev.FactorSnapshot)]
    assert [s.bar_id for s in snaps] == [b.event_id for b in bars_300]
    n_intents = sum(isinstance(e, ev.IntentProposed) for e, _ in got)
    assert n_intents >= 1
    assert registry.get_sample_value("nertz_signal_intents_total", {"symbol": "BTCUSDT", "side": "long"}) >= 1
    # every output names its input's stream sequence; an intent directly precedes its snapshot
    bar_seq = {b.event_id: i + 1 for i, b in enumerate(bars_300)}
    for i, (e, headers) in enumerate(got):
        if isinstance(e, ev.IntentProposed):
            nxt = got[i + 1][0]
            assert isinstance(nxt, ev.FactorSnapshot) and nxt.intent_id == e.event_id
        bar_id = e.bar_id if isinstance(e, ev.FactorSnapshot) else e.causation_id
        assert headers[bus.INPUT_SEQ] == str(bar_seq[bar_id])
    await wait_ack_floor(js_fresh, 300)


async def test_service_restart_rebuilds_state_and_matches_uninterrupted_run(js_fresh, bars_300):
    pub = bus.Publisher(js_fresh)
    await pub.publish_many(bars_300[:150])
    reg_a = CollectorRegistry()
    await consume_until(js_fresh, build_handler(SignalConfig(), pub, reg_a), reg_a, "BTCUSDT", 150)
    await wait_ack_floor(js_fresh, 150)

    await pub.publish_many(bars_300[150:])
    reg_b = CollectorRegistry()
    handler_b = build_handler(SignalConfig(), pub, reg_b)
    assert await rebuild(handler_b.engine, js_fresh) == 150
    await consume_until(js_fresh, handler_b, reg_b, "BTCUSDT", 150)

    want = expected(bars_300)
    got = await read_back(js_fresh, len(want))
    assert [ev.encode(e) for e, _ in got] == [ev.encode(e) for e in want]


async def test_service_process_runs_and_stops_on_sigterm(js_fresh, nats_url, bars_300):
    pub = bus.Publisher(js_fresh)
    await pub.publish_many(bars_300[:100])
    env = {**os.environ, "NATS_URL": nats_url, "NERTZ_METRICS_PORT": "0"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "nertz_signal"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        got = await read_back(js_fresh, 100, subjects.filter_of("sig", "factor"), timeout_s=20)
        assert len(got) == 100
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            _, err = proc.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    assert proc.returncode == 0, err.decode()[-2000:]
    assert b"intent.proposed" in err and b"service.stopped" in err
