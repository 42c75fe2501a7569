"""The signal engine: market data in log order → one FactorSnapshot per closed bar (and maybe an intent).

A kernel component (:class:`nertz_common.node.Component`): pure and synchronous, no I/O, no clock; time
is the ``ts_event`` of the event handled and every id is a uuid5 of its input
(:func:`nertz_common.ids.derive_id`), so feeding the same events in the same order gives byte-identical
output (replay, backtest and live share these lines).

State is kept per ``(symbol, interval)`` for bar series (windows, EMAs, ATR, ATR median, the stop's
timeframe ATR) and per symbol for the book, funding and feed health; :meth:`SignalEngine.get_state`
returns all of it as one value (a snapshot), including the books and tickers a restart used to skip.
Contract with the executor (docs/decisions.md D1): every closed :class:`Bar` yields exactly one
:class:`FactorSnapshot`, in input order; when it proposes an intent the :class:`IntentProposed` comes
first and the snapshot carries its id.

A candidate (``|combined|`` at the threshold of its factor set, with the trend) becomes an intent unless
a veto says why not, checked in this order: ``warmup`` (the bar came from a backfill:
``Bar.warmup``; it built state and trades nothing), the filters (:mod:`nertz_signal.core.filters`),
``news_critical`` (a critical key event of the symbol's news at most ``news.veto_h`` old), the
multi-timeframe confirmation when it is on (``mtf_veto``, ``mtf_unavailable``, ``mtf_unconfirmed``:
:mod:`nertz_signal.core.confirm`), ``stops_unavailable`` (the stop's ATR is still warming up) and
``risk_reward_below_min`` (the net reward-to-risk after fees and slippage below ``min_risk_reward``).
docs/decisions.md D19, D20, D27. With ``random_entries`` on (the evaluation's baseline, D28) a draw
hashed from the bar's id replaces the threshold, the trend and the confirmation; the other vetoes stay.

The regime of a bar is its series' ATR against the ATR's 30-day median (DIGESTING above 1.3×, PANIC
above 2.5×), raised to DIGESTING or PANIC when the symbol's decayed news impact reaches
``news.digesting_impact`` or ``news.panic_impact``; it widens the stop and scales leverage and size
(:func:`nertz_signal.core.stops.regime_multiples`). The news is the latest ``NewsAssessed`` of the symbol
without a failure (read in log order, kept in the state); with none on the log, nothing of it applies
(docs/decisions.md D25).

Operator commands, in log order with the market data: ``ConfigChanged`` applies its ``signal.`` keys
from that position on (the overrides are part of the state, so a restart applies them again), and
``ManualTradeRequested`` evaluates its symbol on its latest closed bar: an intent in the requested
direction (or the combined score's), past the filters, stops and the net R:R check but not the entry
threshold or the trend, and a ``FactorSnapshot`` whose ``bar_id`` is the request's id (the executor
waits for it as for a bar's). A symbol without a closed bar yet gets nothing; the executor, which
reads the same bars, does not wait for it either.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from math import sqrt, tanh
from typing import ClassVar, NamedTuple, TypeAlias

import msgspec

from nertz_common import events as ev
from nertz_common import live_config
from nertz_common import news as news_
from nertz_common.ids import derive_id
from nertz_common.node.component import Component
from nertz_signal.core import factors, filters, stops
from nertz_signal.core.config import SignalConfig
from nertz_signal.core.confirm import Confirmation, TrendState
from nertz_signal.core.decay import DecayTracker
from nertz_signal.core.indicators import (
    DAY_NS,
    TIMEFRAME_OFFSETS_NS,
    TIMEFRAMES_NS,
    Atr,
    AtrMedian,
    Regime,
    RollingWindow,
    TimeframeAtr,
    Trend,
    TripleEma,
)

MINUTE_NS = 60_000_000_000
_REL_STD_EPS = factors._REL_STD_EPS
_LETTER_INTERVALS = {"D": DAY_NS, "W": 7 * DAY_NS, "M": 30 * DAY_NS}
_BOOK_TOPIC_KINDS = ("book", "any")
WARMUP = "warmup"
STOPS_UNAVAILABLE = "stops_unavailable"
RISK_REWARD = "risk_reward_below_min"
NEWS_CRITICAL = "news_critical"
HOUR_NS = 3_600_000_000_000
#: how severe a regime is (the news raises the volatility's regime, never lowers it)
_SEVERITY: dict[str, int] = {"unknown": 0, "normal": 1, "digesting": 2, "panic": 3}

log = logging.getLogger("nertz.signal")

StatusEvent: TypeAlias = ev.FeedGap | ev.FeedResynced | ev.FeedStale


def _g(x: float | None) -> str:
    """A price for a reason: 8 significant digits, ``"warming up"`` for an EMA not yet warm."""
    return "warming up" if x is None else f"{x:.8g}"


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


class SeriesState:
    """Warm-up state of one ``(symbol, interval)`` bar series; replaced wholesale on a time gap."""

    __slots__ = (
        "atr", "atr_median", "bar_ns", "bars", "closes", "confirm", "decay", "ema", "prev_open_ns", "stop_atr",
        "volumes",
    )  # fmt: skip

    def __init__(self, cfg: SignalConfig, bar_ns: int | None) -> None:
        self.closes = RollingWindow(cfg.egm_period)
        self.volumes = RollingWindow(cfg.pio_period)
        self.ema = TripleEma(cfg.ema_fast, cfg.ema_mid, cfg.ema_slow)
        self.atr = Atr(cfg.atr_period)
        self.atr_median = AtrMedian(
            sample_ns=int(cfg.atr_sample_s * 1e9),
            window_ns=int(cfg.atr_median_days * DAY_NS),
            min_samples=cfg.atr_median_min_samples,
            panic_multiple=cfg.panic_atr_multiple,
            digesting_multiple=cfg.digesting_atr_multiple,
        )
        self.stop_atr = TimeframeAtr(
            TIMEFRAMES_NS[cfg.stop_timeframe],
            cfg.stop_atr_period,
            cfg.stop_atr_min_bars,
            TIMEFRAME_OFFSETS_NS.get(cfg.stop_timeframe, 0),
        )
        self.prev_open_ns: int | None = None
        self.bars = 0
        self.bar_ns = bar_ns
        self.decay = DecayTracker(cfg.decay) if cfg.decay.enabled else None
        self.confirm = Confirmation(cfg.confirm) if cfg.confirm.enabled else None


@dataclass(slots=True)
class SymbolState:
    """Per-symbol market context: the latest trusted book, funding, and feed health."""

    book: ev.BookSnapshot | None = None
    funding_rate: float | None = None
    funding_interval_h: int | None = None
    health: filters.FeedHealth = field(default_factory=filters.FeedHealth)
    #: the latest closed bar and its snapshot (a manual trade is evaluated on them)
    last_bar: ev.Bar | None = None
    last_snapshot: ev.FactorSnapshot | None = None
    #: the key events of the symbol's latest NewsAssessed without a failure
    news: list[ev.NewsItem] = field(default_factory=list)


class BarScore(NamedTuple):
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
    stop_atr: float | None = None


# --- the snapshot's shape -----------------------------------------------------------------------


class SeriesSnap(msgspec.Struct, array_like=True):
    """One bar series in a snapshot (see :class:`SeriesState`)."""

    symbol: str
    interval: str
    closes: tuple[list[float], float, float, float, int]
    volumes: tuple[list[float], float, float, float, int]
    ema: tuple[tuple[float | None, int], tuple[float | None, int], tuple[float | None, int]]
    atr: tuple[float | None, int, float, float | None]
    atr_median: tuple[list[tuple[int, float]], int | None]
    prev_open_ns: int | None
    bars: int
    bar_ns: int | None
    stop_atr: tuple[int | None, float, float, float, bool, bool, float | None, int, float, float | None] | None = None
    decay: tuple[int, list[tuple[int, float, list[int]]], list[list[bool]], list[bool], list[float] | None] | None = (
        None
    )
    confirm: list[TrendState] | None = None


class SymbolSnap(msgspec.Struct, array_like=True):
    """One symbol's context in a snapshot (see :class:`SymbolState`)."""

    symbol: str
    book: ev.BookSnapshot | None
    funding_rate: float | None
    funding_interval_h: int | None
    health: tuple[dict[str, int], list[str]]
    last_bar: ev.Bar | None = None
    last_snapshot: ev.FactorSnapshot | None = None
    news: list[ev.NewsItem] = []


class SignalState(msgspec.Struct):
    """The signal engine's whole state (a snapshot's content)."""

    series: list[SeriesSnap] = []
    symbols: list[SymbolSnap] = []
    btc: dict[str, list[tuple[int, float]]] = {}
    resets: int = 0
    #: the ``signal.`` keys of every ConfigChanged read so far (the latest value per key)
    config_overrides: dict[str, ev.ConfigValue] = {}


class SignalEngine(Component):
    """Score closed bars and propose intents, from market events in log order.

    Parameters
    ----------
    cfg : SignalConfig
        Thresholds, weights, periods, stops and risk; validated already.

    Notes
    -----
    Source: ARCHITECTURE.md §3 signal. Handlers ``on_<event>`` are called by the kernel for every event
    of the ``signal`` consumer, in log order.
    """

    name: ClassVar[str] = "signal"
    inputs: ClassVar[tuple[type[ev.Event], ...]] = (
        ev.Bar, ev.BookSnapshot, ev.TradeBatch, ev.Ticker, ev.FeedGap, ev.FeedResynced, ev.FeedStale,
        ev.ConfigChanged, ev.ManualTradeRequested, ev.NewsAssessed,
    )  # fmt: skip
    state_type: ClassVar[type[msgspec.Struct]] = SignalState

    def __init__(self, cfg: SignalConfig) -> None:
        self.base = cfg
        self._configure(cfg)
        self.overrides: dict[str, ev.ConfigValue] = {}
        self._series: dict[tuple[str, str], SeriesState] = {}
        self._symbols: dict[str, SymbolState] = {}
        self._btc: dict[str, filters.PriceWindow] = {}
        self.resets = 0
        #: the decay tracker's change at the bar being folded (its series, what changed), if any
        self._adapted: tuple[SeriesState, tuple[str, ...], tuple[str, ...]] | None = None
        #: ConfigChanged keys this engine refused (another base configuration than the api validated on)
        self.config_rejected = 0

    def _configure(self, cfg: SignalConfig) -> None:
        self.cfg = cfg
        w = cfg.weights.as_dict()
        self._weights = w
        self._w = tuple(w[n] for n in factors.FACTOR_NAMES)

    # --- operator commands ------------------------------------------------------------------------

    def on_config_changed(self, e: ev.ConfigChanged) -> list[ev.Event]:
        """Apply the ``signal.`` keys of a config change from here on (all of them, or none if one is bad:
        logged and counted in :attr:`config_rejected`)."""
        mine = live_config.section(e.changes, "signal")
        if not mine:
            return []
        overrides = {**self.overrides, **mine}
        try:
            cfg = live_config.updated(self.base, overrides, label="signal.")
        except live_config.ConfigRejected as err:
            self.config_rejected += 1
            log.warning("config.rejected", extra={"event_id": e.event_id, "errors": err.errors})
            return []
        self.overrides = overrides
        self._configure(cfg)
        return []

    def on_manual_trade_requested(self, e: ev.ManualTradeRequested) -> list[ev.Event]:
        """Evaluate the symbol on its latest closed bar for an operator's trade (see the module docstring).

        Returns
        -------
        list[Event]
            ``[]`` when the symbol has no closed bar yet; else ``[FactorSnapshot]`` with the veto, or
            ``[IntentProposed, FactorSnapshot]``; both with ``ts_event`` = the request's and ids derived
            from its id.
        """
        sym = self._symbols.get(e.scope)
        bar, last = (sym.last_bar, sym.last_snapshot) if sym is not None else (None, None)
        if bar is None or last is None:
            log.warning("manual.no_bar", extra={"symbol": e.scope, "event_id": e.event_id})
            return []
        cfg = self.cfg
        side: stops.Side | None
        if e.side is not None:
            side = "long" if e.side == "Buy" else "short"
        else:
            side = "long" if last.combined > 0 else "short" if last.combined < 0 else None
        out: list[ev.Event] = []
        intent_id: str | None = None
        veto: str | None = None
        if side is None:
            veto = "manual: no side given and the combined score is 0"
        else:
            veto = self._warmup(bar) or self._veto(bar, side)
        if side is not None and veto is None:
            plan = stops.plan(side, bar.close, last.stop_atr, last.regime, cfg, TIMEFRAMES_NS[cfg.stop_timeframe])
            veto = self._plan_veto(bar, plan)
            if veto is None and plan is not None:
                score = BarScore(
                    {n: getattr(last, n) for n in factors.FACTOR_NAMES}, last.combined, list(last.used),
                    last.trend, (last.ema_fast, last.ema_mid, last.ema_slow), last.atr, last.regime, None, False,
                    last.stop_atr,
                )  # fmt: skip
                why = f"manual trade requested by {e.actor}" + (f": {e.reason}" if e.reason else "")
                how = "as requested" if e.side is not None else f"from the combined score {last.combined:+.2f}"
                intent = self._intent(bar, side, score, plan, trigger=e, lead=[why, f"side {side} {how}"])
                intent_id = intent.event_id
                out.append(intent)
        out.append(
            msgspec.structs.replace(
                last, event_id=derive_id("FactorSnapshot", e.event_id), ts_event=e.ts_event, ts_init=e.ts_event,
                bar_id=e.event_id, intent_id=intent_id, veto=veto,
            )
        )  # fmt: skip
        return out

    # --- handlers -------------------------------------------------------------------------------

    def on_book_snapshot(self, book: ev.BookSnapshot) -> list[ev.Event]:
        """Keep the latest book of the symbol (the book factors read it at the next closed bar)."""
        s = self._symbol(book.symbol)
        s.book = book
        s.health.on_data("book")
        return []

    def on_trade_batch(self, batch: ev.TradeBatch) -> list[ev.Event]:
        """Note trade activity (ends a FeedStale on trades); no factor reads trades."""
        self._symbol(batch.symbol).health.on_data("trade")
        return []

    def on_ticker(self, ticker: ev.Ticker) -> list[ev.Event]:
        """Keep the funding rate and interval of the symbol's latest ticker (full merged state)."""
        s = self._symbol(ticker.symbol)
        s.funding_rate = ticker.funding_rate
        s.funding_interval_h = ticker.funding_interval_h
        s.health.on_data("ticker")
        return []

    def on_feed_gap(self, status: ev.FeedGap) -> list[ev.Event]:
        """Open a gap on the topic (and drop the symbol's untrusted book)."""
        s = self._symbol(status.symbol)
        s.health.on_gap(status.topic, status.ts_event)
        if filters.kind_of_topic(status.topic) in _BOOK_TOPIC_KINDS:
            s.book = None
        return []

    def on_feed_resynced(self, status: ev.FeedResynced) -> list[ev.Event]:
        """Close the topic's gap."""
        self._symbol(status.symbol).health.on_resynced(status.topic)
        return []

    def on_feed_stale(self, status: ev.FeedStale) -> list[ev.Event]:
        """Mark the topic's data kind stale until its next update."""
        self._symbol(status.symbol).health.on_stale(status.topic)
        return []

    def on_news_assessed(self, e: ev.NewsAssessed) -> list[ev.Event]:
        """Take the assessment's key events as the symbol's news from here on; a failed one changes nothing."""
        if e.failure is None:
            self._symbol(e.symbol).news = list(e.key_events)
        return []

    def news_impact(self, symbol: str, now_ns: int) -> float | None:
        """The symbol's decayed news impact at ``now_ns`` (UNIX ns), None without news (for the gauges)."""
        s = self._symbols.get(symbol)
        if s is None or not s.news:
            return None
        return news_.decayed_impact(s.news, now_ns, int(self.cfg.news.half_life_h * HOUR_NS))

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
        egm, ild, rol, pio, ogm, combined, used, trend, ema, atr, regime, bar_ns, stop_atr = self._fold_bar(bar)
        cfg = self.cfg
        out: list[ev.Event] = []
        if self._adapted is not None:
            out.append(self._weights_adapted(bar, *self._adapted))
            self._adapted = None
        side: stops.Side | None = None
        if cfg.random_entries.enabled:
            if cfg.timeframe is None or bar.interval == cfg.timeframe:
                side = cfg.random_entries.side(bar.event_id)
        elif trend != "flat" and (cfg.timeframe is None or bar.interval == cfg.timeframe):
            threshold = cfg.threshold_for(used)
            if combined >= threshold and trend == "up":
                side = "long"
            elif combined <= -threshold and trend == "down":
                side = "short"
        intent_id: str | None = None
        veto: str | None = None
        if side is not None:
            veto = self._warmup(bar) or self._veto(bar, side)
            if veto is None and not cfg.random_entries.enabled:
                veto = self._confirm_veto(bar, side)
            if veto is None:
                plan = stops.plan(side, bar.close, stop_atr, regime, cfg, TIMEFRAMES_NS[cfg.stop_timeframe])
                veto = self._plan_veto(bar, plan)
                if veto is None and plan is not None:
                    score = BarScore(
                        {"egm": egm, "ild": ild, "rol": rol, "pio": pio, "ogm": ogm}, combined, used, trend, ema,
                        atr, regime, bar_ns, False, stop_atr,
                    )  # fmt: skip
                    intent = self._intent(bar, side, score, plan)
                    intent_id = intent.event_id
                    out.append(intent)
        snapshot = ev.FactorSnapshot(
                event_id=derive_id("FactorSnapshot", bar.event_id),
                ts_event=bar.ts_event,
                ts_init=bar.ts_event,
                symbol=bar.symbol,
                venue=bar.venue,
                market=bar.market,
                bar_id=bar.event_id,
                interval=bar.interval,
                close=bar.close,
                egm=egm,
                ild=ild,
                rol=rol,
                pio=pio,
                ogm=ogm,
                combined=combined,
                used=used,
                ema_fast=ema[0],
                ema_mid=ema[1],
                ema_slow=ema[2],
                trend=trend,
                atr=atr,
                regime=regime,
                intent_id=intent_id,
                veto=veto,
                stop_atr=stop_atr,
            )  # fmt: skip
        out.append(snapshot)
        sym = self._symbols[bar.symbol]  # made by _fold_bar
        sym.last_bar, sym.last_snapshot = bar, snapshot
        return out

    def score(self, bar: ev.Bar) -> BarScore:
        """Fold a closed bar into its series and return its factors, trend, ATR and regime.

        A bar that opens more than ``max_bar_gap_intervals`` bar lengths after the previous one of its
        series, or not after it, first resets the series (its warm-up starts again with this bar).
        """
        resets = self.resets
        egm, ild, rol, pio, ogm, combined, used, trend, ema, atr, regime, bar_ns, stop_atr = self._fold_bar(bar)
        return BarScore(
            {"egm": egm, "ild": ild, "rol": rol, "pio": pio, "ogm": ogm}, combined, used, trend, ema, atr, regime,
            bar_ns, self.resets != resets, stop_atr,
        )  # fmt: skip

    def _fold_bar(self, bar: ev.Bar) -> tuple:  # type: ignore[type-arg]
        # the hot path of every backtest: locals and tuples, no intermediate objects
        cfg = self.cfg
        key = (bar.symbol, bar.interval)
        series = self._series.get(key)
        if series is None:
            series = self._series[key] = SeriesState(cfg, interval_ns(bar))
        bar_ns = series.bar_ns
        open_ns = bar.open_time_ns
        prev = series.prev_open_ns
        if prev is not None and (
            open_ns <= prev or (bar_ns is not None and open_ns - prev > cfg.max_bar_gap_intervals * bar_ns)
        ):
            self.resets += 1
            series = self._series[key] = SeriesState(cfg, bar_ns)
        series.prev_open_ns = open_ns
        series.bars += 1
        close = bar.close
        c_stats = series.closes.push_stats(close)
        v_stats = series.volumes.push_stats(bar.volume)
        trend = series.ema.update(close)
        atr = series.atr.update(bar.high, bar.low, close)
        stop_atr = series.stop_atr.update(open_ns, bar.ts_event, bar.high, bar.low, close)
        if series.confirm is not None:
            series.confirm.update(open_ns, bar.ts_event, close)
        median = series.atr_median
        median.update(bar.ts_event, atr)
        regime = median.regime(atr)
        symbol = bar.symbol
        if symbol == cfg.btc_symbol:
            self._btc_window(bar.interval).add(bar.ts_event, close)
        sym = self._symbols.get(symbol)
        if sym is None:
            sym = self._symbols[symbol] = SymbolState()
        if sym.news:
            regime = self._news_regime(sym.news, regime, bar.ts_event)
        if sym.health.stale:
            sym.health.on_data("bar")
        # factors.egm_score and factors.pio_score, inlined (bars are finite: ingest refuses NaN and inf)
        egm = pio = None
        if c_stats is not None:
            mean, var = c_stats
            std = sqrt(var) if var > 0.0 else 0.0
            egm = 0.0 if std <= _REL_STD_EPS * abs(mean) else tanh((close - mean) / std / 2.0)
        if v_stats is not None:
            mean_v = v_stats[0]
            if mean_v <= 0.0:
                pio = 0.0
            else:
                o, vol = bar.open, bar.volume
                x = vol / mean_v - 1.0
                x = 0.0 if x < 0.0 else 1.0 if x > 1.0 else x
                pio = x if close > o else -x if close < o else 0.0
        ild = rol = ogm = None
        book = sym.book
        if book is not None:
            bids, asks = factors.levels(book.bids), factors.levels(book.asks)
            ild = factors.ild(bids, asks, cfg.ild_levels)
            rol = factors.rol(bids, asks, cfg.rol_band)
            ogm = factors.ogm(bids, asks, cfg.ogm_max_spread_bps)
        decay = series.decay
        if decay is None:
            w_egm, w_ild, w_rol, w_pio, w_ogm = self._w
        else:
            change = decay.step(close, (egm, ild, rol, pio, ogm))
            if change.publish:
                self._adapted = (series, change.retired, change.restored)
            w_egm, w_ild, w_rol, w_pio, w_ogm = decay.weights(self._w)
        num = den = 0.0
        used: list[str] = []
        if egm is not None and w_egm:
            num, den = num + w_egm * egm, den + w_egm
            used.append("egm")
        if ild is not None and w_ild:
            num, den = num + w_ild * ild, den + w_ild
            used.append("ild")
        if rol is not None and w_rol:
            num, den = num + w_rol * rol, den + w_rol
            used.append("rol")
        if pio is not None and w_pio:
            num, den = num + w_pio * pio, den + w_pio
            used.append("pio")
        if ogm is not None and w_ogm:
            num, den = num + w_ogm * ogm, den + w_ogm
            used.append("ogm")
        if den == 0:
            combined = 0.0
        else:
            combined = num / den * 10.0
            combined = -10.0 if combined < -10.0 else 10.0 if combined > 10.0 else combined
        return egm, ild, rol, pio, ogm, combined, used, trend, series.ema.values(), atr, regime, bar_ns, stop_atr

    # --- state ----------------------------------------------------------------------------------

    def get_state(self) -> SignalState:
        """Return every series, every symbol's context and the BTC windows as one value."""
        series = [
            SeriesSnap(
                symbol=k[0],
                interval=k[1],
                closes=s.closes.state(),
                volumes=s.volumes.state(),
                ema=(s.ema.fast.state(), s.ema.mid.state(), s.ema.slow.state()),
                atr=s.atr.state(),
                atr_median=s.atr_median.state(),
                prev_open_ns=s.prev_open_ns,
                bars=s.bars,
                bar_ns=s.bar_ns,
                stop_atr=s.stop_atr.state(),
                decay=None if s.decay is None else s.decay.state(),
                confirm=None if s.confirm is None else s.confirm.state(),
            )
            for k, s in self._series.items()
        ]
        symbols = [
            SymbolSnap(
                sym,
                s.book,
                s.funding_rate,
                s.funding_interval_h,
                s.health.state(),
                s.last_bar,
                s.last_snapshot,
                list(s.news),
            )
            for sym, s in self._symbols.items()
        ]
        btc = {iv: w.state() for iv, w in self._btc.items()}
        return SignalState(series, symbols, btc, self.resets, dict(self.overrides))

    def set_state(self, state: SignalState) -> None:
        """Put back a state from :meth:`get_state` (its config overrides applied to this engine's base)."""
        self.overrides = dict(state.config_overrides)
        try:
            self._configure(
                live_config.updated(self.base, self.overrides, label="signal.") if self.overrides else self.base
            )
        except live_config.ConfigRejected as err:
            self.config_rejected += 1
            log.warning("config.rejected", extra={"errors": err.errors, "at": "restore"})
            self._configure(self.base)
        cfg = self.cfg
        self._series = {}
        for s in state.series:
            st = SeriesState(cfg, s.bar_ns)
            st.closes.restore(s.closes)
            st.volumes.restore(s.volumes)
            st.ema.fast.restore(s.ema[0])
            st.ema.mid.restore(s.ema[1])
            st.ema.slow.restore(s.ema[2])
            st.atr.restore(s.atr)
            st.atr_median.restore(s.atr_median)
            if s.stop_atr is not None:
                st.stop_atr.restore(s.stop_atr)
            if st.decay is not None and s.decay is not None:
                st.decay.restore(s.decay)
            if st.confirm is not None and s.confirm is not None:
                st.confirm.restore(s.confirm)
            st.prev_open_ns, st.bars = s.prev_open_ns, s.bars
            self._series[(s.symbol, s.interval)] = st
        self._symbols = {
            s.symbol: SymbolState(
                s.book,
                s.funding_rate,
                s.funding_interval_h,
                filters.FeedHealth.from_state(s.health),
                s.last_bar,
                s.last_snapshot,
                list(s.news),
            )
            for s in state.symbols
        }
        self._btc = {}
        for iv, pts in state.btc.items():
            self._btc_window(iv).restore(pts)
        self.resets = state.resets

    # --- helpers ----------------------------------------------------------------------------------

    def _warmup(self, bar: ev.Bar) -> str | None:
        if not bar.warmup:
            return None
        return f"{WARMUP}: a backfilled bar builds state and proposes nothing (Bar.warmup)"

    def _weights_adapted(
        self, bar: ev.Bar, series: SeriesState, retired: tuple[str, ...], restored: tuple[str, ...]
    ) -> ev.WeightsAdapted:
        decay = series.decay
        assert decay is not None
        names = factors.FACTOR_NAMES
        weights = decay.weights(self._w)
        accuracy = {n: decay.accuracy(i) for i, n in enumerate(names)}
        calls = {n: decay.calls(i) for i, n in enumerate(names)}

        def why(n: str) -> str:
            acc = accuracy[n]
            return f"{n} (accuracy {acc:.2f} over {calls[n]} calls)" if acc is not None else n

        reasons = [f"retired {why(n)}" for n in retired] + [f"restored {why(n)}" for n in restored]
        return ev.WeightsAdapted(
            event_id=derive_id("WeightsAdapted", bar.event_id), ts_event=bar.ts_event, ts_init=bar.ts_event,
            symbol=bar.symbol, venue=bar.venue, market=bar.market, bar_id=bar.event_id, interval=bar.interval,
            weights=dict(zip(names, weights, strict=True)),
            multipliers=dict(zip(names, decay.multipliers, strict=True)), accuracy=accuracy, calls=calls,
            retired=[n for i, n in enumerate(names) if decay.retired[i]],
            reason="; ".join(reasons) or "weights moved",
        )  # fmt: skip

    def _news_regime(self, items: list[ev.NewsItem], regime: Regime, now_ns: int) -> Regime:
        """The more severe of the volatility's ``regime`` and the news's (by its decayed impact)."""
        rules = self.cfg.news
        impact = abs(news_.decayed_impact(items, now_ns, int(rules.half_life_h * HOUR_NS)))
        level: Regime = "panic" if impact >= rules.panic_impact else "digesting"
        if impact < rules.digesting_impact or _SEVERITY[level] <= _SEVERITY[regime]:
            return regime
        return level

    def _news_veto(self, sym: SymbolState, now_ns: int) -> str | None:
        rules = self.cfg.news
        if not sym.news or not rules.veto:
            return None
        found = news_.critical(sym.news, now_ns, int(rules.veto_h * HOUR_NS))
        if not found:
            return None
        more = f" and {len(found) - 1} more" if len(found) > 1 else ""
        return f"{NEWS_CRITICAL}: {news_.describe(found[0])}{more}, critical within {rules.veto_h:g} h"

    def _confirm_veto(self, bar: ev.Bar, side: stops.Side) -> str | None:
        """The multi-timeframe confirmation's veto of a bar's candidate (None when it is off or agrees)."""
        confirm = self._series[(bar.symbol, bar.interval)].confirm
        return None if confirm is None else confirm.veto(side)

    def _plan_veto(self, bar: ev.Bar, plan: stops.StopPlan | None) -> str | None:
        """The veto of a candidate's stops: unavailable, or a net R:R below the minimum."""
        cfg = self.cfg
        if plan is None:
            return self._stops_unavailable(bar)
        if plan.net_risk_reward < cfg.min_risk_reward:
            return (
                f"{RISK_REWARD}: expected a net R:R >= {cfg.min_risk_reward:g}, was "
                f"{plan.net_risk_reward:.2f} (tp {plan.tp_distance:.3%}, sl {plan.sl_distance:.3%}, costs "
                f"{cfg.costs:.3%} per round trip)"
            )
        return None

    def _stops_unavailable(self, bar: ev.Bar) -> str:
        cfg = self.cfg
        seen = self._series[(bar.symbol, bar.interval)].stop_atr.count
        return (
            f"{STOPS_UNAVAILABLE}: expected {cfg.stop_atr_min_bars} closed {cfg.stop_timeframe} bars for the stop's "
            f"ATR{cfg.stop_atr_period}, was {seen}"
        )

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
            or self._news_veto(sym, bar.ts_event)
        )

    def _intent(
        self,
        bar: ev.Bar,
        side: stops.Side,
        score: BarScore,
        plan: stops.StopPlan,
        *,
        trigger: ev.Event | None = None,
        lead: list[str] | None = None,
    ) -> ev.IntentProposed:
        """The intent of ``bar``'s candidate; with ``trigger`` (a manual request) its id, time and
        causation are the trigger's, and ``lead`` comes first in the reasons."""
        cfg = self.cfg
        at = trigger if trigger is not None else bar
        iid = derive_id("IntentProposed", at.event_id)
        fast, mid, slow = score.ema
        rel = {"up": ">", "down": "<"}.get(score.trend, "vs")  # what the EMAs are, whatever the side
        factor_set = "+".join(score.used)
        threshold = cfg.threshold_for(score.used)
        thr = f"{'>=' if side == 'long' else '<='} {'+' if side == 'long' else '-'}{threshold:g} ({factor_set})"
        vol = "unknown" if plan.volatility is None else f"{plan.volatility:.2%}"
        stop_from = (
            f"{cfg.sl_atr_multiple:g} x ATR{cfg.stop_atr_period} of {cfg.stop_timeframe} bars {score.stop_atr:.8g}"
            if cfg.stop_mode == "atr" and score.stop_atr is not None
            else f"tp {cfg.tp_percentage:g} %, sl {cfg.sl_percentage:g} %"
        )
        rnd = cfg.random_entries
        if rnd.enabled and trigger is None:
            lead = [f"random entry: the baseline's draw (seed {rnd.seed}, rate {rnd.rate:.3%} of bars)"]
            thr = "(not used: a random entry)"
        reasons = [
            *(lead or ()),
            f"combined {score.combined:+.2f} {thr}",
            f"trend {score.trend}: ema{cfg.ema_fast} {_g(fast)} {rel} ema{cfg.ema_mid} {_g(mid)} "
            f"{rel} ema{cfg.ema_slow} {_g(slow)}",
            "factors " + ",".join(f"{n}={score.factors[n]:+.3f}" for n in score.used),
            f"stops {cfg.stop_mode} ({stop_from}): sl {plan.sl_distance:.3%}, tp {plan.tp_distance:.3%}, "
            f"net R:R {plan.net_risk_reward:.2f} after {cfg.costs:.3%} of fees and slippage",
            f"leverage {plan.leverage:g}x at daily volatility {vol}",
            f"regime {score.regime}" + self._regime_note(score.regime),
        ]
        series = self._series.get((bar.symbol, bar.interval))
        if series is not None and series.confirm is not None:
            share = series.confirm.agreement(side)
            with_side = "none known" if share is None else f"{share:.0%} of the known weight with the {side}"
            reasons.append(f"timeframes {series.confirm.describe()}: {with_side}")
        impact = self.news_impact(bar.symbol, at.ts_event)
        if impact is not None:
            reasons.append(f"news impact {impact:+.2f} (decayed, half-life {cfg.news.half_life_h:g} h)")
        return ev.IntentProposed(
            event_id=iid,
            ts_event=at.ts_event,
            ts_init=at.ts_event,
            symbol=bar.symbol,
            venue=bar.venue,
            market=bar.market,
            correlation_id=iid,
            causation_id=at.event_id,
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
            factors={n: v for n in score.used if (v := score.factors[n]) is not None},
            atr=score.atr,
            stop_atr=score.stop_atr,
            net_risk_reward=plan.net_risk_reward,
        )

    def _regime_note(self, regime: Regime) -> str:
        stop_m, size_m, leverage_m = stops.regime_multiples(regime, self.cfg)
        if (stop_m, size_m, leverage_m) == (1.0, 1.0, 1.0):
            return ""
        return f": stop x{stop_m:g}, size x{size_m:g}, leverage x{leverage_m:g}"

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
