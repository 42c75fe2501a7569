"""What a real venue reports, on the HTTP API: /status halts, /venue, /venue/{symbol}, and the venue's
answers in /decisions and /metrics (real NATS + Postgres, the app in-process via ASGITransport)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry

from nertz_api.web import ApiContext, create_app
from nertz_common import events as ev
from nertz_common.testing import factories as f

pytestmark = pytest.mark.integration

SYMBOLS = ("BTCUSDT", "ETHUSDT", "SOLUSDT", "XRPUSDT")  # XRPUSDT: configured, never on the log
T = f.T0_NS + f.MINUTE_NS  # the venue scenario's clock (see conftest.venue_events)
BTC_HALT = "the fill that closed the position is not on the log"
SOL_HALT = "a short position of 1 opened outside Nertz"


@pytest.fixture
async def venue(pool, publisher, project, venue_scenario) -> AsyncIterator[httpx.AsyncClient]:
    """The API over the projected venue scenario (the test may publish and project more)."""
    await publisher.publish_many(venue_scenario)
    await project()
    app = create_app(ApiContext(pool, SYMBOLS, CollectorRegistry()))
    transport = httpx.ASGITransport(app=app)
    async with app.router.lifespan_context(app), httpx.AsyncClient(transport=transport, base_url="http://api") as c:
        yield c


async def _status(c: httpx.AsyncClient) -> dict[str, Any]:
    r = await c.get("/status")
    assert r.status_code == 200, r.text
    return r.json()["symbols"]  # type: ignore[no-any-return]


def _halt(row: dict[str, Any]) -> tuple[bool, str | None, bool]:
    return row["halted"], row["halt_reason"], row["trading_enabled"]


async def test_status_shows_a_reconciliation_halt_and_why_until_trading_started(venue, publisher, project, build):
    s = await _status(venue)
    assert _halt(s["BTCUSDT"]) == (True, BTC_HALT, False) and s["BTCUSDT"]["halted_since_ns"] == T + 8
    assert _halt(s["SOLUSDT"]) == (True, SOL_HALT, False) and s["SOLUSDT"]["lock_state"] == "FLAT"
    assert _halt(s["ETHUSDT"]) == (False, None, True) and s["ETHUSDT"]["halted_since_ns"] is None
    assert s["ETHUSDT"]["lock_state"] == "LOCKED"  # adopted, then locked like its own
    assert _halt(s["XRPUSDT"]) == (False, None, True)
    # an operator starts SOLUSDT: its halt lifts, BTCUSDT's holds
    await publisher.publish(build.system(ev.TradingStarted, T + 200, scope="SOLUSDT", actor="ops"))
    await project()
    s = await _status(venue)
    assert _halt(s["SOLUSDT"]) == (False, None, True) and _halt(s["BTCUSDT"]) == (True, BTC_HALT, False)
    # a halt after that start holds, with its own reason
    await publisher.publish_many(build.halt("SOLUSDT", T + 300, "the venue holds short 2 where the lock holds 1"))
    await project()
    s = await _status(venue)
    assert _halt(s["SOLUSDT"]) == (True, "the venue holds short 2 where the lock holds 1", False)
    assert s["SOLUSDT"]["halted_since_ns"] == T + 300
    # an operator stop of another symbol lifts nothing; a start of all lifts every halt
    await publisher.publish(build.system(ev.TradingStopped, T + 400, scope="ETHUSDT", reason="check", actor="ops"))
    await project()
    s = await _status(venue)
    assert _halt(s["ETHUSDT"]) == (False, None, False) and s["SOLUSDT"]["halted"] and s["BTCUSDT"]["halted"]
    await publisher.publish(build.system(ev.TradingStarted, T + 500, actor="ops"))
    await project()
    s = await _status(venue)
    assert {sym: _halt(row) for sym, row in s.items()} == {sym: (False, None, True) for sym in SYMBOLS}


async def test_venue_lists_positions_wallet_halts_mismatches_and_funding(venue):
    r = await venue.get("/venue")
    assert r.status_code == 200, r.text
    body = r.json()
    positions = {p["symbol"]: p for p in body["positions"]}
    assert list(positions) == ["BTCUSDT", "ETHUSDT", "SOLUSDT"]
    assert positions["BTCUSDT"] == {**positions["BTCUSDT"], "venue_name": "bybit", "source": "reconcile",
                                    "side": None, "qty": 0.0, "mark_price": 100.6}  # fmt: skip
    assert positions["ETHUSDT"] == {**positions["ETHUSDT"], "side": "long", "qty": 2.0, "entry_price": 49.5}
    assert positions["SOLUSDT"]["ts"].startswith("2025-05-30T16:40:00")
    [wallet] = body["wallets"]
    assert wallet == {**wallet, "venue_name": "bybit", "equity_usdt": 1012.5, "wallet_balance_usdt": 1012.5,
                      "unrealized_pnl_usdt": 2.5, "ts_event_ns": T + 9}  # fmt: skip
    assert [(h["symbol"], h["reason"]) for h in body["halted"]] == [("BTCUSDT", BTC_HALT), ("SOLUSDT", SOL_HALT)]
    assert [(m["symbol"], m["action"]) for m in body["mismatches"]] == [
        ("SOLUSDT", "halted"), ("ETHUSDT", "adopted"), ("BTCUSDT", "halted"), ("BTCUSDT", "closed")
    ]  # newest first  # fmt: skip
    [funding] = body["funding"]
    assert funding == {**funding, "symbol": "BTCUSDT", "venue_name": "bybit", "payments": 2}
    assert funding["fee_usdt"] == pytest.approx(0.02)
    limited = (await venue.get("/venue", params={"limit": 1})).json()
    assert [m["action"] for m in limited["mismatches"]] == ["halted"] and len(limited["positions"]) == 3


async def test_venue_symbol_shows_its_position_halt_mismatches_and_funding(venue):
    btc = (await venue.get("/venue/BTCUSDT")).json()
    assert btc["symbol"] == "BTCUSDT" and [p["qty"] for p in btc["positions"]] == [0.0]
    assert btc["halt"]["reason"] == BTC_HALT and btc["halt"]["ts_event_ns"] == T + 8
    assert [m["action"] for m in btc["mismatches"]] == ["halted", "closed"]
    assert [p["fill_id"] for p in btc["funding"]] == ["funding-2", "funding-1"]  # newest first
    assert btc["funding"][0]["fee_usdt"] == -0.01 and btc["funding"][1]["rate"] == 0.0003
    assert btc["funding_usdt"] == pytest.approx(0.02)
    eth = (await venue.get("/venue/ethusdt")).json()  # case-blind
    assert eth["symbol"] == "ETHUSDT" and eth["halt"] is None and eth["funding_usdt"] == 0.0
    assert [m["action"] for m in eth["mismatches"]] == ["adopted"]
    assert [m["action"] for m in (await venue.get("/venue/BTCUSDT?limit=1")).json()["mismatches"]] == ["halted"]
    xrp = (await venue.get("/venue/XRPUSDT")).json()  # configured, never reported
    assert xrp == {"symbol": "XRPUSDT", "positions": [], "halt": None, "mismatches": [], "funding": [],
                   "funding_usdt": 0.0}  # fmt: skip


@pytest.mark.parametrize(
    ("url", "status", "error"),
    [("/venue/NOPEUSDT", 404, "unknown_symbol"), ("/venue/B-1", 422, "invalid_symbol"),
     ("/venue?limit=0", 422, "invalid_request"), ("/venue/BTCUSDT?limit=1001", 422, "invalid_request")],
)  # fmt: skip
async def test_venue_errors_are_json(venue, url, status, error):
    r = await venue.get(url)
    assert r.status_code == status, r.text
    body = r.json()
    assert body["error"] == error and body["reason"]
    if error == "unknown_symbol":
        assert (
            body["reason"]
            == "expected a configured symbol (BTCUSDT, ETHUSDT, SOLUSDT, XRPUSDT) or one on the log, was NOPEUSDT"
        )


async def test_decisions_and_metrics_show_what_the_venue_answered(venue):
    sol = (await venue.get("/decisions/SOLUSDT")).json()["decisions"]
    orders = [o for d in sol for o in d["orders"]]
    refused = next(o for o in orders if o["kind"] == "refused")
    assert refused["reason"] == "110007 ab not enough for new order" and refused["ret_code"] == 110007
    canceled = next(o for o in orders if o["kind"] == "canceled")
    assert canceled["venue_order_id"] == "bybit-order-2" and canceled["filled_qty"] == 0.0
    assert sorted(o["kind"] for o in orders) == sorted(
        ["submitted", "refused", "rejected", "submitted", "accepted", "expired", "canceled"]
    )
    [btc] = (await venue.get("/decisions/BTCUSDT")).json()["decisions"]
    assert [(x["leaves_qty"], x["venue_order_id"]) for x in btc["fills"]] == [(0.6, "bybit-order-1"),
                                                                              (0.0, "bybit-order-1")]  # fmt: skip
    assert btc["positions"][0]["exit_reason"] == "reconciled"
    counts = (await venue.get("/metrics/SOLUSDT")).json()["counts"]
    assert counts == {**counts, "orders_submitted": 2, "orders_accepted": 1, "orders_refused": 1,
                      "orders_canceled": 1, "orders_rejected": 1, "entries_expired": 1, "mismatches": 1}  # fmt: skip


async def test_venue_responses_match_the_openapi_document(venue):
    import jsonschema_rs

    doc = (await venue.get("/openapi.json")).json()
    for path in ("/venue", "/venue/{symbol}"):
        op = doc["paths"][path]["get"]
        assert op["responses"]["404" if "{" in path else "422"]["content"]["application/json"]["examples"]
    gets = [("/venue", "/venue"), ("/status", "/status"), ("/venue?limit=0", "/venue"),
            ("/venue/NOPEUSDT", "/venue/{symbol}")]  # fmt: skip
    for sym in SYMBOLS:
        gets += [(f"/venue/{sym}", "/venue/{symbol}"), (f"/decisions/{sym}", "/decisions/{symbol}"),
                 (f"/metrics/{sym}", "/metrics/{symbol}")]  # fmt: skip
    for url, template in gets:
        r = await venue.get(url)
        ref = doc["paths"][template]["get"]["responses"][str(r.status_code)]["content"]["application/json"]["schema"]
        validator = jsonschema_rs.Draft202012Validator({**doc, "$ref": ref["$ref"]}, validate_formats=True)
        errors = [e.message for e in validator.iter_errors(r.json())]
        assert not errors, (url, r.status_code, errors[:3])
