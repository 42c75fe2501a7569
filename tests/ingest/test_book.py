"""The order book: Bybit's snapshot/delta rules, gaps and resyncs, conflation, top-N."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from nertz_common import events as ev
from nertz_ingest.core.book import OrderBook

S = 1_000_000_000  # ns
MS = 1_000_000


def _book(top_n: int = 5, interval_ms: int = 100, depth: int = 50) -> OrderBook:
    return OrderBook("BTCUSDT", depth, top_n=top_n, min_interval_ns=interval_ms * MS)


def _snap(book: OrderBook, u: int = 100, ts: int = S, bids=None, asks=None) -> list[ev.Event]:
    bids = [(100.0, 1.0), (99.0, 2.0), (98.0, 3.0)] if bids is None else bids
    asks = [(101.0, 1.0), (102.0, 2.0), (103.0, 3.0)] if asks is None else asks
    return book.on_snapshot(bids, asks, u, 7, ts, ts + 5)


def _types(events: list[ev.Event]) -> list[str]:
    return [type(e).__name__ for e in events]


def test_book_first_snapshot_publishes_book_snapshot() -> None:
    book = _book()
    (snap,) = _snap(book)
    assert isinstance(snap, ev.BookSnapshot)
    assert snap.bids == [(100.0, 1.0), (99.0, 2.0), (98.0, 3.0)]
    assert snap.asks == [(101.0, 1.0), (102.0, 2.0), (103.0, 3.0)]
    assert (snap.update_id, snap.seq, snap.ts_event, snap.ts_init, snap.depth) == (100, 7, S, S + 5, 5)


def test_book_snapshot_replaces_previous_levels() -> None:
    book = _book()
    _snap(book)
    (snap,) = _snap(book, u=200, ts=2 * S, bids=[(50.0, 1.0)], asks=[(60.0, 4.0)])
    assert isinstance(snap, ev.BookSnapshot)
    assert snap.bids == [(50.0, 1.0)] and snap.asks == [(60.0, 4.0)]
    assert len(book) == 2 and book.last_u == 200


def test_book_delta_insert_update_delete_applies_levels() -> None:
    book = _book(interval_ms=0)
    _snap(book)
    (snap,) = book.on_delta([(99.5, 5.0), (99.0, 9.0), (98.0, 0.0)], [(101.0, 0.0)], 101, 8, S + 1, S + 2)
    assert isinstance(snap, ev.BookSnapshot)
    assert snap.bids == [(100.0, 1.0), (99.5, 5.0), (99.0, 9.0)]
    assert snap.asks == [(102.0, 2.0), (103.0, 3.0)]
    assert (book.best_bid, book.best_ask, book.last_u, book.seq) == (100.0, 102.0, 101, 8)


def test_book_delta_deleting_unknown_level_is_ignored() -> None:
    book = _book(interval_ms=0)
    _snap(book)
    book.on_delta([(42.0, 0.0)], [], 101, 8, S + 1, S + 2)
    assert len(book) == 6


def test_book_u_gap_emits_feed_gap_and_no_snapshots_until_resync() -> None:
    book = _book(interval_ms=0)
    _snap(book)
    (gap,) = book.on_delta([(99.5, 1.0)], [], 103, 8, 2 * S, 2 * S + 1)
    assert isinstance(gap, ev.FeedGap)
    assert gap.reason == "expected u=101, was 103" and gap.topic == "orderbook.50.BTCUSDT"
    assert (gap.ts_event, gap.ts_init, gap.symbol) == (2 * S, 2 * S + 1, "BTCUSDT")
    assert book.status == "gapped"
    assert book.on_delta([(99.6, 1.0)], [], 104, 9, 3 * S, 3 * S) == []
    assert book.on_delta([(99.7, 1.0)], [], 105, 10, 4 * S, 4 * S) == []
    out = _snap(book, u=500, ts=5 * S)
    assert _types(out) == ["FeedResynced", "BookSnapshot"]
    assert out[0].update_id == 500 and out[0].topic == "orderbook.50.BTCUSDT"  # type: ignore[attr-defined]
    assert (book.gaps, book.resyncs, book.status) == (1, 1, "live")


def test_book_delta_with_u_1_resets_book_like_snapshot() -> None:
    book = _book(interval_ms=1000)
    _snap(book)
    out = book.on_delta([(10.0, 1.0)], [(11.0, 1.0)], 1, 1, S + 1, S + 1)
    assert _types(out) == ["BookSnapshot"]  # a reset publishes at once, despite the interval
    assert out[0].bids == [(10.0, 1.0)] and out[0].asks == [(11.0, 1.0)]  # type: ignore[attr-defined]
    assert book.last_u == 1
    assert _types(book.on_delta([(9.0, 1.0)], [], 2, 2, S + 2, S + 2)) == []  # contiguous again


def test_book_u_1_while_gapped_resyncs() -> None:
    book = _book()
    _snap(book)
    book.on_delta([], [], 150, 8, 2 * S, 2 * S)
    out = book.on_delta([(10.0, 1.0)], [(11.0, 1.0)], 1, 1, 3 * S, 3 * S)
    assert _types(out) == ["FeedResynced", "BookSnapshot"]


def test_book_crossed_after_delta_emits_feed_gap() -> None:
    book = _book(interval_ms=0)
    _snap(book)
    (gap,) = book.on_delta([(101.5, 1.0)], [], 101, 8, 2 * S, 2 * S)
    assert isinstance(gap, ev.FeedGap)
    assert gap.reason == "crossed book: best bid 101.5 >= best ask 101.0"
    assert book.on_delta([], [(101.0, 0.0)], 102, 9, 3 * S, 3 * S) == []  # gapped: no snapshot


def test_book_locked_after_delta_emits_feed_gap() -> None:
    book = _book(interval_ms=0)
    _snap(book)
    (gap,) = book.on_delta([], [(100.0, 1.0)], 101, 8, 2 * S, 2 * S)
    assert isinstance(gap, ev.FeedGap) and gap.reason.startswith("locked book")


def test_book_crossed_snapshot_emits_feed_gap_and_no_snapshot() -> None:
    book = _book()
    out = _snap(book, bids=[(102.0, 1.0)], asks=[(101.0, 1.0)])
    assert _types(out) == ["FeedGap"]
    assert _types(_snap(book, u=300, ts=2 * S)) == ["FeedResynced", "BookSnapshot"]


def test_book_delta_before_first_snapshot_emits_one_feed_gap() -> None:
    book = _book()
    assert _types(book.on_delta([(1.0, 1.0)], [], 5, 1, S, S)) == ["FeedGap"]
    assert book.on_delta([(1.0, 1.0)], [], 6, 1, S, S) == []
    assert _types(_snap(book)) == ["FeedResynced", "BookSnapshot"]


def test_book_invalidate_live_book_emits_feed_gap_once() -> None:
    book = _book()
    _snap(book)
    assert _types(book.invalidate("rejected frame (nan)", 2 * S, 2 * S)) == ["FeedGap"]
    assert book.invalidate("again", 3 * S, 3 * S) == []


def test_book_deltas_within_interval_are_conflated() -> None:
    book = _book(interval_ms=100)
    _snap(book, ts=S)
    published = []
    for i in range(1, 31):  # one delta every 20 ms for 600 ms
        published += book.on_delta([(99.0, float(i))], [], 100 + i, 8, S + i * 20 * MS, S)
    ts = [e.ts_event for e in published]
    assert all(isinstance(e, ev.BookSnapshot) for e in published)
    assert ts == [S + k * 100 * MS for k in range(1, 7)]
    assert published[-1].bids[1] == (99.0, 30.0)  # type: ignore[attr-defined]


def test_book_top_n_limits_levels_best_first() -> None:
    book = _book(top_n=2)
    (snap,) = _snap(book)
    assert snap.bids == [(100.0, 1.0), (99.0, 2.0)]  # type: ignore[attr-defined]
    assert snap.asks == [(101.0, 1.0), (102.0, 2.0)]  # type: ignore[attr-defined]


def test_book_level1_snapshots_are_conflated_after_the_first() -> None:
    book = _book(depth=1, interval_ms=100)
    assert _types(_snap(book, u=10, ts=S)) == ["BookSnapshot"]
    assert _types(_snap(book, u=11, ts=S + 50 * MS)) == []
    assert _types(_snap(book, u=12, ts=S + 100 * MS)) == ["BookSnapshot"]


def test_book_snapshot_event_id_is_deterministic() -> None:
    a, b = _book(), _book()
    assert _snap(a)[0].event_id == _snap(b)[0].event_id
    assert _snap(_book(top_n=7))[0].event_id != _snap(_book())[0].event_id


prices = st.integers(min_value=1, max_value=60).map(lambda i: i * 0.5)
sizes = st.sampled_from([0.0, 0.0, 0.001, 1.0, 2.5])


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.booleans(), prices, sizes), max_size=80))
def test_book_random_deltas_match_reference_model(changes: list[tuple[bool, float, float]]) -> None:
    # bids live below 100, asks above: the book never crosses, so every delta applies
    book = _book(top_n=10, interval_ms=0)
    book.on_snapshot([(50.0, 1.0)], [(150.0, 1.0)], 1_000, 0, S, S)
    ref_bids, ref_asks = {50.0: 1.0}, {150.0: 1.0}
    for i, (is_bid, p, q) in enumerate(changes):
        side, price = (ref_bids, p) if is_bid else (ref_asks, 100.0 + p)
        if q == 0.0:
            side.pop(price, None)
        else:
            side[price] = q
        level = [(price, q)]
        book.on_delta(level if is_bid else [], [] if is_bid else level, 1_001 + i, 0, S + i, S)
    bids, asks = book.top(10)
    assert bids == sorted(ref_bids.items(), reverse=True)[:10]
    assert asks == sorted(ref_asks.items())[:10]
    assert book.status == "live"


def test_book_snapshot_ids_equal_derive_id() -> None:
    from nertz_common.ids import derive_id

    for symbol, depth, top_n in (("BTCUSDT", 200, 50), ("1000PEPEUSDT", 1, 1), ("SOLUSDT", 50, 7)):
        book = OrderBook(symbol, depth, top_n=top_n, min_interval_ns=0)
        for u in (1, 2, 99, 10**12 + 7, 2**63 - 1):
            (snap,) = book.on_snapshot([(1.0, 1.0)], [(2.0, 1.0)], u, 0, S, S)
            assert snap.event_id == derive_id("BookSnapshot", symbol, depth, u, top_n)


def test_book_snapshot_repeated_price_keeps_the_last_and_ignores_size_0() -> None:
    book = _book()
    (snap,) = _snap(book, bids=[(99.0, 1.0), (100.0, 0.0), (99.0, 4.0)], asks=[(101.0, 2.0)])
    assert snap.bids == [(99.0, 4.0)] and snap.asks == [(101.0, 2.0)]  # type: ignore[attr-defined]
    assert len(book) == 2


def test_book_delta_levels_apply_in_frame_order() -> None:
    book = _book(interval_ms=0)
    _snap(book)
    (snap,) = book.on_delta([(99.5, 1.0), (99.5, 0.0), (97.0, 2.0), (97.0, 3.0)], [], 101, 8, S + 1, S + 1)
    assert snap.bids == [(100.0, 1.0), (99.0, 2.0), (98.0, 3.0), (97.0, 3.0)]  # type: ignore[attr-defined]


def test_book_published_levels_are_not_mutated_by_later_deltas() -> None:
    book = _book(interval_ms=0)
    (first,) = _snap(book)
    book.on_delta([(100.0, 9.0), (98.0, 0.0)], [(101.0, 0.0)], 101, 8, S + 1, S + 1)
    assert first.bids == [(100.0, 1.0), (99.0, 2.0), (98.0, 3.0)]  # type: ignore[attr-defined]
    assert first.asks == [(101.0, 1.0), (102.0, 2.0), (103.0, 3.0)]  # type: ignore[attr-defined]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.integers(min_value=1, max_value=40), sizes), max_size=60))
def test_book_random_deltas_match_reference_until_crossed(changes: list[tuple[bool, int, float]]) -> None:
    # prices on both sides may meet: the book must stay equal to a plain dict model after every delta,
    # and report a gap exactly when the model's best bid >= best ask
    book = _book(top_n=5, interval_ms=0)
    ref = ({10.0: 1.0, 19.0: 1.0}, {21.0: 1.0, 30.0: 1.0})
    book.on_snapshot(list(ref[0].items()), list(ref[1].items()), 1_000, 0, S, S)
    for i, (is_bid, tick, q) in enumerate(changes):
        side = ref[0] if is_bid else ref[1]
        p = tick * 1.0
        if q == 0.0:
            side.pop(p, None)
        else:
            side[p] = q
        level = [(p, q)]
        out = book.on_delta(level if is_bid else [], [] if is_bid else level, 1_001 + i, 0, S + i, S)
        crossed = bool(ref[0] and ref[1] and max(ref[0]) >= min(ref[1]))
        if crossed:
            assert [type(e).__name__ for e in out] == ["FeedGap"] and book.status == "gapped"
            return
        bids, asks = book.top(5)
        assert bids == sorted(ref[0].items(), reverse=True)[:5]
        assert asks == sorted(ref[1].items())[:5]
        assert (book.best_bid, book.best_ask) == (max(ref[0], default=None), min(ref[1], default=None))
        assert len(book) == len(ref[0]) + len(ref[1])
        assert [type(e).__name__ for e in out] == ["BookSnapshot"]
