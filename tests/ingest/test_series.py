"""The bar series guard: forward in time, one bar per interval, identical repeats dropped, from the log's tail."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from nertz_common import events as ev
from nertz_ingest.core.bars import make_bar
from nertz_ingest.core.csv_bars import parse_lines
from nertz_ingest.core.rejection import Rejected
from nertz_ingest.core.series import RECENT, BarGuard

MIN = 60_000_000_000
T0 = 1_748_623_140_000_000_000  # 2025-05-30 16:39 UTC
DUR = {"1": MIN, "5": 5 * MIN}


def _bar(i: int, close: float = 100.0, *, interval: str = "1", symbol: str = "BTCUSDT", volume: float = 10.0,
         closed: bool = True, update_s: int = 30) -> ev.Bar:  # fmt: skip
    open_ns = T0 + i * DUR[interval]
    ts = open_ns + DUR[interval] if closed else open_ns + update_s * 1_000_000_000
    return make_bar(symbol, interval, open_ns, ts_event=ts, ts_init=ts, open=close, high=close + 1, low=close - 1,
                    close=close, volume=volume, closed=closed)  # fmt: skip


def _reason(verdict: object) -> str:
    return verdict.reason if isinstance(verdict, Rejected) else str(verdict)


def test_guard_bars_in_time_order_are_new_and_each_series_is_its_own() -> None:
    g = BarGuard()
    verdicts = [g.check(b) for b in (_bar(0), _bar(1), _bar(0, symbol="ETHUSDT"), _bar(0, interval="5"), _bar(2))]
    assert verdicts == ["new"] * 5


def test_guard_bar_back_in_time_is_out_of_order_with_what_was_expected() -> None:
    g = BarGuard()
    for i in range(RECENT + 5):
        assert g.check(_bar(i)) == "new"
    old = _bar(2, close=99.0)  # older than every bar the guard remembers
    r = g.check(old)
    assert isinstance(r, Rejected) and r.reason == "out_of_order"
    assert r.detail == (
        "expected a BTCUSDT 1 bar opening after 2025-05-30 18:51:00 (the last bar of its series), "
        "was opening at 2025-05-30 16:41:00"
    )
    assert ev.decode(r.raw.encode()) == old and r.topic == "kline.1.BTCUSDT" and r.ts_ns == old.ts_init
    assert g.check(_bar(RECENT + 5)) == "new"  # a rejection changes nothing


def test_guard_second_different_bar_for_one_interval_is_conflicting() -> None:
    g = BarGuard()
    assert g.check(_bar(0)) == "new" and g.check(_bar(1)) == "new"
    for other in (_bar(1, close=101.0), _bar(1, volume=11.0), _bar(0, close=99.5)):
        r = g.check(other)
        assert isinstance(r, Rejected) and r.reason == "conflicting_bar", other
    r = g.check(_bar(1, volume=11.0))
    assert isinstance(r, Rejected)
    assert r.detail == (
        "expected the BTCUSDT 1 bar opening at 2025-05-30 16:40:00 as first accepted "
        "(open/high/low/close/volume 100/101/99/100/10), was 100/101/99/100/11"
    )


def test_guard_identical_repeat_and_late_update_are_known_and_not_rejected() -> None:
    g = BarGuard()
    assert g.check(_bar(0)) == "new" and g.check(_bar(1)) == "new"
    # the same bar from another source (other ts_init, a turnover), a repeat of an earlier bar, a late update
    again = make_bar("BTCUSDT", "1", T0 + MIN, ts_event=T0 + 2 * MIN, ts_init=T0 + 3 * MIN, open=100.0,
                     high=101.0, low=99.0, close=100.0, volume=10.0, turnover=1000.0)  # fmt: skip
    assert [g.check(b) for b in (again, _bar(0), _bar(1, close=100.5, closed=False))] == ["known"] * 3
    assert g.known == 3
    assert g.check(_bar(2, closed=False)) == "new"  # the bar still open
    r = g.check(_bar(-1, closed=False))
    assert isinstance(r, Rejected) and r.reason == "out_of_order"


def test_guard_starts_from_the_logs_last_bar_of_each_symbol() -> None:
    logged = {"BTCUSDT": _bar(10), "ETHUSDT": _bar(4, symbol="ETHUSDT", closed=False)}
    g = BarGuard(logged)
    assert _reason(g.check(_bar(9))) == "out_of_order"
    assert _reason(g.check(_bar(10))) == "known"
    assert _reason(g.check(_bar(10, close=1.0))) == "conflicting_bar"
    # another interval of the symbol must not close before the log's last bar
    assert _reason(g.check(_bar(1, interval="5"))) == "out_of_order"  # closes at bar 10's open
    assert _reason(g.check(_bar(2, interval="5"))) == "new"  # closes with bar 10
    # the log ends with a still-open bar: older bars are out of order, the bar itself may close
    assert _reason(g.check(_bar(3, symbol="ETHUSDT"))) == "out_of_order"
    assert _reason(g.check(_bar(4, symbol="ETHUSDT"))) == "new"
    assert _reason(g.check(_bar(0, symbol="SOLUSDT"))) == "new"  # nothing logged


def test_parse_lines_then_guard_rejects_rows_back_in_time_and_conflicting() -> None:
    lines = ["timestamp,open,high,low,close,volume", "2025-05-30 16:39:00+00:00,100,101,99,100,10",
             "2025-05-30 16:40:00+00:00,100,101,99,100,10", "2025-05-30 16:39:00+00:00,100,101,99,100,10",
             "2025-05-30 16:40:00+00:00,100,102,99,100,10", "2025-05-30 16:38:00+00:00,100,101,99,100,10",
             "2025-05-30 16:41:00+00:00,100,101,99,100,10"]  # fmt: skip
    g = BarGuard()
    verdicts = [_reason(g.check(b)) for b in parse_lines(lines, "BTCUSDT") if isinstance(b, ev.Bar)]
    assert verdicts == ["new", "new", "known", "conflicting_bar", "out_of_order", "new"]


@given(st.lists(st.tuples(st.integers(0, 40), st.sampled_from([100.0, 101.0]), st.booleans()), max_size=80))
def test_guard_accepted_closed_bars_are_strictly_forward_and_unique(seq: list[tuple[int, float, bool]]) -> None:
    g = BarGuard()
    accepted: list[ev.Bar] = []
    first: dict[int, float] = {}
    for i, close, closed in seq:
        b = _bar(i, close, closed=closed)
        v = g.check(b)
        if v == "new" and closed:
            accepted.append(b)
            first[i] = close
        elif isinstance(v, Rejected) and v.reason == "conflicting_bar":
            assert i in first and first[i] != close
    opens = [b.open_time_ns for b in accepted]
    assert opens == sorted(set(opens))  # forward in time, one bar per interval
    expected_last = max(first) if first else None
    assert (opens[-1] - T0) // MIN == expected_last if opens else expected_last is None
