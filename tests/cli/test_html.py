"""The HTML reports: full documents, plotly inlined once and nothing external, every trade, escaped text."""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import pytest
from plotly.offline import get_plotlyjs

from nertz_cli import config, report, tools
from nertz_cli import html as html_report
from nertz_common import events as ev
from nertz_common import subjects
from nertz_common.ids import derive_id
from nertz_common.node.component import Pos
from nertz_common.node.log import Record
from nertz_common.node.log_runner import ReplayResult
from nertz_common.testing import factories as f

DATA = Path(__file__).resolve().parents[2] / "data" / "bybit_kline_1m" / "BTCUSDT_1m.csv.xz"
RECORDS = 20_000  # about 14 days of 1m bars: enough for trades, fast enough for a unit test
HOSTILE = "<img src=x onerror=alert(1)>"


# --- helpers ----------------------------------------------------------------------------------------


def _plotly_marks() -> tuple[str, str]:
    js = get_plotlyjs()
    mid = len(js) // 2
    return js[:200], js[mid : mid + 200]  # the licence header, and a piece of the library's middle


def _external_sources(page: str) -> list[str]:
    return re.findall(r"<(?:script|link|img|iframe)\b[^>]*\b(?:src|href)\s*=\s*[\"']?(?:https?:)?//[^>]*>", page)


def _is_full_document(page: str) -> bool:
    return (
        page.lstrip().startswith("<!DOCTYPE html>")
        and page.rstrip().endswith("</html>")
        and page.count("<head>") == 1
        and page.count("<body>") == 1
        and page.count("</body>") == 1
    )


def _closed(intent: ev.IntentProposed, minutes: int, reason: ev.ExitReason, pnl_usdt: float) -> ev.PositionClosed:
    ts = intent.ts_event + minutes * f.MINUTE_NS
    exit_price = intent.entry_price * (1 + pnl_usdt / 10_000)
    return ev.PositionClosed(
        event_id=derive_id("PositionClosed", intent.event_id),
        ts_event=ts,
        ts_init=ts,
        symbol=intent.symbol,
        correlation_id=intent.correlation_id,
        causation_id=intent.event_id,
        position_id=derive_id("position", intent.event_id),
        side=intent.side,
        qty=intent.qty,
        entry_price=intent.entry_price,
        exit_price=exit_price,
        exit_reason=reason,
        realized_pnl_usdt=pnl_usdt,
        fee_usdt=0.1,
        return_fraction=pnl_usdt / intent.notional_usdt,
        holding_ns=minutes * f.MINUTE_NS,
    )


def _recorded(events: Sequence[ev.AnyEvent]) -> list[Record]:
    return [Record(i + 1, subjects.for_event(e), e, 0, 0) for i, e in enumerate(events)]


def _derived(events: Sequence[ev.Event]) -> list[tuple[ev.Event, Pos]]:
    return [(e, Pos(i + 1, 0)) for i, e in enumerate(events)]


def _summary_by_hand() -> dict[str, Any]:
    trade = {
        "symbol": HOSTILE, "side": "long", "opened": "2025-06-01T00:00:00Z", "closed": "2025-06-01T02:00:00Z",
        "entry_price": 100.0, "exit_price": 103.0, "qty": 1.0, "exit_reason": "<script>alert('x')</script>",
        "pnl_usdt": 2.9, "fees_usdt": 0.1, "return": 0.03, "r_multiple": 2.9, "holding_h": 2.0, "combined": 8.1,
    }  # fmt: skip
    sym = {
        "intents": 1, "approved": 1, "rejected": 0, "suppressed": 0, "risk_denied": 0, "expired": 0, "trades": 1,
        "wins": 1, "win_rate": 1.0, "pnl_usdt": 2.9, "gross_pnl_usdt": 3.0, "fees_usdt": 0.1,
        "max_drawdown_usdt": 0.0, "avg_r_multiple": 2.9, "buy_and_hold_return": 0.01,
    }  # fmt: skip
    return {
        "total": {"start_equity_usdt": 100.0, "end_equity_usdt": 102.9, "return": 0.029, "pnl_usdt": 2.9},
        "symbols": {HOSTILE: sym},
        "equity": [[1_748_743_200_000_000_000, 102.9]],
        "trades": [trade],
        "factors": {"<b>egm</b>": {"mean": 1.5, "n": 1}},
        "run": {"config_hash": "<i>hash</i>", "settings": {"signal": {"<u>key</u>": "a & b"}}},
    }


# --- fixtures ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def summary() -> dict[str, Any]:
    """A real backtest's summary, assembled as ``nertz backtest`` does, over the first bundled BTCUSDT bars."""
    inputs = tools.load_inputs([DATA])
    records = inputs.records[:RECORDS]
    settings = config.load()
    run = tools.backtest(records, settings)
    out = report.of_run(run, inputs.files)
    assert out["trades"], "expected the bundled data to give trades in the first 20,000 records"
    return out


@pytest.fixture(scope="module")
def page(summary: dict[str, Any]) -> str:
    return html_report.backtest_page(summary)


class Scenario(NamedTuple):
    cf: tools.Counterfactual
    changed_id: str  # recorded: approved, closed at take-profit; derived: rejected
    unchanged_id: str  # approved and closed at the stop-loss on both sides
    new_id: str  # only derived: approved, closed by the stale exit


@pytest.fixture(scope="module")
def scenario() -> Scenario:
    """Three intents: one judged otherwise, one unchanged, one only on the derived side."""
    i1 = f.intent(f.bar(10), "long")
    i2 = f.intent(f.bar(200), "short")
    i3 = f.intent(f.bar(400), "long")
    v1, v2, v3 = f.verdict(i1), f.verdict(i2), f.verdict(i3)
    pc1 = _closed(i1, 60, "take_profit", 120.0)
    pc2 = _closed(i2, 90, "stop_loss", -50.0)
    pc3 = _closed(i3, 30, "stale_exit", 30.0)
    result = ReplayResult(
        compared={"signal": 2, "llm-validator": 2, "executor": 2},
        identical=3,
        inputs=500,
        recorded={
            "signal": _recorded([i1, i2]),
            "llm-validator": _recorded([v1, v2]),
            "executor": _recorded([pc1, pc2]),
        },
        derived={
            "signal": _derived([i1, i2, i3]),
            "llm-validator": _derived([f.verdict(i1, "reject"), v2, v3]),
            "executor": _derived([pc2, pc3]),
        },
    )
    return Scenario(tools.counterfactual(result), i1.correlation_id, i2.correlation_id, i3.correlation_id)


# --- backtest_page ----------------------------------------------------------------------------------


def test_backtest_page_real_run_full_html_document(page: str) -> None:
    assert _is_full_document(page)
    assert "<title>Nertz backtest</title>" in page


def test_backtest_page_real_run_plotly_inlined_exactly_once(page: str) -> None:
    head, middle = _plotly_marks()
    assert page.count(head) == 1
    assert page.count(middle) == 1
    # equity, drawdown, factors, fees: every figure is drawn, all by the one inlined library
    assert page.count("Plotly.newPlot(") == 4
    assert page.index(head) < page.index("Plotly.newPlot(")


def test_backtest_page_real_run_no_external_source(page: str) -> None:
    assert _external_sources(page) == []
    assert "cdn.plot.ly/plotly" not in page


def test_backtest_page_real_run_one_row_per_trade(page: str, summary: dict[str, Any]) -> None:
    trades = summary["trades"]
    assert page.count('<tr class="trade">') == len(trades)
    for t in trades:
        assert f"<td>{t['closed']}</td>" in page
        assert f"{t['pnl_usdt']:+,.2f}" in page


def test_backtest_page_real_run_header_and_key_figures_shown(page: str, summary: dict[str, Any]) -> None:
    run, total = summary["run"], summary["total"]
    assert f"<code>{run['config_hash']}</code>" in page
    assert f"period {run['first']} → {run['last']}" in page
    assert f"bars {run['bars']:,}" in page
    assert f"{run['bars_per_s']:,.0f} bars/s" in page
    for text in (
        f"{total['return']:+.2%}",
        f"{total['pnl_usdt']:+,.2f} USDT",
        f"{total['max_drawdown']:.2%}",
        f"{total['win_rate']:.1%}",
        f"{total['fees_usdt']:,.2f} USDT",
        f"{total['fees_share_of_gross']:.0%} of gross P&amp;L",
        f"{total['avg_r_multiple']:+.2f}",
        f"{total['buy_and_hold_return']:+.2%}",
    ):
        assert text in page, text
    assert page.count('<tr class="symbol">') == len(summary["symbols"])


def test_backtest_page_real_run_every_setting_listed(page: str, summary: dict[str, Any]) -> None:
    settings = summary["run"]["settings"]
    assert f"<td>signal.entry_threshold</td><td>{settings['signal']['entry_threshold']}</td>" in page
    assert f"<td>executor.taker_fee</td><td>{settings['executor']['taker_fee']}</td>" in page


def test_backtest_page_strings_with_markup_escaped() -> None:
    page = html_report.backtest_page(_summary_by_hand(), title="<b>mine</b>")
    for raw in (HOSTILE, "<script>alert('x')</script>", "<i>hash</i>", "<u>key</u>", "a & b"):
        assert raw not in page, raw
        assert html.escape(raw) in page, raw
    # in a figure only (plotly.js reads labels as pseudo-HTML): escaped, then JSON-encoded by plotly
    assert "<b>egm" not in page
    assert "&lt;b&gt;egm&lt;" in page
    assert "<title>&lt;b&gt;mine&lt;/b&gt;</title>" in page
    assert page.count('<tr class="trade">') == 1


def test_backtest_page_no_trades_renders_without_figures() -> None:
    page = html_report.backtest_page(report.summarize([], equity_usdt=10_000.0))
    assert _is_full_document(page)
    assert '<p class="empty">no trades</p>' in page
    assert '<tr class="trade">' not in page
    assert "Plotly.newPlot(" not in page
    assert "+0.00%" in page  # the return of an idle run


def test_backtest_page_no_trades_with_buy_and_hold_draws_it_once() -> None:
    summary = report.summarize([], equity_usdt=10_000.0)
    summary["buy_and_hold"] = [[f.T0_NS, 10_000.0], [f.T0_NS + 3_600_000_000_000, 10_100.0]]
    page = html_report.backtest_page(summary)
    head, _ = _plotly_marks()
    assert page.count(head) == 1
    assert page.count("Plotly.newPlot(") == 1
    assert "no trades: the equity stayed at the starting equity" in page


def test_backtest_page_missing_sections_render() -> None:
    page = html_report.backtest_page({})
    assert _is_full_document(page)
    assert '<p class="empty">no settings recorded</p>' in page
    assert '<p class="empty">no symbols</p>' in page


def test_backtest_page_malformed_equity_point_raises_value_error() -> None:
    with pytest.raises(ValueError, match=r"expected summary\['equity'\] as \[\[ts_ns, equity_usdt\], \.\.\.\], was"):
        html_report.backtest_page({"equity": [[f.T0_NS, "lots"]]})


# --- pure helpers -----------------------------------------------------------------------------------


def test_drawdown_known_curve_fractions_below_running_peak() -> None:
    assert html_report.drawdown([110.0, 99.0, 121.0, 60.5], 100.0) == pytest.approx([0.0, 0.1, 0.0, 0.5])


def test_drawdown_loss_from_start_measured_from_start_equity() -> None:
    assert html_report.drawdown([90.0], 100.0) == pytest.approx([0.1])


def test_drawdown_real_run_max_equals_report(summary: dict[str, Any]) -> None:
    dd = html_report.drawdown([v for _, v in summary["equity"]], summary["total"]["start_equity_usdt"])
    assert max(dd) == pytest.approx(summary["total"]["max_drawdown"])


def test_utc_ns_naive_utc_datetime() -> None:
    t = html_report.utc(1_748_623_140_123_456_789)
    assert t.tzinfo is None
    assert t.isoformat() == "2025-05-30T16:39:00.123456"


def test_cumulative_pnl_out_of_order_closes_summed_in_event_time() -> None:
    i1, i2 = f.intent(f.bar(10)), f.intent(f.bar(20))
    late, early = _closed(i1, 100, "take_profit", 5.0), _closed(i2, 10, "stop_loss", -2.0)
    got = html_report.cumulative_pnl([late, i1, early, f.verdict(i2)])
    assert got == [(early.ts_event, -2.0), (late.ts_event, 3.0)]


# --- counterfactual_page ----------------------------------------------------------------------------


def test_counterfactual_page_changed_decisions_one_row_each(scenario: Scenario) -> None:
    page = html_report.counterfactual_page(scenario.cf)
    rows = re.findall(r'<tr class="changed">(.*?)</tr>', page)
    assert len(rows) == 2
    cells = [re.findall(r"<td[^>]*>(.*?)</td>", row) for row in rows]
    changed, new = cells
    assert scenario.changed_id in changed[1]
    assert changed[2:] == ["BTCUSDT", "long", "approve", "closed: take_profit", "+120.00", "reject", "-", "-"]
    assert scenario.new_id in new[1]
    assert new[2:] == ["BTCUSDT", "long", "(none)", "(none)", "-", "approve", "closed: stale_exit", "+30.00"]
    assert scenario.unchanged_id not in "".join(rows)


def test_counterfactual_page_both_pnl_figures_shown(scenario: Scenario) -> None:
    assert (scenario.cf.pnl_recorded, scenario.cf.pnl_derived) == pytest.approx((70.0, -20.0))
    page = html_report.counterfactual_page(scenario.cf)
    assert "+70.00 USDT" in page
    assert "-20.00 USDT" in page
    assert "-90.00 USDT" in page  # derived − recorded
    assert "2 trades" in page


def test_counterfactual_page_self_contained_with_both_plots(scenario: Scenario) -> None:
    page = html_report.counterfactual_page(scenario.cf)
    head, middle = _plotly_marks()
    assert _is_full_document(page)
    assert page.count(head) == 1 and page.count(middle) == 1
    assert _external_sources(page) == []
    assert page.count("Plotly.newPlot(") == 2  # the P&L bars and the cumulative P&L
    assert '"name":"recorded"' in page and '"name":"derived"' in page


def test_counterfactual_page_nothing_changed_says_so() -> None:
    i = f.intent(f.bar(10))
    v = f.verdict(i, "reject")
    result = ReplayResult(
        recorded={"signal": _recorded([i]), "llm-validator": _recorded([v])},
        derived={"signal": _derived([i]), "llm-validator": _derived([v])},
    )
    page = html_report.counterfactual_page(tools.counterfactual(result))
    assert '<p class="empty">no decision changed</p>' in page
    assert '<p class="empty">no trades on either side</p>' in page
    assert '<tr class="changed">' not in page
