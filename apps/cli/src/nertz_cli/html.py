"""The HTML reports of ``nertz backtest`` and ``nertz replay --counterfactual``: one self-contained file each.

Each page is a single HTML document that opens offline: plotly's JavaScript is inlined once, before
the first figure, and every later figure only calls ``Plotly.newPlot``; nothing is loaded from a CDN.
Every string taken from a report or an event is escaped with :func:`html.escape` (also in the figures,
whose labels plotly.js reads as pseudo-HTML). Money in USDT, returns and drawdowns as fractions, times
in UTC.
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import plotly.graph_objects as go
import plotly.io as pio

from nertz_common import events as ev

if TYPE_CHECKING:
    from nertz_cli.tools import Counterfactual, Decision

_EPOCH = datetime(1970, 1, 1)
_PLOT_HEIGHT_PX = 420
_GREEN = "#1a7f37"
_RED = "#cf222e"
_BLUE = "#0969da"
_GREY = "#8c959f"
_ORANGE = "#bc4c00"

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0 auto; max-width: 1280px;
       padding: 1.5rem; color: #1f2328; background: #fff; }
h1 { margin: 0 0 .3rem 0; font-size: 1.6rem; }
h2 { margin: 2rem 0 .6rem 0; font-size: 1.2rem; border-bottom: 1px solid #d0d7de; padding-bottom: .3rem; }
.meta { color: #59636e; font-size: .9rem; margin: 0; }
.meta span { margin-right: 1.2rem; white-space: nowrap; }
.cards { display: grid; grid-template-columns: repeat(auto-fill, minmax(170px, 1fr)); gap: .6rem; }
.card { border: 1px solid #d0d7de; border-radius: 6px; padding: .6rem .8rem; }
.card .label { color: #59636e; font-size: .8rem; }
.card .value { font-size: 1.25rem; font-variant-numeric: tabular-nums; margin-top: .2rem; }
.card .note { color: #59636e; font-size: .8rem; }
.pos { color: #1a7f37; }
.neg { color: #cf222e; }
.empty { color: #59636e; font-style: italic; padding: 1rem; border: 1px dashed #d0d7de; border-radius: 6px; }
.scroll { max-height: 640px; overflow: auto; border: 1px solid #d0d7de; border-radius: 6px; }
table.data { border-collapse: collapse; width: 100%; font-size: .85rem; font-variant-numeric: tabular-nums; }
table.data th, table.data td { padding: .3rem .5rem; border-bottom: 1px solid #eaeef2; text-align: left; }
table.data th { background: #f6f8fa; position: sticky; top: 0; }
table.data td.num, table.data th.num { text-align: right; }
table.data tbody tr:hover { background: #f6f8fa; }
.plot { margin-bottom: .5rem; }
"""


# --- pure helpers ------------------------------------------------------------------------------------


def utc(ts_ns: float) -> datetime:
    """Return UNIX ns as a naive datetime in UTC (what plotly draws as is, without a local offset).

    Parameters
    ----------
    ts_ns : int or float
        UNIX time, ns.
    """
    return _EPOCH + timedelta(microseconds=int(ts_ns) // 1000)


def drawdown(equity_usdt: Sequence[float], start_equity_usdt: float) -> list[float]:
    """Return the drawdown after each point of an equity curve: the fraction below its running peak.

    The definition of :func:`nertz_cli.report.summarize`'s ``max_drawdown``: the peak starts at the
    starting equity, and the drawdown is ``(peak - equity) / peak`` (0 while the peak is not positive).

    Parameters
    ----------
    equity_usdt : sequence of float, shape (n_points,)
        Equity after each closed trade, USDT, in time order.
    start_equity_usdt : float
        Equity before the first point, USDT.

    Returns
    -------
    list of float, shape (n_points,)
        Fractions (0.05 = 5 % below the peak), 0 at a new peak.
    """
    out: list[float] = []
    peak = start_equity_usdt
    for x in equity_usdt:
        peak = max(peak, x)
        out.append((peak - x) / peak if peak > 0 else 0.0)
    return out


def cumulative_pnl(events: Iterable[ev.Event]) -> list[tuple[int, float]]:
    """Return the cumulative realized P&L at each ``PositionClosed`` among ``events``, in event-time order.

    Parameters
    ----------
    events : iterable of Event
        Any events; only ``PositionClosed`` count (their round trip's ``trade_pnl_usdt``, net of fees).

    Returns
    -------
    list of (int, float)
        ``(ts_event, cumulative P&L)``: UNIX ns, USDT.
    """
    closes = sorted((e for e in events if isinstance(e, ev.PositionClosed)), key=lambda e: e.ts_event)
    out: list[tuple[int, float]] = []
    total = 0.0
    for e in closes:
        total += e.trade_pnl_usdt
        out.append((e.ts_event, total))
    return out


def _points(summary: Mapping[str, Any], key: str) -> list[tuple[int, float]]:
    raw = summary.get(key) or []
    out: list[tuple[int, float]] = []
    for i, p in enumerate(raw):
        if (
            not isinstance(p, Sequence)
            or isinstance(p, str)
            or len(p) != 2
            or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in p)
        ):
            raise ValueError(f"expected summary[{key!r}] as [[ts_ns, equity_usdt], ...], was {p!r} at index {i}")
        out.append((int(p[0]), float(p[1])))
    return out


def _parse_iso_ns(text: Any) -> int | None:
    if not isinstance(text, str):
        return None
    try:
        t = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if t.tzinfo is None:
        t = t.replace(tzinfo=UTC)
    return int(t.timestamp()) * 1_000_000_000


# --- formatting --------------------------------------------------------------------------------------


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _is_num(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _text(value: Any, spec: str, suffix: str = "") -> str:
    if value is None:
        return "-"
    if not _is_num(value) or (isinstance(value, float) and not math.isfinite(value)):
        return str(value)
    return format(value, spec) + suffix


def _fmt(value: Any, spec: str, suffix: str = "") -> str:
    return _e(_text(value, spec, suffix))


def _price(value: Any) -> str:
    if not _is_num(value) or (isinstance(value, float) and not math.isfinite(value)) or value == 0:
        return _fmt(value, ",")
    decimals = min(10, max(2, 5 - math.floor(math.log10(abs(value)))))
    return _e(f"{value:,.{decimals}f}")


def _sign_class(value: Any) -> str:
    if not _is_num(value) or (isinstance(value, float) and not math.isfinite(value)) or value == 0:
        return ""
    return "pos" if value > 0 else "neg"


def _card(label: str, value: str, css: str = "", note: str = "") -> str:
    # label, value and note are plain text
    cls = f"value {css}".strip()
    extra = f'<div class="note">{_e(note)}</div>' if note else ""
    return f'<div class="card"><div class="label">{_e(label)}</div><div class="{cls}">{_e(value)}</div>{extra}</div>'


def _table(
    columns: Sequence[tuple[str, bool]], rows: Iterable[Sequence[str]], *, row_class: str = "", table_id: str = ""
) -> str:
    # columns are (name, numeric); cells are already escaped HTML
    head = "".join(f'<th class="num">{_e(c)}</th>' if num else f"<th>{_e(c)}</th>" for c, num in columns)
    tr = f'<tr class="{row_class}">' if row_class else "<tr>"
    body = []
    for row in rows:
        cells = "".join(
            f'<td class="num">{v}</td>' if num else f"<td>{v}</td>" for v, (_, num) in zip(row, columns, strict=True)
        )
        body.append(f"{tr}{cells}</tr>")
    ident = f' id="{_e(table_id)}"' if table_id else ""
    return f'<table class="data"{ident}><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'


def _flatten(settings: Mapping[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    for k, v in settings.items():
        key = f"{prefix}.{k}" if prefix else str(k)
        if isinstance(v, Mapping) and v:
            out.extend(_flatten(v, key))
        else:
            out.append((key, v))
    return out


def _setting_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value)
    except (TypeError, ValueError):
        return repr(value)


class _Page:
    # sections of one document; the first figure carries plotly's JavaScript, the later ones do not

    def __init__(self, title: str) -> None:
        self.title = title
        self.parts: list[str] = []
        self.js_included = False

    def add(self, fragment: str) -> None:
        self.parts.append(fragment)

    def section(self, heading: str) -> None:
        self.parts.append(f"<h2>{_e(heading)}</h2>")

    def empty(self, text: str) -> None:
        self.parts.append(f'<p class="empty">{_e(text)}</p>')

    def figure(self, fig: go.Figure, height_px: int = _PLOT_HEIGHT_PX) -> None:
        fig.update_layout(height=height_px, margin={"l": 60, "r": 20, "t": 40, "b": 50}, template="plotly_white")
        div = pio.to_html(
            fig,
            include_plotlyjs=not self.js_included,
            full_html=False,
            config={"displaylogo": False, "responsive": True},
            default_width="100%",
            default_height=f"{height_px}px",
        )
        self.js_included = True
        self.parts.append(f'<div class="plot">{div}</div>')

    def render(self) -> str:
        return (
            '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f"<title>{_e(self.title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
            + "\n".join(self.parts)
            + "\n</body>\n</html>\n"
        )


# --- backtest ----------------------------------------------------------------------------------------


def backtest_page(summary: dict[str, Any], title: str = "Nertz backtest") -> str:
    """Return the HTML report of a backtest: one self-contained document that opens offline.

    Sections: the run (period, bars, bars/s, configuration hash), the key figures, the equity curve
    beside an equal-weight buy-and-hold of the same symbols, the drawdown, the per-symbol figures, the
    factor contributions at entry, fees with gross and net P&L per symbol, every trade, and the
    decision settings. A section without data says so instead of drawing an empty figure.

    Parameters
    ----------
    summary : dict
        What :func:`nertz_cli.report.summarize` returns, optionally with ``run`` and ``buy_and_hold``
        as ``nertz backtest`` adds them (``equity`` and ``buy_and_hold`` as ``[[ts_ns, equity_usdt], ...]``:
        UNIX ns, USDT). Missing keys are shown as absent.
    title : str
        The page's title and heading.

    Returns
    -------
    str
        The HTML document (plotly's JavaScript inlined once if the page has a figure).

    Raises
    ------
    ValueError
        If a point of ``equity`` or ``buy_and_hold`` is not a ``[ts_ns, equity_usdt]`` pair of numbers.
    """
    total: Mapping[str, Any] = summary.get("total") or {}
    run: Mapping[str, Any] = summary.get("run") or {}
    symbols: Mapping[str, Mapping[str, Any]] = summary.get("symbols") or {}
    trades: Sequence[Mapping[str, Any]] = summary.get("trades") or []
    factors: Mapping[str, Mapping[str, Any]] = summary.get("factors") or {}
    equity = _points(summary, "equity")
    hold = _points(summary, "buy_and_hold")

    page = _Page(title)
    page.add(f"<h1>{_e(title)}</h1>")
    page.add(_run_header(run))

    page.section("Key figures")
    page.add(_key_figures(total))

    page.section("Equity (USDT) and buy-and-hold of the same symbols")
    curve = _strategy_curve(equity, hold, run, total)
    if not curve and not hold:
        page.empty("no trades")
    else:
        page.figure(_equity_figure(curve, hold))
        if not equity:
            page.empty("no trades: the equity stayed at the starting equity")

    page.section("Drawdown (fraction below the running peak of the equity)")
    if not equity:
        page.empty("no trades")
    else:
        start = _start_equity(total)
        page.figure(_drawdown_figure(curve, equity[0][1] if start is None else start))

    page.section("Per symbol")
    if symbols:
        page.add(_symbols_table(symbols))
    else:
        page.empty("no symbols")

    page.section("Factor contributions to the combined score at entry")
    if factors:
        page.figure(_factors_figure(factors))
    else:
        page.empty("no trades")

    page.section("Fees, gross and net P&L per symbol (USDT)")
    if symbols and any(s.get("trades") for s in symbols.values()):
        page.figure(_fees_figure(symbols))
    else:
        page.empty("no trades")

    page.section(f"Trades ({len(trades):,})")
    if trades:
        page.add(f'<div class="scroll">{_trades_table(trades)}</div>')
    else:
        page.empty("no trades")

    page.section("Settings")
    settings = run.get("settings")
    if isinstance(settings, Mapping) and settings:
        rows = [(_e(k), _e(_setting_text(v))) for k, v in _flatten(settings)]
        page.add(_table([("setting", False), ("value", False)], rows, table_id="settings"))
    else:
        page.empty("no settings recorded")
    return page.render()


def _run_header(run: Mapping[str, Any]) -> str:
    first, last = run.get("first"), run.get("last")
    a, b = _parse_iso_ns(first), _parse_iso_ns(last)
    days = f" ({(b - a) / 86_400e9:,.1f} days)" if a is not None and b is not None else ""
    items = [
        f"period {_e(first or '-')} → {_e(last or '-')}{_e(days)}",
        f"bars {_fmt(run.get('bars'), ',')}",
        f"inputs {_fmt(run.get('inputs'), ',')}",
        f"{_fmt(run.get('bars_per_s'), ',.0f')} bars/s",
        f"{_fmt(run.get('seconds'), ',.2f')} s",
        f"config hash <code>{_e(run.get('config_hash') or '-')}</code>",
    ]
    files = run.get("files")
    if isinstance(files, str):
        files = [files]
    if files:
        items.append("files " + ", ".join(_e(f) for f in files))
    return '<p class="meta">' + "".join(f"<span>{i}</span>" for i in items) + "</p>"


def _key_figures(total: Mapping[str, Any]) -> str:
    ret, pnl, bh = total.get("return"), total.get("pnl_usdt"), total.get("buy_and_hold_return")
    share = total.get("fees_share_of_gross")
    avg_r = total.get("avg_r_multiple")
    suppressed, denied = _text(total.get("suppressed"), ","), _text(total.get("risk_denied"), ",")
    cards = [
        _card(
            "Return",
            _text(ret, "+.2%"),
            _sign_class(ret),
            f"{_text(total.get('start_equity_usdt'), ',.2f')} → {_text(total.get('end_equity_usdt'), ',.2f')} USDT",
        ),
        _card("P&L (net)", _text(pnl, "+,.2f", " USDT"), _sign_class(pnl)),
        _card(
            "Gross P&L", _text(total.get("gross_pnl_usdt"), "+,.2f", " USDT"), _sign_class(total.get("gross_pnl_usdt"))
        ),
        _card("Max drawdown", _text(total.get("max_drawdown"), ".2%")),
        _card("Trades", _text(total.get("trades"), ","), note=f"{_text(total.get('wins'), ',')} wins"),
        _card("Win rate", _text(total.get("win_rate"), ".1%")),
        _card(
            "Fees",
            _text(total.get("fees_usdt"), ",.2f", " USDT"),
            note="-" if share is None else f"{_text(share, '.0%')} of gross P&L",
        ),
        _card("Average R-multiple", _text(avg_r, "+.2f"), _sign_class(avg_r)),
        _card("Buy-and-hold return", _text(bh, "+.2%"), _sign_class(bh)),
        _card(
            "Intents",
            _text(total.get("intents"), ","),
            note=f"{suppressed} locked out, {denied} risk-denied",
        ),
    ]
    return '<div class="cards">' + "".join(cards) + "</div>"


def _start_equity(total: Mapping[str, Any]) -> float | None:
    start = total.get("start_equity_usdt")
    return float(start) if isinstance(start, int | float) else None


def _strategy_curve(
    equity: Sequence[tuple[int, float]],
    hold: Sequence[tuple[int, float]],
    run: Mapping[str, Any],
    total: Mapping[str, Any],
) -> list[tuple[int, float]]:
    # the equity as a step curve over the whole period: the start, each close, the end
    start = _start_equity(total)
    firsts = [t for t in (_parse_iso_ns(run.get("first")), hold[0][0] if hold else None) if t is not None]
    lasts = [t for t in (_parse_iso_ns(run.get("last")), hold[-1][0] if hold else None) if t is not None]
    curve: list[tuple[int, float]] = []
    if start is not None and firsts and (not equity or min(firsts) <= equity[0][0]):
        curve.append((min(firsts), start))
    curve.extend(equity)
    if curve and lasts and max(lasts) > curve[-1][0]:
        curve.append((max(lasts), curve[-1][1]))
    return curve


def _equity_figure(curve: Sequence[tuple[int, float]], hold: Sequence[tuple[int, float]]) -> go.Figure:
    fig = go.Figure()
    if curve:
        fig.add_trace(
            go.Scatter(
                x=[utc(t) for t, _ in curve],
                y=[v for _, v in curve],
                name="strategy",
                mode="lines",
                line={"shape": "hv", "color": _BLUE, "width": 2},
                hovertemplate="%{y:,.2f} USDT",
            )
        )
    if hold:
        fig.add_trace(
            go.Scatter(
                x=[utc(t) for t, _ in hold],
                y=[v for _, v in hold],
                name="buy-and-hold",
                mode="lines",
                line={"color": _GREY, "width": 1.5, "dash": "dot"},
                hovertemplate="%{y:,.2f} USDT",
            )
        )
    fig.update_layout(
        xaxis_title="time (UTC)",
        yaxis_title="equity (USDT)",
        legend={"orientation": "h", "y": 1.08},
        hovermode="x unified",
    )
    return fig


def _drawdown_figure(curve: Sequence[tuple[int, float]], start_equity_usdt: float) -> go.Figure:
    dd = drawdown([v for _, v in curve], start_equity_usdt)
    fig = go.Figure(
        go.Scatter(
            x=[utc(t) for t, _ in curve],
            y=[-d for d in dd],
            customdata=dd,
            name="drawdown",
            mode="lines",
            fill="tozeroy",
            line={"shape": "hv", "color": _RED, "width": 1.5},
            hovertemplate="%{customdata:.2%} below the peak<extra></extra>",
        )
    )
    fig.update_layout(
        xaxis_title="time (UTC)", yaxis_title="drawdown (fraction below the peak)", yaxis_tickformat=".1%"
    )
    return fig


def _symbols_table(symbols: Mapping[str, Mapping[str, Any]]) -> str:
    columns = [
        ("symbol", False), ("intents", True), ("approved", True), ("rejected", True), ("locked out", True),
        ("risk denied", True), ("expired", True), ("trades", True), ("wins", True), ("win rate", True),
        ("P&L USDT", True), ("gross P&L USDT", True), ("fees USDT", True), ("max DD USDT", True),
        ("avg R", True), ("buy & hold", True),
    ]  # fmt: skip
    rows = []
    for sym, s in symbols.items():
        rows.append([
            _e(sym), _fmt(s.get("intents"), ","), _fmt(s.get("approved"), ","), _fmt(s.get("rejected"), ","),
            _fmt(s.get("suppressed"), ","), _fmt(s.get("risk_denied"), ","), _fmt(s.get("expired"), ","),
            _fmt(s.get("trades"), ","), _fmt(s.get("wins"), ","), _fmt(s.get("win_rate"), ".1%"),
            _fmt(s.get("pnl_usdt"), "+,.2f"), _fmt(s.get("gross_pnl_usdt"), "+,.2f"),
            _fmt(s.get("fees_usdt"), ",.2f"), _fmt(s.get("max_drawdown_usdt"), ",.2f"),
            _fmt(s.get("avg_r_multiple"), "+.2f"), _fmt(s.get("buy_and_hold_return"), "+.2%"),
        ])  # fmt: skip
    return _table(columns, rows, row_class="symbol", table_id="symbols")


def _factors_figure(factors: Mapping[str, Mapping[str, Any]]) -> go.Figure:
    names = list(factors)
    means = [float(factors[n].get("mean") or 0.0) for n in names]
    counts = [factors[n].get("n") for n in names]
    fig = go.Figure(
        go.Bar(
            x=[_e(n) for n in names],
            y=means,
            marker_color=[_GREEN if m >= 0 else _RED for m in means],
            text=[f"{m:+.2f} (n={_e(c)})" for m, c in zip(means, counts, strict=True)],
            textposition="outside",
            hovertemplate="%{x}: %{y:+.3f} points<extra></extra>",
        )
    )
    fig.update_layout(
        xaxis_title="factor",
        yaxis_title="mean contribution (score points, + = towards the trade's side)",
        showlegend=False,
    )
    return fig


def _fees_figure(symbols: Mapping[str, Mapping[str, Any]]) -> go.Figure:
    names = [_e(s) for s in symbols]

    def col(key: str) -> list[float]:
        return [float(s.get(key) or 0.0) for s in symbols.values()]

    fig = go.Figure()
    for key, label, color in (
        ("gross_pnl_usdt", "gross P&L", _BLUE),
        ("fees_usdt", "fees", _ORANGE),
        ("pnl_usdt", "net P&L", _GREEN),
    ):
        fig.add_trace(go.Bar(x=names, y=col(key), name=label, marker_color=color, hovertemplate="%{y:,.2f} USDT"))
    fig.update_layout(barmode="group", xaxis_title="symbol", yaxis_title="USDT", legend={"orientation": "h", "y": 1.08})
    return fig


def _trades_table(trades: Sequence[Mapping[str, Any]]) -> str:
    columns = [
        ("#", True), ("symbol", False), ("side", False), ("opened (UTC)", False), ("closed (UTC)", False),
        ("entry", True), ("exit", True), ("qty", True), ("holding h", True), ("exit reason", False),
        ("P&L USDT", True), ("fees USDT", True), ("return", True), ("R", True), ("combined", True),
    ]  # fmt: skip
    rows = []
    for i, t in enumerate(trades, 1):
        rows.append([
            _e(i), _e(t.get("symbol", "")), _e(t.get("side", "")), _e(t.get("opened") or "-"),
            _e(t.get("closed") or "-"), _price(t.get("entry_price")), _price(t.get("exit_price")),
            _fmt(t.get("qty"), ".6g"), _fmt(t.get("holding_h"), ",.2f"), _e(t.get("exit_reason", "")),
            _fmt(t.get("pnl_usdt"), "+,.2f"), _fmt(t.get("fees_usdt"), ",.2f"), _fmt(t.get("return"), "+.2%"),
            _fmt(t.get("r_multiple"), "+.2f"), _fmt(t.get("combined"), "+.2f"),
        ])  # fmt: skip
    return _table(columns, rows, row_class="trade", table_id="trades")


# --- counterfactual ----------------------------------------------------------------------------------


def counterfactual_page(cf: Counterfactual, title: str = "Nertz counterfactual") -> str:
    """Return the HTML report of a counterfactual replay: one self-contained document that opens offline.

    Sections: the replay (events compared, identical, the first divergence), the recorded and derived
    total realized P&L as figures and as a bar chart, the cumulative realized P&L of both sides over
    event time, and every decision that changed (side, verdict, outcome and P&L of each side).

    Parameters
    ----------
    cf : nertz_cli.tools.Counterfactual
        What :func:`nertz_cli.tools.counterfactual` returns. The recorded side's closes are the
        ``PositionClosed`` events of ``cf.result.recorded``, the derived side's those of
        ``cf.result.derived``; P&L net of fees, USDT.
    title : str
        The page's title and heading.

    Returns
    -------
    str
        The HTML document (plotly's JavaScript inlined once, before the first figure).
    """
    result = cf.result
    rec_curve = cumulative_pnl(r.event for recs in result.recorded.values() for r in recs)
    der_curve = cumulative_pnl(e for outs in result.derived.values() for e, _ in outs)

    page = _Page(title)
    page.add(f"<h1>{_e(title)}</h1>")
    compared = sum(result.compared.values())
    items = [
        f"{compared:,} events compared, {result.identical:,} identical",
        f"{result.inputs:,} inputs re-derived",
        f"{len(cf.recorded):,} recorded and {len(cf.derived):,} derived decisions",
    ]
    d = result.divergence
    if d is not None:
        items.append(f"first divergence: {d.producer} event #{d.index}, origin {d.origin}")
    page.add('<p class="meta">' + "".join(f"<span>{_e(i)}</span>" for i in items) + "</p>")

    page.section("Key figures")
    diff = cf.pnl_derived - cf.pnl_recorded
    page.add(
        '<div class="cards">'
        + _card("P&L recorded", _text(cf.pnl_recorded, "+,.2f", " USDT"), _sign_class(cf.pnl_recorded),
                f"{len(rec_curve):,} trades")
        + _card("P&L derived", _text(cf.pnl_derived, "+,.2f", " USDT"), _sign_class(cf.pnl_derived),
                f"{len(der_curve):,} trades")
        + _card("Derived − recorded", _text(diff, "+,.2f", " USDT"), _sign_class(diff))
        + _card("Decisions changed", _text(len(cf.changed), ","))
        + "</div>"
    )  # fmt: skip

    page.section("Total realized P&L (USDT)")
    page.figure(_pnl_bars(cf.pnl_recorded, cf.pnl_derived), height_px=320)

    page.section("Cumulative realized P&L over time (USDT)")
    if rec_curve or der_curve:
        page.figure(_cumulative_figure(rec_curve, der_curve))
    else:
        page.empty("no trades on either side")

    page.section(f"Changed decisions ({len(cf.changed):,})")
    if cf.changed:
        page.add(f'<div class="scroll">{_changed_table(cf.changed)}</div>')
    else:
        page.empty("no decision changed")
    return page.render()


def _pnl_bars(recorded: float, derived: float) -> go.Figure:
    values = [recorded, derived]
    fig = go.Figure(
        go.Bar(
            x=["recorded", "derived"],
            y=values,
            marker_color=[_GREEN if v >= 0 else _RED for v in values],
            text=[f"{v:+,.2f}" for v in values],
            textposition="outside",
            hovertemplate="%{x}: %{y:+,.2f} USDT<extra></extra>",
        )
    )
    fig.update_layout(yaxis_title="realized P&L (USDT)", showlegend=False)
    return fig


def _cumulative_figure(recorded: Sequence[tuple[int, float]], derived: Sequence[tuple[int, float]]) -> go.Figure:
    t0 = min(c[0][0] for c in (recorded, derived) if c)
    fig = go.Figure()
    for curve, name, color, dash in ((recorded, "recorded", _GREY, "solid"), (derived, "derived", _BLUE, "dash")):
        if not curve:
            continue
        pts = [(t0, 0.0), *curve]
        fig.add_trace(
            go.Scatter(
                x=[utc(t) for t, _ in pts],
                y=[v for _, v in pts],
                name=name,
                mode="lines",
                line={"shape": "hv", "color": color, "width": 2, "dash": dash},
                hovertemplate="%{y:+,.2f} USDT",
            )
        )
    fig.update_layout(
        xaxis_title="time (UTC)",
        yaxis_title="cumulative realized P&L (USDT)",
        legend={"orientation": "h", "y": 1.08},
        hovermode="x unified",
    )
    return fig


def _symbol_of(*ds: Decision | None) -> str:
    for d in ds:
        if d is None:
            continue
        e = d.intent or d.verdict
        if e is not None:
            return e.symbol
    return "?"


def _time_of(*ds: Decision | None) -> str:
    for d in ds:
        if d is None:
            continue
        e = d.intent or d.verdict
        if e is not None:
            return utc(e.ts_event).strftime("%Y-%m-%d %H:%M:%S")
    return "-"


def _changed_table(changed: Sequence[tuple[str, Decision | None, Decision | None]]) -> str:
    columns = [
        ("time (UTC)", False), ("intent", False), ("symbol", False), ("side", False),
        ("recorded verdict", False), ("recorded outcome", False), ("recorded P&L USDT", True),
        ("derived verdict", False), ("derived outcome", False), ("derived P&L USDT", True),
    ]  # fmt: skip
    rows = []
    for iid, a, b in changed:
        ka = a.key() if a is not None else None
        kb = b.key() if b is not None else None
        sides = {k[0] for k in (ka, kb) if k is not None and k[0] != "-"}
        side = " / ".join(sorted(sides)) if sides else "-"
        rows.append([
            _e(_time_of(a, b)), f'<code title="{_e(iid)}">{_e(iid[:8])}</code>', _e(_symbol_of(a, b)), _e(side),
            _e(ka[1]) if ka else "(none)", _e(ka[2]) if ka else "(none)",
            _fmt(a.pnl_usdt, "+,.2f") if a is not None else "-",
            _e(kb[1]) if kb else "(none)", _e(kb[2]) if kb else "(none)",
            _fmt(b.pnl_usdt, "+,.2f") if b is not None else "-",
        ])  # fmt: skip
    return _table(columns, rows, row_class="changed", table_id="changed")


# --- walk-forward evaluation ---------------------------------------------------------------------------


def evaluation_page(evaluation: Mapping[str, Any], title: str = "Nertz walk-forward evaluation") -> str:
    """Return the HTML report of ``nertz backtest --walk-forward K``: the strategy, buy-and-hold and the
    random-entry runs per segment.

    Sections: the returns per segment (the strategy, buy-and-hold, the random runs' median with their
    10th..90th percentile as an error bar, and every random run as a point), then the table of
    :func:`nertz_cli.evaluation.print_table`.

    Parameters
    ----------
    evaluation : mapping
        What :meth:`nertz_cli.evaluation.Evaluation.as_dict` returns.
    title : str
        The page's title and heading.

    Returns
    -------
    str
        The HTML document (plotly's JavaScript inlined once).
    """
    segments: Sequence[Mapping[str, Any]] = evaluation.get("segments") or []
    rnd = evaluation.get("random_entries") or {}
    page = _Page(title)
    page.add(f"<h1>{_e(title)}</h1>")
    wf = evaluation.get("walk_forward") or {}
    page.add(
        '<p class="meta">'
        f"<span>{_e(wf.get('k', '?'))} folds, anchored: in sample {_e(wf.get('in_sample', ''))}, out of sample "
        f"{_e(wf.get('out_of_sample', ''))}</span>"
        f"<span>{_e(rnd.get('runs', '?'))} random-entry runs at {_fmt(rnd.get('rate'), '.3%')} of "
        f"{_e(rnd.get('eligible_bars', '?'))} bars</span>"
        f"<span>settings {_e(str(evaluation.get('settings_hash', ''))[:12])}</span></p>"
    )
    if not segments:
        page.empty("no segments")
        return page.render()
    page.section("Returns per segment")
    names = [s["segment"] for s in segments]

    def pct(v: Any) -> float | None:
        return 100.0 * v if _is_num(v) else None

    fig = go.Figure()
    fig.add_bar(name="strategy", x=names, y=[pct(s["strategy"]["return"]) for s in segments], marker_color=_BLUE)
    fig.add_bar(name="buy & hold", x=names, y=[pct(s["buy_and_hold_return"]) for s in segments],
                marker_color=_GREY)  # fmt: skip
    med = [pct(s["random"]["median_return"]) for s in segments]
    lo = [pct(s["random"]["p10_return"]) for s in segments]
    hi = [pct(s["random"]["p90_return"]) for s in segments]
    fig.add_bar(
        name="random entries (median, p10..p90)", x=names, y=med, marker_color=_ORANGE,
        error_y={"type": "data", "symmetric": False,
                 "array": [h - m if h is not None and m is not None else 0 for h, m in zip(hi, med, strict=True)],
                 "arrayminus": [m - x if x is not None and m is not None else 0 for x, m in zip(lo, med, strict=True)]},
    )  # fmt: skip
    xs = [s["segment"] for s in segments for _ in s["random"]["returns"]]
    ys = [100.0 * r for s in segments for r in s["random"]["returns"]]
    fig.add_scatter(name="each random run", x=xs, y=ys, mode="markers", marker={"color": _ORANGE, "size": 4,
                    "opacity": 0.5}, offsetgroup="random entries (median, p10..p90)")  # fmt: skip
    fig.update_layout(barmode="group", yaxis_title="return (% of starting equity)", legend={"orientation": "h"})
    page.figure(fig)
    page.section("Segments")
    cols = [("segment", False), ("span (UTC)", False), ("bars", True), ("strategy", True), ("trades", True),
            ("fees/gross", True), ("buy & hold", True), ("random median", True), ("random p10..p90", True),
            ("random trades", True), ("beats random", True)]  # fmt: skip
    rows = []
    for s in segments:
        st, r = s["strategy"], s["random"]
        rows.append([
            _e(s["segment"]), _e(" → ".join(x[:16] for x in s["span"])), _e(f"{s['bars']:,}"),
            _fmt(st["return"], "+.2%"), _e(st["trades"]), _fmt(st["fees_share_of_gross"], ".0%"),
            _fmt(s["buy_and_hold_return"], "+.2%"), _fmt(r["median_return"], "+.2%"),
            f"{_fmt(r['p10_return'], '+.2%')}..{_fmt(r['p90_return'], '+.2%')}", _fmt(r["median_trades"], "g"),
            _fmt(s["beats_random"], ".0%"),
        ])  # fmt: skip
    page.add(_table(cols, rows))
    return page.render()
