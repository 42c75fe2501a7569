"""Settings of the executor (``NERTZ_EXECUTOR__...``), validated at start-up."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, Literal

from pydantic import AliasChoices, BaseModel, Field, SecretStr, model_validator

from nertz_common import live_config
from nertz_common.settings import CommonSettings
from nertz_executor.core.config import (
    DAY_NS,
    DEFAULT_CORRELATION_GROUPS,
    DEFAULT_DRAWDOWN_TIERS,
    SECOND_NS,
    ExecutorConfig,
)


class ExecutorGroup(BaseModel):
    """The ``NERTZ_EXECUTOR__`` group: risk limits, lock timings, paper-venue costs and loop tuning."""

    model_config = {"extra": "forbid"}

    #: what a ``ConfigChanged`` cannot change while running (the venue, the starting account, the
    #: switch before any command, the structured ones): environment and restart
    RESTART_KEYS: ClassVar[frozenset[str]] = frozenset(
        {"venue", "equity_usdt", "trading_enabled", "correlation_groups", "drawdown_tiers"}
    )

    equity_usdt: float = Field(default=10_000.0, gt=0, description="starting equity, USDT")
    taker_fee: float = Field(default=0.00055, ge=0, lt=0.01, description="taker fee per leg, fraction of notional")
    slippage_bps: float = Field(default=1.0, ge=0, lt=1000, description="adverse slippage of fills/stops, bps")
    entry_timeout_s: float = Field(default=300.0, gt=0, description="entry expiry, s (event time)")
    cooldown_s: float = Field(default=900.0, ge=0, description="cooldown after a close, s (event time)")
    min_hold_s: float = Field(default=3600.0, ge=0, description="no own exit (stale, protections) before, s")
    max_hold_s: float = Field(default=172_800.0, gt=0, description="stale exit after, s")
    stale_band: float = Field(default=0.01, ge=0, description="stale exit when return below, fraction")
    news_protection: bool = Field(
        default=False, description="close a long on a critical negative news event (a short on a positive one)"
    )
    news_protection_h: float = Field(default=24.0, gt=0, description="critical news this old or newer closes, h")
    max_positions: int = Field(default=3, ge=1, description="positions open or pending at once")
    max_leverage: float = Field(default=10.0, ge=1, description="leverage cap (intent and account notional / equity)")
    min_notional_usdt: float = Field(default=5.0, ge=0, description="minimum entry notional, USDT")
    max_risk_per_trade: float = Field(
        default=0.015, gt=0, le=1, description="max loss at stop-loss, fraction of equity (0.015 = 1.5 %)"
    )
    daily_loss_limit: float = Field(default=0.05, gt=0, le=1, description="daily loss breaker, fraction")
    trading_enabled: bool = Field(default=True, description="entries allowed before any TradingStarted/Stopped")
    venue: Literal["paper", "bybit"] = Field(
        default="paper",
        validation_alias=AliasChoices("venue", "venue_name"),
        description="where orders go: paper (the simulation) or bybit (BYBIT_ENV, BYBIT_API_KEY/SECRET)",
    )
    on_foreign: Literal["adopt", "halt"] = Field(
        default="adopt", description="a position opened outside Nertz found at reconciliation: adopt it or halt"
    )
    correlation_groups: dict[str, list[str]] = Field(
        default_factory=lambda: {k: list(v) for k, v in DEFAULT_CORRELATION_GROUPS.items()},
        description="correlation groups by name, JSON object of symbol lists, e.g. "
        '{"btc": ["BTCUSDT"], "l1": ["ETHUSDT", "SOLUSDT"]}; a symbol in no group is its own',
    )
    max_positions_per_group: int = Field(default=1, ge=1, description="positions open or pending per correlation group")
    max_funding_rate_8h: float = Field(
        default=0.0025, ge=0, description="entries paying funding beyond this are refused, fraction per 8 h"
    )
    base_leverage: float = Field(default=10.0, ge=1, description="base of the adaptive leverage, x")
    reference_volatility: float | None = Field(
        default=None, gt=0, description="reference ATR / price of vol_factor, fraction; unset = median of intents"
    )
    volatility_window: int = Field(default=50, ge=1, description="intents per symbol in the volatility median")
    volatility_min_samples: int = Field(default=5, ge=1, description="intents the median needs (else vol_factor 1)")
    vol_factor_min: float = Field(default=0.3, gt=0, description="lower clamp of vol_factor")
    vol_factor_max: float = Field(default=1.5, gt=0, description="upper clamp of vol_factor")
    drawdown_tiers: list[tuple[float, float]] = Field(
        default_factory=lambda: list(DEFAULT_DRAWDOWN_TIERS),
        description="drawdown_factor tiers [[drawdown below, factor], ...], fractions, JSON",
    )
    drawdown_floor_factor: float = Field(default=0.25, gt=0, le=1, description="drawdown_factor beyond the last tier")
    drawdown_window_days: float = Field(default=30.0, gt=0, description="peak equity over the closes of, days")
    performance_window: int = Field(default=20, ge=1, description="closed trades the half-Kelly factor reads")
    performance_min_trades: int = Field(default=10, ge=1, description="fewer closed trades: performance_factor 1")
    performance_factor_min: float = Field(default=0.6, gt=0, description="lower clamp of performance_factor")
    performance_factor_max: float = Field(default=1.2, gt=0, description="upper clamp of performance_factor")
    maker_fee: float = Field(default=0.0002, ge=0, lt=0.01, description="maker fee (paper TP1 fills), fraction")
    exit_plan: Literal["single", "scaled"] = Field(
        default="single", description="single: one TP at the intent's R:R; scaled: TP1 closing part, TP2 the rest"
    )
    tp1_r: float = Field(default=1.5, gt=0, description="scaled plan: TP1 at this R-multiple of the filled entry")
    tp2_r: float = Field(default=2.5, gt=0, description="scaled plan: TP2 at this R-multiple of the filled entry")
    tp1_fraction: float = Field(default=0.5, gt=0, lt=1, description="scaled plan: fraction of the position TP1 closes")
    breakeven_trigger: float = Field(
        default=0.025, ge=0, lt=1, description="stop to break-even once the return reaches, fraction; 0 = off"
    )
    breakeven_offset: float = Field(
        default=0.0015, ge=0, lt=1, description="break-even stop = entry moved into profit by, fraction (fees)"
    )
    trail_distance: float = Field(
        default=0.02, ge=0, lt=1, description="after TP1: trailing stop behind the best price, fraction; 0 = off"
    )

    @model_validator(mode="after")
    def _consistent(self) -> ExecutorGroup:
        self.to_config()  # cross-field rules (min <= max, disjoint groups, increasing tiers) raise ValueError
        return self

    def reconfigured(self, overrides: Mapping[str, Any]) -> ExecutorConfig:
        """Return the core's configuration with ``overrides`` (keys of this group) applied.

        Raises
        ------
        ConfigRejected
            Listing every bad key (:func:`nertz_common.live_config.updated`).
        """
        return live_config.updated(self, overrides, label="executor.").to_config()

    def to_config(self) -> ExecutorConfig:
        """Return the core's :class:`~nertz_executor.core.config.ExecutorConfig`."""
        return ExecutorConfig(
            equity_usdt=self.equity_usdt,
            taker_fee=self.taker_fee,
            slippage_bps=self.slippage_bps,
            entry_timeout_ns=round(self.entry_timeout_s * SECOND_NS),
            cooldown_ns=round(self.cooldown_s * SECOND_NS),
            min_hold_ns=round(self.min_hold_s * SECOND_NS),
            max_hold_ns=round(self.max_hold_s * SECOND_NS),
            stale_band=self.stale_band,
            news_protection=self.news_protection,
            news_protection_ns=round(self.news_protection_h * 3600 * SECOND_NS),
            max_positions=self.max_positions,
            max_leverage=self.max_leverage,
            min_notional_usdt=self.min_notional_usdt,
            max_risk_per_trade=self.max_risk_per_trade,
            daily_loss_limit=self.daily_loss_limit,
            trading_enabled=self.trading_enabled,
            venue_name=self.venue,
            on_foreign=self.on_foreign,
            correlation_groups={k: tuple(v) for k, v in self.correlation_groups.items()},
            max_positions_per_group=self.max_positions_per_group,
            max_funding_rate_8h=self.max_funding_rate_8h,
            base_leverage=self.base_leverage,
            reference_volatility=self.reference_volatility,
            volatility_window=self.volatility_window,
            volatility_min_samples=self.volatility_min_samples,
            vol_factor_min=self.vol_factor_min,
            vol_factor_max=self.vol_factor_max,
            drawdown_tiers=tuple((float(b), float(x)) for b, x in self.drawdown_tiers),
            drawdown_floor_factor=self.drawdown_floor_factor,
            drawdown_window_ns=round(self.drawdown_window_days * DAY_NS),
            performance_window=self.performance_window,
            performance_min_trades=self.performance_min_trades,
            performance_factor_min=self.performance_factor_min,
            performance_factor_max=self.performance_factor_max,
            maker_fee=self.maker_fee,
            exit_plan=self.exit_plan,
            tp1_r=self.tp1_r,
            tp2_r=self.tp2_r,
            tp1_fraction=self.tp1_fraction,
            breakeven_trigger=self.breakeven_trigger,
            breakeven_offset=self.breakeven_offset,
            trail_distance=self.trail_distance,
        )


class BybitGroup(BaseModel):
    """The ``NERTZ_BYBIT__`` group: how the Bybit venue adapter connects (no decision depends on it)."""

    model_config = {"extra": "forbid"}

    rest_url: str | None = Field(default=None, description="REST base URL; unset = BYBIT_ENV's host")
    ws_url: str | None = Field(
        default=None, description="private WebSocket base URL (ws://host:port); unset = BYBIT_ENV's"
    )
    timeout_s: float = Field(default=5.0, gt=0, description="per REST request, s")
    recv_window_ms: int = Field(default=5000, ge=1000, le=60_000, description="Bybit recv_window, ms")
    attempts: int = Field(default=5, ge=1, le=20, description="tries per REST call (rate limits, skew, 5xx)")
    rate_limit_max_wait_s: float = Field(default=10.0, gt=0, description="longest wait for a rate-limit reset, s")


class ExecutorSettings(CommonSettings):
    """Environment: ``NATS_URL``, ``NERTZ_METRICS_PORT``, ``NERTZ_LOG_LEVEL``, ``NERTZ_SYMBOLS``,
    ``NERTZ_EXECUTOR__<KEY>`` (e.g. ``NERTZ_EXECUTOR__COOLDOWN_S=900``, ``NERTZ_EXECUTOR__MAX_POSITIONS=3``,
    ``NERTZ_EXECUTOR__CORRELATION_GROUPS='{"btc": ["BTCUSDT"]}'``, ``NERTZ_EXECUTOR__EXIT_PLAN=scaled``,
    ``NERTZ_EXECUTOR__TRAIL_DISTANCE=0``); for the Bybit venue
    (``NERTZ_EXECUTOR__VENUE=bybit``): ``BYBIT_ENV`` (mainnet, testnet, demo), ``BYBIT_API_KEY``,
    ``BYBIT_API_SECRET`` and ``NERTZ_BYBIT__<KEY>`` (REST_URL, WS_URL, TIMEOUT_S, RECV_WINDOW_MS, ATTEMPTS,
    RATE_LIMIT_MAX_WAIT_S).
    """

    executor: ExecutorGroup = ExecutorGroup()
    bybit: BybitGroup = BybitGroup()
    bybit_env: Literal["mainnet", "testnet", "demo"] = Field("mainnet", validation_alias="BYBIT_ENV")
    bybit_api_key: SecretStr | None = Field(None, validation_alias="BYBIT_API_KEY")
    bybit_api_secret: SecretStr | None = Field(None, validation_alias="BYBIT_API_SECRET")

    @model_validator(mode="after")
    def _keys_for_bybit(self) -> ExecutorSettings:
        if self.executor.venue == "bybit" and (self.bybit_api_key is None or self.bybit_api_secret is None):
            raise ValueError(
                "NERTZ_EXECUTOR__VENUE=bybit needs BYBIT_API_KEY and BYBIT_API_SECRET (an API key of the "
                "BYBIT_ENV account: mainnet, testnet or demo)"
            )
        return self
