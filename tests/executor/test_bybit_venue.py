"""The Bybit venue with the real pybit against the fake Bybit (127.0.0.1), over a real JetStream.

An approved intent becomes a correctly rounded Market order with exchange-native TP/SL at the fake,
and its fills and position come back as ``venue.*`` events the executor folds into its lock; a
refusal carries Bybit's code; rate limits and clock skew are waited out and resynced; an order whose
answer was lost is looked up by its ``orderLinkId``, never sent twice; a fill missed by the private
stream, and a position opened outside Nertz, are found by reconciliation.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable
from typing import Any

import pytest

from nertz_common import bus
from nertz_common import events as ev
from nertz_common.ids import derive_id, order_link_id
from nertz_common.node.log import Record, read_log
from nertz_common.testing import factories as f
from nertz_common.testing.fake_bybit import FakeBybit
from nertz_executor.adapters.bybit import BybitVenueAdapter, private_socket_factory
from nertz_executor.adapters.bybit_rest import BybitRest
from nertz_executor.settings import BybitGroup, ExecutorGroup, ExecutorSettings

pytestmark = pytest.mark.integration

MS = 1_000_000


def settings(nats_url: str, fake: FakeBybit, **group: Any) -> ExecutorSettings:
    return ExecutorSettings(
        NATS_URL=nats_url, BYBIT_ENV="testnet",
        BYBIT_API_KEY=fake.trading.api_key, BYBIT_API_SECRET=fake.trading.api_secret,
        executor=ExecutorGroup(venue="bybit", cooldown_s=300, **group),
        bybit=BybitGroup(rest_url=fake.base_url, ws_url=fake.ws_url, timeout_s=2.0, rate_limit_max_wait_s=3.0),
    )  # fmt: skip


async def wait_log(js, until: Callable[[list[Record]], bool], timeout_s: float = 20.0) -> list[Record]:
    """Poll the exec.* and venue.* log until ``until(records)``."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        recs = await read_log(js, filters=["exec.>", "venue.>"])
        if until(recs):
            return recs
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(f"log condition not met; have {[type(r.event).__name__ for r in recs][-20:]}")
        await asyncio.sleep(0.05)


def of(recs: list[Record], t: type) -> list[Any]:
    return [r.event for r in recs if isinstance(r.event, t)]


def order(qty: float = 0.0123456, price: float = 100_000.0, **kw: Any) -> ev.OrderSubmitted:
    iid = derive_id("IntentProposed", "test", qty, price)
    oid = order_link_id(iid)
    fields: dict[str, Any] = dict(
        event_id=derive_id("OrderSubmitted", iid, oid), ts_event=f.T0_NS, ts_init=f.T0_NS, symbol="BTCUSDT",
        correlation_id=iid, causation_id=iid, order_id=oid, side="Buy", qty=qty, price_ref=price,
        take_profit=103_000.0, stop_loss=99_000.0, venue_name="bybit", leverage=5.0,
    )  # fmt: skip
    fields.update(kw)
    return ev.OrderSubmitted(**fields)


@contextlib.asynccontextmanager
async def adapter(nats_url: str, fake: FakeBybit, *, socket: bool = True, **rest_kw: Any):
    nc = await bus.connect(nats_url, "venue-test", 10)
    js = nc.jetstream(timeout=10)
    stop = asyncio.Event()
    rest = BybitRest(
        fake.base_url, fake.trading.api_key, fake.trading.api_secret, timeout_s=rest_kw.pop("timeout_s", 2.0), **rest_kw
    )
    factory = private_socket_factory(
        api_key=fake.trading.api_key, api_secret=fake.trading.api_secret, env="testnet", base_url=fake.ws_url
    )
    a = BybitVenueAdapter(
        js=js, nc=nc, publisher=bus.Publisher(js), rest=rest, socket=factory if socket else None,
        symbols=["BTCUSDT"], stop=stop,
    )  # fmt: skip
    task = asyncio.create_task(a.run())
    try:
        await asyncio.wait_for(a.ready.wait(), 20)
        yield a
    finally:
        stop.set()
        await asyncio.wait_for(asyncio.gather(task, return_exceptions=True), 20)
        await nc.close()


async def test_bybit_order_is_sent_rounded_with_tp_sl_and_its_fills_come_back(js_fresh, nats_url, fake):
    trading = fake.trading
    trading.set_price("BTCUSDT", 100_000.0, ts_ms=f.T0_NS // MS)
    o = order(qty=0.012)
    await bus.Publisher(js_fresh).publish(o)
    async with adapter(nats_url, fake):
        recs = await wait_log(js_fresh, lambda rs: of(rs, ev.OrderAccepted) and of(rs, ev.OrderFilled))
        accepted, fill = of(recs, ev.OrderAccepted)[0], of(recs, ev.OrderFilled)[0]
        assert accepted.order_id == o.order_id and accepted.venue_order_id
        assert (fill.order_id, fill.qty, fill.price, fill.reduce_only) == (o.order_id, 0.012, 100_000.0, False)
        assert fill.correlation_id == o.correlation_id and fill.fee_usdt == pytest.approx(0.012 * 100_000 * 0.00055)
        body = json.loads(fake.calls_to("/v5/order/create")[0].body)  # as pybit sent it
        assert (body["qty"], body["takeProfit"], body["stopLoss"]) == ("0.012", "103000", "99000")
        assert (body["orderLinkId"], body["tpslMode"], body["orderType"]) == (o.order_id, "Full", "Market")
        placed = next(iter(trading.orders.values()))
        assert (float(placed["qty"]), placed["orderLinkId"]) == (0.012, o.order_id)
        assert trading.positions["BTCUSDT"]["takeProfit"] in ("103000", "103000.0", "103000.00")
        # the take-profit triggers at the fake: its execution comes back reduce-only, with its reason
        trading.set_price("BTCUSDT", 103_100.0, ts_ms=f.T0_NS // MS + 60_000)
        recs = await wait_log(js_fresh, lambda rs: any(e.reduce_only for e in of(rs, ev.OrderFilled)))
        tp = next(e for e in of(recs, ev.OrderFilled) if e.reduce_only)
        assert tp.exit_reason == "take_profit" and tp.qty == 0.012 and tp.price == pytest.approx(103_000.0)
        snaps = of(recs, ev.PositionSnapshot)
        assert {s.source for s in snaps} == {"reconcile", "stream"} and of(recs, ev.WalletSnapshot)
        assert next(s for s in snaps if s.source == "reconcile").qty == 0  # at start: flat
    assert trading.creates == 1


async def test_bybit_refusal_is_recorded_with_bybits_code(js_fresh, nats_url, fake):
    fake.trading.set_price("BTCUSDT", 100_000.0)
    fake.trading.fault("reject", ret_code=110007, ret_msg="ab not enough for new order")
    o = order(qty=0.05)
    await bus.Publisher(js_fresh).publish(o)
    async with adapter(nats_url, fake, socket=False):
        recs = await wait_log(js_fresh, lambda rs: bool(of(rs, ev.OrderRefused)))
    refused = of(recs, ev.OrderRefused)[0]
    assert (refused.order_id, refused.ret_code, refused.ret_msg) == (o.order_id, 110007, "ab not enough for new order")
    assert not of(recs, ev.OrderAccepted)


async def test_bybit_unreachable_past_every_attempt_is_retried_and_the_order_still_goes_once(js_fresh, nats_url, fake):
    fake.trading.set_price("BTCUSDT", 100_000.0)
    fake.fault("/v5/order/create", "http_status", times=3, status=503)  # the adapter's client tries twice
    o = order(qty=0.01)
    await bus.Publisher(js_fresh).publish(o)
    async with adapter(nats_url, fake, socket=False, attempts=2):
        recs = await wait_log(js_fresh, lambda rs: bool(of(rs, ev.OrderAccepted)), timeout_s=30)
    answers = [c.answer for c in fake.calls_to("/v5/order/create")]
    assert answers == ["http_503", "http_503", "http_503", "ok"]
    assert fake.trading.creates == 1 and [e.order_id for e in of(recs, ev.OrderAccepted)] == [o.order_id]


async def test_bybit_rate_limit_and_clock_skew_are_waited_out_and_resynced(js_fresh, nats_url, fake):
    fake.trading.set_price("BTCUSDT", 100_000.0)
    fake.fault("/v5/order/create", "rate_limit", reset_in_ms=300)
    fake.trading.fault("clock_skew", times=None, skew_ms=15_000)
    o = order(qty=0.01)
    await bus.Publisher(js_fresh).publish(o)
    async with adapter(nats_url, fake, socket=False) as a:
        recs = await wait_log(js_fresh, lambda rs: bool(of(rs, ev.OrderAccepted)))
        assert a.rest.offset_ms > 10_000  # signed with the server's clock from the first 10002 on
    answers = [c.answer for c in fake.calls_to("/v5/order/create")]
    assert "rate_limit" in answers and answers[-1] == "ok"
    assert fake.trading.creates == 1 and len(of(recs, ev.OrderAccepted)) == 1


@pytest.mark.parametrize("fault", ["lost_after_accept", "timeout_after_accept"])
async def test_bybit_answer_lost_after_accept_is_looked_up_never_sent_twice(js_fresh, nats_url, fake, fault):
    fake.trading.set_price("BTCUSDT", 100_000.0)
    fake.trading.fault(fault, **({"delay_s": 4.0} if fault == "timeout_after_accept" else {}))
    o = order(qty=0.01)
    await bus.Publisher(js_fresh).publish(o)
    async with adapter(nats_url, fake, socket=False, timeout_s=1.0):
        recs = await wait_log(js_fresh, lambda rs: bool(of(rs, ev.OrderAccepted)) and bool(of(rs, ev.OrderFilled)))
    assert fake.trading.creates == 1
    assert [e.order_id for e in of(recs, ev.OrderAccepted)] == [o.order_id]
    assert len(of(recs, ev.OrderFilled)) == 1  # the look-up published the fill the socket was not there for


async def test_bybit_fill_the_private_stream_lost_is_published_by_reconciliation(js_fresh, nats_url, fake):
    trading = fake.trading
    trading.set_price("BTCUSDT", 100_000.0)
    trading.fault("drop_private_during_fill", mode="abort")
    trading.fault("duplicate_execution")
    o = order(qty=0.01)
    await bus.Publisher(js_fresh).publish(o)
    async with adapter(nats_url, fake) as a:
        recs = await wait_log(js_fresh, lambda rs: bool(of(rs, ev.OrderFilled)) and a.reconciliations >= 2)
        trading.set_price("BTCUSDT", 98_900.0)  # the stop-loss; its execution message comes twice
        recs = await wait_log(js_fresh, lambda rs: any(e.reduce_only for e in of(rs, ev.OrderFilled)))
        await asyncio.sleep(0)  # (the second copy is handled by the same loop turn or the next)
    fills = of(recs, ev.OrderFilled)
    assert len({e.fill_id for e in fills}) == len(fills) == 2  # each execution once, however often reported
    assert next(e for e in fills if e.reduce_only).exit_reason == "stop_loss"


async def test_bybit_position_opened_outside_nertz_is_reported_at_reconciliation(js_fresh, nats_url, fake):
    fake.trading.set_price("ETHUSDT", 2_500.0)
    fake.trading.open_position_outside("ETHUSDT", "Sell", 2.0, 2_500.0, stop_loss=2_600.0)
    async with adapter(nats_url, fake, socket=False) as a:
        a.symbols = ["BTCUSDT", "ETHUSDT"]
        await a.reconcile("test")
        recs = await wait_log(js_fresh, lambda rs: any(e.qty > 0 for e in of(rs, ev.PositionSnapshot)))
    snap = next(e for e in of(recs, ev.PositionSnapshot) if e.qty > 0)
    assert (snap.symbol, snap.source, snap.side, snap.qty, snap.entry_price) == (
        "ETHUSDT",
        "reconcile",
        "short",
        2.0,
        2500.0,
    )
    assert snap.stop_loss == 2600.0


# --- the executor and its adapter together ---------------------------------------------------------


async def run_executor(kit, js, cfg: ExecutorSettings, until: Callable[[list[Record]], bool], *,
                       during: Callable[[], Any] | None = None, timeout_s: float = 30.0) -> list[Record]:  # fmt: skip
    async with kit.executor_with_venue(cfg):
        if during is not None:
            await during()
        return await wait_log(js, until, timeout_s)


async def test_bybit_approved_intent_trades_through_the_fake_and_the_lock_follows(kit, js_fresh, nats_url, fake):
    trading = fake.trading
    b0, b1 = kit.bar(0, close=100.0), kit.bar(1, close=100.0)
    trading.set_price("BTCUSDT", 100.0, ts_ms=b0.ts_event // MS)
    intent = f.intent(b0, side="long", sl=0.01, qty=0.5004567)
    pub = bus.Publisher(js_fresh)
    for e in (kit.spec(), b0, kit.factor(b0, intent.event_id), intent, f.verdict(intent), b1, kit.factor(b1)):
        await pub.publish(e)
    cfg = settings(nats_url, fake)

    async def take_profit() -> None:
        await wait_log(js_fresh, lambda rs: bool(of(rs, ev.LockEngaged)))
        trading.set_price("BTCUSDT", 103.5, ts_ms=b1.ts_event // MS + 1000)

    recs = await run_executor(kit, js_fresh, cfg, lambda rs: bool(of(rs, ev.PositionClosed)), during=take_profit)
    sent = of(recs, ev.OrderSubmitted)[0]
    assert sent.qty == 0.5 and sent.venue_name == "bybit"  # rounded down to BTCUSDT's qtyStep 0.001
    placed = next(iter(trading.orders.values()))
    assert float(placed["qty"]) == 0.5 and placed["orderLinkId"] == sent.order_id
    opened, closed = of(recs, ev.PositionOpened)[0], of(recs, ev.PositionClosed)[0]
    assert (opened.qty, opened.entry_price) == (0.5, 100.0)
    assert closed.exit_reason == "take_profit" and closed.exit_price == pytest.approx(sent.take_profit)
    assert closed.realized_pnl_usdt == pytest.approx(0.5 * (sent.take_profit - 100.0) - closed.fee_usdt)
    assert trading.creates == 1


@pytest.mark.parametrize("policy", ["adopt", "halt"])
async def test_bybit_position_opened_outside_nertz_is_adopted_or_halts_as_configured(
    kit, js_fresh, nats_url, fake, policy
):
    fake.trading.set_price("ETHUSDT", 2_500.0)
    fake.trading.open_position_outside("ETHUSDT", "Sell", 2.0, 2_500.0, take_profit=2_300.0, stop_loss=2_600.0)
    await bus.Publisher(js_fresh).publish(kit.spec("ETHUSDT"))
    cfg = settings(nats_url, fake, on_foreign=policy)
    cfg.symbols = ["BTCUSDT", "ETHUSDT"]
    want = ev.LockEngaged if policy == "adopt" else ev.VenueMismatch
    recs = await run_executor(kit, js_fresh, cfg, lambda rs: bool(of(rs, want)))
    mismatch = of(recs, ev.VenueMismatch)[0]
    assert mismatch.symbol == "ETHUSDT" and mismatch.action == ("adopted" if policy == "adopt" else "halted")
    assert "opened outside Nertz" in mismatch.reason
    if policy == "adopt":
        opened = of(recs, ev.PositionOpened)[0]
        assert (opened.side, opened.qty, opened.entry_price, opened.stop_loss) == ("short", 2.0, 2500.0, 2600.0)
        assert of(recs, ev.LockEngaged)[0].reason == "position_adopted"
    else:
        assert not of(recs, ev.PositionOpened)


async def test_bybit_funding_is_recorded_and_counted_in_the_round_trip(kit, js_fresh, nats_url, fake):
    trading = fake.trading
    b0, b1 = kit.bar(0, close=100.0), kit.bar(1, close=100.0)
    t1 = b1.ts_event // MS
    trading.set_price("BTCUSDT", 100.0, ts_ms=t1)
    trading.set_funding_rate("BTCUSDT", 0.0005)
    intent = f.intent(b0, side="long", sl=0.01, qty=0.5)
    pub = bus.Publisher(js_fresh)
    for e in (kit.spec(), b0, kit.factor(b0, intent.event_id), intent, f.verdict(intent), b1, kit.factor(b1)):
        await pub.publish(e)
    eight_h = 8 * 3_600_000
    next_funding = (t1 // eight_h + 1) * eight_h

    async def through_funding_then_take_profit() -> None:
        await wait_log(js_fresh, lambda rs: bool(of(rs, ev.LockEngaged)))
        trading.set_price("BTCUSDT", 100.5, ts_ms=next_funding + 1_000)  # past 00/08/16 UTC: funding charged
        await wait_log(js_fresh, lambda rs: bool(of(rs, ev.FundingSettled)))
        trading.set_price("BTCUSDT", 104.0, ts_ms=next_funding + 60_000)

    recs = await run_executor(
        kit, js_fresh, settings(nats_url, fake, max_hold_s=10 * 86_400.0), lambda rs: bool(of(rs, ev.PositionClosed)),
        during=through_funding_then_take_profit,
    )  # fmt: skip
    funding = of(recs, ev.FundingSettled)
    assert len(funding) == 1 and funding[0].fee_usdt == pytest.approx(0.5 * 100.0 * 0.0005, rel=0.02)
    entry_fee = of(recs, ev.PositionOpened)[0].fee_usdt
    exit_fee = next(e for e in of(recs, ev.OrderFilled) if e.reduce_only).fee_usdt
    closed = of(recs, ev.PositionClosed)[0]
    assert closed.fee_usdt == pytest.approx(entry_fee + exit_fee + funding[0].fee_usdt)
    assert closed.realized_pnl_usdt == pytest.approx(0.5 * (closed.exit_price - 100.0) - closed.fee_usdt)
