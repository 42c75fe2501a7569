"""The signal's configuration: thresholds, weights, periods, stops and risk, validated at start-up.

A frozen pydantic model so that it nests in the service settings (``NERTZ_SIGNAL__ENTRY_THRESHOLD``,
``NERTZ_SIGNAL__WEIGHTS__ILD``...) and every bad key is reported in one error. Fractions are plain
fractions (0.01 = 1 %); the two ``*_percentage`` fields of the fixed stop mode are in percent, as
their names say.
"""

from __future__ import annotations

from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator


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


class SignalConfig(BaseModel):
    """Everything the signal engine decides with. Defaults are the design's (ARCHITECTURE.md §3).

    Attributes
    ----------
    entry_threshold : float
        ``|combined|`` needed for an intent, score units in (0, 10]. Default 9.5, calibrated on the
        bundled 30 days of 1m bars (no book: EGM and PIO only, where the score tops out near 9.8): 117 /
        111 / 78 intents for BTC / ETH / SOL (8.0 would give about 2,200 each). With book factors the
        score's distribution differs; recalibrate on recorded books.
    weights : FactorWeights
        Combined-score weights.
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
        Wilder ATR period in bars (14).
    panic_atr_multiple : float
        PANIC when ATR > this × its 30-day median (2.5).
    atr_sample_s, atr_median_days, atr_median_min_samples
        ATR median sampling (hourly), window (30 days) and warm-up (24 samples).
    stop_mode : "atr" or "fixed"
        Volatility stops, or the fixed ``tp_percentage``/``sl_percentage``.
    sl_atr_multiple, sl_min, sl_max : float
        ``SL = clamp(sl_atr_multiple × ATR / price, sl_min, sl_max)`` (1.5, 0.003, 0.05).
    risk_reward : float
        ``TP = risk_reward × SL``; at least 3.
    tp_percentage, sl_percentage : float
        Fixed mode distances in **percent** of entry price (3.0, 1.0); ratio at least 3.
    panic_stop_multiple, panic_size_multiple : float
        In PANIC the SL distance is multiplied by 1.5 (then clamped) and the size by 0.5.
    risk_per_trade : float
        Fraction of equity lost at the stop-loss (0.01).
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

    entry_threshold: float = Field(default=9.5, gt=0, le=10)
    weights: FactorWeights = FactorWeights()

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
    atr_sample_s: float = Field(default=3600.0, gt=0)
    atr_median_days: float = Field(default=30.0, gt=0)
    atr_median_min_samples: int = Field(default=24, ge=1)

    stop_mode: Literal["atr", "fixed"] = "atr"
    sl_atr_multiple: float = Field(default=1.5, gt=0)
    sl_min: float = Field(default=0.003, gt=0, lt=1)
    sl_max: float = Field(default=0.05, gt=0, lt=1)
    risk_reward: float = Field(default=3.0, ge=3)
    tp_percentage: float = Field(default=3.0, gt=0, lt=100)
    sl_percentage: float = Field(default=1.0, gt=0, lt=100)
    panic_stop_multiple: float = Field(default=1.5, ge=1)
    panic_size_multiple: float = Field(default=0.5, gt=0, le=1)

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

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        errors: list[str] = []
        if not self.ema_fast < self.ema_mid < self.ema_slow:
            errors.append(
                f"expected ema_fast < ema_mid < ema_slow, was {self.ema_fast}, {self.ema_mid}, {self.ema_slow}"
            )
        if not self.sl_min <= self.sl_max:
            errors.append(f"expected sl_min <= sl_max, was {self.sl_min} > {self.sl_max}")
        if not self.risk_reward * self.sl_max < 1:
            errors.append(
                f"expected risk_reward × sl_max < 1 (a short's take-profit above 0), was "
                f"{self.risk_reward} × {self.sl_max}"
            )
        if self.tp_percentage < 3 * self.sl_percentage:
            errors.append(
                f"expected tp_percentage >= 3 × sl_percentage (R:R >= 3), was {self.tp_percentage} and "
                f"{self.sl_percentage}"
            )
        if errors:
            raise ValueError("; ".join(errors))
        return self
