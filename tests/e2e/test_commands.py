"""Operator commands through the API, end to end: a threshold change and a manual trade published by the
api process while the services run, applied at their log positions, and reproduced by a replay.

Signal, validator, executor and api run as processes on real NATS and Postgres. The first 1,700 bars of
BTCUSDT and ETHUSDT are replayed (past the stops' one-day warm-up); then ``POST
/config/update_thresholds`` lowers the bars-only entry threshold from 9.5 to 8.5 and ``POST
/execute_trade/ETHUSDT`` asks for a long; then 600 more bars. Intents below 9.5 appear only after the
change's position, the manual request becomes an intent that the executor decides like any other, and
``nertz replay`` of the whole log derives every event again, identically.
"""

from __future__ import annotations

import asyncio
import lzma
import subprocess
from pathlib import Path

import asyncpg
import httpx
import nats
import pytest

from nertz_cli import config, demo, tools
from nertz_common import aio
from nertz_common import events as ev
from nertz_common.ids import derive_id
from nertz_common.node.log import Record, read_log
from nertz_common.testing.plugin import with_database

pytestmark = [pytest.mark.e2e, pytest.mark.integration, pytest.mark.timeout(600)]

SYMBOLS = ("BTCUSDT", "ETHUSDT")
FIRST, THEN = 1700, 600
TOKEN = "e2e-token"


def _cut(src: Path, out: Path, start: int, stop: int) -> Path:
    with lzma.open(src, "rt") as f, out.open("w") as w:
        for n, line in enumerate(f):
            if n == 0 or start < n <= stop:
                w.write(line)
            if n > stop:
                break
    return out


async def _log(url: str) -> list[Record]:
    nc = await nats.connect(url)
    try:
        return await read_log(nc.jetstream())
    finally:
        await nc.close()


@pytest.fixture(scope="module")
def run(nats_url: str, database_url: str, tmp_path_factory: pytest.TempPathFactory) -> list[Record]:
    d = tmp_path_factory.mktemp("commands")
    srcs = [p for p in demo.KLINE_FILES if p.name.split("_")[0] in SYMBOLS]
    (d / "a").mkdir()
    (d / "b").mkdir()
    a = [_cut(p, d / "a" / p.name.removesuffix(".xz"), 0, FIRST) for p in srcs]
    b = [_cut(p, d / "b" / p.name.removesuffix(".xz"), FIRST, FIRST + THEN) for p in srcs]
    name = f"t_commands_{d.name[-8:]}".replace("-", "_")
    db = demo_db(database_url, name)
    asyncio.run(demo.apply_topology(nats_url, fresh=True))
    stack = demo.Stack(d, nats_url, db, env={"NERTZ_API__TOKEN": TOKEN, "NERTZ_SYMBOLS": '["BTCUSDT","ETHUSDT"]'})
    demo.start_services(stack, ("signal", "llm-validator", "executor", "api"))
    try:
        demo.replay(stack, a, stdout=subprocess.DEVNULL)
        demo.wait_caught_up(stack, timeout_s=180)
        auth = {"Authorization": f"Bearer {TOKEN}"}
        r = httpx.post(f"{stack.api_url}/config/update_thresholds", headers=auth, json={"entry_threshold": 8.5})
        assert r.status_code == 202, r.text
        r = httpx.post(f"{stack.api_url}/execute_trade/ETHUSDT", headers=auth, json={"side": "Buy"})
        assert r.status_code == 202, r.text
        demo.replay(stack, b, stdout=subprocess.DEVNULL)
        demo.wait_caught_up(stack, timeout_s=180)
    finally:
        stack.stop_services()
    return aio.run(_log(nats_url))


def demo_db(database_url: str, name: str) -> str:
    """A new empty database on the test server."""

    async def go() -> None:
        admin = await asyncpg.connect(database_url)
        try:
            await admin.execute(f'CREATE DATABASE "{name}"')
        finally:
            await admin.close()

    asyncio.run(go())
    return with_database(database_url, name)


def test_a_threshold_change_takes_effect_at_its_log_position(run):
    (changed,) = [r for r in run if isinstance(r.event, ev.ConfigChanged)]
    assert changed.event.changes == {"signal.entry_threshold": 8.5}
    intents = [r for r in run if isinstance(r.event, ev.IntentProposed) and r.event.causation_id != manual_id(run)]
    bars = {r.event.event_id: r.seq for r in run if isinstance(r.event, ev.Bar)}
    before = [r.event for r in intents if bars[r.event.causation_id] < changed.seq]
    after = [r.event for r in intents if bars[r.event.causation_id] > changed.seq]
    assert all(abs(i.combined) >= 9.5 for i in before), [i.combined for i in before]
    assert any(abs(i.combined) < 9.5 for i in after), "expected the lowered threshold to let weaker scores through"
    assert all(abs(i.combined) >= 8.5 for i in after)


def manual_id(run: list[Record]) -> str:
    (req,) = [r.event for r in run if isinstance(r.event, ev.ManualTradeRequested)]
    return req.event_id


def test_a_manual_trade_goes_through_the_validator_and_the_lock(run):
    rid = manual_id(run)
    iid = derive_id("IntentProposed", rid)
    (intent,) = [r.event for r in run if isinstance(r.event, ev.IntentProposed) and r.event.causation_id == rid]
    assert intent.event_id == iid and intent.side == "long" and intent.symbol == "ETHUSDT"
    path = [r.event for r in run if getattr(r.event, "correlation_id", None) == iid]
    kinds = [type(e).__name__ for e in path]
    assert "VerdictAwaited" in kinds and "VerdictIssued" in kinds, kinds
    (verdict,) = [e for e in path if isinstance(e, ev.VerdictIssued)]
    if verdict.decision == "approve":  # then the Hard Lock and the risk guard decide, like for any intent
        assert {"OrderSubmitted", "SignalSuppressed", "RiskDenied"} & set(kinds), kinds


def test_the_replay_of_the_log_reproduces_the_commands(run, nats_url):
    async def go() -> tools.Slice:
        nc = await nats.connect(nats_url)
        try:
            return await tools.read_slice(nc.jetstream(), use_snapshots=False)
        finally:
            await nc.close()

    sl = aio.run(go())
    result = tools.rerun(sl, config.load())
    assert result.ok, result.divergence
    assert result.identical > 1000 and sum(result.compared.values()) == result.identical
