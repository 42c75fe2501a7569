"""POST /config/update_all, /config/update_thresholds and /execute_trade/{symbol}: validated, then one
command on the log (real NATS + Postgres, the app in-process)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import nats.js.errors
import pytest
from prometheus_client import CollectorRegistry
from pydantic import SecretStr

from nertz_api.web import ApiContext, create_app
from nertz_common import bus, subjects
from nertz_common import events as ev

pytestmark = pytest.mark.integration

TOKEN = "s3cret"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
async def client(pool, js_fresh) -> AsyncIterator[httpx.AsyncClient]:  # type: ignore[no-untyped-def]
    ctx = ApiContext(pool, ("BTCUSDT", "ETHUSDT"), CollectorRegistry(), bus.Publisher(js_fresh), SecretStr(TOKEN),
                     js=js_fresh)  # fmt: skip
    app = create_app(ctx)
    transport = httpx.ASGITransport(app=app)
    async with app.router.lifespan_context(app), httpx.AsyncClient(transport=transport, base_url="http://api") as c:
        yield c


async def last(js, subject: str) -> ev.Event | None:  # type: ignore[no-untyped-def]
    try:
        return ev.decode((await js.get_last_msg(subjects.STREAM, subject)).data)
    except nats.js.errors.NotFoundError:
        return None


def error(r: httpx.Response, status: int, slug: str) -> dict:
    assert r.status_code == status, r.text
    body = r.json()
    assert body["error"] == slug and body["reason"], body
    return body


async def test_update_all_publishes_one_validated_change(client, js_fresh, project, pool):
    assert error(await client.post("/config/update_all", json={"changes": {"signal.entry_threshold": 9}}), 401,
                 "unauthorized")  # fmt: skip
    body = {"changes": {"signal": {"entry_threshold": 9.1, "weights": {"ild": 0.4}}, "executor.max_positions": 2,
                        "validator.rules.min_win_rate": 0.3}, "reason": "calmer market"}  # fmt: skip
    r = await client.post("/config/update_all", headers=AUTH, json=body)
    assert r.status_code == 202, r.text
    changed = await last(js_fresh, "sys.config.all")
    want = {"signal.entry_threshold": 9.1, "signal.weights.ild": 0.4, "executor.max_positions": 2,
            "validator.rules.min_win_rate": 0.3}  # fmt: skip
    assert isinstance(changed, ev.ConfigChanged) and changed.changes == want and changed.reason == "calmer market"
    assert r.json() == {"accepted": True, "type": "ConfigChanged", "event_id": changed.event_id,
                        "stream_seq": r.json()["stream_seq"], "changes": want}  # fmt: skip
    await project()
    assert await pool.fetchval("SELECT changes->>'signal.entry_threshold' FROM config_changes") == "9.1"


async def test_update_all_lists_every_bad_key_and_publishes_nothing(client, js_fresh):
    bad = {"signal.entry_threshold": 12, "signal.ema_fast": 3, "executor.max_positions": 0, "nats_url": "x",
           "validator.qwen.model": "qwen-max", "signal.bogus": 1, "executor.venue": "bybit"}  # fmt: skip
    body = error(await client.post("/config/update_all", headers=AUTH, json={"changes": bad}), 422, "invalid_config")
    assert {d["loc"][-1] for d in body["details"]} == set(bad)
    assert "restart" in next(d["msg"] for d in body["details"] if d["loc"][-1] == "signal.ema_fast")
    assert await last(js_fresh, "sys.config.all") is None
    error(await client.post("/config/update_all", headers=AUTH, json={"changes": {}}), 422, "invalid_config")
    error(await client.post("/config/update_all", headers=AUTH, json={"changes": {"signal.max_spread": [1]}}), 422,
          "invalid_config")  # fmt: skip
    error(await client.post("/config/update_all", headers=AUTH, content=b"null"), 422, "invalid_body")


async def test_a_change_is_validated_with_the_earlier_ones_in_force(client, project):
    r = await client.post("/config/update_all", headers=AUTH, json={"changes": {"signal.sl_min": 0.02}})
    assert r.status_code == 202, r.text
    await project()  # the earlier change as the api sees it: projected
    body = error(await client.post("/config/update_all", headers=AUTH, json={"changes": {"signal.sl_max": 0.018}}),
                 422, "invalid_config")  # fmt: skip
    assert "sl_min <= sl_max" in body["reason"]


async def test_update_thresholds_maps_the_original_names(client, js_fresh):
    r = await client.post("/config/update_thresholds", headers=AUTH,
                          json={"egm_buy_threshold": 9.2, "egm_sell_threshold": -9.2, "entry_threshold_books": 6.0,
                                "entry_thresholds": {"egm+pio": 8.8}})  # fmt: skip
    assert r.status_code == 202, r.text
    changed = await last(js_fresh, "sys.config.all")
    assert isinstance(changed, ev.ConfigChanged)
    assert changed.changes == {"signal.entry_threshold": 9.2, "signal.entry_threshold_books": 6.0,
                               "signal.entry_thresholds.egm+pio": 8.8}  # fmt: skip
    asymmetric = {"egm_buy_threshold": 9.2, "egm_sell_threshold": -8.0}
    error(await client.post("/config/update_thresholds", headers=AUTH, json=asymmetric), 422, "invalid_config")
    error(await client.post("/config/update_thresholds", headers=AUTH, json={"entry_threshold": 0}), 422,
          "invalid_request")  # fmt: skip
    error(await client.post("/config/update_thresholds", headers=AUTH, json={"entry_thresholds": {"x+y": 5}}), 422,
          "invalid_config")  # fmt: skip


async def test_execute_trade_publishes_a_manual_request(client, js_fresh):
    error(await client.post("/execute_trade/BTCUSDT"), 401, "unauthorized")
    # refused before its symbol or body is looked at, like every mutating endpoint
    error(await client.post("/execute_trade/not-a-symbol", json={"side": "up"}), 401, "unauthorized")
    r = await client.post("/execute_trade/btcusdt", headers=AUTH, json={"side": "long", "reason": "breakout"})
    assert r.status_code == 202, r.text
    req = await last(js_fresh, "sys.manual.BTCUSDT")
    assert isinstance(req, ev.ManualTradeRequested) and (req.scope, req.side, req.reason) == (
        "BTCUSDT",
        "Buy",
        "breakout",
    )
    assert r.json()["event_id"] == req.event_id and r.json()["side"] == "Buy"
    r = await client.post("/execute_trade/ETHUSDT", headers=AUTH)
    assert r.status_code == 202 and r.json()["side"] is None
    error(await client.post("/execute_trade/XYZUSDT", headers=AUTH), 404, "unknown_symbol")
    error(await client.post("/execute_trade/BTCUSDT", headers=AUTH, json={"side": "up"}), 422, "invalid_request")
    error(await client.post("/execute_trade/BTCUSDT", headers=AUTH, content=b"null"), 422, "invalid_body")
