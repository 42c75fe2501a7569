"""SIGKILL of the executor trading on Bybit (the fake, through the real pybit): no duplicate order, the
same final position, and what happened while it was down is on the log once it is back.

The executor runs as a process (``python -m nertz_executor`` with ``NERTZ_EXECUTOR__VENUE=bybit``) pointed
at the fake Bybit on 127.0.0.1; the test kills it with SIGKILL at the moments that matter:

- between submit and acknowledgement: Bybit took the order and filled it, the HTTP answer is held back
  and the fill's private-stream messages are lost, so nothing of it is on the log when the process dies;
- with a position open, after which the take-profit fills at Bybit while the executor is down.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from nertz_common import bus
from nertz_common import events as ev
from nertz_common.node.log import Record, read_log
from nertz_common.testing import factories as f
from nertz_common.testing.fake_bybit import FakeBybit

pytestmark = pytest.mark.integration

MS = 1_000_000


def start(nats_url: str, fake: FakeBybit, log: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "NATS_URL": nats_url, "NERTZ_METRICS_PORT": "0", "NERTZ_LOG_LEVEL": "INFO",
        "NERTZ_EXECUTOR__COOLDOWN_S": "300", "NERTZ_EXECUTOR__VENUE": "bybit", "BYBIT_ENV": "testnet",
        "BYBIT_API_KEY": fake.trading.api_key, "BYBIT_API_SECRET": fake.trading.api_secret,
        "NERTZ_BYBIT__REST_URL": fake.base_url,
        "NERTZ_BYBIT__WS_URL": fake.ws_url, "NERTZ_BYBIT__TIMEOUT_S": "20",
    }  # fmt: skip
    out = log.open("ab")
    return subprocess.Popen([sys.executable, "-m", "nertz_executor"], env=env, stdout=out, stderr=out)


def kill(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


async def wait_for(check: Callable[[], Any], what: str, timeout_s: float = 30.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not check():
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(f"expected {what}")
        await asyncio.sleep(0.05)


async def wait_log(js, until: Callable[[list[Record]], bool], what: str, timeout_s: float = 30.0) -> list[Record]:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        recs = await read_log(js, filters=["exec.>", "venue.>"])
        if until(recs):
            return recs
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(f"expected {what}; the log has {[type(r.event).__name__ for r in recs][-15:]}")
        await asyncio.sleep(0.1)


def of(recs: list[Record], t: type) -> list[Any]:
    return [r.event for r in recs if isinstance(r.event, t)]


async def publish_one_entry(kit, js) -> ev.IntentProposed:
    b0, b1 = kit.bar(0, close=100.0), kit.bar(1, close=100.0)
    intent = f.intent(b0, side="long", sl=0.01, qty=0.5)
    pub = bus.Publisher(js)
    for e in (kit.spec(), b0, kit.factor(b0, intent.event_id), intent, f.verdict(intent), b1, kit.factor(b1)):
        await pub.publish(e)
    return intent


async def test_sigkill_between_submit_and_acknowledgement_no_duplicate_same_position(
    kit, js_fresh, nats_url, fake, tmp_path
):
    trading = fake.trading
    trading.set_price("BTCUSDT", 100.0, ts_ms=kit.bar(1).ts_event // MS)
    trading.fault("timeout_after_accept", delay_s=60.0)  # Bybit has the order; its answer never comes
    trading.fault("drop_private_during_fill", mode="abort")  # and the fill's stream messages are lost
    await publish_one_entry(kit, js_fresh)
    proc = start(nats_url, fake, tmp_path / "executor-0.log")
    try:
        await wait_for(lambda: trading.creates == 1 and "BTCUSDT" in trading.positions, "the order at the fake")
        recs = await read_log(js_fresh, filters=["exec.>", "venue.>"])
        assert of(recs, ev.OrderSubmitted) and not of(recs, ev.OrderAccepted) and not of(recs, ev.OrderFilled)
        kill(proc)
        trading.clear_faults()
        proc = start(nats_url, fake, tmp_path / "executor-1.log")
        recs = await wait_log(js_fresh, lambda rs: bool(of(rs, ev.LockEngaged)), "the position on the log")
    finally:
        stop(proc)
    assert trading.creates == 1  # never sent twice
    assert len(of(recs, ev.OrderSubmitted)) == len(of(recs, ev.OrderAccepted)) == len(of(recs, ev.OrderFilled)) == 1
    opened = of(recs, ev.PositionOpened)[0]
    venue = trading.positions["BTCUSDT"]
    assert (opened.qty, opened.side) == (float(venue["size"]), "long" if venue["side"] == "Buy" else "short")


async def test_take_profit_filled_while_the_executor_was_down_is_picked_up_on_start(
    kit, js_fresh, nats_url, fake, tmp_path
):
    trading = fake.trading
    t1 = kit.bar(1).ts_event // MS
    trading.set_price("BTCUSDT", 100.0, ts_ms=t1)
    await publish_one_entry(kit, js_fresh)
    proc = start(nats_url, fake, tmp_path / "executor-0.log")
    try:
        recs = await wait_log(js_fresh, lambda rs: bool(of(rs, ev.LockEngaged)), "the position on the log")
        kill(proc)
        trading.set_price("BTCUSDT", 104.0, ts_ms=t1 + 60_000)  # the take-profit fills at Bybit meanwhile
        await wait_for(lambda: float(trading.positions.get("BTCUSDT", {}).get("size", "0")) == 0, "the TP fill")
        proc = start(nats_url, fake, tmp_path / "executor-1.log")
        recs = await wait_log(js_fresh, lambda rs: bool(of(rs, ev.PositionClosed)), "the close on the log")
    finally:
        stop(proc)
    closed = of(recs, ev.PositionClosed)[0]
    assert closed.exit_reason == "take_profit" and closed.qty == 0.5
    exits = [e for e in of(recs, ev.OrderFilled) if e.reduce_only]
    assert len(exits) == 1 and exits[0].fill_id == trading.executions[-1]["execId"]
    assert trading.creates == 1
    assert not of(recs, ev.VenueMismatch)  # the reconciliation explained everything
