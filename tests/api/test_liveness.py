"""The services' heartbeats on the HTTP API: /status per service (alive, stale, stopped, missing; ok or
degraded, and why) and /config (every service's effective settings, secrets masked), against real NATS
and Postgres (the app in-process via ASGITransport)."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry
from pydantic import SecretStr

from nertz_api import liveness
from nertz_api.app import own_config
from nertz_api.settings import ApiGroup, ApiSettings
from nertz_api.web import ApiContext, create_app
from nertz_common import heartbeat, version
from nertz_common.heartbeat import Heartbeat, HeartbeatWriter, LaneState, Progress
from nertz_common.settings import DatabaseSettings

SENTINELS = {k: f"sentinel-{k}-{uuid.uuid4().hex}" for k in ("token", "read", "db", "service")}
NOW = 1_748_624_940_000_000_000


def _beat(service: str = "signal", age_s: float = 1.0, **kw: Any) -> Heartbeat:
    fields: dict[str, Any] = dict(
        service=service, pid=7, host="h", started_ns=NOW - 10**12, beat_ns=NOW - int(age_s * 1e9), interval_s=5.0,
        beats=3, version="v1", config_hash="abc", iterations=12, published=13, out_seq=40,
    )  # fmt: skip
    fields.update(kw)
    return Heartbeat(**fields)


# --- the assessment, pure ----------------------------------------------------------------------------


def test_assess_every_expected_service_alive_is_ok():
    beats = {s: _beat(s) for s in liveness.EXPECTED}
    out = liveness.assess(beats, NOW)
    assert (out["status"], out["reasons"]) == ("ok", [])
    sig = out["services"]["signal"]
    assert sig == {**sig, "state": "alive", "alive": True, "expected": True, "last_beat_age_s": 1.0,
                   "iterations": 12, "version": "v1", "config_hash": "abc"}  # fmt: skip


def test_assess_stale_stopped_missing_and_paused_are_degraded_with_reasons():
    beats = {
        "signal": _beat("signal", age_s=15.0),  # 3 intervals: stale
        "executor": _beat("executor", age_s=2.0, stopped=True),
        "api": _beat("api", paused=["projector: database_unavailable"]),
        "llm-validator": _beat("llm-validator", paused=["validator: bus_unavailable"]),
        "llm-validator-shadow-x": _beat("llm-validator-shadow-x", stopped=True),  # not expected: no reason
    }
    out = liveness.assess(beats, NOW, paused="database_unavailable")
    assert out["status"] == "degraded"
    assert out["reasons"] == [
        "database: the projector is paused (database_unavailable)",
        "executor: stopped 2 s ago",
        "llm-validator: paused: validator: bus_unavailable",
        "market-ingest: no heartbeat (not started, or gone for longer than the heartbeats' TTL)",
        "signal: stale: last beat 15.0 s ago, expected every 5 s",
    ]  # the api's own paused projector is said once
    services = out["services"]
    assert [services[s]["state"] for s in ("signal", "executor", "market-ingest", "api")] == [
        "stale", "stopped", "missing", "alive"]  # fmt: skip
    assert services["market-ingest"]["last_beat_ns"] is None and services["market-ingest"]["lanes"] == {}
    assert services["llm-validator-shadow-x"]["expected"] is False


def test_assess_unreadable_heartbeats_say_so_once():
    out = liveness.assess({}, NOW, unreadable="NATS did not answer")
    assert out["reasons"] == ["heartbeats: NATS did not answer"]
    assert {s["state"] for s in out["services"].values()} == {"missing"}


# --- over HTTP -----------------------------------------------------------------------------------------


def _api_settings() -> ApiSettings:
    return ApiSettings(
        DATABASE_URL=f"postgresql://nertz:{SENTINELS['db']}@127.0.0.1/nertz",
        api=ApiGroup(token=SecretStr(SENTINELS["token"]), read_token=SecretStr(SENTINELS["read"])),
    )


@pytest.fixture
async def make_client(pool, js_fresh) -> AsyncIterator[Callable[..., Any]]:  # type: ignore[no-untyped-def]
    clients: list[Any] = []

    async def make(**kw: Any) -> httpx.AsyncClient:
        ctx = ApiContext(pool, ("BTCUSDT",), CollectorRegistry(), **{"js": js_fresh, **kw})
        app = create_app(ctx)
        lifespan = app.router.lifespan_context(app)
        await lifespan.__aenter__()
        c = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api")
        clients.append((lifespan, c))
        return c

    yield make
    for lifespan, c in clients:
        await c.aclose()
        await lifespan.__aexit__(None, None, None)


async def _beat_all(js, services: tuple[str, ...], settings: Any = None) -> None:  # type: ignore[no-untyped-def]
    for s in services:
        cfg = settings if settings is not None else DatabaseSettings()
        w = HeartbeatWriter(js, s, cfg, config_hash=cfg.fingerprint(), interval_s=30.0)
        w.report("runner", lambda: Progress(steps=5, out_seq=9, lanes={}))
        assert await w.put()


@pytest.mark.integration
async def test_status_every_service_beating_is_ok_with_iterations_version_and_fingerprint(js_fresh, make_client):
    await _beat_all(js_fresh, liveness.EXPECTED)
    c = await make_client()
    body = (await c.get("/status")).json()
    assert (body["status"], body["reasons"]) == ("ok", [])
    assert body["projector"] == {"consumer": "projector", "stream_seq": 0} and body["trading_enabled"] is True
    sig = body["services"]["signal"]
    assert sig["alive"] is True and sig["state"] == "alive" and 0 <= sig["last_beat_age_s"] < 30
    assert (sig["iterations"], sig["out_seq"], sig["config_hash"]) == (5, 9, DatabaseSettings().fingerprint())
    assert sig["version"] == version.version() and sig["interval_s"] == 30.0


@pytest.mark.integration
async def test_status_stale_and_missing_services_are_degraded(js_fresh, make_client):
    await _beat_all(js_fresh, ("market-ingest", "llm-validator", "api"))
    kv = await js_fresh.key_value(heartbeat.BUCKET)
    stale = _beat("signal", beat_ns=time.time_ns() - 60 * 10**9, interval_s=5.0,
                  lanes={"signal": LaneState(consumed=40, acked=40, pending=3)})  # fmt: skip
    await kv.put("signal", heartbeat.encode(stale))
    c = await make_client(paused=lambda: "database_unavailable")
    r = await c.get("/status")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "degraded"
    assert body["reasons"][0] == "database: the projector is paused (database_unavailable)"
    assert any(x.startswith("signal: stale: last beat 6") for x in body["reasons"]), body["reasons"]
    assert any(x.startswith("executor: no heartbeat") for x in body["reasons"]), body["reasons"]
    sig = body["services"]["signal"]
    assert (sig["state"], sig["alive"]) == ("stale", False) and sig["last_beat_age_s"] >= 60
    assert sig["lanes"] == {"signal": {"consumed": 40, "acked": 40, "pending": 3}}
    assert body["services"]["executor"]["state"] == "missing"


@pytest.mark.integration
async def test_status_without_heartbeat_bucket_is_degraded_not_an_error(js_fresh, make_client):
    await js_fresh.delete_key_value(heartbeat.BUCKET)
    c = await make_client(services=("signal",))
    body = (await c.get("/status")).json()
    assert body["status"] == "degraded" and body["reasons"] == [
        "heartbeats: the bucket nertz-heartbeats does not exist (run `nertz streams apply`)"
    ]
    cfg = (await c.get("/config")).json()
    assert cfg["services"] == {} and "nertz-heartbeats" in cfg["unavailable"]


@pytest.mark.integration
async def test_config_serves_every_services_settings_masked_and_the_apis_own(js_fresh, make_client):
    settings = _api_settings()
    service_cfg = DatabaseSettings(
        NATS_URL=f"nats://nertz:{SENTINELS['service']}@127.0.0.1:4222",
        DATABASE_URL=f"postgresql://u:{SENTINELS['service']}@h/db",
    )
    await _beat_all(js_fresh, ("signal", "executor"), service_cfg)
    c = await make_client(own=own_config(settings), token=settings.api.token, read_token=settings.api.read_token)
    auth = {"Authorization": f"Bearer {SENTINELS['read']}"}
    r = await c.get("/config", headers=auth)
    assert r.status_code == 200, r.text
    body = r.json()
    api = body["api"]
    assert (api["service"], api["config_hash"]) == ("api", settings.fingerprint())
    assert api["settings"]["database_url"] == "***" and api["settings"]["api"]["token"] == "***"
    assert api["settings"]["api"]["read_token"] == "***" and api["settings"]["api"]["port"] == 8081
    sig = body["services"]["signal"]
    assert sig["state"] == "alive" and sig["config_hash"] == service_cfg.fingerprint()
    assert sig["settings"]["nats_url"] == "nats://nertz:***@127.0.0.1:4222"
    assert sig["settings"]["database_url"] == "***"
    assert body["unavailable"] is None
    for path in ("/config", "/status", "/check_reset?seq=1", "/openapi.json", "/health", "/metrics"):
        for headers in (auth, {"Authorization": f"Bearer {SENTINELS['token']}"}, {}):
            r = await c.get(path, headers=headers)
            wire = r.text + "".join(f"{k}: {v}" for k, v in r.headers.items())
            assert not any(s in wire for s in SENTINELS.values()), (path, r.status_code)


@pytest.mark.integration
async def test_config_without_nats_is_503_json(pool):
    app = create_app(ApiContext(pool, ("BTCUSDT",), CollectorRegistry()))
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as c,
    ):
        r = await c.get("/config")
        assert r.status_code == 503 and r.json()["error"] == "bus_unavailable"
        body = (await c.get("/status")).json()
        assert body["status"] == "degraded" and "heartbeats: this API runs without NATS" in body["reasons"]
