"""Restart: SIGKILL the executor process mid-step, start it again (snapshot + tail), compare the log."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from nertz_common import bus, runtime, topology
from nertz_common import events as ev
from nertz_common.node.log import Record, read_log
from nertz_executor import app
from nertz_executor.settings import ExecutorGroup, ExecutorSettings

pytestmark = pytest.mark.integration


def start(nats_url: str, log: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "NATS_URL": nats_url,
        "NERTZ_METRICS_PORT": "0",
        "NERTZ_LOG_LEVEL": "INFO",
        "NERTZ_EXECUTOR__COOLDOWN_S": "300",
    }
    out = log.open("ab")
    return subprocess.Popen([sys.executable, "-m", "nertz_executor"], env=env, stdout=out, stderr=out)


def kill(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)


async def reference_run(kit, js, nats_url: str, sc) -> list[Record]:
    await kit.publish_early(bus.Publisher(js), sc)
    cfg = ExecutorSettings(NATS_URL=nats_url, executor=ExecutorGroup(cooldown_s=300))
    async with runtime.runtime("executor", cfg) as rt:
        try:
            _, runner = await app.start(rt, cfg)
            task = asyncio.create_task(rt.until_stopped(runner.run()))
            await kit.wait_drained(js)
            rt.stop.set()
            await asyncio.wait_for(task, 10)
        finally:
            kit.remove_signal_handlers()
    return await kit.read_output(js)


async def wait_awaited(js, intent_id: str, timeout_s: float = 15.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while asyncio.get_running_loop().time() < deadline:
        for r in await read_log(js, filters=["exec.awaited.>"]):
            if r.event.correlation_id == intent_id:
                return
        await asyncio.sleep(0.05)
    raise TimeoutError(f"expected VerdictAwaited for {intent_id}")


async def wait_started(log: Path, timeout_s: float = 30.0) -> None:
    """Wait until the process logged that its component started (its lanes are reset and bound)."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while '"component.started"' not in (log.read_text() if log.exists() else ""):
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(f"expected the executor to start, see {log}")
        await asyncio.sleep(0.05)


async def test_restart_after_sigkill_matches_uninterrupted_run(kit, js_fresh, nats_url, tmp_path):
    sc = kit.scenario()
    reference = await reference_run(kit, js_fresh, nats_url, sc)

    await topology.recreate(js_fresh)
    pub = bus.Publisher(js_fresh)
    await kit.publish_late(pub, sc)
    order = sorted(sc.intents.values(), key=lambda i: (i.ts_event, i.symbol))
    first_hold, second_hold = order[2].event_id, order[5].event_id  # BTCUSDT bar 4 (locked), ETHUSDT bar 25 (entry)
    validator = kit.Validator(js_fresh, pub, sc)
    validator.hold = {first_hold, second_hold}
    stop = asyncio.Event()
    answering = asyncio.create_task(validator.run(stop))
    logs = [tmp_path / f"executor-{i}.log" for i in range(3)]
    proc = start(nats_url, logs[0])
    try:
        # kill 1: the executor published VerdictAwaited and waits at the barrier (step S unfinished)
        await wait_awaited(js_fresh, first_hold)
        kill(proc)
        proc = start(nats_url, logs[1])
        validator.hold.discard(first_hold)
        # kill 2: right as the verdict of an approved entry is released (mid-step, mid-publish or after)
        await wait_awaited(js_fresh, second_hold)
        validator.hold.discard(second_hold)
        await validator.answer_awaited()
        await asyncio.sleep(0.002)
        kill(proc)
        proc = start(nats_url, logs[2])
        await wait_started(logs[2])
        await kit.wait_drained(js_fresh, timeout_s=30)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
    finally:
        stop.set()
        await answering
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert "restart.redo_step" in logs[1].read_text(), logs[1].read_text()[-3000:]

    restarted = await kit.read_output(js_fresh)
    # the same events, payloads and ids, in the same order per symbol (docs/decisions.md D13)
    for sym in (kit.A, kit.B):
        mine = [r for r in restarted if r.event.symbol == sym]
        ref = [r for r in reference if r.event.symbol == sym]
        assert [r.event.event_id for r in mine] == [r.event.event_id for r in ref], sym
        assert kit.payloads(mine) == kit.payloads(ref), sym  # payloads per symbol
    assert len(restarted) == len(reference)
    orders = Counter(r.event.order_id for r in restarted if isinstance(r.event, ev.OrderSubmitted))
    assert orders and max(orders.values()) == 1
    for durable in ("executor-decisions", "executor-verdicts"):
        info = await js_fresh.consumer_info("NERTZ", durable)
        assert info.num_pending == 0 and info.num_ack_pending == 0, durable
