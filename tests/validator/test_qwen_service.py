"""The validator service on a real JetStream asking the fake DashScope: symbols judged concurrently, and
after a restart the recorded answers served back (the model is not asked again, no verdict twice)."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time

import pytest

from nertz_common import bus, runtime, subjects
from nertz_common import events as ev
from nertz_common.ids import derive_id
from nertz_common.node.log import read_log
from nertz_common.settings import KernelSettings
from nertz_common.testing import factories as f
from nertz_common.testing.fake_dashscope import FakeDashScope
from nertz_validator import app
from nertz_validator.settings import ValidatorSettings

pytestmark = pytest.mark.integration

SYMBOLS = [f"S{i}USDT" for i in range(8)]


def awaited(intent: ev.IntentProposed) -> ev.VerdictAwaited:
    return ev.VerdictAwaited(
        event_id=derive_id("VerdictAwaited", intent.event_id), ts_event=intent.ts_event, ts_init=intent.ts_event,
        symbol=intent.symbol, correlation_id=intent.correlation_id, causation_id=intent.event_id, lock_state="FLAT",
    )  # fmt: skip


async def verdicts(js) -> list[ev.VerdictIssued]:  # type: ignore[no-untyped-def]
    return [r.event for r in await read_log(js, filters=[subjects.filter_of("llm", "verdict")])]  # type: ignore[misc]


async def run_until(cfg: ValidatorSettings, js, done, timeout_s: float = 20.0) -> float:  # type: ignore[no-untyped-def]
    """Run the validator until ``done(js)``; return the seconds from its start to then."""
    async with runtime.runtime("llm-validator", cfg) as rt:
        try:
            _, runner, client = await app.start(rt, cfg)
            task = asyncio.create_task(runner.run())
            await asyncio.wait_for(runner.started.wait(), 10)
            t0 = time.monotonic()
            deadline = t0 + timeout_s
            while not await done(js):
                assert time.monotonic() < deadline, "the validator did not finish in time"
                await asyncio.sleep(0.02)
            took = time.monotonic() - t0
            rt.stop.set()
            await asyncio.wait_for(task, 10)
            if client is not None:
                await client.close()
        finally:
            for s in (signal.SIGTERM, signal.SIGINT):
                with contextlib.suppress(Exception):
                    asyncio.get_running_loop().remove_signal_handler(s)
    return took


async def test_symbols_are_judged_concurrently_and_a_restart_serves_the_recorded_answers(
    js_fresh, nats_url, monkeypatch
):
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    async with FakeDashScope(latency_s=0.6) as fake:
        pub = bus.Publisher(js_fresh)
        intents = [f.intent(f.bar(0, symbol=s)) for s in SYMBOLS]
        for i in intents:
            await pub.publish(i)
        for i in intents:
            await pub.publish(awaited(i))
        cfg = ValidatorSettings(
            NATS_URL=nats_url, DASHSCOPE_API_KEY="sk-test", DASHSCOPE_HTTP_BASE_URL=fake.base_url,
            kernel=KernelSettings(snapshots=False),
        )  # fmt: skip

        async def all_judged(js) -> bool:  # type: ignore[no-untyped-def]
            return len(await verdicts(js)) == len(SYMBOLS)

        took = await run_until(cfg, js_fresh, all_judged)
        first = await verdicts(js_fresh)
        assert took < 2.5, f"{len(SYMBOLS)} symbols x 0.6 s took {took:.2f} s: the calls were not concurrent"
        assert fake.calls == len(SYMBOLS)
        assert all(v.policy == "qwen" and v.calls[0].outcome == "ok" for v in first)

        # a restart without a snapshot re-derives every step; the answers come from the verdicts
        async def drained(js) -> bool:  # type: ignore[no-untyped-def]
            info = await js.consumer_info(subjects.STREAM, "llm-validator")
            return info.num_pending == 0 and info.num_ack_pending == 0 and info.delivered.stream_seq > 0

        await run_until(cfg, js_fresh, drained)
        assert fake.calls == len(SYMBOLS)  # not asked again
        assert await verdicts(js_fresh) == first  # and nothing published twice
