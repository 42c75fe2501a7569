"""POST /news/{symbol} publishes NewsRequested; NewsAssessed and NewsRequested are projected (migration
0009), failures included (real NATS + Postgres, the app in-process)."""

from __future__ import annotations

import httpx
import nats.js.errors
import pytest
from prometheus_client import CollectorRegistry
from pydantic import SecretStr

from nertz_api.web import ApiContext, create_app
from nertz_common import bus, subjects
from nertz_common import events as ev
from nertz_common.testing import factories as f

pytestmark = pytest.mark.integration

TOKEN = "s3cret"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


async def test_post_news_publishes_a_news_request_for_the_symbol(pool, js_fresh):
    ctx = ApiContext(pool, ("BTCUSDT", "ETHUSDT"), CollectorRegistry(), bus.Publisher(js_fresh), SecretStr(TOKEN),
                     js=js_fresh)  # fmt: skip
    app = create_app(ctx)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as c,
    ):
        assert (await c.post("/news/BTCUSDT")).status_code == 401
        r = await c.post("/news/btcusdt", headers=AUTH, json={"reason": "before the FOMC"})
        assert r.status_code == 202, r.text
        req = ev.decode((await js_fresh.get_last_msg(subjects.STREAM, "sys.news.BTCUSDT")).data)
        assert isinstance(req, ev.NewsRequested) and (req.scope, req.reason, req.actor) == (
            "BTCUSDT", "before the FOMC", "api")  # fmt: skip
        assert r.json() == {"accepted": True, "type": "NewsRequested", "event_id": req.event_id,
                            "stream_seq": r.json()["stream_seq"], "symbol": "BTCUSDT"}  # fmt: skip
        assert (await c.post("/news/ETHUSDT", headers=AUTH)).status_code == 202
        assert (await c.post("/news/XYZUSDT", headers=AUTH)).json()["error"] == "unknown_symbol"
        r = await c.post("/news/BTCUSDT", headers=AUTH, json={"reason": "a\nb"})
        assert r.status_code == 422
        with pytest.raises(nats.js.errors.NotFoundError):
            await js_fresh.get_last_msg(subjects.STREAM, "sys.news.XYZUSDT")


async def test_news_assessments_and_requests_are_projected_failures_included(pool, publisher, project):
    hack = f.news(f.T0_NS, "BTCUSDT", (("Exchange hack", -2.0, True, 1.0), ("Outflows", -1.0, False, 20.0)),
                  call=ev.ModelCall(role="news", model="qwen3-max", prompt_id="news.v1", prompt_sha256="ab" * 32,
                                    outcome="ok", raw_text="{}", latency_ms=9000.0, tokens_in=2000, tokens_out=100,
                                    cost_usd=0.003))  # fmt: skip
    failed = f.news(f.T0_NS + 1, "BTCUSDT", (), failure="invalid_json", failure_detail="model answer is not JSON")
    req = ev.NewsRequested(event_id="nr1", ts_event=f.T0_NS, ts_init=f.T0_NS, scope="BTCUSDT", reason="why")
    await publisher.publish_many([req, hack, failed])
    p = await project()
    assert p.stats.rejected == 0
    rows = await pool.fetch("SELECT * FROM news_assessments ORDER BY stream_seq")
    assert [(r["event_id"], r["failure"], r["critical"]) for r in rows] == [
        (hack.event_id, None, 1), (failed.event_id, "invalid_json", 0)]  # fmt: skip
    first = rows[0]
    assert (first["impact"], first["model"], first["tokens_in"], first["trigger"]) == (-1.5, "qwen3-max", 2000,
                                                                                      "schedule")  # fmt: skip
    assert rows[1]["model"] is None and rows[1]["failure_detail"] == "model answer is not JSON"
    (r,) = await pool.fetch("SELECT * FROM news_requests")
    assert (r["event_id"], r["symbol"], r["reason"]) == ("nr1", "BTCUSDT", "why")
