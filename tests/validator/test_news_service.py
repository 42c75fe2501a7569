"""The news analyst in the llm-validator process on a real JetStream, asking the fake DashScope: beside the
validator's runner (shared kernel and model metrics), on its schedule and on a request; off without a key."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import time

import pytest

from nertz_common import bus, runtime, subjects
from nertz_common import events as ev
from nertz_common.ids import derive_id
from nertz_common.node.log import read_log
from nertz_common.settings import KernelSettings
from nertz_common.testing import factories as f
from nertz_common.testing.fake_dashscope import Answer, FakeDashScope
from nertz_validator import app
from nertz_validator.settings import NewsSettings, ValidatorGroup, ValidatorSettings

pytestmark = pytest.mark.integration

MINUTE_NS = f.MINUTE_NS
NEWS = '{"impact": -2, "key_events": [{"date": "%s", "title": "Exchange hack", "impact": -2, "critical": true}], ' \
       '"summary": "A hack."}'  # fmt: skip


async def news(js) -> list[ev.NewsAssessed]:  # type: ignore[no-untyped-def]
    return [r.event for r in await read_log(js, filters=[subjects.filter_of("llm", "news")])]  # type: ignore[misc]


async def test_news_analyst_runs_beside_the_validator_on_its_schedule_and_on_request(js_fresh, nats_url, monkeypatch):
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    now = time.time_ns()
    start = now - now % MINUTE_NS - 3 * MINUTE_NS
    # closed 1m bars of the last minutes (slots of one minute): the first sets the slot, the next two ask
    bars = [
        f.bar(0, open_time_ns=start + i * MINUTE_NS, ts_event=start + (i + 1) * MINUTE_NS,
              ts_init=start + (i + 1) * MINUTE_NS, event_id=derive_id("Bar", "news", i))
        for i in range(3)
    ]  # fmt: skip
    old = f.bar(0, event_id=derive_id("Bar", "news", "old"), symbol="ETHUSDT")  # 2025: a question about the past
    older = f.bar(1, event_id=derive_id("Bar", "news", "older"), symbol="ETHUSDT")
    request = ev.NewsRequested(event_id="nr1", ts_event=now, ts_init=now, scope="BTCUSDT", reason="check")
    pub = bus.Publisher(js_fresh)
    for e in (old, *bars, older, request):
        await pub.publish(e)
    async with FakeDashScope(thinking_models={"qwen3-max"}) as fake:
        day = time.strftime("%Y-%m-%d", time.gmtime(now / 1e9))
        fake.script(*[Answer(NEWS % day)] * 3)
        cfg = ValidatorSettings(
            NATS_URL=nats_url, DASHSCOPE_API_KEY="sk-test", DASHSCOPE_HTTP_BASE_URL=fake.base_url,
            kernel=KernelSettings(snapshots=False),
            validator=ValidatorGroup(news=NewsSettings(refresh_h=1 / 60, request_timeout_s=5, budget_s=10)),
        )  # fmt: skip
        async with runtime.runtime("llm-validator", cfg) as rt:
            try:
                _, runner, client = await app.start(rt, cfg)
                started = await app.start_news(rt, cfg, client.metrics if client else None)
                assert started is not None
                _, news_runner, news_client = started
                tasks = [asyncio.create_task(runner.run()), asyncio.create_task(news_runner.run())]
                deadline = time.monotonic() + 20
                while len(await news(js_fresh)) < 4:
                    assert time.monotonic() < deadline, await news(js_fresh)
                    await asyncio.sleep(0.05)
                rt.stop.set()
                await asyncio.wait_for(asyncio.gather(*tasks), 10)
                for c in (client, news_client):
                    if c is not None:
                        await c.close()
                counted = rt.registry.get_sample_value(
                    "nertz_llm_news_assessments_total", {"symbol": "BTCUSDT", "outcome": "ok"}
                )
            finally:
                for s in (signal.SIGTERM, signal.SIGINT):
                    with contextlib.suppress(Exception):
                        asyncio.get_running_loop().remove_signal_handler(s)
    got = await news(js_fresh)
    by = {(n.symbol, n.trigger, n.failure) for n in got}
    assert by == {("BTCUSDT", "schedule", None), ("BTCUSDT", "request", None), ("ETHUSDT", "schedule", "stale")}
    assert [n.request_id for n in got if n.trigger == "request"] == ["nr1"]
    assert all(n.key_events[0].critical for n in got if n.failure is None)
    assert fake.calls == 3 and all(r.parameters["enable_search"] is True for r in fake.requests)
    assert counted == 3.0


async def test_news_analyst_is_off_without_a_key_and_says_so(js_fresh, nats_url, capsys):
    cfg = ValidatorSettings(NATS_URL=nats_url, kernel=KernelSettings(snapshots=False))
    async with runtime.runtime("llm-validator", cfg) as rt:
        try:
            assert await app.start_news(rt, cfg) is None
        finally:
            for s in (signal.SIGTERM, signal.SIGINT):
                with contextlib.suppress(Exception):
                    asyncio.get_running_loop().remove_signal_handler(s)
    off = [json.loads(line) for line in capsys.readouterr().err.splitlines() if '"news.off"' in line]
    assert len(off) == 1 and "DASHSCOPE_API_KEY" in off[0]["reason"]
