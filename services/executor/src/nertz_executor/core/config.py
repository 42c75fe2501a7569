"""The executor's typed configuration (built from settings by the composition root)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

SECOND_NS = 1_000_000_000
MINUTE_NS = 60 * SECOND_NS
HOUR_NS = 60 * MINUTE_NS
DAY_NS = 24 * HOUR_NS

#: default correlation groups (issue 8): BTC on its own, layer-1 chains, memecoins (Bybit's linear names
#: of the 1000-multiplied contracts included); a symbol in no group is a group of its own
DEFAULT_CORRELATION_GROUPS: Mapping[str, tuple[str, ...]] = {
    "btc": ("BTCUSDT",),
    "layer1": (
        "ETHUSDT", "SOLUSDT", "AVAXUSDT", "ADAUSDT", "DOTUSDT", "NEARUSDT", "ATOMUSDT", "APTUSDT", "SUIUSDT",
        "SEIUSDT",
    ),
    "memecoins": (
        "DOGEUSDT", "SHIBUSDT", "SHIB1000USDT", "PEPEUSDT", "1000PEPEUSDT", "WIFUSDT", "BONKUSDT", "1000BONKUSDT",
        "FLOKIUSDT", "1000FLOKIUSDT",
    ),
}  # fmt: skip

#: default drawdown tiers of the adaptive leverage: (drawdown below, factor)
DEFAULT_DRAWDOWN_TIERS: tuple[tuple[float, float], ...] = ((0.05, 1.0), (0.10, 0.75), (0.15, 0.5))


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
    news_protection : bool
        Close an open long at market on a critical negative key event of the symbol's news (a short on
        a critical positive one), exit reason ``news``; off by default (docs/decisions.md D25).
    news_protection_ns : int
        How old a critical event may be to close a position, ns (24 h of event time).
    max_positions : int
        Most positions open or pending at once, account-wide.
    max_leverage : float
        Cap of the intent's leverage and of account notional / equity.
    min_notional_usdt : float
        Smallest entry notional, USDT, when the instrument's ``InstrumentSpec`` names none (Bybit linear
        minimum order value is 5 USDT).
    max_risk_per_trade : float
        Largest loss at the stop-loss as a fraction of equity (0.015 = 1.5 %).
    daily_loss_limit : float
        Daily loss circuit breaker: new entries halt when the UTC day's realized P&L is at or below
        ``-daily_loss_limit × start-of-day equity`` (0.05 = 5 %), until the next UTC day.
    trading_enabled : bool
        Whether new entries are allowed before any ``TradingStarted``/``TradingStopped``.
    venue_name : str
        The venue traded on: ``paper`` (the simulation) or a real venue (``bybit``), recorded in orders
        and fills; a real venue's reports are taken only when they name it.
    on_foreign : {"adopt", "halt"}
        What reconciliation does with a position opened outside Nertz: adopt it (lock the symbol and
        manage the position like its own) or halt the symbol's entries.
    correlation_groups : mapping of str to tuple of str
        Groups of symbols that move together, by name (default :data:`DEFAULT_CORRELATION_GROUPS`); a
        symbol belongs to one group at most, and a symbol in none is a group of its own.
    max_positions_per_group : int
        Most positions open or pending at once within one correlation group.
    max_funding_rate_8h : float
        An entry that pays funding beyond this rate per 8 h is refused: a long when the rate is above
        ``+max_funding_rate_8h``, a short when it is below the negative (0.0025 = 0.25 % per 8 h).
    base_leverage : float
        Base of the adaptive leverage (x; 10, the default cap): the entry's leverage is
        ``base × vol_factor × drawdown_factor × performance_factor`` clamped to ``[1, max_leverage]``
        (:func:`~nertz_executor.core.risk.adaptive_leverage`), and the account's notional / equity with
        the entry may not exceed it.
    reference_volatility : float or None
        Reference volatility of the adaptive leverage's ``vol_factor``, ATR / price (fraction per bar);
        None = per symbol, the median of the last ``volatility_window`` intents' ATR / entry price.
    volatility_window, volatility_min_samples : int
        Intents kept per symbol for that median, and how many it needs (fewer: ``vol_factor`` = 1).
    vol_factor_min, vol_factor_max : float
        Clamp of ``vol_factor`` (0.3, 1.5).
    drawdown_tiers : tuple of (float, float)
        ``drawdown_factor`` tiers: ``(drawdown below, factor)`` with increasing bounds, drawdown as a
        fraction of the peak equity (default < 5 % → 1.0, < 10 % → 0.75, < 15 % → 0.5).
    drawdown_floor_factor : float
        ``drawdown_factor`` at or beyond the last tier (0.25).
    drawdown_window_ns : int
        The peak equity is the highest equity over the closes of this window before the decision, ns
        (30 days).
    performance_window : int
        Closed trades (account-wide, latest first) the half-Kelly ``performance_factor`` reads (20).
    performance_min_trades : int
        Fewer closed trades than this: ``performance_factor`` = 1 (10).
    performance_factor_min, performance_factor_max : float
        Clamp of ``performance_factor`` (0.6, 1.2).
    maker_fee : float
        Maker fee as a fraction of notional (Bybit linear maker: 0.0002 = 0.02 %): the paper venue's fill
        of a resting Limit order (the scaled plan's TP1).
    exit_plan : {"single", "scaled"}
        How a position takes profit (issue 8): ``single`` = one exchange-native take-profit at the
        intent's R:R (the seed's, ≥ 3); ``scaled`` = TP1 at ``tp1_r`` R closing ``tp1_fraction`` of the
        position (a reduce-only Limit order placed after the entry fill) and TP2 at ``tp2_r`` R for the
        rest (the entry's exchange-native take-profit), R = |entry − stop-loss| of the filled entry.
    tp1_r, tp2_r : float
        R-multiples of TP1 and TP2 (1.5, 2.5), ``0 < tp1_r < tp2_r``.
    tp1_fraction : float
        Fraction of the position TP1 closes (0.5), in (0, 1); rounded down to the qty step.
    breakeven_trigger : float
        Once the position's unrealized return (bar high/low, book best bid/ask) reaches this fraction
        of the entry price (0.025 = 2.5 %), its stop moves to break-even; 0 = off.
    breakeven_offset : float
        The break-even stop is the entry price moved this fraction into profit (0.0015 = 0.15 %: the
        round trip's fees), below ``breakeven_trigger``.
    trail_distance : float
        After TP1 filled, a trailing stop follows the best price since at this fraction of TP1's price
        (0.02 = 2 %; Bybit's native ``trailingStop`` is a price distance); 0 = off.

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
    news_protection: bool = False
    news_protection_ns: int = 24 * HOUR_NS
    max_positions: int = 3
    max_leverage: float = 10.0
    min_notional_usdt: float = 5.0
    max_risk_per_trade: float = 0.015
    daily_loss_limit: float = 0.05
    trading_enabled: bool = True
    venue_name: str = "paper"
    on_foreign: Literal["adopt", "halt"] = "adopt"
    correlation_groups: Mapping[str, tuple[str, ...]] = field(default_factory=lambda: dict(DEFAULT_CORRELATION_GROUPS))
    max_positions_per_group: int = 1
    max_funding_rate_8h: float = 0.0025
    base_leverage: float = 10.0
    reference_volatility: float | None = None
    volatility_window: int = 50
    volatility_min_samples: int = 5
    vol_factor_min: float = 0.3
    vol_factor_max: float = 1.5
    drawdown_tiers: tuple[tuple[float, float], ...] = DEFAULT_DRAWDOWN_TIERS
    drawdown_floor_factor: float = 0.25
    drawdown_window_ns: int = 30 * DAY_NS
    performance_window: int = 20
    performance_min_trades: int = 10
    performance_factor_min: float = 0.6
    performance_factor_max: float = 1.2
    maker_fee: float = 0.0002
    exit_plan: Literal["single", "scaled"] = "single"
    tp1_r: float = 1.5
    tp2_r: float = 2.5
    tp1_fraction: float = 0.5
    breakeven_trigger: float = 0.025
    breakeven_offset: float = 0.0015
    trail_distance: float = 0.02

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
            "news_protection_ns > 0": self.news_protection_ns > 0,
            "max_positions >= 1": self.max_positions >= 1,
            "max_leverage >= 1": self.max_leverage >= 1,
            "min_notional_usdt >= 0": self.min_notional_usdt >= 0,
            "0 < max_risk_per_trade <= 1": 0 < self.max_risk_per_trade <= 1,
            "0 < daily_loss_limit <= 1": 0 < self.daily_loss_limit <= 1,
            "each symbol in one correlation group at most": _disjoint(self.correlation_groups),
            "max_positions_per_group >= 1": self.max_positions_per_group >= 1,
            "max_funding_rate_8h >= 0": self.max_funding_rate_8h >= 0,
            "base_leverage >= 1": self.base_leverage >= 1,
            "reference_volatility None or > 0": self.reference_volatility is None or self.reference_volatility > 0,
            "volatility_window >= volatility_min_samples >= 1": (
                self.volatility_window >= self.volatility_min_samples >= 1
            ),
            "0 < vol_factor_min <= vol_factor_max": 0 < self.vol_factor_min <= self.vol_factor_max,
            "drawdown_tiers bounds increasing in (0, 1], factors in (0, 1]": _tiers_ok(self.drawdown_tiers),
            "0 < drawdown_floor_factor <= 1": 0 < self.drawdown_floor_factor <= 1,
            "drawdown_window_ns > 0": self.drawdown_window_ns > 0,
            "performance_window >= performance_min_trades >= 1": (
                self.performance_window >= self.performance_min_trades >= 1
            ),
            "0 < performance_factor_min <= performance_factor_max": (
                0 < self.performance_factor_min <= self.performance_factor_max
            ),
            "0 <= maker_fee < 0.01": 0 <= self.maker_fee < 0.01,
            "exit_plan single or scaled": self.exit_plan in ("single", "scaled"),
            "0 < tp1_r < tp2_r": 0 < self.tp1_r < self.tp2_r,
            "0 < tp1_fraction < 1": 0 < self.tp1_fraction < 1,
            "0 <= breakeven_offset < breakeven_trigger < 1 (or trigger 0: off)": self.breakeven_trigger == 0
            or 0 <= self.breakeven_offset < self.breakeven_trigger < 1,
            "0 <= trail_distance < 1": 0 <= self.trail_distance < 1,
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            raise ValueError(f"expected {', '.join(bad)}; was {self!r}")

    @property
    def slippage(self) -> float:
        """Slippage as a fraction (``slippage_bps / 10_000``)."""
        return self.slippage_bps / 10_000.0

    def group_of(self, symbol: str) -> str:
        """Return the correlation group of ``symbol``: its group's name, or the symbol itself when it is in none."""
        for name, members in self.correlation_groups.items():
            if symbol in members:
                return name
        return symbol


def _disjoint(groups: Mapping[str, tuple[str, ...]]) -> bool:
    members = [s for g in groups.values() for s in g]
    return len(members) == len(set(members))


def _tiers_ok(tiers: tuple[tuple[float, float], ...]) -> bool:
    bounds = [b for b, _ in tiers]
    return all(0 < b <= 1 for b in bounds) and bounds == sorted(set(bounds)) and all(0 < f <= 1 for _, f in tiers)
