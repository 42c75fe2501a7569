"""The short chaos suite (``make chaos`` runs the long one): faults injected into the services as
processes on their own NATS and Postgres, compared with an uninterrupted run of the same input, and
SIGKILLs of the live ingest against the fake Bybit's scripted market, compared with an uninterrupted
live run of the script.

Also: both comparisons themselves, on logs changed by hand, so a zero below means something.
"""

from __future__ import annotations

import msgspec
import pytest

from nertz_cli import chaos

pytestmark = [pytest.mark.e2e, pytest.mark.integration, pytest.mark.timeout(900)]


def _log(*ids: str, key: str = "exec.BTCUSDT") -> list[tuple[str, str, bytes]]:
    return [(key, i, msgspec.json.encode({"id": i})) for i in ids]


@pytest.fixture
def base() -> chaos.Snapshot:
    return chaos.Snapshot(_log("a", "b", "c") + _log("x", "y", key="exec.ETHUSDT"), {"orders": 3})


def test_compare_counts_nothing_for_the_same_log_even_with_symbols_interleaved_otherwise(base):
    run = chaos.Snapshot(_log("x") + _log("a", "b") + _log("y", key="exec.ETHUSDT") + _log("c"), {"orders": 3})
    run.log[0] = ("exec.ETHUSDT", *run.log[0][1:])
    assert chaos.compare(base, run, chaos.Outcome("same")).ok


@pytest.mark.parametrize(
    ("change", "field", "n"),
    [
        (lambda log, rows: log.pop(1), "lost", 1),
        (lambda log, rows: log.append(log[0]), "duplicated", 1),
        (lambda log, rows: log.append(("exec.BTCUSDT", "z", b"{}")), "divergent", 1),
        (lambda log, rows: log.__setitem__(0, ("exec.BTCUSDT", "a", b"{}")), "divergent", 1),
        (lambda log, rows: log.insert(0, log.pop(2)), "divergent", 3),  # c, a, b against a, b, c
        (lambda log, rows: rows.__setitem__("orders", 2), "lost", 1),
        (lambda log, rows: rows.__setitem__("orders", 5), "duplicated", 2),
    ],
    ids=["missing", "twice", "extra", "other-payload", "reordered", "row-missing", "rows-twice"],
)
def test_compare_counts_each_kind_of_damage(base, change, field, n):
    run = chaos.Snapshot(list(base.log), dict(base.rows))
    change(run.log, run.rows)
    outcome = chaos.compare(base, run, chaos.Outcome("damaged"))
    assert getattr(outcome, field) == n and not outcome.ok


def test_short_chaos_suite_loses_duplicates_and_changes_nothing(tmp_path):
    lab = chaos.open_lab(tmp_path / "chaos", rows=3000, say=print)
    try:
        base, outcomes = chaos.run_suite(lab, chaos.short_suite(seed=7), timeout_s=300)
    finally:
        lab.stop()
    assert len(base.log) > 10_000 and any(k.startswith("exec.") for k, _, _ in base.log)
    assert [o.fault for o in outcomes] == ["short", "live-sigkill×2"]
    for o in outcomes:
        assert o.ok, f"{o.fault}: {o}"
    short, live = outcomes
    killed = next(n for n in short.notes if n.startswith("killed"))
    assert all(s in killed for s in ("signal", "market-ingest", "executor")), killed
    assert "killed market-ingest ×2" in live.notes
    filled = int(live.notes[0].split("; ")[1].split()[0].replace(",", ""))  # "bars: N closed, ...; F the socket missed"
    assert filled > 0, live.notes[0]  # the restarts' REST backfill filled what the socket missed
    assert "nertz replay of the run's own log: identical" in live.notes


# --- the live comparison, on logs changed by hand ------------------------------------------------------

MIN_NS = 60_000_000_000
T0 = 1_748_750_400_000 * 1_000_000  # a minute boundary, UNIX ns


def _live_log(
    minutes: int = 6, *, missing: tuple[int, ...] = (), from_rest: tuple[int, ...] = (), ts_init: int = 0
) -> chaos.LiveLog:
    """Per minute a book, the closed bar and its factor snapshot: the baseline's shape. ``missing``: minutes
    whose book the run never received; ``from_rest``: minutes whose bar came from REST (warmup, its
    snapshot's book factor from an older book); ``ts_init``: added to the WebSocket events' receive time."""
    from nertz_common import events as ev
    from nertz_common.ids import derive_id
    from nertz_common.node.log import Record
    from nertz_ingest.core.bars import make_bar

    records: list[Record] = []

    def add(subject: str, e: ev.AnyEvent) -> None:
        records.append(Record(len(records) + 1, subject, e, None, len(records) + 1, ev.encode(e)))

    for m in range(minutes):
        open_ns = T0 + m * MIN_NS
        if m not in missing:
            at = open_ns + 10**9
            book = ev.BookSnapshot(event_id=f"book-{m}", ts_event=at, ts_init=at + 7 + ts_init, symbol="BTCUSDT",
                                   bids=[(100.0 + m, 1.0)], asks=[(100.1 + m, 1.0)], depth=50,
                                   update_id=1000 + m)  # fmt: skip
            add("md.book.bybit.linear.BTCUSDT", book)
        rest = m in from_rest
        bar = make_bar("BTCUSDT", "1", open_ns, ts_event=open_ns + MIN_NS,
                       ts_init=open_ns + MIN_NS + (0 if rest else 5 + ts_init), open=100.0 + m, high=101.0 + m,
                       low=99.0 + m, close=100.5 + m, volume=3.0)  # fmt: skip
        if rest:
            bar = msgspec.structs.replace(bar, warmup=True)
        add("md.bar.bybit.linear.BTCUSDT", bar)
        snap = ev.FactorSnapshot(event_id=derive_id("FactorSnapshot", bar.event_id), ts_event=bar.ts_event,
                                 ts_init=bar.ts_event, symbol="BTCUSDT", bar_id=bar.event_id, interval="1",
                                 close=bar.close, egm=0.1 * m, ild=-0.5 if rest else 0.5, rol=None, pio=0.0, ogm=None,
                                 combined=1.0, used=["egm", "ild", "pio"], ema_fast=100.0, ema_mid=100.0,
                                 ema_slow=100.0, trend="flat", atr=1.0, regime="normal", intent_id=None, veto=None,
                                 stop_atr=None)  # fmt: skip
        add("sig.factor.bybit.linear.BTCUSDT", snap)
    return chaos.LiveLog(records, chaos.projected(records))


def _window(first: int, last: int) -> tuple[int, int]:
    """The exchange-time window (ms) of an outage from minute ``first`` to ``last``."""
    return ((T0 + first * MIN_NS) // 10**6, (T0 + (last + 1) * MIN_NS) // 10**6)


def test_live_compare_allows_what_a_restart_legitimately_changes():
    base = _live_log()
    assert chaos.compare_live(base, _live_log(ts_init=12_345), [], chaos.Outcome("receive times")).ok
    restarted = _live_log(missing=(2, 3), from_rest=(2, 3))
    outcome = chaos.compare_live(base, restarted, [_window(2, 3)], chaos.Outcome("restart"))
    assert outcome.ok, outcome
    assert outcome.notes[0].startswith("bars: 6 closed, each once and in order; 2 the socket missed")
    assert "BookSnapshot 2" in outcome.notes[0] and "1 holes" in outcome.notes[0]


def _drop_bar(log: chaos.LiveLog) -> None:
    log.records[:] = [r for r in log.records if not (r.subject.startswith("md.bar") and r.seq == 8)]


def _swap_bars(log: chaos.LiveLog) -> None:
    i, j = 1, 4  # the bars of minutes 0 and 1
    log.records[i], log.records[j] = log.records[j], log.records[i]


def _other_book(log: chaos.LiveLog) -> None:
    r = log.records[0]
    log.records[0] = r._replace(event=msgspec.structs.replace(r.event, bids=[(99.0, 1.0)]))


def _other_snapshot(log: chaos.LiveLog) -> None:
    r = log.records[2]
    e = msgspec.structs.replace(r.event, egm=0.9)
    log.records[2] = r._replace(event=e, raw=msgspec.json.encode(e))


@pytest.mark.parametrize(
    ("run", "windows", "field"),
    [
        (lambda: _live_log(missing=(2, 3), from_rest=(2, 3)), [], "lost"),  # the books missed outside an outage
        (lambda: _live_log(missing=(2, 3), from_rest=(2, 3)), [_window(3, 3)], "lost"),  # partly outside
        (lambda: _live_log(from_rest=(2,)), [], "divergent"),  # the snapshot differs where no bar was filled
        (_live_log, [], None),
    ],
    ids=["hole-outside", "hole-partly-outside", "filled-claimed", "same"],
)
def test_live_compare_counts_missed_data_outside_an_outage(run, windows, field):
    outcome = chaos.compare_live(_live_log(), run(), windows, chaos.Outcome("damaged"))
    if field is None:
        assert outcome.ok
    else:
        assert getattr(outcome, field) >= 1, outcome


@pytest.mark.parametrize(
    ("change", "field"),
    [(_drop_bar, "lost"), (_swap_bars, "divergent"), (_other_book, "divergent"), (_other_snapshot, "divergent")],
    ids=["bar-missing", "bars-reordered", "other-book", "other-snapshot"],
)
def test_live_compare_counts_each_kind_of_damage(change, field):
    run = _live_log()
    change(run)
    outcome = chaos.compare_live(_live_log(), run, [], chaos.Outcome("damaged"))
    assert getattr(outcome, field) >= 1 and not outcome.ok, outcome


def test_live_compare_refuses_a_websocket_bar_flagged_warmup():
    run = _live_log()
    r = run.records[1]
    run.records[1] = r._replace(event=msgspec.structs.replace(r.event, warmup=True))  # ts_init is a receive time
    outcome = chaos.compare_live(_live_log(), run, [], chaos.Outcome("flagged"))
    assert outcome.divergent == 1
