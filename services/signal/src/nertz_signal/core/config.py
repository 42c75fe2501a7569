"""The signal's configuration: thresholds, weights, periods, stops and risk, validated at start-up.

A frozen pydantic model so that it nests in the service settings (``NERTZ_SIGNAL__ENTRY_THRESHOLD``,
``NERTZ_SIGNAL__WEIGHTS__ILD``...) and every bad key is reported in one error. Fractions are plain
fractions (0.01 = 1 %); the two ``*_percentage`` fields of the fixed stop mode are in percent, as
their names say, and ``slippage_bps`` in basis points.
"""

from __future__ import annotations

import hashlib
from typing import Any, ClassVar, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from nertz_signal.core.confirm import ConfirmConfig
from nertz_signal.core.decay import DecayConfig
from nertz_signal.core.factors import FACTOR_NAMES
from nertz_signal.core.indicators import TIMEFRAMES_NS

#: The factors read from the order book; a factor set with one of them is a set "with books"
BOOK_FACTORS: frozenset[str] = frozenset({"ild", "rol", "ogm"})


class FactorWeights(BaseModel):
    """Weights of the combined score (ARCHITECTURE.md §3 signal); renormalised over available factors."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    egm: float = Field(default=0.2, ge=0)
    ild: float = Field(default=0.3, ge=0)
    rol: float = Field(default=0.3, ge=0)
    pio: float = Field(default=0.1, ge=0)
    ogm: float = Field(default=0.1, ge=0)

    @model_validator(mode="after")
    def _some_weight(self) -> Self:
        if sum(self.as_dict().values()) <= 0:
            raise ValueError("expected at least one factor weight > 0, all were 0")
        return self

    def as_dict(self) -> dict[str, float]:
        """Return ``{factor name: weight}``."""
        return {"egm": self.egm, "ild": self.ild, "rol": self.rol, "pio": self.pio, "ogm": self.ogm}


class NewsRules(BaseModel):
    """What the signal makes of the news analyst's assessments (``NERTZ_SIGNAL__NEWS__...``; docs/decisions.md D25).

    A symbol's news is its latest ``NewsAssessed`` without a failure; its decayed impact is
    ``Σ impact × 0.5^(age / half_life)`` over the key events (:mod:`nertz_common.news`). Without any
    assessment on the log nothing here applies.

    Attributes
    ----------
    veto : bool
        A critical key event at most ``veto_h`` old vetoes entries (``news_critical``), either side.
    veto_h : float
        Hours a critical event vetoes for (24).
    half_life_h : float
        Half-life of a key event's impact, hours (24).
    digesting_impact, panic_impact : float
        ``|decayed impact|`` at which the news alone makes the regime DIGESTING (1.0) and PANIC (2.0),
        score units of the model's -2..+2 per event.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    veto: bool = True
    veto_h: float = Field(default=24.0, gt=0, le=24 * 30)
    half_life_h: float = Field(default=24.0, gt=0, le=24 * 30)
    digesting_impact: float = Field(default=1.0, gt=0)
    panic_impact: float = Field(default=2.0, gt=0)

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.panic_impact < self.digesting_impact:
            raise ValueError(
                f"expected panic_impact >= digesting_impact, was {self.panic_impact} < {self.digesting_impact}"
            )
        return self


class RandomEntries(BaseModel):
    """Random entries: the evaluation's baseline, never a strategy (``nertz backtest --walk-forward``).

    On, a closed bar of the trading interval proposes an entry with probability ``rate``, long or short
    at even odds, instead of the threshold-and-trend decision; everything after it is the strategy's own
    (the filters, the stops, the net R:R check, the validator, the risk guard, the Hard Lock, the paper
    venue), so the baseline has the same exits and sizing. The draw is a hash of ``seed`` and the bar's
    id: the same bars give the same entries, through restarts and replays. The signal service refuses
    it (``nertz_signal.settings``).

    Attributes
    ----------
    enabled : bool
        Draw the entries at random (False).
    rate : float
        Probability of an entry per closed bar of the trading interval, fraction (0.001).
    seed : int
        Selects one random sequence (0).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    enabled: bool = False
    rate: float = Field(default=0.001, gt=0, le=1)
    seed: int = Field(default=0, ge=0)

    def side(self, bar_id: str) -> Literal["long", "short"] | None:
        """The draw of the bar ``bar_id``: ``"long"``/``"short"`` with probability ``rate / 2`` each, else None.

        ``u = first 8 bytes of BLAKE2b(seed:bar_id) / 2^64``; an entry when ``u < rate``, long when the
        9th byte is even.
        """
        d = hashlib.blake2b(f"{self.seed}:{bar_id}".encode(), digest_size=9).digest()
        if int.from_bytes(d[:8], "big") / 2.0**64 >= self.rate:
            return None
        return "long" if d[8] % 2 == 0 else "short"


class SignalConfig(BaseModel):
    """Everything the signal engine decides with. Defaults are the design's (ARCHITECTURE.md §3).

    Attributes
    ----------
    entry_threshold : float
        ``|combined|`` needed for an intent when the combined score used bar factors only (EGM, PIO),
        score units in (0, 10]. Default 9.5, calibrated on the bundled 30 days of 1m bars (where the
        score tops out near 9.8): 0.32 % of the bars reach it.
    entry_threshold_books : float
        The same when the score used a book factor (ILD, ROL or OGM), default 6.4: the threshold that
        the same 0.32 % of scores reach with the bundled recording's books (docs/decisions.md D20;
        ``bench/bench_score_distribution.py`` measures it). With books the bar factors weigh 0.3 of 1,
        so a bars-only threshold of 9.5 is out of reach (the recording's scores stay below 7.8).
    entry_thresholds : dict of str to float
        Thresholds of exact factor sets, overriding the two above: the key names the factors the
        score used, ``+``-joined in the order egm, ild, rol, pio, ogm (``"egm+ild+rol+pio+ogm"``).
        Empty by default.
    timeframe : str, optional
        The Bybit interval whose closed bars propose intents (``TIMEFRAME``: ``"60"`` for 1h); bars of
        other intervals still build their series' state and get their snapshot. None (default): every
        interval the feed carries.
    weights : FactorWeights
        Combined-score weights.
    confirm : ConfirmConfig
        Multi-timeframe confirmation (:mod:`nertz_signal.core.confirm`): off by default; on, a candidate
        needs the 1 h, 4 h and 1 d trends of its series (30 %, 50 %, 20 %) and the daily's consent.
    random_entries : RandomEntries
        The evaluation's random-entries baseline (off; the service refuses it).
    decay : DecayConfig
        The signal decay tracker (:mod:`nertz_signal.core.decay`): off by default; on, each bar series'
        weights follow its factors' rolling directional accuracy.
    egm_period, pio_period : int
        Bar windows of EGM and PIO (20).
    ild_levels : int
        Book levels per side for ILD (10).
    rol_band : float
        Half-width of the ROL band around the mid, fraction (0.005).
    ogm_max_spread_bps : float
        Spread (bps) at which OGM's tightness reaches 0 (20 bps, the spread filter's limit).
    ema_fast, ema_mid, ema_slow : int
        Trend EMA periods in bars (9, 21, 55).
    atr_period : int
        Wilder ATR period in bars (14) of the bar series' own ATR (the PANIC regime's, and ``atr`` in
        the snapshot).
    panic_atr_multiple : float
        PANIC when ATR > this × its 30-day median (2.5).
    digesting_atr_multiple : float
        DIGESTING when ATR > this × its 30-day median (1.3; below ``panic_atr_multiple``).
    atr_sample_s, atr_median_days, atr_median_min_samples
        ATR median sampling (hourly), window (30 days) and warm-up (24 samples).
    stop_mode : "atr" or "fixed"
        Volatility stops, or the fixed ``tp_percentage``/``sl_percentage``.
    stop_timeframe : str
        Bybit interval of the bars whose ATR sets the volatility stop, aggregated in signal from the
        series' closed bars (``"240"`` = 4 h; ``"1"`` … ``"720"``, ``"D"``, ``"W"``).
    stop_atr_period, stop_atr_min_bars : int
        Wilder period of that ATR (14 bars: 56 h of movement on 4 h bars), and the bars it needs
        before a stop can be set (6: one day); until then an ATR-mode candidate is vetoed
        ``stops_unavailable``.
    sl_atr_multiple, sl_min, sl_max : float
        ``SL = clamp(sl_atr_multiple × stop ATR / price, sl_min, sl_max)`` (1.5, 0.015, 0.05).
    risk_reward : float
        ``TP = risk_reward × SL`` in ATR mode (3.5; at least 3): gross, before costs.
    min_risk_reward : float
        Smallest net reward-to-risk of an intent (3): ``(TP − costs) / (SL + costs)`` with ``costs``
        the round trip's taker fees and slippage as a fraction of the entry; below it the candidate is
        vetoed ``risk_reward_below_min``. The default ``risk_reward`` keeps a stop on its 1.5 % floor
        at 3.14 net.
    taker_fee : float
        Taker fee per leg, fraction of notional (0.00055 = 0.055 %, Bybit's linear base rate).
    slippage_bps : float
        Expected adverse slippage per leg, bps (1, the paper venue's).
    tp_percentage, sl_percentage : float
        Fixed mode distances in **percent** of entry price (4.0, 1.0: 3.42 net); in fixed mode the
        net R:R must reach ``min_risk_reward``.
    panic_stop_multiple, panic_size_multiple, panic_leverage_multiple : float
        In PANIC the SL distance is multiplied by 1.5 (then clamped), the size by 0.5 and the leverage
        by 0.5 (at least 1×).
    digesting_stop_multiple, digesting_size_multiple, digesting_leverage_multiple : float
        In DIGESTING the SL distance is multiplied by 1.2 (then clamped), the size and the leverage by 0.8.
    news : NewsRules
        The news analyst's assessments: the critical-event veto, the decay, the news regimes.
    risk_per_trade : float
        Fraction of equity lost at the stop-loss, costs included (0.01).
    equity_usdt : float
        Reference equity in USDT (10,000). The signal has no account view; the executor's risk guard
        re-sizes against real equity.
    max_leverage : float
        Leverage cap (10); the volatility bands never exceed it.
    max_spread : float
        Spread filter, fraction of mid (0.002 = 0.2 %).
    max_funding_8h : float
        Funding filter, |rate| per 8 h as a fraction (0.0025 = 0.25 %).
    stale_book_s : float
        A book older than this (event time, seconds) at a closed bar vetoes (30).
    btc_symbol : str
        The market leader whose drop vetoes longs on the other symbols ("BTCUSDT").
    btc_drop : float
        BTC move (fraction, positive number) down over ``btc_window_s`` that vetoes alt longs (0.02).
    btc_window_s : float
        Look-back of the BTC filter in seconds (4 h).
    max_bar_gap_intervals : float
        A closed bar opening more than this many intervals after the previous one resets the symbol's
        warm-up (5).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    #: what a ``ConfigChanged`` cannot change while running (it shapes indicator state built from the
    #: log): these change through the environment and a restart (:mod:`nertz_common.live_config`)
    RESTART_KEYS: ClassVar[frozenset[str]] = frozenset(
        {
            "egm_period", "pio_period", "ema_fast", "ema_mid", "ema_slow", "atr_period", "panic_atr_multiple",
            "digesting_atr_multiple", "atr_sample_s", "atr_median_days", "atr_median_min_samples", "stop_timeframe",
            "stop_atr_period", "stop_atr_min_bars", "btc_symbol", "btc_window_s", "decay", "confirm",
            "random_entries",
        }
    )  # fmt: skip

    entry_threshold: float = Field(default=9.5, gt=0, le=10)
    entry_threshold_books: float = Field(default=6.4, gt=0, le=10)
    entry_thresholds: dict[str, float] = {}
    timeframe: str | None = None
    weights: FactorWeights = FactorWeights()
    decay: DecayConfig = DecayConfig()
    confirm: ConfirmConfig = ConfirmConfig()
    random_entries: RandomEntries = RandomEntries()

    egm_period: int = Field(default=20, ge=2, le=10_000)
    pio_period: int = Field(default=20, ge=1, le=10_000)
    ild_levels: int = Field(default=10, ge=1, le=1_000)
    rol_band: float = Field(default=0.005, gt=0, lt=1)
    ogm_max_spread_bps: float = Field(default=20.0, gt=0)

    ema_fast: int = Field(default=9, ge=1)
    ema_mid: int = Field(default=21, ge=1)
    ema_slow: int = Field(default=55, ge=1)
    atr_period: int = Field(default=14, ge=1)
    panic_atr_multiple: float = Field(default=2.5, gt=1)
    digesting_atr_multiple: float = Field(default=1.3, gt=1)
    atr_sample_s: float = Field(default=3600.0, gt=0)
    atr_median_days: float = Field(default=30.0, gt=0)
    atr_median_min_samples: int = Field(default=24, ge=1)

    stop_mode: Literal["atr", "fixed"] = "atr"
    stop_timeframe: str = "240"
    stop_atr_period: int = Field(default=14, ge=1, le=1_000)
    stop_atr_min_bars: int = Field(default=6, ge=1, le=1_000)
    sl_atr_multiple: float = Field(default=1.5, gt=0)
    sl_min: float = Field(default=0.015, gt=0, lt=1)
    sl_max: float = Field(default=0.05, gt=0, lt=1)
    risk_reward: float = Field(default=3.5, ge=3)
    min_risk_reward: float = Field(default=3.0, ge=1)
    taker_fee: float = Field(default=0.00055, ge=0, lt=0.01)
    slippage_bps: float = Field(default=1.0, ge=0, lt=1_000)
    tp_percentage: float = Field(default=4.0, gt=0, lt=100)
    sl_percentage: float = Field(default=1.0, gt=0, lt=100)
    panic_stop_multiple: float = Field(default=1.5, ge=1)
    panic_size_multiple: float = Field(default=0.5, gt=0, le=1)
    panic_leverage_multiple: float = Field(default=0.5, gt=0, le=1)
    digesting_stop_multiple: float = Field(default=1.2, ge=1)
    digesting_size_multiple: float = Field(default=0.8, gt=0, le=1)
    digesting_leverage_multiple: float = Field(default=0.8, gt=0, le=1)
    news: NewsRules = NewsRules()

    risk_per_trade: float = Field(default=0.01, gt=0, le=0.1)
    equity_usdt: float = Field(default=10_000.0, gt=0)
    max_leverage: float = Field(default=10.0, ge=1, le=100)

    max_spread: float = Field(default=0.002, gt=0)
    max_funding_8h: float = Field(default=0.0025, gt=0)
    stale_book_s: float = Field(default=30.0, gt=0)
    btc_symbol: str = Field(default="BTCUSDT", pattern=r"^[A-Z0-9]{2,30}$")
    btc_drop: float = Field(default=0.02, gt=0, lt=1)
    btc_window_s: float = Field(default=4 * 3600.0, gt=0)
    max_bar_gap_intervals: float = Field(default=5.0, ge=1)

    @field_validator("stop_timeframe", mode="before")
    @classmethod
    def _timeframe(cls, v: Any) -> Any:
        v = str(v) if isinstance(v, int) and not isinstance(v, bool) else v  # --set stop_timeframe=240 is JSON
        if v not in TIMEFRAMES_NS:
            raise ValueError(f"expected a Bybit interval in {list(TIMEFRAMES_NS)}, was {v!r}")
        return v

    @field_validator("timeframe", mode="before")
    @classmethod
    def _trade_timeframe(cls, v: Any) -> Any:
        v = str(v) if isinstance(v, int) and not isinstance(v, bool) else v
        if v is not None and v not in TIMEFRAMES_NS:
            raise ValueError(f"expected a Bybit interval in {list(TIMEFRAMES_NS)}, was {v!r}")
        return v

    @field_validator("entry_thresholds")
    @classmethod
    def _factor_sets(cls, v: dict[str, float]) -> dict[str, float]:
        bad = []
        for key, thr in v.items():
            names = key.split("+")
            if not names or any(n not in FACTOR_NAMES for n in names) or names != sorted(names, key=_factor_order):
                bad.append(f"expected a key of factor names joined by + in the order {'+'.join(FACTOR_NAMES)}, "
                           f"was {key!r}")  # fmt: skip
            elif len(set(names)) != len(names):
                bad.append(f"expected each factor once in {key!r}")
            if not 0 < thr <= 10:
                bad.append(f"expected the threshold of {key!r} in (0, 10], was {thr}")
        if bad:
            raise ValueError("; ".join(bad))
        return v

    @property
    def costs(self) -> float:
        """A round trip's expected costs, fraction of the entry notional: ``2 × (taker_fee + slippage)``."""
        return 2.0 * (self.taker_fee + self.slippage_bps / 10_000.0)

    def net_risk_reward(self, tp_distance: float, sl_distance: float) -> float:
        """Return the reward-to-risk after costs: ``(tp − costs) / (sl + costs)`` (distances as fractions)."""
        c = self.costs
        return (tp_distance - c) / (sl_distance + c)

    def threshold_for(self, used: list[str]) -> float:
        """Return the entry threshold of the factor set ``used`` (names in ``FACTOR_NAMES`` order)."""
        if self.entry_thresholds:
            thr = self.entry_thresholds.get("+".join(used))
            if thr is not None:
                return thr
        return self.entry_threshold_books if BOOK_FACTORS.intersection(used) else self.entry_threshold

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        errors: list[str] = []
        if not self.ema_fast < self.ema_mid < self.ema_slow:
            errors.append(
                f"expected ema_fast < ema_mid < ema_slow, was {self.ema_fast}, {self.ema_mid}, {self.ema_slow}"
            )
        if not self.digesting_atr_multiple < self.panic_atr_multiple:
            errors.append(
                f"expected digesting_atr_multiple < panic_atr_multiple, was {self.digesting_atr_multiple} >= "
                f"{self.panic_atr_multiple}"
            )
        if not self.sl_min <= self.sl_max:
            errors.append(f"expected sl_min <= sl_max, was {self.sl_min} > {self.sl_max}")
        if not self.risk_reward * self.sl_max < 1:
            errors.append(
                f"expected risk_reward × sl_max < 1 (a short's take-profit above 0), was "
                f"{self.risk_reward} × {self.sl_max}"
            )
        if self.risk_reward < self.min_risk_reward:
            errors.append(
                f"expected risk_reward >= min_risk_reward (else every ATR-mode intent is vetoed), was "
                f"{self.risk_reward} < {self.min_risk_reward}"
            )
        if self.stop_atr_min_bars > self.stop_atr_period:
            errors.append(
                f"expected stop_atr_min_bars <= stop_atr_period, was {self.stop_atr_min_bars} > {self.stop_atr_period}"
            )
        if self.stop_mode == "fixed":
            net = self.net_risk_reward(self.tp_percentage / 100.0, self.sl_percentage / 100.0)
            if net < self.min_risk_reward:
                errors.append(
                    f"expected a net R:R >= {self.min_risk_reward:g} in fixed mode (else every intent is vetoed), "
                    f"was {net:.2f}: tp {self.tp_percentage:g} %, sl {self.sl_percentage:g} %, costs "
                    f"{self.costs:.3%} per round trip"
                )
        if errors:
            raise ValueError("; ".join(errors))
        return self


def _factor_order(name: str) -> int:
    return FACTOR_NAMES.index(name) if name in FACTOR_NAMES else len(FACTOR_NAMES)
