"""Fixtures of the api tests: a migrated pool on a fresh database, event builders, and a helper that runs
the projector against the real stream until it has committed the stream's last sequence.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import asyncpg
import pytest
from nats.js import JetStreamContext

from nertz_api.migrate import migrate
from nertz_api.projector import Projector
from nertz_common import bus, ids, subjects
from nertz_common import events as ev
from nertz_common.testing import factories as f

# --- event builders (candidates for nertz_common.testing.factories) -----------------------------


class Build:
    """Builders of valid events beyond what ``nertz_common.testing.factories`` offers."""

    bar = staticmethod(f.bar)
    book = staticmethod(f.book)
    intent = staticmethod(f.intent)
    verdict = staticmethod(f.verdict)

    @staticmethod
    def snapshot(bar: ev.Bar, combined: float = 1.0, **kw: Any) -> ev.FactorSnapshot:
        fields: dict[str, Any] = dict(
            event_id=ids.derive_id("FactorSnapshot", bar.event_id),
            ts_event=bar.ts_event,
            ts_init=bar.ts_event,
            symbol=bar.symbol,
            bar_id=bar.event_id,
            interval=bar.interval,
            close=bar.close,
            egm=0.1,
            pio=-0.2,
            combined=combined,
            used=["egm", "pio"],
            trend="up",
            atr=1.5,
            regime="normal",
        )
        fields.update(kw)
        return ev.FactorSnapshot(**fields)

    @staticmethod
    def ticker(ts_ns: int, symbol: str = "BTCUSDT", last: float = 100.0, **kw: Any) -> ev.Ticker:
        fields: dict[str, Any] = dict(
            event_id=ids.derive_id("Ticker", symbol, ts_ns),
            ts_event=ts_ns,
            ts_init=ts_ns,
            symbol=symbol,
            last_price=last,
            mark_price=last,
            index_price=last,
            funding_rate=0.0001,
            funding_interval_h=8,
            open_interest=1234.0,
        )
        fields.update(kw)
        return ev.Ticker(**fields)

    @staticmethod
    def correlated(cls: type, intent: ev.IntentProposed, cause: ev.Event, ts_ns: int, **kw: Any) -> Any:
        return cls(
            event_id=ids.derive_id(cls.__name__, intent.event_id, cause.event_id),
            ts_event=ts_ns,
            ts_init=ts_ns,
            symbol=intent.symbol,
            correlation_id=intent.correlation_id,
            causation_id=cause.event_id,
            **kw,
        )

    @classmethod
    def round_trip(
        cls, bar: ev.Bar, pnl: float, hold_bars: int = 3, fee: float = 0.1, side: ev.PositionSide = "long"
    ) -> list[ev.Event]:
        """Intent on ``bar``, approved, filled, locked, closed ``hold_bars`` later with ``pnl`` (USDT, net)."""
        i = cls.intent(bar, side)
        v = cls.verdict(i)
        t = bar.ts_event
        t_exit = t + hold_bars * f.MINUTE_NS
        oid = ids.order_link_id(i.event_id)
        buy, sell = ("Buy", "Sell") if side == "long" else ("Sell", "Buy")
        exit_px = i.entry_price + (pnl + 2 * fee) / i.qty * (1 if side == "long" else -1)
        c = cls.correlated
        awaited = c(ev.VerdictAwaited, i, i, t, lock_state="FLAT")
        sub = c(ev.OrderSubmitted, i, v, t, order_id=oid, side=buy, qty=i.qty, price_ref=i.entry_price,
                take_profit=i.take_profit, stop_loss=i.stop_loss)  # fmt: skip
        fill = c(ev.OrderFilled, i, sub, t + 1, order_id=oid, fill_id=f"{oid}-1", side=buy, qty=i.qty,
                 price=i.entry_price, fee_usdt=fee)  # fmt: skip
        pos_id = ids.derive_id("position", i.event_id)
        opened = c(ev.PositionOpened, i, fill, t + 1, position_id=pos_id, side=side, qty=i.qty,
                   entry_price=i.entry_price, take_profit=i.take_profit, stop_loss=i.stop_loss,
                   fee_usdt=fee)  # fmt: skip
        engaged = c(ev.LockEngaged, i, opened, t + 1, reason="position open")
        exit_oid = ids.order_link_id(i.event_id, "exit")
        exit_fill = c(ev.OrderFilled, i, opened, t_exit, order_id=exit_oid, fill_id=f"{exit_oid}-1", side=sell,
                      qty=i.qty, price=exit_px, fee_usdt=fee, reduce_only=True)  # fmt: skip
        closed = c(ev.PositionClosed, i, exit_fill, t_exit, position_id=pos_id, side=side, qty=i.qty,
                   entry_price=i.entry_price, exit_price=exit_px,
                   exit_reason="take_profit" if pnl > 0 else "stop_loss", realized_pnl_usdt=pnl, fee_usdt=2 * fee,
                   return_fraction=pnl / i.notional_usdt, holding_ns=t_exit - t - 1)  # fmt: skip
        released = c(ev.LockReleased, i, closed, t_exit + f.MINUTE_NS, reason="cooldown elapsed")
        return [i, v, awaited, sub, fill, opened, engaged, exit_fill, closed, released]

    @staticmethod
    def reported(
        cls: type, symbol: str, correlation_id: str, cause: ev.Event, ts_ns: int, tag: str = "", **kw: Any
    ) -> Any:
        """A correlated event about ``symbol`` caused by ``cause``; ``tag`` tells apart two of one class and cause."""
        return cls(
            event_id=ids.derive_id(cls.__name__, correlation_id, cause.event_id, tag),
            ts_event=ts_ns,
            ts_init=ts_ns,
            symbol=symbol,
            correlation_id=correlation_id,
            causation_id=cause.event_id,
            **kw,
        )

    @staticmethod
    def position_report(symbol: str, ts_ns: int, source: str = "reconcile", **kw: Any) -> ev.PositionSnapshot:
        """Bybit's position of ``symbol`` (no position unless ``side``/``qty`` are given)."""
        return ev.PositionSnapshot(
            event_id=ids.derive_id("PositionSnapshot", symbol, ts_ns, source), ts_event=ts_ns, ts_init=ts_ns,
            symbol=symbol, venue_name="bybit", source=source, **kw,  # type: ignore[arg-type]
        )  # fmt: skip

    @staticmethod
    def wallet_report(ts_ns: int, equity: float, **kw: Any) -> ev.WalletSnapshot:
        """Bybit's unified account (USDT)."""
        fields: dict[str, Any] = dict(wallet_balance_usdt=equity, available_usdt=equity * 0.9)
        fields.update(kw)
        return ev.WalletSnapshot(
            event_id=ids.derive_id("WalletSnapshot", ts_ns), ts_event=ts_ns, ts_init=ts_ns, venue_name="bybit",
            equity_usdt=equity, **fields,
        )  # fmt: skip

    @staticmethod
    def halt(symbol: str, ts_ns: int, reason: str) -> list[ev.Event]:
        """A reconciliation that halts ``symbol``: a foreign position, then the executor's ``VenueMismatch``."""
        snap = Build.position_report(symbol, ts_ns, side="short", qty=1.0, entry_price=20.0)
        mm = Build.reported(ev.VenueMismatch, symbol, snap.event_id, snap, ts_ns, action="halted", reason=reason)
        return [snap, mm]

    @staticmethod
    def system(cls: type, ts_ns: int, **kw: Any) -> Any:
        return cls(event_id=ids.derive_id(cls.__name__, ts_ns, *kw.values()), ts_event=ts_ns, ts_init=ts_ns, **kw)


@pytest.fixture
def build() -> type[Build]:
    """The event builders."""
    return Build


def scenario_events() -> list[ev.Event]:
    """A small log touching every projection: BTCUSDT trades twice, ETHUSDT is rejected, SOLUSDT's entry
    is rejected by the venue and another expires, and operators stop and start trading."""
    b = Build
    out: list[ev.Event] = [
        ev.InstrumentSpec(
            event_id="spec-btc",
            ts_event=f.T0_NS,
            ts_init=f.T0_NS,
            symbol="BTCUSDT",
            tick_size=0.1,
            qty_step=0.001,
            min_order_qty=0.001,
            max_leverage=100.0,
        ),
    ]
    btc = [b.bar(i, close=100.0 + i) for i in range(30)]
    for i, bar in enumerate(btc):
        out.append(bar)
        out.append(b.snapshot(bar, combined=0.1 * i))
        if i == 5:
            out += [b.book(bar.ts_event, mid=104.0), b.ticker(bar.ts_event, last=104.0)]
        if i == 10:  # a win: +30 USDT
            out += b.round_trip(bar, pnl=30.0)
        if i == 12:  # an approved verdict suppressed by the lock, and one denied by a risk rule
            i2 = b.intent(bar)
            v2 = b.verdict(i2)
            out += [i2, v2, b.correlated(ev.SignalSuppressed, i2, v2, bar.ts_event, reason="cooldown",
                                         lock_state="COOLDOWN", decision="approve")]  # fmt: skip
            i3 = b.intent(btc[11])
            v3 = b.verdict(i3)
            out += [i3, v3, b.correlated(ev.RiskDenied, i3, v3, bar.ts_event, rule="max_positions", reason="3 open")]
        if i == 20:  # a loss: -12 USDT
            out += b.round_trip(bar, pnl=-12.0)
    # the open bar 30: two updates, then closed, then a stale open update that must not overwrite it
    t30 = f.T0_NS + 30 * f.MINUTE_NS
    out += [
        b.bar(30, close=131.0, closed=False, event_id="b30-open-1", ts_event=t30 + 10, ts_init=t30 + 10),
        b.bar(30, close=132.0, closed=False, event_id="b30-open-2", ts_event=t30 + 20, ts_init=t30 + 20),
        b.bar(30, close=133.0),
        b.bar(30, close=999.0, closed=False, event_id="b30-open-late", ts_event=t30 + 30, ts_init=t30 + 30),
        b.book(t30 + 40, mid=133.0, spread=0.2),
        b.ticker(t30 + 40, last=133.0),
        ev.TradeBatch(
            event_id="tb-1",
            ts_event=t30 + 50,
            ts_init=t30 + 50,
            symbol="BTCUSDT",
            trades=[
                ev.Trade(ts_event=t30 + 49, price=133.0, qty=0.5, side="Buy", trade_id="t1"),
                ev.Trade(ts_event=t30 + 50, price=132.9, qty=0.2, side="Sell", trade_id="t2"),
            ],
        ),
        ev.FeedGap(
            event_id="gap-1",
            ts_event=t30 + 60,
            ts_init=t30 + 60,
            symbol="BTCUSDT",
            reason="u gap",
            topic="orderbook.50.BTCUSDT",
        ),
        ev.FeedResynced(
            event_id="resync-1",
            ts_event=t30 + 70,
            ts_init=t30 + 70,
            symbol="BTCUSDT",
            topic="orderbook.50.BTCUSDT",
            update_id=7,
        ),
    ]
    eth = [b.bar(i, symbol="ETHUSDT", close=50.0 + i) for i in range(5)]
    for bar in eth:
        out += [bar, b.snapshot(bar)]
    ie = b.intent(eth[4], "short")
    out += [ie, b.verdict(ie, "reject", confidence=0.2)]
    sol = [b.bar(i, symbol="SOLUSDT", close=20.0) for i in range(3)]
    out += sol
    isol = b.intent(sol[1])
    vsol = b.verdict(isol)
    oid = ids.order_link_id(isol.event_id)
    sub = b.correlated(ev.OrderSubmitted, isol, vsol, sol[1].ts_event, order_id=oid, side="Buy", qty=1.0,
                       price_ref=20.0)  # fmt: skip
    out += [isol, vsol, sub, b.correlated(ev.OrderRejected, isol, sub, sol[1].ts_event + 1, order_id=oid,
                                          reason="110007 insufficient balance")]  # fmt: skip
    isol2 = b.intent(sol[2])
    vsol2 = b.verdict(isol2)
    oid2 = ids.order_link_id(isol2.event_id)
    sub2 = b.correlated(ev.OrderSubmitted, isol2, vsol2, sol[2].ts_event, order_id=oid2, side="Buy", qty=1.0,
                        price_ref=20.0)  # fmt: skip
    out += [isol2, vsol2, sub2, b.correlated(ev.EntryExpired, isol2, sub2, sol[2].ts_event + 5, order_id=oid2,
                                             reason="not filled in 60 s")]  # fmt: skip
    out += [
        b.system(ev.TradingStopped, f.T0_NS + 1, reason="maintenance", actor="ops"),
        b.system(ev.TradingStarted, f.T0_NS + 2, actor="ops"),
        b.system(ev.TradingStopped, f.T0_NS + 3, scope="SOLUSDT", reason="too volatile", actor="ops"),
        ev.DeadLettered(
            event_id="dlq-signal-99",
            ts_event=f.T0_NS,
            ts_init=f.T0_NS,
            service="signal",
            reason="invalid: expected price > 0",
            subject="md.bar.bybit.linear.BTCUSDT",
            stream_seq=99,
            raw='{"type":"Bar"}',
        ),
    ]
    return out


@pytest.fixture(scope="session")
def scenario() -> list[ev.Event]:
    """The default scenario (see :func:`scenario_events`)."""
    return scenario_events()


# --- what a real venue reports ------------------------------------------------------------------


def venue_events() -> list[ev.Event]:
    """A log of what Bybit reports, with the executor's answers:

    - BTCUSDT: an entry accepted and filled in two parts, two funding payments (one paid, one received),
      the private stream's and a reconciliation's positions agreeing; then a reconciliation finds no
      position: the position is closed on the log (exit reason ``reconciled``) and the symbol halted;
    - ETHUSDT: a position opened outside Nertz, adopted and locked;
    - SOLUSDT: an entry refused by Bybit (110007), another accepted and canceled unfilled, then a position
      opened outside Nertz halts the symbol;
    - two wallet reports (equity 1000, then 1012.5 USDT).
    """
    b = Build
    reported, position_report, wallet_report = b.reported, b.position_report, b.wallet_report
    t = f.T0_NS + f.MINUTE_NS
    btc = b.bar(0, close=100.0)
    i = b.intent(btc)
    v = b.verdict(i)
    oid = ids.order_link_id(i.event_id)
    cid, sym = i.correlation_id, "BTCUSDT"
    sub = b.correlated(ev.OrderSubmitted, i, v, t, order_id=oid, side="Buy", qty=1.0, price_ref=100.0,
                       take_profit=103.0, stop_loss=99.0, venue_name="bybit", leverage=3.0)  # fmt: skip
    acc = reported(ev.OrderAccepted, sym, cid, sub, t + 1, order_id=oid, venue_order_id="bybit-order-1")
    fill1 = reported(ev.OrderFilled, sym, cid, acc, t + 2, "1", order_id=oid, fill_id="exec-1", side="Buy", qty=0.4,
                     price=100.0, fee_usdt=0.02, venue_name="bybit", venue_order_id="bybit-order-1",
                     leaves_qty=0.6)  # fmt: skip
    fill2 = reported(ev.OrderFilled, sym, cid, acc, t + 3, "2", order_id=oid, fill_id="exec-2", side="Buy", qty=0.6,
                     price=100.5, fee_usdt=0.03, venue_name="bybit", venue_order_id="bybit-order-1")  # fmt: skip
    pos_id = ids.derive_id("position", i.event_id)
    opened = reported(ev.PositionOpened, sym, cid, fill2, t + 3, position_id=pos_id, side="long", qty=1.0,
                      entry_price=100.3, take_profit=103.0, stop_loss=99.0, fee_usdt=0.05)  # fmt: skip
    engaged = reported(ev.LockEngaged, sym, cid, opened, t + 3, reason="position open")
    pushed = position_report(sym, t + 4, "stream", side="long", qty=1.0, entry_price=100.3, mark_price=101.0,
                             take_profit=103.0, stop_loss=99.0, leverage=3.0, unrealized_pnl_usdt=0.7)  # fmt: skip
    paid = reported(ev.FundingSettled, sym, cid, opened, t + 5, "1", fill_id="funding-1", fee_usdt=0.03,
                    rate=0.0003, position_value_usdt=101.0)  # fmt: skip
    received = reported(ev.FundingSettled, sym, cid, opened, t + 6, "2", fill_id="funding-2", fee_usdt=-0.01,
                        rate=-0.0001, position_value_usdt=100.0)  # fmt: skip
    agreed = position_report(sym, t + 7, side="long", qty=1.0, entry_price=100.3, mark_price=100.8,
                             take_profit=103.0, stop_loss=99.0, trailing_stop=1.5, leverage=3.0,
                             unrealized_pnl_usdt=0.5)  # fmt: skip
    # no position; the event's entry_price must be > 0 even then (events.Price)
    gone = position_report(sym, t + 8, entry_price=100.3, mark_price=100.6)
    closed_mm = reported(ev.VenueMismatch, sym, cid, gone, t + 8, "closed", action="closed",
                         reason="the venue holds no position where the lock holds long 1")  # fmt: skip
    closed = reported(ev.PositionClosed, sym, cid, gone, t + 8, position_id=pos_id, side="long", qty=1.0,
                      entry_price=100.3, exit_price=100.6, exit_reason="reconciled", realized_pnl_usdt=0.23,
                      fee_usdt=0.05, return_fraction=0.0023, holding_ns=5)  # fmt: skip
    halted_mm = reported(ev.VenueMismatch, sym, cid, gone, t + 8, "halted", action="halted",
                         reason="the fill that closed the position is not on the log")  # fmt: skip
    out: list[ev.Event] = [btc, i, v, sub, acc, fill1, fill2, opened, engaged, pushed, paid, received, agreed, gone,
                           closed_mm, closed, halted_mm]  # fmt: skip

    eth = b.bar(0, symbol="ETHUSDT", close=50.0)
    foreign = position_report("ETHUSDT", t + 10, side="long", qty=2.0, entry_price=49.5, mark_price=50.0)
    iid = ids.derive_id("adopted", "ETHUSDT", foreign.event_id)
    adopted = reported(ev.VenueMismatch, "ETHUSDT", iid, foreign, t + 10, action="adopted",
                       reason="a long position of 2 at 49.5 opened outside Nertz: adopted and locked")  # fmt: skip
    eth_open = reported(ev.PositionOpened, "ETHUSDT", iid, adopted, t + 10, position_id=ids.derive_id("position", iid),
                        side="long", qty=2.0, entry_price=49.5, take_profit=55.0, stop_loss=45.0,
                        fee_usdt=0.0)  # fmt: skip
    out += [eth, foreign, adopted, eth_open, reported(ev.LockEngaged, "ETHUSDT", iid, eth_open, t + 10,
                                                      reason="position open")]  # fmt: skip

    sol = [b.bar(k, symbol="SOLUSDT", close=20.0) for k in range(2)]
    i1, i2 = b.intent(sol[0]), b.intent(sol[1])
    o1, o2 = ids.order_link_id(i1.event_id), ids.order_link_id(i2.event_id)
    sub1 = b.correlated(ev.OrderSubmitted, i1, i1, t + 20, order_id=o1, side="Buy", qty=1.0, price_ref=20.0,
                        venue_name="bybit")  # fmt: skip
    refused = b.correlated(ev.OrderRefused, i1, sub1, t + 21, order_id=o1, ret_code=110007,
                           ret_msg="ab not enough for new order")  # fmt: skip
    rejected = b.correlated(ev.OrderRejected, i1, refused, t + 21, order_id=o1,
                            reason="110007 ab not enough for new order")  # fmt: skip
    sub2 = b.correlated(ev.OrderSubmitted, i2, i2, t + 30, order_id=o2, side="Buy", qty=1.0, price_ref=20.0,
                        venue_name="bybit")  # fmt: skip
    acc2 = b.correlated(ev.OrderAccepted, i2, sub2, t + 31, order_id=o2, venue_order_id="bybit-order-2")
    expired = b.correlated(ev.EntryExpired, i2, sub2, t + 90, order_id=o2, reason="not filled in 60 s")
    canceled = b.correlated(ev.OrderCanceled, i2, expired, t + 91, order_id=o2, venue_order_id="bybit-order-2",
                            reason="canceled by the executor", filled_qty=0.0)  # fmt: skip
    out += [*sol, i1, sub1, refused, rejected, i2, sub2, acc2, expired, canceled]
    out += b.halt("SOLUSDT", t + 100, "a short position of 1 opened outside Nertz")
    out += [wallet_report(t, 1000.0), wallet_report(t + 9, 1012.5, unrealized_pnl_usdt=2.5)]
    return out


@pytest.fixture(scope="session")
def venue_scenario() -> list[ev.Event]:
    """The venue's reports (see :func:`venue_events`)."""
    return venue_events()


# --- database and projector helpers -------------------------------------------------------------


@pytest.fixture
async def pool(fresh_db: str) -> AsyncIterator[asyncpg.Pool]:
    """A pool on a fresh, migrated database."""
    p = await asyncpg.create_pool(fresh_db, min_size=1, max_size=6)
    await migrate(p)
    yield p
    await p.close()


@pytest.fixture
def publisher(js_fresh) -> bus.Publisher:  # type: ignore[no-untyped-def]
    """A publisher on the fresh stream."""
    return bus.Publisher(js_fresh)


async def run_projector(
    js: JetStreamContext,
    pool: asyncpg.Pool,
    publisher: bus.Publisher,
    batch: int = 64,
    timeout_s: float = 20.0,
) -> Projector:
    """Run a new projector (durable ``projector``, on the kernel's projection runner) until the stream's
    last sequence is tracked and every message was delivered; return it (its ``stats`` say what this run
    did)."""
    from prometheus_client import CollectorRegistry

    from nertz_common.metrics import BusMetrics

    projector = Projector(pool, js, publisher)
    registry = CollectorRegistry()
    stop = asyncio.Event()
    runner = projector.runner(js, publisher, BusMetrics("test", registry), registry, stop, batch)
    task = asyncio.create_task(projector.run(runner))
    try:
        async with asyncio.timeout(timeout_s):
            while True:
                last = (await js.stream_info(subjects.STREAM)).state.last_seq
                info = await js.consumer_info(subjects.STREAM, "projector")
                if runner.started.is_set() and info.num_pending == 0 and await projector.tracked_seq() >= last:
                    break  # every message was delivered; the batch in hand completes before run() returns
                if task.done():
                    task.result()
                await asyncio.sleep(0.02)
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
    return projector


async def fetch_deliveries(js: JetStreamContext, n: int) -> list[bus.Delivery]:
    """Fetch ``n`` messages of the ``projector`` consumer as decoded deliveries (never acked)."""
    from nertz_common import events as ev

    sub = await js.pull_subscribe_bind("projector", stream=subjects.STREAM)
    out: list[bus.Delivery] = []
    try:
        while len(out) < n:
            for m in await sub.fetch(n - len(out), timeout=2):
                out.append(bus.Delivery(ev.decode(m.data), m, m.subject, m.metadata.sequence.stream,
                                        m.metadata.num_delivered, dict(m.headers or {})))  # fmt: skip
    finally:
        await sub.unsubscribe()
    return out


@pytest.fixture(scope="session")
def deliveries_of() -> Callable[..., Awaitable[list[bus.Delivery]]]:
    """:func:`fetch_deliveries`."""
    return fetch_deliveries


@pytest.fixture(scope="session")
def projector_runner() -> Callable[..., Awaitable[Projector]]:
    """:func:`run_projector`, for fixtures of a wider scope than ``project``."""
    return run_projector


@pytest.fixture
def project(js_fresh, pool: asyncpg.Pool, publisher: bus.Publisher) -> Callable[..., Awaitable[Projector]]:  # type: ignore[no-untyped-def]
    """Run a new projector on the fresh stream and database until it caught up (see :func:`run_projector`)."""

    async def run(batch: int = 64, timeout_s: float = 20.0) -> Projector:
        return await run_projector(js_fresh, pool, publisher, batch, timeout_s)

    return run
