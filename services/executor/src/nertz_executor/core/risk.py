"""The risk guard: small named rules run before every entry; the first that refuses names the denial.

Each rule takes a :class:`RiskContext` and the configuration and returns None (pass) or the reason it
refuses, a short sentence with the figures (after Freqtrade's protections: one interface, named,
each saying why). A denial becomes a ``RiskDenied(rule, reason)`` event, never a silent drop.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from nertz_executor.core.config import ExecutorConfig


@dataclass(frozen=True, slots=True)
class RiskContext:
    """What the rules see of one proposed entry and of the account.

    Attributes
    ----------
    qty : float
        Entry quantity after the verdict's size multiplier, base currency.
    price_ref : float
        Reference entry price (the intent's), USDT.
    stop_loss : float
        Stop-loss price, USDT.
    leverage : float
        The intent's leverage (≥ 1).
    equity_usdt : float
        Current account equity (start + realized P&L), USDT.
    open_notional_usdt : float
        Notional of the positions open or pending, at their entry prices, USDT.
    open_count : int
        Positions open or pending (LOCKED or ENTRY_PENDING symbols).
    trading_enabled : bool
        False after an operator's ``TradingStopped`` for every symbol or for this one.
    daily_pnl_usdt : float
        Realized P&L of the current UTC day, USDT.
    day_start_equity_usdt : float
        Equity at the start of the current UTC day, USDT.
    """

    qty: float
    price_ref: float
    stop_loss: float
    leverage: float
    equity_usdt: float
    open_notional_usdt: float
    open_count: int
    trading_enabled: bool
    daily_pnl_usdt: float
    day_start_equity_usdt: float

    @property
    def notional_usdt(self) -> float:
        """Entry notional ``qty × price_ref``, USDT."""
        return self.qty * self.price_ref


Rule = Callable[[RiskContext, ExecutorConfig], str | None]


def trading_stopped(ctx: RiskContext, config: ExecutorConfig) -> str | None:
    """Refuse every entry while an operator has stopped trading (for every symbol or this one)."""
    return None if ctx.trading_enabled else "trading stopped by operator (TradingStopped)"


def daily_loss_breaker(ctx: RiskContext, config: ExecutorConfig) -> str | None:
    """Refuse entries once today's realized loss reaches ``daily_loss_limit`` of start-of-day equity.

    The day is the UTC day of the verdict's ``ts_event``; the halt lifts at the next UTC day.
    """
    limit = -config.daily_loss_limit * ctx.day_start_equity_usdt
    if ctx.daily_pnl_usdt <= limit:
        return (
            f"daily realized P&L {ctx.daily_pnl_usdt:.2f} USDT <= {limit:.2f} USDT "
            f"(-{config.daily_loss_limit:.2%} of start-of-day equity); halted until the next UTC day"
        )
    return None


def max_positions(ctx: RiskContext, config: ExecutorConfig) -> str | None:
    """Refuse an entry when ``max_positions`` positions are already open or pending."""
    if ctx.open_count >= config.max_positions:
        return f"{ctx.open_count} positions open or pending, max {config.max_positions}"
    return None


def leverage_cap(ctx: RiskContext, config: ExecutorConfig) -> str | None:
    """Refuse an intent above the leverage cap, or one taking account notional / equity above it."""
    if ctx.leverage > config.max_leverage:
        return f"intent leverage {ctx.leverage:g}x above cap {config.max_leverage:g}x"
    account = (ctx.open_notional_usdt + ctx.notional_usdt) / ctx.equity_usdt if ctx.equity_usdt > 0 else float("inf")
    if account > config.max_leverage:
        return f"account leverage would be {account:.2f}x, cap {config.max_leverage:g}x"
    return None


def risk_per_trade(ctx: RiskContext, config: ExecutorConfig) -> str | None:
    """Refuse an entry whose loss at the stop-loss exceeds ``max_risk_per_trade`` of equity."""
    risk = ctx.qty * abs(ctx.price_ref - ctx.stop_loss)
    cap = config.max_risk_per_trade * ctx.equity_usdt
    if risk > cap:
        return f"loss at stop-loss {risk:.2f} USDT above {config.max_risk_per_trade:.2%} of equity ({cap:.2f} USDT)"
    return None


def min_notional(ctx: RiskContext, config: ExecutorConfig) -> str | None:
    """Refuse an entry below the venue's minimum order value."""
    if ctx.notional_usdt < config.min_notional_usdt:
        return f"notional {ctx.notional_usdt:.4f} USDT below minimum {config.min_notional_usdt:g} USDT"
    return None


#: the rules in the order they run; the first refusal wins
RULES: tuple[tuple[str, Rule], ...] = (
    ("trading_stopped", trading_stopped),
    ("daily_loss_breaker", daily_loss_breaker),
    ("max_positions", max_positions),
    ("leverage_cap", leverage_cap),
    ("risk_per_trade", risk_per_trade),
    ("min_notional", min_notional),
)


def check(ctx: RiskContext, config: ExecutorConfig) -> tuple[str, str] | None:
    """Run :data:`RULES` in order; return ``(rule, reason)`` of the first refusal, or None."""
    for name, rule in RULES:
        reason = rule(ctx, config)
        if reason is not None:
            return name, reason
    return None
