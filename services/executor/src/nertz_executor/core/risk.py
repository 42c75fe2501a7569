"""The risk guard: small named rules run before every entry; the first that refuses names the denial.

Each rule takes a :class:`RiskContext` and the configuration and returns None (pass) or the reason it
refuses, a short sentence with the figures (after Freqtrade's protections: one interface, named,
each saying why). A denial becomes a ``RiskDenied(rule, reason)`` event, never a silent drop.

The rules run in the order of :data:`RULES`, and the first refusal wins:

1. ``trading_stopped`` — an operator stopped trading (every symbol, or this one);
2. ``daily_loss_breaker`` — today's realized loss reached ``daily_loss_limit`` (5 %) of start-of-day
   equity: no entry until the next UTC day;
3. ``max_positions`` — ``max_positions`` (3) positions open or pending;
4. ``leverage_cap`` — the intent's leverage above ``max_leverage`` (10×), or the account's notional /
   equity with this entry above the entry's adaptive leverage (:func:`adaptive_leverage`);
5. ``risk_per_trade`` — the loss at the stop-loss above ``max_risk_per_trade`` (1.5 %) of equity;
6. ``instrument_unknown`` — no ``InstrumentSpec`` for the symbol on a real venue (on paper an entry
   without one is sent unrounded, as before instrument rules existed);
7. ``min_order_qty`` — the quantity, rounded down to the quantity step, below the instrument's
   ``min_order_qty``;
8. ``min_notional`` — the notional below the instrument's ``min_notional_usdt`` (else
   ``config.min_notional_usdt``, 5 USDT);
9. ``correlation_group`` — ``max_positions_per_group`` (1) positions open or pending in the symbol's
   correlation group (BTC, layer 1s, memecoins, ...; a symbol in no group is its own);
10. ``funding_rate`` — the funding rate per 8 h beyond ``max_funding_rate_8h`` (0.25 %) against the
    entry's side (a long pays a positive rate, a short a negative one).

Everything is pure: equity and prices in USDT, quantities in base currency, fractions as fractions.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from nertz_common import events as ev
from nertz_executor.core.config import ExecutorConfig
from nertz_executor.core.rounding import to_step

#: the venue whose orders need no instrument rules (the simulation)
PAPER = "paper"


@dataclass(frozen=True, slots=True)
class Leverage:
    """The adaptive leverage of one entry and the factors it is made of (see :func:`adaptive_leverage`).

    Attributes
    ----------
    leverage : float
        ``base × vol_factor × drawdown_factor × performance_factor`` clamped to ``[1, max_leverage]`` and
        rounded down to 0.01 (x).
    base : float
        The configured base leverage (x).
    vol_factor, drawdown_factor, performance_factor : float
        The three factors (dimensionless).
    drawdown : float
        The account drawdown from its peak equity the drawdown factor came from, fraction.
    """

    leverage: float
    base: float = 1.0
    vol_factor: float = 1.0
    drawdown_factor: float = 1.0
    performance_factor: float = 1.0
    drawdown: float = 0.0

    def describe(self) -> str:
        """Return the formula with its figures, e.g. ``10x × vol 0.80 × drawdown 1.00 × performance 1.00``."""
        return (
            f"{self.base:g}x × vol {self.vol_factor:.2f} × drawdown {self.drawdown_factor:.2f} "
            f"(drawdown {self.drawdown:.2%}) × performance {self.performance_factor:.2f}"
        )


@dataclass(frozen=True, slots=True)
class RiskContext:
    """What the rules see of one proposed entry and of the account.

    Attributes
    ----------
    qty : float
        Entry quantity after the verdict's size multiplier (and, with an instrument spec, rounded down
        to its quantity step), base currency.
    price_ref : float
        Reference entry price (the intent's), USDT.
    stop_loss : float
        Stop-loss price (rounded to the tick size with a spec), USDT.
    leverage : float
        The intent's leverage (≥ 1).
    equity_usdt : float
        Account equity (:attr:`~nertz_executor.core.lock.ExecutorState.equity_usdt`), USDT.
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
    side : {"long", "short"}
        The position the entry opens.
    order_leverage : Leverage or None
        The entry's adaptive leverage; None = ``max_leverage`` (no adaptation).
    has_instrument : bool
        Whether an ``InstrumentSpec`` of the symbol was read.
    min_order_qty : float or None
        The instrument's minimum order quantity, base currency; None = no spec.
    min_notional_usdt : float or None
        The instrument's minimum order value, USDT; None = not known (``config.min_notional_usdt``).
    group : str
        The symbol's correlation group (:meth:`ExecutorConfig.group_of`).
    group_open : int
        Positions open or pending in that group.
    funding_rate_8h : float or None
        The symbol's latest funding rate per 8 h, fraction; None = no ticker said.
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
    side: ev.PositionSide = "long"
    order_leverage: Leverage | None = None
    has_instrument: bool = True
    min_order_qty: float | None = None
    min_notional_usdt: float | None = None
    group: str = ""
    group_open: int = 0
    funding_rate_8h: float | None = None

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
    """Refuse an intent above the leverage cap, or one taking account notional / equity above the
    entry's adaptive leverage (``max_leverage`` when there is none)."""
    if ctx.leverage > config.max_leverage:
        return f"intent leverage {ctx.leverage:g}x above cap {config.max_leverage:g}x"
    account = (ctx.open_notional_usdt + ctx.notional_usdt) / ctx.equity_usdt if ctx.equity_usdt > 0 else float("inf")
    allowed = config.max_leverage if ctx.order_leverage is None else ctx.order_leverage.leverage
    if account > allowed:
        how = "" if ctx.order_leverage is None else f" (adaptive: {ctx.order_leverage.describe()})"
        return f"account leverage would be {account:.2f}x, allowed {allowed:.2f}x{how}, cap {config.max_leverage:g}x"
    return None


def risk_per_trade(ctx: RiskContext, config: ExecutorConfig) -> str | None:
    """Refuse an entry whose loss at the stop-loss exceeds ``max_risk_per_trade`` of equity."""
    risk = ctx.qty * abs(ctx.price_ref - ctx.stop_loss)
    cap = config.max_risk_per_trade * ctx.equity_usdt
    if risk > cap:
        return f"loss at stop-loss {risk:.2f} USDT above {config.max_risk_per_trade:.2%} of equity ({cap:.2f} USDT)"
    return None


def instrument_unknown(ctx: RiskContext, config: ExecutorConfig) -> str | None:
    """Refuse an entry on a real venue for a symbol whose trading rules (``InstrumentSpec``) were never
    read: its quantity and prices cannot be put on the exchange's grid. The paper venue takes it."""
    if ctx.has_instrument or config.venue_name == PAPER:
        return None
    return f"no InstrumentSpec read for the symbol: qty step and tick size unknown on venue {config.venue_name}"


def min_order_qty(ctx: RiskContext, config: ExecutorConfig) -> str | None:
    """Refuse an entry whose quantity (rounded down to the step) is below the instrument's minimum."""
    if ctx.min_order_qty is not None and ctx.qty < ctx.min_order_qty:
        return f"qty {ctx.qty:g} (rounded down to the qty step) below the minimum order qty {ctx.min_order_qty:g}"
    return None


def min_notional(ctx: RiskContext, config: ExecutorConfig) -> str | None:
    """Refuse an entry below the minimum order value: the instrument's, else ``config.min_notional_usdt``."""
    minimum = config.min_notional_usdt if ctx.min_notional_usdt is None else ctx.min_notional_usdt
    if ctx.notional_usdt < minimum:
        return f"notional {ctx.notional_usdt:.4f} USDT below minimum {minimum:g} USDT"
    return None


def correlation_group(ctx: RiskContext, config: ExecutorConfig) -> str | None:
    """Refuse an entry when its correlation group already holds ``max_positions_per_group`` positions
    open or pending."""
    if ctx.group_open >= config.max_positions_per_group:
        return (
            f"{ctx.group_open} positions open or pending in correlation group {ctx.group}, "
            f"max {config.max_positions_per_group}"
        )
    return None


def funding_rate(ctx: RiskContext, config: ExecutorConfig) -> str | None:
    """Refuse an entry that pays funding beyond ``max_funding_rate_8h`` per 8 h: a long when the rate
    is above ``+max_funding_rate_8h``, a short when it is below ``-max_funding_rate_8h`` (on Bybit longs
    pay shorts when the rate is positive). The rate is normalised to 8 h by the ticker's
    ``funding_interval_h``."""
    rate, cap = ctx.funding_rate_8h, config.max_funding_rate_8h
    if rate is None:
        return None
    if ctx.side == "long" and rate > cap:
        return f"funding rate {rate:+.4%} per 8 h above {cap:+.4%}: a long pays it"
    if ctx.side == "short" and rate < -cap:
        return f"funding rate {rate:+.4%} per 8 h below {-cap:+.4%}: a short pays it"
    return None


#: the rules in the order they run; the first refusal wins (see the module docstring)
RULES: tuple[tuple[str, Rule], ...] = (
    ("trading_stopped", trading_stopped),
    ("daily_loss_breaker", daily_loss_breaker),
    ("max_positions", max_positions),
    ("leverage_cap", leverage_cap),
    ("risk_per_trade", risk_per_trade),
    ("instrument_unknown", instrument_unknown),
    ("min_order_qty", min_order_qty),
    ("min_notional", min_notional),
    ("correlation_group", correlation_group),
    ("funding_rate", funding_rate),
)


def check(ctx: RiskContext, config: ExecutorConfig) -> tuple[str, str] | None:
    """Run :data:`RULES` in order; return ``(rule, reason)`` of the first refusal, or None."""
    for name, rule in RULES:
        reason = rule(ctx, config)
        if reason is not None:
            return name, reason
    return None


# --- adaptive leverage (after AlphaStrike) ---------------------------------------------------------


def _clamp(x: float, lo: float, hi: float) -> float:
    return min(hi, max(lo, x))


def reference_volatility(samples: Sequence[float], config: ExecutorConfig) -> float | None:
    """Return the reference volatility (ATR / price, fraction): ``config.reference_volatility`` when set,
    else the median of ``samples`` (the symbol's last intents), None with fewer than
    ``volatility_min_samples`` of them."""
    if config.reference_volatility is not None:
        return config.reference_volatility
    if len(samples) < config.volatility_min_samples:
        return None
    return statistics.median(samples)


def vol_factor(atr_fraction: float | None, reference: float | None, config: ExecutorConfig) -> float:
    """Return ``clamp(reference / current, vol_factor_min, vol_factor_max)`` (0.3–1.5): calmer than usual
    raises leverage, wilder lowers it. 1.0 when either volatility is unknown.

    Parameters
    ----------
    atr_fraction : float or None
        The intent's ATR / entry price (fraction per bar).
    reference : float or None
        :func:`reference_volatility`.
    config : ExecutorConfig
    """
    if atr_fraction is None or reference is None or not atr_fraction > 0:
        return 1.0
    return _clamp(reference / atr_fraction, config.vol_factor_min, config.vol_factor_max)


def drawdown_factor(drawdown: float, config: ExecutorConfig) -> float:
    """Return the factor of the first tier whose bound is above ``drawdown`` (fraction of the peak
    equity), else ``drawdown_floor_factor``: by default < 5 % → 1.0, < 10 % → 0.75, < 15 % → 0.5, else 0.25."""
    for bound, factor in config.drawdown_tiers:
        if drawdown < bound:
            return factor
    return config.drawdown_floor_factor


def half_kelly(pnls: Sequence[float]) -> float:
    """Return half the Kelly fraction of a record of trade results, in [-0.5, 0.5].

    ``kelly = p − (1 − p) / b`` with ``p`` the win rate (P&L > 0) and ``b`` the payoff ratio (mean win /
    mean loss); no losses gives ``kelly = p``, no wins ``kelly = −1``; clamped to [-1, 1], then halved
    (J. L. Kelly, "A New Interpretation of Information Rate", 1956; half-Kelly as in AlphaStrike).

    Raises
    ------
    ValueError
        If ``pnls`` is empty.
    """
    if not pnls:
        raise ValueError("expected at least one trade result, was none")
    wins = [x for x in pnls if x > 0]
    losses = [-x for x in pnls if x <= 0]
    p = len(wins) / len(pnls)
    mean_loss = sum(losses) / len(losses) if losses else 0.0
    if not wins:
        kelly = -1.0
    elif mean_loss <= 0:
        kelly = p
    else:
        kelly = p - (1.0 - p) / ((sum(wins) / len(wins)) / mean_loss)
    return _clamp(kelly, -1.0, 1.0) / 2.0


def performance_factor(pnls: Sequence[float], config: ExecutorConfig) -> float:
    """Return ``clamp(1 + half_kelly(pnls), performance_factor_min, performance_factor_max)`` (0.6–1.2)
    over the last ``performance_window`` closed trades; 1.0 with fewer than ``performance_min_trades``.

    A record at Kelly 0 (no edge) keeps 1.0; an edge raises the leverage up to 1.2×, a losing record
    lowers it to 0.6×.
    """
    if len(pnls) < config.performance_min_trades:
        return 1.0
    return _clamp(1.0 + half_kelly(pnls), config.performance_factor_min, config.performance_factor_max)


def adaptive_leverage(
    atr_fraction: float | None,
    volatility_samples: Sequence[float],
    drawdown: float,
    pnls: Sequence[float],
    config: ExecutorConfig,
) -> Leverage:
    """Return the entry's leverage after AlphaStrike's adaptive leverage (as named in issue 8):

    ``leverage = clamp(base × vol_factor × drawdown_factor × performance_factor, 1, max_leverage)``,
    rounded down to 0.01 (Bybit's ``leverageFilter.leverageStep``),

    with ``base = config.base_leverage`` (10×), ``vol_factor`` = reference / current volatility
    (:func:`vol_factor`, 0.3–1.5), ``drawdown_factor`` tiered by the account drawdown from its peak
    equity (:func:`drawdown_factor`), ``performance_factor`` from the half-Kelly of the recent closed
    trades (:func:`performance_factor`, 0.6–1.2).

    Parameters
    ----------
    atr_fraction : float or None
        The intent's ATR / entry price (fraction per bar); None = unknown (``vol_factor`` 1).
    volatility_samples : sequence of float
        The symbol's earlier intents' ATR / entry price (for the median reference).
    drawdown : float
        Account drawdown from its peak equity, fraction in [0, 1].
    pnls : sequence of float
        Realized P&L of the last closed trades, oldest first, USDT.
    config : ExecutorConfig
    """
    vf = vol_factor(atr_fraction, reference_volatility(volatility_samples, config), config)
    df = drawdown_factor(drawdown, config)
    pf = performance_factor(pnls, config)
    base = config.base_leverage
    lev = max(1.0, to_step(_clamp(base * vf * df * pf, 1.0, config.max_leverage), 0.01))
    return Leverage(
        leverage=lev, base=base, vol_factor=vf, drawdown_factor=df, performance_factor=pf, drawdown=drawdown
    )
