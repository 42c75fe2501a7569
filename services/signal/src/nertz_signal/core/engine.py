"""The signal engine: market data in log order → one FactorSnapshot per closed bar (and maybe an intent).

Pure and synchronous: no I/O, no clock; time is the ``ts_event`` of the event handled and every id is a
uuid5 of its input (:func:`nertz_common.ids.derive_id`), so feeding the same events in the same order
gives byte-identical output (replay, backtest and live share these lines).

State is kept per ``(symbol, interval)`` for bar series (windows, EMAs, ATR, ATR median) and per symbol
for the book, funding and feed health. Contract with the executor (docs/decisions.md D1): every closed
:class:`Bar` yields exactly one :class:`FactorSnapshot`, in input order; when it proposes an intent the
:class:`IntentProposed` comes first and the snapshot carries its id.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import TypeAlias

import numpy as np

from nertz_common import events as ev
from nertz_common.ids import derive_id
from nertz_signal.core import factors, filters, stops
from nertz_signal.core.config import SignalConfig
from nertz_signal.core.indicators import DAY_NS, Atr, AtrMedian, Regime, Trend, TripleEma

MINUTE_NS = 60_000_000_000
_LETTER_INTERVALS = {"D": DAY_NS, "W": 7 * DAY_NS, "M": 30 * DAY_NS}
_BOOK_TOPIC_KINDS = ("book", "any")

StatusEvent: TypeAlias = ev.FeedGap | ev.FeedResynced | ev.FeedStale


def interval_ns(bar: ev.Bar) -> int | None:
    """Return the bar length in ns from Bybit's interval (``"1"`` → 1 min, ``"D"`` → 1 day, ``"M"`` ≈ 30 days).

    An unknown interval falls back to ``ts_event - open_time_ns`` (a closed bar's close time); None when
    that is not positive either.
    """
    iv = bar.interval
    if iv.isdigit() and int(iv) > 0:
        return int(iv) * MINUTE_NS
    if iv in _LETTER_INTERVALS:
        return _LETTER_INTERVALS[iv]
    d = bar.ts_event - bar.open_time_ns
    return d if d > 0 else None


@dataclass(slots=True)
class SeriesState:
    """Warm-up state of one ``(symbol, interval)`` bar series; replaced wholesale on a time gap."""

    closes: deque[float]
    volumes: deque[float]
    ema: TripleEma
    atr: Atr
    atr_median: AtrMedian
    prev_open_ns: int | None = None
    bars: int = 0

    @classmethod
    def new(cls, cfg: SignalConfig) -> SeriesState:
        """Return an empty series (cold: every factor and indicator warms up again)."""
        return cls(
            closes=deque(maxlen=cfg.egm_period),
            volumes=deque(maxlen=cfg.pio_period),
            ema=TripleEma(cfg.ema_fast, cfg.ema_mid, cfg.ema_slow),
            atr=Atr(cfg.atr_period),
            atr_median=AtrMedian(
                sample_ns=int(cfg.atr_sample_s * 1e9),
                window_ns=int(cfg.atr_median_days * DAY_NS),
                min_samples=cfg.atr_median_min_samples,
                panic_multiple=cfg.panic_atr_multiple,
            ),
        )


@dataclass(slots=True)
class SymbolState:
    """Per-symbol market context: the latest trusted book, funding, and feed health."""

    book: ev.BookSnapshot | None = None
    funding_rate: float | None = None
    funding_interval_h: int | None = None
    health: filters.FeedHealth = field(default_factory=filters.FeedHealth)


@dataclass(frozen=True, slots=True)
class BarScore:
    """What the engine computed for one closed bar (before the intent decision)."""

    factors: dict[str, float | None]
    combined: float
    used: list[str]
    trend: Trend
    ema: tuple[float | None, float | None, float | None]
    atr: float | None
    regime: Regime
    bar_ns: int | None
    reset: bool


class SignalEngine:
    """Score closed bars and propose intents, from market events in log order.

    Parameters
    ----------
    cfg : SignalConfig
        Thresholds, weights, periods, stops and risk; validated already.

    Notes
    -----
    Source: ARCHITECTURE.md §3 signal. Call :meth:`handle` (or the ``on_*`` methods) for every event of
    the ``signal`` consumer, in log order.
    """

    def __init__(self, cfg: SignalConfig) -> None:
        self.cfg = cfg
        self._weights = cfg.weights.as_dict()
        self._series: dict[tuple[str, str], SeriesState] = {}
        self._symbols: dict[str, SymbolState] = {}
        self._btc: dict[str, filters.PriceWindow] = {}
        self.resets = 0

    # --- dispatch -------------------------------------------------------------------------------

    def handle(self, event: ev.Event) -> list[ev.Event]:
        """Apply one market event and return the events to publish, in order (empty for most).

        Events the signal does not use (e.g. :class:`InstrumentSpec`) are ignored.
        """
        if isinstance(event, ev.Bar):
            return self.on_bar(event)
        if isinstance(event, ev.BookSnapshot):
            self.on_book(event)
        elif isinstance(event, ev.TradeBatch):
            self.on_trades(event)
        elif isinstance(event, ev.Ticker):
            self.on_ticker(event)
        elif isinstance(event, ev.FeedGap | ev.FeedResynced | ev.FeedStale):
            self.on_status(event)
        return []

    def on_book(self, book: ev.BookSnapshot) -> None:
        """Keep the latest book of the symbol (the book factors read it at the next closed bar)."""
        s = self._symbol(book.symbol)
        s.book = book
        s.health.on_data("book")

    def on_trades(self, batch: ev.TradeBatch) -> None:
        """Note trade activity (ends a FeedStale on trades); no factor reads trades."""
        self._symbol(batch.symbol).health.on_data("trade")

    def on_ticker(self, ticker: ev.Ticker) -> None:
        """Keep the funding rate and interval of the symbol's latest ticker (full merged state)."""
        s = self._symbol(ticker.symbol)
        s.funding_rate = ticker.funding_rate
        s.funding_interval_h = ticker.funding_interval_h
        s.health.on_data("ticker")

    def on_status(self, status: StatusEvent) -> None:
        """Fold a feed status: a gap opens (and drops the untrusted book), a resync closes it, stale marks."""
        s = self._symbol(status.symbol)
        if isinstance(status, ev.FeedGap):
            s.health.on_gap(status.topic, status.ts_event)
            if filters.kind_of_topic(status.topic) in _BOOK_TOPIC_KINDS:
                s.book = None
        elif isinstance(status, ev.FeedResynced):
            s.health.on_resynced(status.topic)
        else:
            s.health.on_stale(status.topic)

    # --- bars -----------------------------------------------------------------------------------

    def on_bar(self, bar: ev.Bar) -> list[ev.Event]:
        """Score a bar: ``[]`` for an open bar; for a closed one ``[FactorSnapshot]`` or
        ``[IntentProposed, FactorSnapshot]``.

        Parameters
        ----------
        bar : Bar
            The bar, in log order.

        Returns
        -------
        list[Event]
            Events to publish in this order; ``ts_event = ts_init = bar.ts_event``.
        """
        if not bar.closed:
            return []
        score = self.score(bar)
        cfg = self.cfg
        side: stops.Side | None = None
        if score.combined >= cfg.entry_threshold and score.trend == "up":
            side = "long"
        elif score.combined <= -cfg.entry_threshold and score.trend == "down":
            side = "short"
        out: list[ev.Event] = []
        intent_id: str | None = None
        veto: str | None = None
        if side is not None:
            veto = self._veto(bar, side)
            if veto is None:
                plan = stops.plan(side, bar.close, score.atr, score.regime, cfg, score.bar_ns)
                if plan is None:
                    veto = "stops_unavailable: expected an ATR for volatility stops, was None"
                else:
                    intent = self._intent(bar, side, score, plan)
                    intent_id = intent.event_id
                    out.append(intent)
        f = score.factors
        out.append(
            ev.FactorSnapshot(
                event_id=derive_id("FactorSnapshot", bar.event_id),
                ts_event=bar.ts_event,
                ts_init=bar.ts_event,
                symbol=bar.symbol,
                venue=bar.venue,
                market=bar.market,
                bar_id=bar.event_id,
                interval=bar.interval,
                close=bar.close,
                egm=f["egm"],
                ild=f["ild"],
                rol=f["rol"],
                pio=f["pio"],
                ogm=f["ogm"],
                combined=score.combined,
                used=score.used,
                ema_fast=score.ema[0],
                ema_mid=score.ema[1],
                ema_slow=score.ema[2],
                trend=score.trend,
                atr=score.atr,
                regime=score.regime,
                intent_id=intent_id,
                veto=veto,
            )
        )
        return out

    def score(self, bar: ev.Bar) -> BarScore:
        """Fold a closed bar into its series and return its factors, trend, ATR and regime.

        A bar that opens more than ``max_bar_gap_intervals`` bar lengths after the previous one of its
        series, or not after it, first resets the series (its warm-up starts again with this bar).
        """
        cfg = self.cfg
        key = (bar.symbol, bar.interval)
        series = self._series.get(key)
        bar_ns = interval_ns(bar)
        reset = False
        if series is None or filters.bar_gap(series.prev_open_ns, bar.open_time_ns, bar_ns, cfg.max_bar_gap_intervals):
            reset = series is not None
            self.resets += reset
            series = self._series[key] = SeriesState.new(cfg)
        series.prev_open_ns = bar.open_time_ns
        series.bars += 1
        series.closes.append(bar.close)
        series.volumes.append(bar.volume)
        trend = series.ema.update(bar.close)
        atr = series.atr.update(bar.high, bar.low, bar.close)
        series.atr_median.update(bar.ts_event, atr)
        regime = series.atr_median.regime(atr)
        if bar.symbol == cfg.btc_symbol:
            self._btc_window(bar.interval).add(bar.ts_event, bar.close)

        sym = self._symbol(bar.symbol)
        sym.health.on_data("bar")
        fs: dict[str, float | None] = {
            "egm": factors.egm(np.fromiter(series.closes, np.float64, len(series.closes)), cfg.egm_period),
            "ild": None,
            "rol": None,
            "pio": factors.pio(
                bar.open, bar.close, np.fromiter(series.volumes, np.float64, len(series.volumes)), cfg.pio_period
            ),
            "ogm": None,
        }
        if sym.book is not None:
            bids, asks = factors.levels(sym.book.bids), factors.levels(sym.book.asks)
            fs["ild"] = factors.ild(bids, asks, cfg.ild_levels)
            fs["rol"] = factors.rol(bids, asks, cfg.rol_band)
            fs["ogm"] = factors.ogm(bids, asks, cfg.ogm_max_spread_bps)
        combined, used = factors.combined(fs, self._weights)
        return BarScore(
            factors=fs,
            combined=combined,
            used=used,
            trend=trend,
            ema=series.ema.values(),
            atr=atr,
            regime=regime,
            bar_ns=bar_ns,
            reset=reset,
        )

    # --- helpers ----------------------------------------------------------------------------------

    def _veto(self, bar: ev.Bar, side: stops.Side) -> str | None:
        cfg = self.cfg
        sym = self._symbol(bar.symbol)
        book = sym.book
        best_bid = book.bids[0][0] if book is not None and book.bids else None
        best_ask = book.asks[0][0] if book is not None and book.asks else None
        btc = self._btc.get(bar.interval)
        return (
            filters.stale(sym.health, book.ts_event if book else None, bar.ts_event, cfg.stale_book_s)
            or filters.spread(best_bid, best_ask, cfg.max_spread)
            or filters.funding(sym.funding_rate, sym.funding_interval_h, cfg.max_funding_8h)
            or filters.btc_drop(
                side,
                bar.symbol,
                cfg.btc_symbol,
                btc.change(bar.ts_event) if btc is not None and side == "long" else None,
                cfg.btc_drop,
            )
        )

    def _intent(self, bar: ev.Bar, side: stops.Side, score: BarScore, plan: stops.StopPlan) -> ev.IntentProposed:
        cfg = self.cfg
        iid = derive_id("IntentProposed", bar.event_id)
        fast, mid, slow = score.ema
        rel = ">" if side == "long" else "<"
        thr = f"{'>=' if side == 'long' else '<='} {'+' if side == 'long' else '-'}{cfg.entry_threshold:g}"
        vol = "unknown" if plan.volatility is None else f"{plan.volatility:.2%}"
        reasons = [
            f"combined {score.combined:+.2f} {thr}",
            f"trend {score.trend}: ema{cfg.ema_fast} {fast:.8g} {rel} ema{cfg.ema_mid} {mid:.8g} "
            f"{rel} ema{cfg.ema_slow} {slow:.8g}",
            "factors " + ",".join(f"{n}={score.factors[n]:+.3f}" for n in score.used),
            f"stops {cfg.stop_mode}: sl {plan.sl_distance:.3%}, tp {plan.tp_distance:.3%}",
            f"leverage {plan.leverage:g}x at daily volatility {vol}",
            f"regime {score.regime}" + (": stops widened, size halved" if score.regime == "panic" else ""),
        ]
        return ev.IntentProposed(
            event_id=iid,
            ts_event=bar.ts_event,
            ts_init=bar.ts_event,
            symbol=bar.symbol,
            venue=bar.venue,
            market=bar.market,
            correlation_id=iid,
            causation_id=bar.event_id,
            side=side,
            entry_price=bar.close,
            take_profit=plan.take_profit,
            stop_loss=plan.stop_loss,
            qty=plan.qty,
            notional_usdt=plan.notional_usdt,
            leverage=plan.leverage,
            sl_distance=plan.sl_distance,
            tp_distance=plan.tp_distance,
            combined=score.combined,
            trend=score.trend,
            regime=score.regime,
            reasons=reasons,
        )

    def _symbol(self, symbol: str) -> SymbolState:
        s = self._symbols.get(symbol)
        if s is None:
            s = self._symbols[symbol] = SymbolState()
        return s

    def _btc_window(self, interval: str) -> filters.PriceWindow:
        w = self._btc.get(interval)
        if w is None:
            w = self._btc[interval] = filters.PriceWindow(int(self.cfg.btc_window_s * 1e9))
        return w
