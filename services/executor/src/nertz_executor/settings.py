"""Settings of the executor (``NERTZ_EXECUTOR__...``), validated at start-up."""

from __future__ import annotations

from pydantic import BaseModel, Field

from nertz_common.settings import CommonSettings
from nertz_executor.core.config import SECOND_NS, ExecutorConfig


class ExecutorGroup(BaseModel):
    """The ``NERTZ_EXECUTOR__`` group: risk limits, lock timings, paper-venue costs and loop tuning."""

    model_config = {"extra": "forbid"}

    equity_usdt: float = Field(default=10_000.0, gt=0, description="starting equity, USDT")
    taker_fee: float = Field(default=0.00055, ge=0, lt=0.01, description="taker fee per leg, fraction of notional")
    slippage_bps: float = Field(default=1.0, ge=0, lt=1000, description="adverse slippage of fills/stops, bps")
    entry_timeout_s: float = Field(default=300.0, gt=0, description="entry expiry, s (event time)")
    cooldown_s: float = Field(default=900.0, ge=0, description="cooldown after a close, s (event time)")
    min_hold_s: float = Field(default=3600.0, ge=0, description="no own exit (stale, protections) before, s")
    max_hold_s: float = Field(default=172_800.0, gt=0, description="stale exit after, s")
    stale_band: float = Field(default=0.01, ge=0, description="stale exit when return below, fraction")
    max_positions: int = Field(default=3, ge=1, description="positions open or pending at once")
    max_leverage: float = Field(default=10.0, ge=1, description="leverage cap (intent and account notional / equity)")
    min_notional_usdt: float = Field(default=5.0, ge=0, description="minimum entry notional, USDT")
    max_risk_per_trade: float = Field(default=0.02, gt=0, le=1, description="max loss at stop-loss, fraction of equity")
    daily_loss_limit: float = Field(default=0.05, gt=0, le=1, description="daily loss breaker, fraction")
    trading_enabled: bool = Field(default=True, description="entries allowed before any TradingStarted/Stopped")
    venue_name: str = Field(default="paper", description="venue recorded in orders and fills")

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
            max_positions=self.max_positions,
            max_leverage=self.max_leverage,
            min_notional_usdt=self.min_notional_usdt,
            max_risk_per_trade=self.max_risk_per_trade,
            daily_loss_limit=self.daily_loss_limit,
            trading_enabled=self.trading_enabled,
            venue_name=self.venue_name,
        )


class ExecutorSettings(CommonSettings):
    """Environment: ``NATS_URL``, ``NERTZ_METRICS_PORT``, ``NERTZ_LOG_LEVEL``, ``NERTZ_SYMBOLS``,
    ``NERTZ_EXECUTOR__<KEY>`` (e.g. ``NERTZ_EXECUTOR__COOLDOWN_S=900``, ``NERTZ_EXECUTOR__MAX_POSITIONS=3``).
    """

    executor: ExecutorGroup = ExecutorGroup()
