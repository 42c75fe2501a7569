"""``nertz verify`` over a position managed by the scaled exit plan: TP1 reduces it, a trailing stop closes
the rest (issue 8). The accounting holds part by part, and a close that forgets its reduction is caught."""

from __future__ import annotations

import msgspec

from nertz_cli import verify as checks
from nertz_common import events as ev
from nertz_common import subjects
from nertz_common.ids import derive_id
from nertz_common.node.component import Node, Pos
from nertz_common.node.log import Record
from nertz_common.testing import factories as f
from nertz_executor.core.component import Executor
from nertz_executor.core.config import MINUTE_NS, SECOND_NS, ExecutorConfig


def managed_run() -> list[Record]:
    """The executor on paper: a long from 100 (stop 98), break-even at 102.6, TP1 at 103, a best of 104,
    the trailing stop at 102; every input and output as a record, in log order."""
    node = Node(Executor(ExecutorConfig(exit_plan="scaled", slippage_bps=0.0)))
    t = f.T0_NS - MINUTE_NS
    spec = ev.InstrumentSpec(event_id="spec", ts_event=t, ts_init=t, symbol="BTCUSDT", tick_size=0.1, qty_step=0.001,
                             min_order_qty=0.001, min_notional_usdt=5.0)  # fmt: skip
    b0, b2 = f.bar(0), f.bar(2, close=102.0, open=101.0, high=102.6, low=100.9)
    intent = f.intent(b0, sl=0.02, qty=0.5)

    def snap(b: ev.Bar, iid: str | None = None) -> ev.FactorSnapshot:
        t = b.ts_event
        return ev.FactorSnapshot(event_id=derive_id("fs", b.event_id), ts_event=t, ts_init=t, symbol=b.symbol,
                                 bar_id=b.event_id, interval="1", close=b.close, intent_id=iid)  # fmt: skip

    def bid(s: int, price: float) -> ev.BookSnapshot:  # best bid ``price`` (best ask a tick above)
        return f.book(f.T0_NS + MINUTE_NS + s * SECOND_NS, mid=round(price + 0.05, 8), spread=0.1, levels=3)

    inputs: list[ev.Event] = [spec, b0, snap(b0, intent.event_id), intent, f.verdict(intent), bid(30, 99.9), b2,
                              snap(b2), bid(130, 103.0), bid(140, 104.0), bid(150, 101.9)]  # fmt: skip
    records: list[Record] = []
    for e in inputs:
        pos = len(records) + 1
        records.append(Record(pos, subjects.for_event(e), e, None, pos))  # type: ignore[arg-type]
        for out, _ in node.feed(e, Pos(pos, pos)):
            records.append(Record(len(records) + 1, subjects.for_event(out), out, pos, pos))  # type: ignore[arg-type]
    return records


def test_verify_holds_for_a_position_reduced_by_tp1_and_closed_by_its_trailing_stop():
    records = managed_run()
    kinds = [type(r.event).__name__ for r in records]
    assert kinds.count("PositionReduced") == 1 and kinds.count("StopMoved") == 2
    closed = next(r.event for r in records if isinstance(r.event, ev.PositionClosed))
    assert closed.exit_reason == "trailing_stop" and closed.reduced_qty == 0.25
    results = {c.name: c for c in checks.verify(records)}
    assert all(c.ok for c in results.values()), [(c.name, c.violations) for c in results.values() if not c.ok]
    assert results["accounting"].checked == 2  # the reduction and the close
    assert checks.realized_by_symbol(records)["BTCUSDT"] == (1, closed.trade_pnl_usdt)


def test_verify_catches_a_close_that_forgets_its_reduction():
    records = managed_run()
    i = next(i for i, r in enumerate(records) if isinstance(r.event, ev.PositionClosed))
    forgot = msgspec.structs.replace(records[i].event, reduced_qty=0.0, reduced_pnl_usdt=0.0, reduced_fee_usdt=0.0)
    bad = {c.name: c for c in checks.verify([*records[:i], records[i]._replace(event=forgot), *records[i + 1 :]])}
    violations = bad["accounting"].violations
    assert any("fills paid" in v for v in violations) and any("entry filled 0.5" in v for v in violations)
    assert any("differ from its PositionReduced events" in v for v in violations)


# --- reading a stream for the checks (the demo's read) ------------------------------------------------


async def test_read_for_checks_reads_the_bulk_as_ids_and_checks_as_a_whole_read_does(js_fresh):
    from nertz_common import bus

    records = managed_run()
    await bus.Publisher(js_fresh).publish_many([r.event for r in records])
    full = [r.event for r in records]
    bulk = [e for e in full if subjects.for_event(e).startswith(("md.", "sig.factor."))]
    assert 0 < len(bulk) < len(full)
    got, ids, last_seq = await checks.read_for_checks(js_fresh)
    assert last_seq == len(full)
    assert ids == [e.event_id for e in bulk]  # every id of the bulk, in log order, no payload
    assert [r.event for r in got] == [e for e in full if e not in bulk]
    assert [r.seq for r in got] == [i + 1 for i, e in enumerate(full) if e not in bulk]
    whole = [(c.name, c.checked, c.violations) for c in checks.verify(records)]
    assert [(c.name, c.checked, c.violations) for c in checks.verify(got, ids)] == whole


async def test_read_for_checks_reads_the_whole_log_when_the_two_reads_miss_a_message(js_fresh, caplog):
    from nertz_common import bus

    records = managed_run()
    await bus.Publisher(js_fresh).publish_many([r.event for r in records])
    await js_fresh.publish("sig.unknown.x", b"\x00not an event", headers={"Nats-Msg-Id": "stray"})
    got, ids, last_seq = await checks.read_for_checks(js_fresh)
    assert ids == [] and "verify.read_whole_log" in caplog.text and last_seq == len(records) + 1
    assert [r.event for r in got] == [r.event for r in records]  # the stray is undecodable: skipped


def test_unique_ids_counts_the_ids_read_alone_with_the_records():
    records = managed_run()
    bar = next(r.event for r in records if isinstance(r.event, ev.Bar))
    rest = [r for r in records if not isinstance(r.event, ev.Bar)]
    assert checks.unique_ids(rest, [bar.event_id]).ok
    twice = checks.unique_ids(rest, [bar.event_id, bar.event_id])
    assert twice.violations == [f"event id {bar.event_id} appears 2 times"]
    across = checks.unique_ids(records, [bar.event_id])  # once as a record, once as an id
    assert across.violations == [f"event id {bar.event_id} appears 2 times"]
    assert not checks.unique_ids(rest, [""]).ok  # a message without its id
