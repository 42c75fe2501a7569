"""Reads behind ``NERTZ_API__READ_TOKEN``: the read token or the admin token reads; nothing else does,
and a refusal comes before any parameter or symbol is looked at (real Postgres, the app in-process)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from prometheus_client import CollectorRegistry
from pydantic import SecretStr

from nertz_api.web import ApiContext, create_app

pytestmark = pytest.mark.integration

ADMIN, READ = "admin-s3cret", "read-s3cret"


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def _client(ctx: ApiContext) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(ctx)
    transport = httpx.ASGITransport(app=app)
    async with app.router.lifespan_context(app), httpx.AsyncClient(transport=transport, base_url="http://api") as c:
        yield c


@pytest.fixture
async def guarded(pool, publisher, js_fresh) -> AsyncIterator[httpx.AsyncClient]:  # type: ignore[no-untyped-def]
    ctx = ApiContext(pool, ("BTCUSDT",), CollectorRegistry(), publisher, SecretStr(ADMIN), js=js_fresh,
                     read_token=SecretStr(READ))  # fmt: skip
    async for c in _client(ctx):
        yield c


def _refused(r: httpx.Response) -> None:
    assert r.status_code == 401, r.text
    body = r.json()
    assert body["error"] == "unauthorized" and "NERTZ_API__READ_TOKEN" in body["reason"]
    assert r.headers["www-authenticate"] == "Bearer"


async def test_reads_need_the_read_or_the_admin_token(guarded):
    for path in ("/status", "/profit", "/config", "/check_reset", "/ticker/BTCUSDT", "/venue"):
        _refused(await guarded.get(path))
        _refused(await guarded.get(path, headers=_bearer("wrong")))
        _refused(await guarded.get(path, headers={"Authorization": f"Basic {READ}"}))
        for token in (READ, ADMIN):
            r = await guarded.get(path, headers=_bearer(token))
            assert r.status_code == 200, (path, r.text)
    assert (await guarded.get("/status", headers={"Authorization": f"bearer {READ}"})).status_code == 200


async def test_refusal_comes_before_parameters_and_symbols(guarded):
    for path in ("/ticker/NOPEUSDT", "/ticker/B-1", "/candles/BTCUSDT/0", "/check_reset?seq=-1"):
        _refused(await guarded.get(path))
    assert (await guarded.get("/ticker/NOPEUSDT", headers=_bearer(READ))).status_code == 404
    assert (await guarded.get("/candles/BTCUSDT/0", headers=_bearer(READ))).status_code == 422


async def test_health_metrics_and_openapi_stay_open_and_the_read_token_never_mutates(guarded):
    for path in ("/health", "/metrics", "/openapi.json", "/docs"):
        assert (await guarded.get(path)).status_code == 200, path
    r = await guarded.post("/stop", headers=_bearer(READ))
    assert r.status_code == 401 and r.json()["error"] == "unauthorized"
    assert (await guarded.post("/stop", headers=_bearer(ADMIN))).status_code == 202


async def test_openapi_declares_the_read_token_on_every_read_but_health(guarded):
    doc = (await guarded.get("/openapi.json")).json()
    assert doc["components"]["securitySchemes"]["ReadToken"]["scheme"] == "bearer"
    for path, item in doc["paths"].items():
        op = item.get("get")
        if op is None:
            continue
        if path == "/health":
            assert "security" not in op and "401" not in op["responses"]
            continue
        assert op["security"] == [{"ReadToken": []}], path
        examples = op["responses"]["401"]["content"]["application/json"]["examples"]
        assert examples["read_unauthorized"]["value"]["error"] == "unauthorized", path


async def test_without_a_read_token_reads_are_open_and_undeclared(pool):
    for read in (None, SecretStr("")):
        async for c in _client(ApiContext(pool, ("BTCUSDT",), CollectorRegistry(), read_token=read)):
            assert (await c.get("/profit")).status_code == 200
            assert "security" not in (await c.get("/openapi.json")).json()["paths"]["/profit"]["get"]
