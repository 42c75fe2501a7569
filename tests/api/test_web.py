"""The HTTP API over a projected database (real NATS + Postgres, the app in-process via ASGITransport)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx
import nats
import nats.js.errors
import pytest
import uvicorn
from fastapi import Depends, FastAPI
from fastapi.responses import JSONResponse
from fastapi.security import HTTPBearer
from prometheus_client import CollectorRegistry
from pydantic import BaseModel, SecretStr

from nertz_api.fuzz import fuzz
from nertz_api.fuzz import main as fuzz_main
from nertz_api.migrate import migrate
from nertz_api.web import DATABASE_UNAVAILABLE, SYMBOL_PATTERN, ApiContext, create_app
from nertz_common import bus, infra, subjects, topology
from nertz_common import events as ev
from nertz_common.testing import factories as f
from nertz_common.testing.plugin import with_database

pytestmark = pytest.mark.integration

SYMBOLS = ("BTCUSDT", "ETHUSDT", "SOLUSDT", "XRPUSDT")  # XRPUSDT: configured, never on the log
TOKEN = "s3cret"


async def _client(ctx: ApiContext) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(ctx)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as c:
            yield c


@pytest.fixture(scope="module")
async def projected_db(nats_url, database_url, scenario, projector_runner) -> AsyncIterator[str]:
    """A database with the scenario projected, shared by this module's read-only tests."""
    name = f"t_web_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(database_url)
    await admin.execute(f'CREATE DATABASE "{name}"')
    url = with_database(database_url, name)
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    with contextlib.suppress(nats.js.errors.NotFoundError):
        await js.delete_stream(subjects.STREAM)
    await topology.apply(js)
    pool = await asyncpg.create_pool(url, min_size=1, max_size=4)
    try:
        await migrate(pool)
        publisher = bus.Publisher(js)
        await publisher.publish_many(scenario)
        await projector_runner(js, pool, publisher)
    finally:
        await pool.close()
        await nc.close()
    yield url
    await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    await admin.close()


@pytest.fixture
async def client(projected_db, js_fresh) -> AsyncIterator[httpx.AsyncClient]:
    """The API on the projected scenario; its publisher writes to a fresh stream."""
    pool = await asyncpg.create_pool(projected_db, min_size=1, max_size=4)
    try:
        async for c in _client(
            ApiContext(pool, SYMBOLS, CollectorRegistry(), bus.Publisher(js_fresh), SecretStr(TOKEN), js=js_fresh)
        ):
            yield c
    finally:
        await pool.close()


def assert_error(r: httpx.Response, status: int, error: str) -> dict:
    assert r.status_code == status, r.text
    body = r.json()
    assert body["error"] == error and isinstance(body["reason"], str) and body["reason"]
    return body


async def test_health_database_reachable_is_ok(client):
    r = await client.get("/health")
    assert r.status_code == 200 and r.json() == {"status": "ok", "database": "ok"}


async def test_health_database_down_is_503_json(fresh_db):
    dead = await asyncpg.create_pool(fresh_db, min_size=0, max_size=1)
    await dead.close()
    async for c in _client(ApiContext(dead, SYMBOLS, CollectorRegistry())):
        assert_error(await c.get("/health"), 503, "database_unavailable")
        assert_error(await c.get("/status"), 503, "database_unavailable")


async def test_status_reports_locks_bars_prices_and_trading_switch(client, scenario):
    body = (await client.get("/status")).json()
    assert body["trading_enabled"] is True  # stopped, then started again (scope all)
    assert body["projector"] == {"consumer": "projector", "stream_seq": len(scenario)}
    btc, sol, xrp = body["symbols"]["BTCUSDT"], body["symbols"]["SOLUSDT"], body["symbols"]["XRPUSDT"]
    assert btc["lock_state"] == "FLAT" and btc["trading_enabled"] is True
    assert (btc["halted"], btc["halt_reason"], btc["halted_since_ns"]) == (False, None, None)  # no reconciliation
    assert btc["last_price"] == 133.0 and btc["last_bar_open_time_ns"] == f.T0_NS + 30 * f.MINUTE_NS
    assert btc["last_bar_open_time"].startswith("2025-05-30T17:09:00")
    assert sol["trading_enabled"] is False and sol["last_price"] == 20.0  # stopped for SOLUSDT alone
    assert xrp == {**xrp, "lock_state": "FLAT", "last_price": None, "trading_enabled": True}


async def test_profit_counts_and_pnl_per_symbol_and_overall(client):
    body = (await client.get("/profit")).json()
    btc = body["symbols"]["BTCUSDT"]
    assert btc == {
        **btc, "bars": 31, "intents": 4, "approved": 4, "rejected": 0, "suppressed": 1, "risk_denied": 1,
        "round_trips": 2, "wins": 1, "win_rate": 0.5, "pnl_usdt": 18.0, "max_drawdown": 12.0,
    }  # fmt: skip
    assert btc["fees_usdt"] == pytest.approx(0.4)
    assert body["symbols"]["ETHUSDT"]["rejected"] == 1 and body["symbols"]["XRPUSDT"]["bars"] == 0
    assert body["overall"]["intents"] == 7 and body["overall"]["pnl_usdt"] == 18.0
    assert body["overall"]["bars"] == 39 and body["overall"]["max_drawdown"] == 12.0


async def test_trades_lists_round_trips_newest_first(client):
    body = (await client.get("/trades/BTCUSDT")).json()
    assert [t["realized_pnl_usdt"] for t in body["trades"]] == [-12.0, 30.0]
    assert body["trades"][0]["exit_reason"] == "stop_loss" and body["open_positions"] == []
    assert len((await client.get("/trades/BTCUSDT", params={"limit": 1})).json()["trades"]) == 1


async def test_candles_last_n_oldest_first(client):
    body = (await client.get("/candles/BTCUSDT/5")).json()
    assert body["interval"] == "1" and len(body["candles"]) == 5
    times = [c["open_time_ns"] for c in body["candles"]]
    assert times == sorted(times) and times[-1] == f.T0_NS + 30 * f.MINUTE_NS
    assert body["candles"][-1]["close"] == 133.0 and body["candles"][-1]["closed"] is True
    assert len((await client.get("/candles/btcusdt/5000")).json()["candles"]) == 31  # symbols are case-blind


@pytest.mark.parametrize("limit", ["0", "5001", "-3", "abc"])
async def test_candles_bad_limit_is_422_json(client, limit):
    body = assert_error(await client.get(f"/candles/BTCUSDT/{limit}"), 422, "invalid_request")
    assert body["details"][0]["loc"] == ["path", "limit"] and "limit" in body["reason"]


async def test_candles_unknown_symbol_is_404_json(client):
    body = assert_error(await client.get("/candles/XYZUSDT/5"), 404, "unknown_symbol")
    assert "XYZUSDT" in body["reason"]


async def test_candles_configured_symbol_without_rows_is_empty(client):
    r = await client.get("/candles/XRPUSDT/5")
    assert r.status_code == 200 and r.json()["candles"] == []


async def test_endpoints_malformed_symbol_is_422_json(client):
    for path in ("/ticker/BTC-USDT", "/trades/%20", "/metrics/B"):
        assert_error(await client.get(path), 422, "invalid_symbol")


async def test_unknown_route_is_404_json(client):
    assert_error(await client.get("/nope"), 404, "not_found")


async def test_metrics_symbol_latest_snapshot_and_counts(client):
    body = (await client.get("/metrics/BTCUSDT")).json()
    assert body["factors"]["bar_id"] == f.bar(29).event_id and body["factors"]["used"] == ["egm", "pio"]
    assert body["counts"] == {
        **body["counts"], "bars": 31, "factor_snapshots": 30, "intents": 4, "approved": 4, "suppressed": 1,
        "risk_denied": 1, "orders_submitted": 2, "fills": 4, "round_trips": 2,
    }  # fmt: skip


async def test_decisions_join_intents_to_what_followed(client):
    body = (await client.get("/decisions/BTCUSDT")).json()
    ds = body["decisions"]
    assert len(ds) == 4
    times = [d["intent"]["ts_event_ns"] for d in ds]
    assert times == sorted(times, reverse=True)
    traded = [d for d in ds if d["orders"]]
    assert len(traded) == 2
    for d in traded:
        assert [v["decision"] for v in d["verdicts"]] == ["approve"]
        assert len(d["fills"]) == 2 and d["positions"][0]["status"] == "closed"
    held = [d for d in ds if d["suppressions"]]
    assert sorted(s["kind"] for d in held for s in d["suppressions"]) == ["risk_denied", "signal_suppressed"]
    assert len((await client.get("/decisions/BTCUSDT", params={"limit": 1})).json()["decisions"]) == 1
    assert_error(await client.get("/decisions/BTCUSDT", params={"limit": 0}), 422, "invalid_request")


async def test_ticker_orderbook_market_data_serve_latest(client):
    tick = (await client.get("/ticker/BTCUSDT")).json()
    assert tick["ticker"]["last_price"] == 133.0 and tick["ticker"]["open_interest"] == 1234.0
    assert (await client.get("/ticker/ETHUSDT")).json()["ticker"] is None
    book = (await client.get("/orderbook/BTCUSDT")).json()["book"]
    assert book["mid"] == pytest.approx(133.0) and len(book["bids"]) == 10 and book["bids"][0][0] == 132.9
    md = (await client.get("/market_data/BTCUSDT")).json()
    assert md["candle"]["close"] == 133.0 and md["ticker"]["last_price"] == 133.0
    assert md["book"]["best_ask"] == pytest.approx(133.1) and "bids" not in md["book"]
    assert md["instrument"]["tick_size"] == 0.1 and md["feed"]["kind"] == "resynced"
    assert md["factors"]["bar_id"] == f.bar(29).event_id


async def test_prometheus_exposition_has_http_metrics(client):
    await client.get("/health")
    r = await client.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    assert 'nertz_api_http_requests_total{method="GET",route="/health",status="200"}' in r.text


async def test_stop_without_token_is_401_and_with_token_publishes(client, js_fresh):
    assert_error(await client.post("/stop"), 401, "unauthorized")
    assert_error(await client.post("/stop", headers={"Authorization": "Bearer wrong"}), 401, "unauthorized")
    auth = {"Authorization": f"Bearer {TOKEN}"}
    r = await client.post("/stop", headers=auth, json={"scope": "ethusdt", "reason": "news"})
    assert r.status_code == 202
    msg = await js_fresh.get_last_msg(subjects.STREAM, "sys.control.ETHUSDT")
    stopped = ev.decode(msg.data)
    assert isinstance(stopped, ev.TradingStopped) and stopped.reason == "news" and stopped.actor == "api"
    assert r.json()["event_id"] == stopped.event_id and r.json()["stream_seq"] == msg.seq
    r = await client.post("/start", headers=auth)
    assert r.status_code == 202 and r.json()["scope"] == "all"
    assert_error(await client.post("/start", headers=auth, json={"scope": "XYZUSDT"}), 404, "unknown_symbol")
    assert_error(await client.post("/start", headers=auth, json={"bogus": 1}), 422, "invalid_request")


async def test_control_without_configured_token_is_403(pool, publisher):
    async for c in _client(ApiContext(pool, SYMBOLS, CollectorRegistry(), publisher, None)):
        assert_error(await c.post("/start", headers={"Authorization": "Bearer x"}), 403, "disabled")


async def test_stop_is_projected_back_from_the_log(pool, publisher, project):
    async for c in _client(ApiContext(pool, SYMBOLS, CollectorRegistry(), publisher, SecretStr(TOKEN))):
        assert (await c.post("/stop", headers={"Authorization": f"Bearer {TOKEN}"})).status_code == 202
        assert (await c.get("/status")).json()["trading_enabled"] is True  # the API never writes state itself
        await project()
        assert (await c.get("/status")).json()["trading_enabled"] is False


# --- the smaller holes: body size, null bodies, trailing newlines, 503 reasons, the OpenAPI document ---

AUTH = {"Authorization": f"Bearer {TOKEN}"}
AUTH_JSON = {**AUTH, "Content-Type": "application/json"}


async def test_control_body_over_the_limit_is_413_json(pool, publisher):
    ctx = ApiContext(pool, SYMBOLS, CollectorRegistry(), publisher, SecretStr(TOKEN), max_body_bytes=100)
    async for c in _client(ctx):
        fits = b'{"scope": "all", "reason": "' + b"x" * 70 + b'"}'
        assert len(fits) <= 100
        r = await c.post("/stop", headers=AUTH_JSON, content=fits)
        assert r.status_code == 202, r.text
        big = b'{"scope": "all", "reason": "' + b"x" * 80 + b'"}'
        body = assert_error(await c.post("/stop", headers=AUTH_JSON, content=big), 413, "payload_too_large")
        assert "at most 100 bytes" in body["reason"] and f"was {len(big)}" in body["reason"]

        async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted as it streams
            for _ in range(10):
                yield b" " * 20

        body = assert_error(await c.post("/stop", headers=AUTH_JSON, content=chunks()), 413, "payload_too_large")
        assert "more than 100" in body["reason"]
        assert_error(await c.post("/start", content=big), 401, "unauthorized")  # auth first: no body read without it


async def test_control_default_limit_is_64_kib(client):
    body = b'{"reason": "' + b"x" * (64 * 1024) + b'"}'
    assert_error(await client.post("/stop", headers=AUTH_JSON, content=body), 413, "payload_too_large")


async def test_control_null_body_is_422_not_all_symbols(client, js_fresh):
    for raw in (b"null", b" null\n"):
        r = await client.post("/stop", headers=AUTH_JSON, content=raw)
        body = assert_error(r, 422, "invalid_body")
        assert "null" in body["reason"]
    assert (await js_fresh.stream_info(subjects.STREAM)).state.messages == 0  # nothing was published
    r = await client.post("/stop", headers=AUTH)  # no body at all: the documented default, scope all
    assert r.status_code == 202 and r.json()["scope"] == "all"
    r = await client.post("/stop", headers=AUTH, json={})
    assert r.status_code == 202 and r.json()["scope"] == "all"
    for raw in (b"[]", b'"all"', b"1"):
        assert_error(await client.post("/stop", headers=AUTH_JSON, content=raw), 422, "invalid_request")


@pytest.mark.parametrize(
    "path",
    ["/ticker/BTCUSDT%0A", "/candles/BTCUSDT%0A/5", "/decisions/btcusdt%0A", "/trades/%0ABTC", "/metrics/SOLUSDT%0A"],
)
async def test_path_symbol_with_a_newline_is_422(client, path):
    assert_error(await client.get(path), 422, "invalid_symbol")


async def test_query_and_body_symbol_with_a_newline_is_422(client, js_fresh):
    assert (await client.get("/overrides", params={"symbol": "BTCUSDT"})).status_code == 200
    assert_error(await client.get("/overrides", params={"symbol": "BTCUSDT\n"}), 422, "invalid_request")
    assert_error(await client.get("/candles/BTCUSDT/5", params={"interval": "1\n"}), 422, "invalid_request")
    for scope in ("BTCUSDT\n", "all\n", "\nall", "BTC USDT", "ßTCUSDT"):
        assert_error(await client.post("/stop", headers=AUTH, json={"scope": scope}), 422, "invalid_request")
    assert_error(await client.post("/stop", headers=AUTH, json={"reason": "two\nlines"}), 422, "invalid_request")
    assert (await js_fresh.stream_info(subjects.STREAM)).state.messages == 0


async def test_control_body_with_a_lone_surrogate_is_422_json(client, js_fresh):
    for raw in (b'{"\\ud800": 1}', b'{"reason": "\\ud800"}', b'{"scope": "\\udfff"}'):
        body = assert_error(await client.post("/stop", headers=AUTH_JSON, content=raw), 422, "invalid_request")
        assert body["details"][0]["type"] == "string_unicode"  # never an event msgspec cannot encode
    assert (await js_fresh.stream_info(subjects.STREAM)).state.messages == 0


async def test_database_down_503_reason_has_no_exception_text(fresh_db, caplog):
    dead = await asyncpg.create_pool(fresh_db, min_size=0, max_size=1)
    await dead.close()
    async for c in _client(ApiContext(dead, SYMBOLS, CollectorRegistry())):
        for path in ("/health", "/status", "/ticker/BTCUSDT"):
            body = assert_error(await c.get(path), 503, "database_unavailable")
            assert body["reason"] == DATABASE_UNAVAILABLE, body
    logged = [r for r in caplog.records if r.getMessage() == "http.database_unavailable"]
    assert len(logged) == 3 and all("InterfaceError" in r.__dict__["error"] for r in logged)  # the text is logged


class _FailingPublisher:
    async def publish(self, event: ev.Event) -> int:
        raise bus.PublishError("nats: timeout talking to nats://ops:hunter2@10.0.0.7:4222")


async def test_bus_down_503_reason_has_no_exception_text(pool, caplog):
    ctx = ApiContext(pool, SYMBOLS, CollectorRegistry(), _FailingPublisher(), SecretStr(TOKEN))  # type: ignore[arg-type]
    async for c in _client(ctx):
        r = await c.post("/stop", headers=AUTH)
        body = assert_error(r, 503, "bus_unavailable")
        assert "hunter2" not in r.text and "timeout" not in body["reason"]
    assert any("hunter2" in str(r.__dict__.get("error")) for r in caplog.records)  # logged for the operator


def _schema_validator(doc: dict, ref: str):  # type: ignore[no-untyped-def]
    import jsonschema_rs

    return jsonschema_rs.Draft202012Validator({**doc, "$ref": ref}, validate_formats=True)


def _response_schema(doc: dict, path: str, method: str, status: int) -> str:
    responses = doc["paths"][path][method]["responses"]
    assert str(status) in responses, f"{method.upper()} {path} does not declare {status}: {sorted(responses)}"
    return responses[str(status)]["content"]["application/json"]["schema"]["$ref"]


async def test_openapi_declares_models_and_errors_per_endpoint(client):
    doc = (await client.get("/openapi.json")).json()
    for path, item in doc["paths"].items():
        for method, op in item.items():
            codes = set(op["responses"])
            ok = next(c for c in codes if c.startswith("2"))
            assert op["responses"][ok]["content"]["application/json"]["schema"]["$ref"].startswith("#/components/")
            assert "503" in codes, (method, path)
            for c in codes - {ok}:
                assert op["responses"][c]["content"]["application/json"]["schema"] == {
                    "$ref": "#/components/schemas/ErrorBody"
                }
                assert op["responses"][c]["content"]["application/json"]["examples"], (method, path, c)
            params = {p["name"]: p for p in op.get("parameters", [])}
            if "symbol" in params:
                schema = params["symbol"]["schema"]
                patterns = [schema.get("pattern")] + [a.get("pattern") for a in schema.get("anyOf", [])]
                assert {"404", "422"} <= codes and SYMBOL_PATTERN in patterns, (path, schema)
            if method == "post":
                assert {"401", "403", "413", "422"} <= codes and op["security"] == [{"HTTPBearer": []}]
                if path.startswith("/config/"):  # a change needs a body; /start, /stop and a trade do not
                    assert op["requestBody"]["required"] is True, path
                else:
                    assert "404" in codes and op["requestBody"].get("required", False) is False, path


async def test_openapi_matches_what_every_endpoint_returns(client):
    """Every response of the scenario (and each kind of error) validates against the declared schema."""
    doc = (await client.get("/openapi.json")).json()
    gets = [("/health", "/health"), ("/status", "/status"), ("/profit", "/profit"), ("/llm", "/llm"),
            ("/shadows", "/shadows"), ("/overrides", "/overrides"), ("/venue", "/venue"), ("/config", "/config"),
            ("/check_reset", "/check_reset"), ("/check_reset?seq=999999", "/check_reset"),
            ("/check_reset?seq=-1", "/check_reset")]  # fmt: skip
    for sym in ("BTCUSDT", "ETHUSDT", "SOLUSDT", "XRPUSDT"):
        gets += [
            (f"/trades/{sym}", "/trades/{symbol}"), (f"/candles/{sym}/10", "/candles/{symbol}/{limit}"),
            (f"/metrics/{sym}", "/metrics/{symbol}"), (f"/decisions/{sym}", "/decisions/{symbol}"),
            (f"/ticker/{sym}", "/ticker/{symbol}"), (f"/orderbook/{sym}", "/orderbook/{symbol}"),
            (f"/market_data/{sym}", "/market_data/{symbol}"), (f"/venue/{sym}", "/venue/{symbol}"),
        ]  # fmt: skip
    gets += [("/ticker/NOPEUSDT", "/ticker/{symbol}"), ("/ticker/B-1", "/ticker/{symbol}"),
             ("/candles/BTCUSDT/0", "/candles/{symbol}/{limit}"), ("/overrides?symbol=NOPE", "/overrides")]  # fmt: skip
    for url, template in gets:
        r = await client.get(url)
        ref = _response_schema(doc, template, "get", r.status_code)
        errors = [e.message for e in _schema_validator(doc, ref).iter_errors(r.json())]
        assert not errors, (url, r.status_code, errors[:3])
    posts = [({}, AUTH, 202), ({"scope": "XYZUSDT"}, AUTH, 404), ({"scope": 1}, AUTH, 422), ({}, {}, 401)]
    for body, headers, status in posts:
        r = await client.post("/stop", json=body, headers=headers)
        assert r.status_code == status, r.text
        ref = _response_schema(doc, "/stop", "post", status)
        assert not list(_schema_validator(doc, ref).iter_errors(r.json())), (body, r.text)
    assert r.headers["www-authenticate"] == "Bearer"


async def test_openapi_rejects_a_response_that_breaks_it(client):
    """The check above can fail: a status row missing a field, or of the wrong type, does not validate."""
    doc = (await client.get("/openapi.json")).json()
    v = _schema_validator(doc, _response_schema(doc, "/status", "get", 200))
    body = (await client.get("/status")).json()
    assert v.is_valid(body)
    del body["symbols"]["BTCUSDT"]["last_price"]
    assert not v.is_valid(body)
    body = (await client.get("/status")).json()
    body["projector"]["stream_seq"] = "12"
    assert not v.is_valid(body)


# --- the schema-driven fuzzer (nertz_api.fuzz) against the real app on uvicorn ------------------------


class _QuietServer(uvicorn.Server):
    """uvicorn without its signal handlers (the test runner owns SIGINT)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@contextlib.asynccontextmanager
async def _serve(app: FastAPI) -> AsyncIterator[str]:
    port = infra.free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, access_log=False, lifespan="on")
    server = _QuietServer(config)
    task = asyncio.create_task(server.serve())
    try:
        async with asyncio.timeout(15):
            while not server.started:
                assert not task.done(), "uvicorn did not start"
                await asyncio.sleep(0.01)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 15)


def _with_credentials(url: str, user: str, password: str) -> str:
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{user}:{password}@{host}"))


@pytest.fixture(params=[False, True], ids=["open-reads", "read-token"])
async def fuzz_target(request, projected_db, database_url, js_fresh) -> AsyncIterator[tuple[str, str, str, str]]:
    """The API on uvicorn over the projected scenario (reads open, or behind a read token), its admin
    token, database password and read token sentinels."""
    token, password, role, read = (
        f"sentinel-token-{uuid.uuid4().hex}",
        f"sentinel-pw-{uuid.uuid4().hex}",
        f"fuzz_{uuid.uuid4().hex[:8]}",
        f"sentinel-read-{uuid.uuid4().hex}" if request.param else "",
    )
    admin = await asyncpg.connect(database_url)
    await admin.execute(f"CREATE ROLE {role} LOGIN PASSWORD '{password}'")
    await admin.execute(f"GRANT pg_read_all_data TO {role}")
    pool = await asyncpg.create_pool(_with_credentials(projected_db, role, password), min_size=1, max_size=4)
    try:
        ctx = ApiContext(pool, SYMBOLS, CollectorRegistry(), bus.Publisher(js_fresh), SecretStr(token), js=js_fresh,
                         read_token=SecretStr(read) if read else None)  # fmt: skip
        async with _serve(create_app(ctx)) as url:
            yield url, token, password, read
    finally:
        await pool.close()
        await admin.execute(f"DROP ROLE {role}")  # pg_read_all_data owns nothing: the role drops cleanly
        await admin.close()


async def test_fuzz_api_finds_no_server_error_schema_violation_auth_hole_or_leak(fuzz_target, caplog):
    """Bounded by NERTZ_FUZZ_EXAMPLES (requests per operation and mode; default 5) for a longer run.

    With a read token, every read but /health is a secured operation: probed without it and with a
    wrong one (401), and called with the admin token, which reads too."""
    url, token, password, read = fuzz_target
    examples = int(os.environ.get("NERTZ_FUZZ_EXAMPLES", "5"))
    report = await asyncio.to_thread(
        fuzz,
        url,
        admin_token=token,
        secrets=[token, password, read],
        examples=examples,
        symbols=SYMBOLS,
        max_seconds=120,
        seed=int(os.environ.get("NERTZ_FUZZ_SEED", "0")),
    )
    assert report.operations == 23 and report.requests >= 2 * report.operations, report
    assert {200, 202, 401, 404, 422} <= set(report.statuses), report.statuses  # it reached data, commands, errors
    assert report.ok(), "\n".join(report.findings)
    assert token not in caplog.text and password not in caplog.text and (not read or read not in caplog.text)


async def test_fuzz_reports_what_a_broken_api_does():
    """The fuzzer can fail: a 500, a body that breaks its model, an unguarded command and a leaked secret."""
    secret = f"sentinel-{uuid.uuid4().hex}"
    app = FastAPI()

    class Out(BaseModel):
        n: int

    @app.get("/boom", response_model=Out)
    async def boom() -> Out:
        raise RuntimeError("boom")

    @app.get("/wrong", response_model=Out)
    async def wrong() -> JSONResponse:
        return JSONResponse({"n": "not a number"}, headers={"X-Debug": secret})

    @app.post("/stop", response_model=Out, dependencies=[Depends(HTTPBearer(auto_error=False))])
    async def stop() -> Out:
        return Out(n=1)  # declares bearer auth, never checks it

    async with _serve(app) as url:
        report = await asyncio.to_thread(fuzz, url, admin_token="t", secrets=[secret], examples=2)
        assert await asyncio.to_thread(fuzz_main, [url, "--examples", "1", "--secret", secret]) == 1  # the CLI
    assert report.operations == 3 and not report.ok()
    assert report.server_errors >= 1 and report.schema_violations >= 1
    assert report.auth_failures >= 1 and report.secrets_leaked >= 1
    assert all(secret not in f for f in report.findings)


async def test_control_body_not_utf8_is_422_json(client):
    for raw in (b"\xff", b'{"reason": "\xfe"}'):
        assert_error(await client.post("/stop", headers=AUTH_JSON, content=raw), 422, "invalid_body")
        # without the token the body is never read: 401, whatever it holds
        no_token = {"Content-Type": "application/json"}
        assert_error(await client.post("/stop", headers=no_token, content=raw), 401, "unauthorized")


# --- examples of every answer in the OpenAPI document (nertz_api.examples) ---------------------------

#: one call per operation whose answer is its example: (method, url, path template, body)
EXAMPLE_CALLS: list[tuple[str, str, str, dict | None]] = [
    *[("get", url, url, None) for url in ("/health", "/status", "/profit", "/llm", "/shadows", "/overrides",
                                          "/venue", "/config", "/check_reset")],
    *[("get", f"/{p.format(symbol='BTCUSDT', limit=2)}", f"/{p}", None) for p in (
        "trades/{symbol}", "candles/{symbol}/{limit}", "metrics/{symbol}", "decisions/{symbol}", "ticker/{symbol}",
        "orderbook/{symbol}", "market_data/{symbol}", "venue/{symbol}")],
    ("post", "/stop", "/stop", {"scope": "all", "reason": "news at 14:00"}),
    ("post", "/start", "/start", {"scope": "all"}),
    ("post", "/config/update_all", "/config/update_all",
     {"changes": {"signal.entry_threshold": 9.0, "executor.max_positions": 2}, "reason": "calmer market"}),
    ("post", "/config/update_thresholds", "/config/update_thresholds", {"entry_threshold": 9.2}),
    ("post", "/execute_trade/BTCUSDT", "/execute_trade/{symbol}", {"side": "Buy", "reason": "breakout"}),
    ("post", "/news/BTCUSDT", "/news/{symbol}", {"reason": "before the FOMC"}),
]  # fmt: skip


async def test_openapi_has_a_recorded_example_of_every_answer_that_still_validates(client):
    """Every operation's success answer has an example, recorded from this scenario; each validates against
    the declared schema. ``NERTZ_WRITE_API_EXAMPLES=1`` records them again (nertz_api/examples.json)."""
    from nertz_api import examples

    answers = {}
    for method, url, template, body in EXAMPLE_CALLS:
        r = await client.request(method.upper(), url, json=body, headers=AUTH if method == "post" else {})
        assert r.status_code in (200, 202), (url, r.text)
        answers[f"{method.upper()} {template}"] = examples.trimmed(r.json())
    if os.environ.get("NERTZ_WRITE_API_EXAMPLES"):
        path = Path(examples.__file__).with_name(examples.FILE)
        path.write_text(json.dumps(dict(sorted(answers.items())), indent=1, sort_keys=True) + "\n")
        examples.recorded.cache_clear()
    doc = examples.with_examples((await client.get("/openapi.json")).json())
    missing = []
    for path, item in doc["paths"].items():
        for method, op in item.items():
            ok = next(c for c in op["responses"] if c.startswith("2"))
            found = op["responses"][ok]["content"]["application/json"].get("examples")
            if not found:
                missing.append(f"{method.upper()} {path}")
                continue
            ref = _response_schema(doc, path, method, int(ok))
            for name, ex in found.items():
                errors = [e.message for e in _schema_validator(doc, ref).iter_errors(ex["value"])]
                assert not errors, (method, path, name, errors[:3])
            if "requestBody" in op:
                body = op["requestBody"]["content"]["application/json"]["schema"]
                schema = doc["components"]["schemas"][body["$ref"].split("/")[-1]] if "$ref" in body else body
                assert schema.get("examples"), f"{method.upper()} {path}: no request body example"
    assert not missing, (
        f"no recorded example for {missing}: add a call to EXAMPLE_CALLS and run "
        "NERTZ_WRITE_API_EXAMPLES=1 pytest tests/api/test_web.py -k recorded_example"
    )
