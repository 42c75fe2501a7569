"""Filters: each vetoes with its named reason, and passes when its data is absent."""

from __future__ import annotations

import pytest

from nertz_signal.core import filters

S = 1_000_000_000


def test_spread_wider_than_limit_vetoes_with_reason():
    # bid 99.8, ask 100.2: spread 0.4 / 100 = 0.4 % > 0.2 %
    r = filters.spread(99.8, 100.2)
    assert r is not None and filters.veto_name(r) == "spread_too_wide" and "0.4000%" in r


def test_spread_tight_or_no_book_passes():
    assert filters.spread(99.95, 100.05) is None
    assert filters.spread(None, None) is None


def test_funding_beyond_limit_vetoes():
    r = filters.funding(0.003, 8)
    assert r is not None and filters.veto_name(r) == "funding_extreme"
    assert filters.funding(-0.003, 8) is not None


def test_funding_normalised_by_interval_vetoes_four_hour_rate():
    # 0.15 % per 4 h = 0.30 % per 8 h > 0.25 %
    assert filters.funding(0.0015, 4) is not None
    assert filters.funding(0.0015, 8) is None


def test_funding_unknown_passes():
    assert filters.funding(None, None) is None
    assert filters.funding(0.001, None) is None


def test_stale_open_gap_vetoes_until_resynced():
    h = filters.FeedHealth()
    h.on_gap("orderbook.50.BTCUSDT", 5)
    assert filters.veto_name(filters.stale(h, None, 10) or "") == "stale_feed_gap"
    h.on_resynced("orderbook.50.BTCUSDT")
    assert filters.stale(h, None, 10) is None


def test_stale_resync_without_topic_closes_every_gap():
    h = filters.FeedHealth()
    h.on_gap("orderbook.50.BTCUSDT", 5)
    h.on_gap("publicTrade.BTCUSDT", 6)
    h.on_resynced("")
    assert filters.stale(h, None, 10) is None


def test_stale_feed_stale_vetoes_until_next_update_of_that_kind():
    h = filters.FeedHealth()
    h.on_stale("orderbook.50.BTCUSDT")
    h.on_data("trade")
    assert filters.veto_name(filters.stale(h, None, 10) or "") == "stale_feed"
    h.on_data("book")
    assert filters.stale(h, None, 10) is None


def test_stale_old_book_vetoes():
    r = filters.stale(filters.FeedHealth(), book_ts_ns=0, now_ns=31 * S, max_book_age_s=30)
    assert r is not None and filters.veto_name(r) == "stale_book" and "31.0s" in r
    assert filters.stale(filters.FeedHealth(), book_ts_ns=0, now_ns=30 * S, max_book_age_s=30) is None


def test_btc_drop_vetoes_alt_longs_only():
    r = filters.btc_drop("long", "ETHUSDT", "BTCUSDT", -0.025)
    assert r is not None and filters.veto_name(r) == "btc_drop"
    assert filters.btc_drop("short", "ETHUSDT", "BTCUSDT", -0.025) is None
    assert filters.btc_drop("long", "BTCUSDT", "BTCUSDT", -0.025) is None
    assert filters.btc_drop("long", "ETHUSDT", "BTCUSDT", -0.019) is None
    assert filters.btc_drop("long", "ETHUSDT", "BTCUSDT", None) is None


def test_price_window_change_over_last_four_hours():
    w = filters.PriceWindow(4 * 3600 * S)
    w.add(0, 200.0)  # older than 4 h at the end: dropped
    w.add(3600 * S, 100.0)
    w.add(5 * 3600 * S, 97.0)
    assert w.change(5 * 3600 * S) == pytest.approx(-0.03)


def test_price_window_single_point_is_none():
    w = filters.PriceWindow(S)
    w.add(0, 1.0)
    assert w.change(0) is None


def test_bar_gap_more_than_five_intervals_resets():
    m = 60 * S
    assert not filters.bar_gap(None, 0, m)
    assert not filters.bar_gap(0, 5 * m, m)
    assert filters.bar_gap(0, 6 * m, m)
    assert filters.bar_gap(10 * m, 10 * m, m)  # repeated open time
    assert filters.bar_gap(10 * m, 9 * m, m)  # time went backwards
