"""Stop-loss, take-profit, leverage and size of a proposed trade (ARCHITECTURE.md §3 signal, "Stops").

All distances are fractions of the entry price (0.01 = 1 %); prices and notionals are USDT; quantities
are base currency.

The volatility stop is ``clamp(1.5 × ATR / price, 1.5 %, 5 %)`` with the ATR of 4 h bars (ATR14, from
at least 6 of them) aggregated from the series' bars, ``TP = 3.5 × SL``, and every intent's reward-to-
risk is checked **after** a round trip's costs (2 × (0.055 % taker fee + 1 bp slippage) = 0.13 % of the
entry): ``(TP − costs) / (SL + costs) >= 3`` (docs/decisions.md D19). Measured on the bundled 30 days
of 1m bars (``bench/bench_score_distribution.py --stops``), share of the bars with a stop whose stop
sits on its floor, and the median stop:

=========  ======================================  ======================================
symbol     before: ATR14 of 1m bars, floor 0.3 %   now: ATR14 of 4 h bars, floor 1.5 %
=========  ======================================  ======================================
BTCUSDT    99.7 % (median 0.30 %)                  49.2 % (median 1.51 %)
ETHUSDT    93.1 % (median 0.30 %)                  0.0 % (median 3.11 %)
SOLUSDT    92.2 % (median 0.30 %)                  0.0 % (median 3.45 %)
=========  ======================================  ======================================

No stop sits on its 5 % cap. Before, TP = 3 × SL gross made a net R:R of 1.79 for the median intent
(0.13 % of costs on a 0.3 % stop); now the 297 intents of the bundled bars net 3.14 (a floor stop) to
3.39, median 3.30, none below 3. The ATR of daily bars (the seed's "30 days of movement") would put
ETH's and SOL's stops on the cap on every bar; that of 1 h bars BTC's on the floor on every bar.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from nertz_signal.core.config import SignalConfig
from nertz_signal.core.indicators import DAY_NS, Regime

Side = Literal["long", "short"]

#: (daily volatility at or above, leverage) from the design: 4 % → 3×, 3 % → 5×, 2 % → 7×, calmer → 10×
LEVERAGE_BANDS: tuple[tuple[float, float], ...] = ((0.04, 3.0), (0.03, 5.0), (0.02, 7.0))
CALM_LEVERAGE = 10.0


@dataclass(frozen=True, slots=True)
class StopPlan:
    """The exits and size of one intent.

    Attributes
    ----------
    sl_distance, tp_distance : float
        Stop-loss and take-profit distances, fractions of ``entry_price``.
    stop_loss, take_profit : float
        Trigger prices, USDT.
    leverage : float
        Leverage to trade at (1 .. cap).
    notional_usdt : float
        Position notional, USDT.
    qty : float
        Position size, base currency (``notional_usdt / entry_price``).
    volatility : float or None
        The daily volatility the leverage came from (fraction), None when unknown.
    net_risk_reward : float
        ``(tp_distance − costs) / (sl_distance + costs)``: the reward-to-risk after a round trip's fees
        and slippage (:attr:`SignalConfig.costs`).
    """

    sl_distance: float
    tp_distance: float
    stop_loss: float
    take_profit: float
    leverage: float
    notional_usdt: float
    qty: float
    volatility: float | None
    net_risk_reward: float


def clamp(x: float, lo: float, hi: float) -> float:
    """Return ``x`` limited to ``[lo, hi]``."""
    return lo if x < lo else hi if x > hi else x


def atr_sl_distance(atr: float, price: float, multiple: float = 1.5, lo: float = 0.015, hi: float = 0.05) -> float:
    """Return the volatility stop distance ``clamp(multiple × atr / price, lo, hi)``.

    Parameters
    ----------
    atr : float
        The stop's ATR (ATR14 of 4 h bars by default), USDT (>= 0).
    price : float
        Entry price, USDT (> 0).
    multiple : float
        ATR multiple (1.5).
    lo, hi : float
        Clamp bounds, fractions (1.5 %, 5 %).

    Returns
    -------
    float
        SL distance as a fraction of ``price``, in ``[lo, hi]``.

    Raises
    ------
    ValueError
        If ``price <= 0``, ``atr < 0`` or either is NaN.

    Notes
    -----
    Source: ARCHITECTURE.md §3 signal: ``SL distance = clamp(k × ATR / price, min, max)``, the bounds
    the six-agent seed's 1.5 %–5 %.
    """
    if not price > 0:
        raise ValueError(f"expected price > 0, was {price}")
    if not atr >= 0:
        raise ValueError(f"expected atr >= 0, was {atr}")
    return clamp(multiple * atr / price, lo, hi)


def daily_volatility(atr: float, price: float, bar_ns: int) -> float:
    """Return a daily-equivalent volatility: ``atr / price × sqrt(1 day / bar length)``.

    Square-root-of-time scaling of the per-bar ATR fraction, so that the leverage bands (quoted for a
    day) apply to any bar interval: on 1m bars, ``atr / price`` is multiplied by ``sqrt(1440) ≈ 38``.

    Parameters
    ----------
    atr : float
        ATR, USDT.
    price : float
        Price, USDT (> 0).
    bar_ns : int
        Bar length, ns (> 0).

    Raises
    ------
    ValueError
        If ``price <= 0`` or ``bar_ns <= 0``.
    """
    if not price > 0:
        raise ValueError(f"expected price > 0, was {price}")
    if bar_ns <= 0:
        raise ValueError(f"expected bar_ns > 0, was {bar_ns}")
    return atr / price * math.sqrt(DAY_NS / bar_ns)


def leverage_for(volatility: float | None, cap: float = 10.0) -> float:
    """Return the leverage for a daily volatility: 4 % → 3×, 3 % → 5×, 2 % → 7×, calmer → 10×.

    Bands are floors: a volatility at or above 4 % gets 3×, in [3 %, 4 %) 5×, in [2 %, 3 %) 7×, below
    2 % 10×. Unknown volatility (None or NaN) gets the most cautious band (3×). Never above ``cap``.

    Parameters
    ----------
    volatility : float or None
        Daily volatility, fraction (0.03 = 3 %).
    cap : float
        Configured leverage cap (>= 1).

    Raises
    ------
    ValueError
        If ``cap < 1``.

    Notes
    -----
    Source: ARCHITECTURE.md §3 signal ("leverage falls as volatility rises").
    """
    if not cap >= 1:
        raise ValueError(f"expected cap >= 1, was {cap}")
    if volatility is None or math.isnan(volatility):
        return min(LEVERAGE_BANDS[0][1], cap)
    for floor, lev in LEVERAGE_BANDS:
        if volatility >= floor:
            return min(lev, cap)
    return min(CALM_LEVERAGE, cap)


def position_notional(risk_per_trade: float, equity: float, sl_distance: float, leverage: float) -> float:
    """Return the notional (USDT) that loses ``risk_per_trade × equity`` at the stop, capped by leverage.

    ``notional = min(risk_per_trade × equity / sl_distance, leverage × equity)``.

    Parameters
    ----------
    risk_per_trade : float
        Fraction of equity at risk (0.01).
    equity : float
        Equity, USDT.
    sl_distance : float
        What a stop-out loses, fraction of the notional (> 0): the stop distance, plus the round trip's
        costs when :func:`plan` sizes.
    leverage : float
        Leverage cap for this trade.

    Raises
    ------
    ValueError
        If ``sl_distance <= 0``.
    """
    if not sl_distance > 0:
        raise ValueError(f"expected sl_distance > 0, was {sl_distance}")
    return min(risk_per_trade * equity / sl_distance, leverage * equity)


def regime_multiples(regime: Regime, cfg: SignalConfig) -> tuple[float, float, float]:
    """Return ``(stop, size, leverage)`` multiples of ``regime``: PANIC (1.5, 0.5, 0.5), DIGESTING
    (1.2, 0.8, 0.8), else (1, 1, 1) — the six-agent seed's "leverage × 0.5, stop × 1.5" and "leverage ×
    0.8, stop × 1.2", with the size following the leverage (the exposure scales by it)."""
    if regime == "panic":
        return cfg.panic_stop_multiple, cfg.panic_size_multiple, cfg.panic_leverage_multiple
    if regime == "digesting":
        return cfg.digesting_stop_multiple, cfg.digesting_size_multiple, cfg.digesting_leverage_multiple
    return 1.0, 1.0, 1.0


def plan(
    side: Side,
    price: float,
    atr: float | None,
    regime: Regime,
    cfg: SignalConfig,
    bar_ns: int | None,
) -> StopPlan | None:
    """Return the stops, leverage and size of an intent, or None when they cannot be set.

    ATR mode: ``SL = clamp(1.5 × ATR / price, 1.5 %, 5 %)``, ``TP = risk_reward × SL``. Fixed mode:
    ``SL = sl_percentage / 100``, ``TP = tp_percentage / 100``. In PANIC and DIGESTING
    (:func:`regime_multiples`) the SL distance is multiplied by the regime's stop multiple (1.5, 1.2;
    ATR mode only) and clamped again, TP follows it; in both modes the leverage and the size are
    multiplied by the regime's (0.5, 0.8; the leverage at least 1×). The size loses ``risk_per_trade``
    of equity at the stop *with* the round trip's costs (``notional × (SL + costs)``). Leverage comes
    from the daily volatility (:func:`daily_volatility` of the ATR) and caps the notional at
    ``leverage × equity``. The plan's ``net_risk_reward`` is for the caller to check
    (``min_risk_reward``).

    Parameters
    ----------
    side : "long" or "short"
    price : float
        Entry reference price, USDT (> 0).
    atr : float or None
        The stop's ATR (of ``cfg.stop_timeframe`` bars), USDT; None during its warm-up.
    regime : "normal", "digesting", "panic" or "unknown"
        ``unknown`` sizes as ``normal``.
    cfg : SignalConfig
    bar_ns : int or None
        Length of the bars the ATR is of, ns, for the volatility scaling; None when unknown.

    Returns
    -------
    StopPlan or None
        None in ATR mode without an ATR.

    Raises
    ------
    ValueError
        If ``price <= 0``.
    """
    if not price > 0:
        raise ValueError(f"expected price > 0, was {price}")
    stop_m, size_m, leverage_m = regime_multiples(regime, cfg)
    if cfg.stop_mode == "fixed":
        sl = cfg.sl_percentage / 100.0
        tp = cfg.tp_percentage / 100.0
    else:
        if atr is None:
            return None
        sl = atr_sl_distance(atr, price, cfg.sl_atr_multiple, cfg.sl_min, cfg.sl_max)
        if stop_m != 1.0:
            sl = clamp(sl * stop_m, cfg.sl_min, cfg.sl_max)
        tp = cfg.risk_reward * sl
    vol = daily_volatility(atr, price, bar_ns) if atr is not None and bar_ns else None
    leverage = leverage_for(vol, cfg.max_leverage)
    if leverage_m != 1.0:
        leverage = max(1.0, round(leverage * leverage_m, 2))  # Bybit's leverage step is 0.01
    notional = position_notional(cfg.risk_per_trade, cfg.equity_usdt, sl + cfg.costs, leverage) * size_m
    sign = 1.0 if side == "long" else -1.0
    return StopPlan(
        sl_distance=sl,
        tp_distance=tp,
        stop_loss=price * (1.0 - sign * sl),
        take_profit=price * (1.0 + sign * tp),
        leverage=leverage,
        notional_usdt=notional,
        qty=notional / price,
        volatility=vol,
        net_risk_reward=cfg.net_risk_reward(tp, sl),
    )
