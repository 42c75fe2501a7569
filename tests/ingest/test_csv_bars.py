"""Kline CSV rows into closed bars; bad rows into rejections."""

from __future__ import annotations

import pytest

from nertz_common import events as ev
from nertz_common.testing import factories as f
from nertz_ingest.core.csv_bars import parse_lines, parse_row
from nertz_ingest.core.rejection import Rejected

FIRST_BTC_ROW = "2025-05-30 16:39:00+00:00,104217.5,104402.7,104200.0,104337.8,477.605\n"


def test_csv_row_real_first_btc_row_gives_closed_bar_at_close_time() -> None:
    bar = parse_row(FIRST_BTC_ROW, "BTCUSDT")
    assert isinstance(bar, ev.Bar)
    assert bar.open_time_ns == f.T0_NS and bar.ts_event == bar.ts_init == f.T0_NS + f.MINUTE_NS
    assert (bar.open, bar.high, bar.low, bar.close, bar.volume) == (104217.5, 104402.7, 104200.0, 104337.8, 477.605)
    assert (bar.interval, bar.turnover, bar.closed, bar.symbol) == ("1", None, True, "BTCUSDT")
    assert bar.event_id == f.bar(0).event_id  # the same id as the factory's (and a closed WS kline's)


def test_csv_row_other_offset_is_converted_to_utc() -> None:
    bar = parse_row("2025-05-30 18:39:00+02:00,1,1,1,1,0", "BTCUSDT")
    assert isinstance(bar, ev.Bar) and bar.open_time_ns == f.T0_NS


@pytest.mark.parametrize(
    "stamp",
    ["2025-05-30 16:39:00", "2025-05-30T16:39:00", "2025-05-30T16:39:00Z", "1748623140000", "1748623140",
     "1748623140000000000"],
)  # fmt: skip
def test_csv_row_naive_iso_and_epoch_timestamps_are_utc(stamp: str) -> None:
    bar = parse_row(f"{stamp},1,1,1,1,0", "BTCUSDT")
    assert isinstance(bar, ev.Bar) and bar.open_time_ns == f.T0_NS, bar


def test_csv_row_five_minute_interval_closes_five_minutes_later() -> None:
    bar = parse_row(FIRST_BTC_ROW, "BTCUSDT", interval_min=5)
    assert isinstance(bar, ev.Bar) and bar.interval == "5" and bar.ts_event == f.T0_NS + 5 * f.MINUTE_NS


@pytest.mark.parametrize(
    ("row", "reason"),
    [
        ("2025-05-30 16:39:00+00:00,1,2,1", "bad_row"),
        ("yesterday,1,2,1,1,5", "bad_timestamp"),
        ("17485233400,1,2,1,1,5", "bad_timestamp"),  # 11 digits: neither seconds nor milliseconds
        ("1960-01-01 00:00:00+00:00,1,2,1,1,5", "bad_timestamp"),
        ("2025-05-30 16:39:00+00:00,1,two,1,1,5", "not_numeric"),
        ("2025-05-30 16:39:00+00:00,1,2,1,nan,5", "nan"),
        ("2025-05-30 16:39:00+00:00,1,inf,1,1,5", "infinite"),
        ("2025-05-30 16:39:00+00:00,0,2,1,1,5", "non_positive_price"),
        ("2025-05-30 16:39:00+00:00,1,2,1,1,-5", "negative_size"),
        ("2025-05-30 16:39:00+00:00,1.5,1,2,1.5,5", "high_below_low"),
        ("2025-05-30 16:39:00+00:00,3,2,1,1.5,5", "ohlc_inconsistent"),
    ],
)
def test_csv_row_bad_row_is_rejected_with_reason(row: str, reason: str) -> None:
    rej = parse_row(row, "BTCUSDT")
    assert isinstance(rej, Rejected) and rej.reason == reason, rej
    assert rej.raw == row and rej.detail


def test_csv_lines_skip_header_and_keep_going_after_bad_row() -> None:
    lines = [
        "timestamp,open,high,low,close,volume\n",
        FIRST_BTC_ROW,
        "2025-05-30 16:40:00+00:00,104337.8,104409.1,oops,104288.5,328.242\n",
        "\n",
        "2025-05-30 16:41:00+00:00,104288.5,104492.8,104237.3,104429.2,685.86\n",
    ]
    out = list(parse_lines(lines, "BTCUSDT"))
    assert [type(o).__name__ for o in out] == ["Bar", "Rejected", "Bar"]
    assert out[1].reason == "not_numeric"  # type: ignore[union-attr]
    assert out[2].open_time_ns == f.T0_NS + 2 * f.MINUTE_NS  # type: ignore[union-attr]


def test_csv_lines_invalid_symbol_raises_value_error() -> None:
    with pytest.raises(ValueError, match="expected a symbol"):
        list(parse_lines([FIRST_BTC_ROW], "btc/usdt"))
