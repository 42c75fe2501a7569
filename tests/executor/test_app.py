"""The executor on the kernel against a real JetStream: joins, interleavings, rendezvous, metrics."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict

import msgspec
import pytest

from nertz_common import bus, runtime, subjects, topology
from nertz_common import events as ev
from nertz_common.node.log import read_log
from nertz_executor import app
from nertz_executor.settings import ExecutorGroup, ExecutorSettings

pytestmark = pytest.mark.integration


def settings_for(nats_url: str, **group) -> ExecutorSettings:
    return ExecutorSettings(NATS_URL=nats_url, executor=ExecutorGroup(cooldown_s=300, **group))


async def run_executor(kit, js, nats_url: str, *, background=None, timeout_s: float = 20.0, **group):
    """Run the executor in-process until the market consumer is drained; return it and its metrics registry."""
    cfg = settings_for(nats_url, **group)
    async with runtime.runtime("executor", cfg) as rt:
        try:
            executor, runner = await app.start(rt, cfg)
            task = asyncio.create_task(rt.until_stopped(runner.run()))
            helper = asyncio.create_task(background()) if background else None
            try:
                await kit.wait_drained(js, timeout_s)
            finally:
                rt.stop.set()
                await asyncio.wait_for(task, 10)
                if helper:
                    helper.cancel()
            metrics = rt.registry
        finally:
            kit.remove_signal_handlers()
    return executor, metrics


def by_intent(records) -> dict[str, list[ev.Event]]:
    out: dict[str, list[ev.Event]] = defaultdict(list)
    for r in records:
        out[r.event.correlation_id].append(r.event)
    return out


async def test_app_early_verdicts_trade_suppress_and_release_in_order(kit, js_fresh, nats_url):
    sc = kit.scenario()
    await kit.publish_early(bus.Publisher(js_fresh), sc)
    executor, registry = await run_executor(kit, js_fresh, nats_url)
    records = await kit.read_output(js_fresh)
    assert all(r.input_seq is not None and r.origin <= r.input_seq for r in records)
    got = by_intent(records)
    intent_at = {(i.symbol, (i.ts_event - sc.market[0].open_time_ns) // 60_000_000_000 - 1): iid
                 for iid, i in sc.intents.items()}  # fmt: skip
    names = {key: kit.names(got[iid]) for key, iid in intent_at.items()}
    entry = ["VerdictAwaited", "OrderSubmitted", "OrderFilled", "PositionOpened", "LockEngaged"]
    assert names[("BTCUSDT", 2)] == [*entry, "OrderFilled", "PositionClosed", "LockReleased"]
    assert names[("BTCUSDT", 4)] == ["VerdictAwaited", "SignalSuppressed"]
    assert names[("BTCUSDT", 5)] == ["VerdictAwaited", "SignalSuppressed"]
    assert names[("BTCUSDT", 30)] == entry
    assert names[("ETHUSDT", 3)] == [*entry, "OrderFilled", "PositionClosed", "LockReleased"]
    assert names[("ETHUSDT", 10)] == ["VerdictAwaited", "SignalSuppressed"]
    assert names[("ETHUSDT", 25)] == entry
    sup = {k: got[intent_at[k]][1] for k in (("BTCUSDT", 4), ("BTCUSDT", 5), ("ETHUSDT", 10))}
    assert (sup[("BTCUSDT", 4)].reason, sup[("BTCUSDT", 4)].lock_state) == ("locked_same_side", "LOCKED")
    assert (sup[("BTCUSDT", 5)].reason, sup[("BTCUSDT", 5)].decision) == ("locked_opposing_side", "reject")
    assert (sup[("ETHUSDT", 10)].reason, sup[("ETHUSDT", 10)].lock_state) == ("cooldown", "COOLDOWN")
    closes = {e.symbol: e for e in (got[intent_at[("BTCUSDT", 2)]] + got[intent_at[("ETHUSDT", 3)]])
              if isinstance(e, ev.PositionClosed)}  # fmt: skip
    assert closes["BTCUSDT"].exit_reason == "take_profit" and closes["BTCUSDT"].realized_pnl_usdt > 0
    assert closes["ETHUSDT"].exit_reason == "stop_loss" and closes["ETHUSDT"].realized_pnl_usdt < 0
    # entries filled at the book after the order bar: best ask (buy) / best bid (sell) with 1 bp slippage
    fill_a = got[intent_at[("BTCUSDT", 2)]][2]
    assert fill_a.price == pytest.approx(100.01 * 1.0001)
    # the final state is the fold of the log
    assert executor.state.symbol("BTCUSDT").lock == "LOCKED" and executor.state.symbol("ETHUSDT").lock == "LOCKED"
    assert executor.state.closed_trades == 2
    assert registry.get_sample_value("nertz_executor_lock_state", {"symbol": "BTCUSDT"}) == 2
    assert registry.get_sample_value("nertz_executor_orders_total", {"outcome": "submitted"}) == 4
    assert registry.get_sample_value("nertz_executor_suppressed_total", {"reason": "cooldown"}) == 1
    assert registry.get_sample_value("nertz_executor_open_positions") == 2
    # every decision message was used and acknowledged
    for durable in ("executor-decisions", "executor-verdicts"):
        info = await js_fresh.consumer_info("NERTZ", durable)
        assert info.num_pending == 0 and info.num_ack_pending == 0, durable


async def test_app_two_interleavings_give_identical_payloads(kit, js_fresh, nats_url):
    sc = kit.scenario()
    pub = bus.Publisher(js_fresh)
    await kit.publish_early(pub, sc)
    await run_executor(kit, js_fresh, nats_url)
    early = await kit.read_output(js_fresh)

    await topology.recreate(js_fresh)
    pub = bus.Publisher(js_fresh)
    validator = kit.Validator(js_fresh, pub, sc)
    await kit.publish_late(pub, sc)
    stop = asyncio.Event()

    async def answer() -> None:
        await validator.run(stop)

    await run_executor(kit, js_fresh, nats_url, background=answer)
    stop.set()
    late = await kit.read_output(js_fresh)
    assert len(early) > 30
    assert kit.payloads(late) == kit.payloads(early)
    # rendezvous: in the late run each verdict follows its VerdictAwaited in the log
    log = await read_log(js_fresh, filters=["exec.awaited.>", "llm.verdict.>"])
    seen_awaited: set[str] = set()
    for r in log:
        if isinstance(r.event, ev.VerdictAwaited):
            seen_awaited.add(r.event.correlation_id)
        else:
            assert r.event.correlation_id in seen_awaited


async def test_app_trading_stopped_on_the_log_denies_entries(kit, js_fresh, nats_url):
    sc = kit.scenario(8)
    pub = bus.Publisher(js_fresh)
    stop = ev.TradingStopped(event_id="stop-1", ts_event=sc.market[0].ts_event, ts_init=sc.market[0].ts_event)
    await pub.publish(stop)
    await kit.publish_early(pub, sc)
    executor, _ = await run_executor(kit, js_fresh, nats_url)
    denied = [r.event for r in await kit.read_output(js_fresh) if isinstance(r.event, ev.RiskDenied)]
    assert {d.rule for d in denied} == {"trading_stopped"} and len(denied) == 3  # A2, A4, B3 approved
    assert not executor.state.trading_enabled


async def test_app_trading_stopped_for_one_symbol_denies_only_its_entries(kit, js_fresh, nats_url):
    sc = kit.scenario(8)
    pub = bus.Publisher(js_fresh)
    t0 = sc.market[0].ts_event
    await pub.publish(ev.TradingStopped(event_id="stop-btc", ts_event=t0, ts_init=t0, scope="BTCUSDT"))
    await kit.publish_early(pub, sc)
    executor, registry = await run_executor(kit, js_fresh, nats_url)
    denied = [r.event for r in await kit.read_output(js_fresh) if isinstance(r.event, ev.RiskDenied)]
    assert {(d.symbol, d.rule) for d in denied} == {("BTCUSDT", "trading_stopped")}
    assert executor.state.trading_enabled and executor.state.halted == frozenset({"BTCUSDT"})
    assert registry.get_sample_value("nertz_executor_symbol_trading_enabled", {"symbol": "BTCUSDT"}) == 0
    assert registry.get_sample_value("nertz_executor_symbol_trading_enabled", {"symbol": "ETHUSDT"}) == 1


async def test_app_stray_snapshot_and_second_verdict_change_nothing_and_are_acked(kit, js_fresh, nats_url):
    sc = kit.scenario(12)
    pub = bus.Publisher(js_fresh)
    stray = kit.factor(kit.bar(-5))  # a snapshot of a bar this executor will never see
    await pub.publish(stray)
    await kit.publish_early(pub, sc)
    first = next(iter(sc.intents))
    again = msgspec.structs.replace(sc.verdicts[first], event_id="verdict-again")  # a verdict sent twice
    await pub.publish(again)
    await pub.publish(kit.bar(12, kit.A, 103.0, 103.0))
    await pub.publish(kit.factor(kit.bar(12, kit.A, 103.0, 103.0)))
    _, _ = await run_executor(kit, js_fresh, nats_url)
    records = await kit.read_output(js_fresh)
    assert sum(1 for r in records if r.event.correlation_id == first and isinstance(r.event, ev.OrderSubmitted)) == 1
    assert kit.payloads(records) == kit.payloads(await _reference(kit, js_fresh, nats_url, sc))
    for durable in ("executor-decisions", "executor-verdicts"):
        info = await js_fresh.consumer_info("NERTZ", durable)
        assert info.num_pending == 0 and info.num_ack_pending == 0, durable


async def _reference(kit, js, nats_url, sc):
    await topology.recreate(js)
    pub = bus.Publisher(js)
    await kit.publish_early(pub, sc)
    await pub.publish(kit.bar(12, kit.A, 103.0, 103.0))
    await pub.publish(kit.factor(kit.bar(12, kit.A, 103.0, 103.0)))
    await run_executor(kit, js, nats_url)
    return await kit.read_output(js)


async def test_app_trading_stopped_applies_when_read_while_the_market_is_silent(kit, js_fresh, nats_url):
    """An operator's stop takes effect when it is read, not at the next closed bar (issue 11)."""
    sc = kit.scenario(8)
    pub = bus.Publisher(js_fresh)
    await kit.publish_early(pub, sc)
    cfg = settings_for(nats_url)
    async with runtime.runtime("executor", cfg) as rt:
        try:
            executor, runner = await app.start(rt, cfg)
            task = asyncio.create_task(rt.until_stopped(runner.run()))
            await kit.wait_drained(js_fresh, 20)
            assert executor.state.trading_enabled
            t_last = sc.market[-1].ts_event
            t0 = time.monotonic()
            await pub.publish(ev.TradingStopped(event_id="stop-now", ts_event=t_last + 1, ts_init=t_last + 1))
            while executor.state.trading_enabled and time.monotonic() - t0 < 10:
                await asyncio.sleep(0.01)
            applied_s = time.monotonic() - t0
            gauge = rt.registry.get_sample_value("nertz_executor_trading_enabled")
        finally:
            rt.stop.set()
            await asyncio.wait_for(task, 10)
            kit.remove_signal_handlers()
    assert not executor.state.trading_enabled, "expected the stop applied with no market data after it"
    assert applied_s < 2.0, f"expected the stop applied within 2 s of its publish, took {applied_s:.2f} s"
    assert gauge == 0


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


async def test_app_held_back_by_a_missing_partner_says_which_join_waits(kit, js_fresh, nats_url):
    """Backpressure never piles up silently: the runner names the partner it waits for (issue 11)."""
    sc = kit.scenario(8)
    pub = bus.Publisher(js_fresh)
    await pub.publish_many(sc.market)  # bars and books, and no factor snapshot ever
    cfg = settings_for(nats_url)
    caplog = _Records()
    logging.getLogger("nertz.kernel").addHandler(caplog)
    async with runtime.runtime("executor", cfg) as rt:
        try:
            _, runner = await app.start(rt, cfg)
            runner.max_held, runner.held_warn_s = 3, 0.0
            task = asyncio.create_task(rt.until_stopped(runner.run()))
            t0 = time.monotonic()
            while time.monotonic() - t0 < 10 and not any(r.msg == "join.held_back" for r in caplog.records):
                await asyncio.sleep(0.01)
            held = rt.registry.get_sample_value("nertz_executor_kernel_held_inputs", {"component": "executor"})
        finally:
            rt.stop.set()
            await asyncio.wait_for(task, 10)
            kit.remove_signal_handlers()
            logging.getLogger("nertz.kernel").removeHandler(caplog)
    warned = [r for r in caplog.records if r.msg == "join.held_back"]
    assert warned, "expected a join.held_back warning while the executor waits for a snapshot"
    assert "FactorSnapshot" in warned[0].why and warned[0].held >= 3
    assert held is not None and held >= 3


async def test_app_malformed_partners_nobody_awaits_are_dead_lettered_and_drained(kit, js_fresh, nats_url):
    """A partner lane is read while the market is quiet: nothing is left pending on it for ever."""
    sc = kit.scenario(8)
    pub = bus.Publisher(js_fresh)
    await kit.publish_early(pub, sc)
    junk = {"sig.factor.bybit.linear.BTCUSDT": b"not json", "llm.verdict.bybit.linear.ETHUSDT": b'{"type":"?"}'}
    partners = ("executor-decisions", "executor-verdicts")
    seqs = []

    async def junk_after_the_last_wait() -> None:
        for durable in partners:  # every partner the executor waited for is consumed...
            await kit.wait_drained(js_fresh, 20, consumer=durable)
        for subject, payload in junk.items():  # ... then junk that no step will ever wait for
            seqs.append((await js_fresh.publish(subject, payload, headers={"Nats-Msg-Id": f"junk-{subject}"})).seq)
        for durable in partners:
            await kit.wait_drained(js_fresh, 20, consumer=durable)

    cfg = settings_for(nats_url)
    async with runtime.runtime("executor", cfg) as rt:
        try:
            _, runner = await app.start(rt, cfg)
            task = asyncio.create_task(rt.until_stopped(runner.run()))
            await junk_after_the_last_wait()
        finally:
            rt.stop.set()
            await asyncio.wait_for(task, 10)
            kit.remove_signal_handlers()
    dead = [r.event for r in await read_log(js_fresh, filters=[subjects.dead_letter("executor")])]
    assert sorted(d.stream_seq for d in dead) == sorted(seqs) and len(seqs) == 2
