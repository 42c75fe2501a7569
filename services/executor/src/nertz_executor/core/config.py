"""The executor's typed configuration (built from settings by the composition root)."""

from __future__ import annotations

from dataclasses import dataclass

SECOND_NS = 1_000_000_000
MINUTE_NS = 60 * SECOND_NS
HOUR_NS = 60 * MINUTE_NS
DAY_NS = 24 * HOUR_NS


@dataclass(frozen=True, slots=True)
class ExecutorConfig:
    """Risk limits, lock timings and paper-venue costs.

    Attributes
    ----------
    equity_usdt : float
        Starting account equity, USDT.
    taker_fee : float
        Taker fee as a fraction of notional per leg (Bybit linear taker: 0.00055 = 0.055 %).
    slippage_bps : float
        Adverse slippage of market fills and stop-losses, basis points (1 bp = 0.0001).
    entry_timeout_ns : int
        An entry not filled within this time (event time) expires, ns.
    cooldown_ns : int
        Time in COOLDOWN after a position closes, ns.
    min_hold_ns : int
        The executor never exits a position on its own before this holding time, ns: it gates every
        own exit (today the stale exit; trailing and protection exits of later issues too). Set above
        ``max_hold_ns`` it delays the stale exit to it.
    max_hold_ns : int
        After this holding time a position whose return is below ``stale_band`` is closed at market, ns.
    stale_band : float
        Return threshold of the stale exit, fraction of the entry price (0.01 = 1 %).
    max_positions : int
        Most positions open or pending at once, account-wide.
    max_leverage : float
        Cap of the intent's leverage and of account notional / equity.
    min_notional_usdt : float
        Smallest entry notional, USDT (Bybit linear minimum order value is 5 USDT).
    max_risk_per_trade : float
        Largest loss at the stop-loss as a fraction of equity (0.02 = 2 %).
    daily_loss_limit : float
        Daily loss circuit breaker: new entries halt when the UTC day's realized P&L is at or below
        ``-daily_loss_limit × start-of-day equity`` (0.05 = 5 %), until the next UTC day.
    trading_enabled : bool
        Whether new entries are allowed before any ``TradingStarted``/``TradingStopped``.
    venue_name : str
        Name recorded in orders and fills.

    Raises
    ------
    ValueError
        If a value is out of range (e.g. a negative fee or ``min_hold_ns > max_hold_ns``).
    """

    equity_usdt: float = 10_000.0
    taker_fee: float = 0.00055
    slippage_bps: float = 1.0
    entry_timeout_ns: int = 5 * MINUTE_NS
    cooldown_ns: int = 15 * MINUTE_NS
    min_hold_ns: int = 1 * HOUR_NS
    max_hold_ns: int = 48 * HOUR_NS
    stale_band: float = 0.01
    max_positions: int = 3
    max_leverage: float = 10.0
    min_notional_usdt: float = 5.0
    max_risk_per_trade: float = 0.02
    daily_loss_limit: float = 0.05
    trading_enabled: bool = True
    venue_name: str = "paper"

    def __post_init__(self) -> None:
        checks = {
            "equity_usdt > 0": self.equity_usdt > 0,
            "0 <= taker_fee < 0.01": 0 <= self.taker_fee < 0.01,
            "0 <= slippage_bps < 1000": 0 <= self.slippage_bps < 1000,
            "entry_timeout_ns > 0": self.entry_timeout_ns > 0,
            "cooldown_ns >= 0": self.cooldown_ns >= 0,
            "min_hold_ns >= 0": self.min_hold_ns >= 0,
            "max_hold_ns > 0": self.max_hold_ns > 0,
            "stale_band >= 0": self.stale_band >= 0,
            "max_positions >= 1": self.max_positions >= 1,
            "max_leverage >= 1": self.max_leverage >= 1,
            "min_notional_usdt >= 0": self.min_notional_usdt >= 0,
            "0 < max_risk_per_trade <= 1": 0 < self.max_risk_per_trade <= 1,
            "0 < daily_loss_limit <= 1": 0 < self.daily_loss_limit <= 1,
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            raise ValueError(f"expected {', '.join(bad)}; was {self!r}")

    @property
    def slippage(self) -> float:
        """Slippage as a fraction (``slippage_bps / 10_000``)."""
        return self.slippage_bps / 10_000.0
