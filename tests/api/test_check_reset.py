"""``GET /check_reset``: whether the log or the projections were reset since a client's last known
position (the rules, pure; then against real NATS and Postgres, through ``topology.recreate``)."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry

from nertz_api import resets
from nertz_api.web import ApiContext, create_app
from nertz_common import subjects, topology
from nertz_common.testing import factories as f


def _log(**kw: Any) -> dict[str, Any]:
    return {"stream": "NERTZ", "exists": True, "first_seq": 1, "last_seq": 100, "messages": 100,
            "created_ns": 111, "created": None, **kw}  # fmt: skip


def _proj(**kw: Any) -> dict[str, Any]:
    return {"consumer": "projector", "stream_seq": 100, "created_ns": 222, "created": None, **kw}


def test_check_nothing_reset_since_an_earlier_position():
    out = resets.check(40, _log(), _proj(), 111, 222)
    assert (out["reset"], out["reason"]) == (False, None)
    assert (out["log"]["reset"], out["projections"]["reset"]) == (False, False)
    assert out["log"]["missed"] == 0 and out["seq"] == 40


def test_check_log_shorter_than_the_position_is_a_reset():
    out = resets.check(140, _log(), _proj(stream_seq=100))
    assert out["reset"] and out["log"]["reset"] and out["projections"]["reset"]
    assert out["reason"] == ("the log ends at 100, before your position 140: it was recreated or purged; the "
                             "projections track 100, below your position 140: they were rebuilt")  # fmt: skip


def test_check_log_recreated_and_refilled_is_seen_by_its_creation_time_only():
    assert not resets.check(40, _log(created_ns=999), _proj())["reset"]  # the sequences alone cannot tell
    out = resets.check(40, _log(created_ns=999), _proj(), log_created_ns=111)
    assert out["reset"] and out["log"]["reset"] and not out["projections"]["reset"]
    assert "the log was created at 999 ns, not 111: it was recreated" in out["reason"]


def test_check_projections_rebuilt_or_of_an_earlier_log():
    out = resets.check(40, _log(), _proj(stream_seq=10))
    assert out["reset"] and out["projections"]["reset"] and not out["log"]["reset"]
    out = resets.check(40, _log(), _proj(created_ns=333), projections_created_ns=222)
    assert "the projections were created at 333 ns, not 222" in out["reason"]
    out = resets.check(0, _log(last_seq=5), _proj(stream_seq=50))
    assert out["projections"]["reset"] and "beyond the log's end 5" in out["reason"]


def test_check_missing_log_and_retention_gap():
    missing = _log(exists=False, first_seq=0, last_seq=0, messages=0, created_ns=None)
    assert resets.check(3, missing, _proj(stream_seq=0))["log"]["reset"]
    assert not resets.check(0, missing, _proj(stream_seq=0))["reset"]  # a client that saw nothing
    gap = resets.check(40, _log(first_seq=61), _proj())
    assert not gap["reset"] and gap["log"]["missed"] == 20  # seqs 41..60 dropped by retention, not a reset


def test_ns_of_is_exact_to_the_microsecond_and_utc_when_naive():
    t = dt.datetime(2025, 5, 30, 17, 9, 0, 123456, tzinfo=dt.UTC)
    assert resets.ns_of(t) == 1_748_624_940_123_456_000 == resets.ns_of(t.replace(tzinfo=None))
    assert resets.ns_of(None) is None


# --- over HTTP ---------------------------------------------------------------------------------------


@pytest.fixture
async def client(pool, js_fresh) -> AsyncIterator[httpx.AsyncClient]:  # type: ignore[no-untyped-def]
    app = create_app(ApiContext(pool, ("BTCUSDT",), CollectorRegistry(), js=js_fresh))
    transport = httpx.ASGITransport(app=app)
    async with app.router.lifespan_context(app), httpx.AsyncClient(transport=transport, base_url="http://api") as c:
        yield c


async def _check(c: httpx.AsyncClient, **params: int) -> dict[str, Any]:
    r = await c.get("/check_reset", params=params)
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


@pytest.mark.integration
async def test_check_reset_after_topology_recreate(client, js_fresh, publisher, project):
    await publisher.publish_many([f.bar(i) for i in range(10)])
    await project()
    first = await _check(client)
    assert first["reset"] is False and first["projections"]["stream_seq"] == 10
    log, proj = first["log"], first["projections"]
    assert (log["exists"], log["first_seq"], log["last_seq"], log["messages"]) == (True, 1, 10, 10)
    assert log["created"] and proj["created"] and proj["created_ns"] > 0
    known = {"seq": 10, "log_created_ns": log["created_ns"], "projections_created_ns": proj["created_ns"]}
    assert (await _check(client, **known))["reset"] is False

    await topology.recreate(js_fresh)  # an empty log; the projections still track 10
    after = await _check(client, **known)
    assert after["reset"] is True and after["log"]["reset"] and after["projections"]["reset"]
    assert after["log"]["last_seq"] == 0 and after["log"]["created_ns"] != log["created_ns"]
    assert "the log ends at 0, before your position 10" in after["reason"]
    assert "beyond the log's end 0: they project an earlier log" in after["reason"]

    await publisher.publish_many([f.bar(i, symbol="ETHUSDT") for i in range(15)])  # refilled past 10
    assert (await _check(client, seq=10))["reset"] is False  # the sequences alone cannot tell
    refilled = await _check(client, **known)
    assert refilled["reset"] and refilled["log"]["reset"] and not refilled["projections"]["reset"]
    assert refilled["reason"].startswith("the log was created at ")


@pytest.mark.integration
async def test_check_reset_without_the_stream_says_the_log_does_not_exist(client, js_fresh):
    await js_fresh.delete_stream(subjects.STREAM)
    try:
        out = await _check(client, seq=5)
        assert out["reset"] and out["log"]["exists"] is False and "does not exist" in out["reason"]
    finally:
        await topology.apply(js_fresh)


@pytest.mark.integration
async def test_check_reset_bad_seq_is_422_and_without_nats_503(client, pool):
    r = await client.get("/check_reset", params={"seq": -1})
    assert r.status_code == 422 and r.json()["error"] == "invalid_request"
    app = create_app(ApiContext(pool, ("BTCUSDT",), CollectorRegistry()))
    transport = httpx.ASGITransport(app=app)
    async with app.router.lifespan_context(app), httpx.AsyncClient(transport=transport, base_url="http://api") as c:
        r = await c.get("/check_reset")
        assert r.status_code == 503 and r.json()["error"] == "bus_unavailable" and r.json()["reason"]
