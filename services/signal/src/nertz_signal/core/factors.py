"""Factor kernels, each a pure function of a bar window or a book, scoring in [-1, 1].

Definitions are those of ARCHITECTURE.md §3 (signal). Every kernel returns ``None`` (never NaN) when
the factor is unavailable: too few bars, an empty or one-sided book, a NaN input, or a zero
denominator that has no meaningful value. NaN never leaves this module.

Book arrays are ``NDArray[float64]`` of shape ``(n_levels, 2)`` holding ``(price, qty)`` rows, bids
sorted by price descending and asks ascending (as in :class:`nertz_common.events.BookSnapshot`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
from numpy.typing import NDArray

FACTOR_NAMES: tuple[str, ...] = ("egm", "ild", "rol", "pio", "ogm")

#: A window std below this fraction of the mean's magnitude is floating-point noise of a constant window
_REL_STD_EPS = 1e-12

Levels = NDArray[np.float64]


def egm(closes: NDArray[np.float64], n: int = 20) -> float | None:
    """Return the Exhaustion Gap Metric of the last close: ``tanh(z / 2)``.

    ``z = (close - SMA_n(close)) / std_n(close)`` over the last ``n`` closes, the current one included;
    ``std`` is the **population** standard deviation (``ddof=0``). When the std is zero (a flat window;
    also when it is below ``1e-12`` of the mean, i.e. rounding noise), ``z = 0`` and EGM is 0.

    Parameters
    ----------
    closes : NDArray[float64], shape (n_bars,)
        Close prices in USDT, oldest first; only the last ``n`` are used.
    n : int
        Window length in bars (default 20).

    Returns
    -------
    float or None
        EGM in (-1, 1); None when fewer than ``n`` closes are given or the window holds a NaN.

    Raises
    ------
    ValueError
        If ``n < 2``.

    Notes
    -----
    Source: ARCHITECTURE.md §3 signal, EGM row. With ``ddof=0`` and the current close in the window,
    ``|z| <= sqrt(n - 1)``, so EGM never reaches ±1.
    """
    if n < 2:
        raise ValueError(f"expected n >= 2, was {n}")
    if len(closes) < n:
        return None
    w = np.asarray(closes[-n:], dtype=np.float64)
    return egm_score(float(w[-1]), float(w.mean()), float(w.var()))


def egm_score(last: float, mean: float, variance: float) -> float | None:
    """Return ``tanh(z / 2)`` with ``z = (last - mean) / sqrt(variance)`` (the EGM of a full window).

    Parameters
    ----------
    last, mean : float
        The window's last close and its mean, USDT.
    variance : float
        The window's population variance, USDT² (>= 0).

    Returns
    -------
    float or None
        0.0 for a flat window (std below ``1e-12`` of the mean); None if an input is not finite.
    """
    std = math.sqrt(variance) if variance > 0.0 else 0.0
    if not (math.isfinite(mean) and math.isfinite(std) and math.isfinite(last)):
        return None
    if std <= _REL_STD_EPS * abs(mean):
        return 0.0
    return math.tanh((last - mean) / std / 2.0)


def pio(open_: float, close: float, volumes: NDArray[np.float64], n: int = 20) -> float | None:
    """Return the Price Impulse Oscillator of the last bar.

    ``PIO = sign(close - open) × clip(volume / mean_n(volume) - 1, 0, 1)``, where ``volume`` is the last
    bar's and ``mean_n`` the mean volume of the last ``n`` bars, the current one included. A window with
    zero total volume has no impulse: PIO is 0.

    Parameters
    ----------
    open_, close : float
        Open and close of the last bar, USDT.
    volumes : NDArray[float64], shape (n_bars,)
        Bar volumes in base currency, oldest first, ending with the last bar; only the last ``n`` are
        used.
    n : int
        Window length in bars (default 20).

    Returns
    -------
    float or None
        PIO in [-1, 1]; None when fewer than ``n`` volumes are given or an input is NaN.

    Raises
    ------
    ValueError
        If ``n < 1``.

    Notes
    -----
    Source: ARCHITECTURE.md §3 signal, PIO row.
    """
    if n < 1:
        raise ValueError(f"expected n >= 1, was {n}")
    if len(volumes) < n:
        return None
    v = np.asarray(volumes[-n:], dtype=np.float64)
    return pio_score(open_, close, float(v[-1]), float(v.mean()))


def pio_score(open_: float, close: float, volume: float, mean_volume: float) -> float | None:
    """Return ``sign(close - open) × clip(volume / mean_volume - 1, 0, 1)`` (the PIO of a full window).

    Parameters
    ----------
    open_, close : float
        The bar's open and close, USDT.
    volume, mean_volume : float
        The bar's volume and the window's mean volume, base currency.

    Returns
    -------
    float or None
        0.0 when the mean volume is not positive; None if an input is not finite.
    """
    if not (math.isfinite(mean_volume) and math.isfinite(open_) and math.isfinite(close) and math.isfinite(volume)):
        return None
    if mean_volume <= 0.0:
        return 0.0
    direction = (close > open_) - (close < open_)
    return direction * _clip(volume / mean_volume - 1.0, 0.0, 1.0)


def ild(bids: Levels, asks: Levels, k: int = 10) -> float | None:
    """Return the Imbalance Level Delta: ``(Σ bid qty - Σ ask qty) / (Σ bid qty + Σ ask qty)``.

    Parameters
    ----------
    bids, asks : NDArray[float64], shape (n_levels, 2)
        ``(price USDT, qty base)`` rows, best level first; the top ``k`` of each side are used.
    k : int
        Levels per side (default 10).

    Returns
    -------
    float or None
        ILD in [-1, 1] (positive: more resting bid quantity); None when a side is empty, the total
        quantity is zero, or a quantity is NaN.

    Raises
    ------
    ValueError
        If ``k < 1``.

    Notes
    -----
    Source: ARCHITECTURE.md §3 signal, ILD row. Antisymmetric: swapping the sides negates it exactly.
    """
    if k < 1:
        raise ValueError(f"expected k >= 1, was {k}")
    if len(bids) == 0 or len(asks) == 0:
        return None
    b = float(np.sum(bids[:k, 1]))
    a = float(np.sum(asks[:k, 1]))
    return _imbalance(b, a)


def rol(bids: Levels, asks: Levels, band: float = 0.005) -> float | None:
    """Return the Relative Orderbook Liquidity: the ILD of notional (``price × qty``) near the mid.

    Only levels whose price is within ``±band × mid`` of ``mid = (best bid + best ask) / 2`` count.

    Parameters
    ----------
    bids, asks : NDArray[float64], shape (n_levels, 2)
        ``(price USDT, qty base)`` rows, best level first.
    band : float
        Half-width of the band around the mid, fraction of mid (default 0.005 = 0.5 %).

    Returns
    -------
    float or None
        ROL in [-1, 1]; None when a side is empty, no notional lies in the band, or an input is NaN.

    Raises
    ------
    ValueError
        If ``band <= 0``.

    Notes
    -----
    Source: ARCHITECTURE.md §3 signal, ROL row.
    """
    if not band > 0:
        raise ValueError(f"expected band > 0, was {band}")
    if len(bids) == 0 or len(asks) == 0:
        return None
    mid = (float(bids[0, 0]) + float(asks[0, 0])) / 2.0
    if not math.isfinite(mid):
        return None
    lo, hi = mid * (1.0 - band), mid * (1.0 + band)
    bid_in = bids[bids[:, 0] >= lo]
    ask_in = asks[asks[:, 0] <= hi]
    b = float(np.sum(bid_in[:, 0] * bid_in[:, 1]))
    a = float(np.sum(ask_in[:, 0] * ask_in[:, 1]))
    return _imbalance(b, a)


def ogm(bids: Levels, asks: Levels, max_spread_bps: float = 20.0) -> float | None:
    """Return the Orderbook Gap Metric: where the microprice sits in the spread, damped by the spread.

    ``OGM = tightness × clip((microprice - mid) / (spread / 2), -1, 1)`` with
    ``tightness = 1 - clip(spread_bps / max_spread_bps, 0, 1)``,
    ``microprice = (bid × ask_qty + ask × bid_qty) / (bid_qty + ask_qty)`` on the best level,
    ``mid = (bid + ask) / 2``, ``spread = ask - bid``, ``spread_bps = spread / mid × 1e4``.

    Parameters
    ----------
    bids, asks : NDArray[float64], shape (n_levels, 2)
        ``(price USDT, qty base)`` rows, best level first; only the best level is used.
    max_spread_bps : float
        Spread in bps at which tightness reaches 0 (default 20 bps = 0.2 %).

    Returns
    -------
    float or None
        OGM in [-1, 1] (positive: the microprice leans to the ask, i.e. bid pressure); None when a side
        is empty, the book is locked or crossed (``spread <= 0``), the best quantities sum to zero, or
        an input is NaN.

    Raises
    ------
    ValueError
        If ``max_spread_bps <= 0``.

    Notes
    -----
    Source: ARCHITECTURE.md §3 signal, OGM row; microprice after Stoikov (2018), weighted-mid form.
    """
    if not max_spread_bps > 0:
        raise ValueError(f"expected max_spread_bps > 0, was {max_spread_bps}")
    if len(bids) == 0 or len(asks) == 0:
        return None
    bid, bid_qty = float(bids[0, 0]), float(bids[0, 1])
    ask, ask_qty = float(asks[0, 0]), float(asks[0, 1])
    if not all(math.isfinite(x) for x in (bid, bid_qty, ask, ask_qty)):
        return None
    spread = ask - bid
    depth = bid_qty + ask_qty
    if not spread > 0 or not depth > 0:
        return None
    mid = (bid + ask) / 2.0
    microprice = (bid * ask_qty + ask * bid_qty) / depth
    spread_bps = spread / mid * 1e4
    tightness = 1.0 - _clip(spread_bps / max_spread_bps, 0.0, 1.0)
    return tightness * _clip((microprice - mid) / (spread / 2.0), -1.0, 1.0)


def combined(factors: Mapping[str, float | None], weights: Mapping[str, float]) -> tuple[float, list[str]]:
    """Return the combined score and the factors that entered it.

    ``combined = clip((Σ w_i f_i) / (Σ w_i) × 10, -10, 10)`` over the *available* factors (not None,
    weight > 0), i.e. the weights are renormalised to sum to 1 over them.

    Parameters
    ----------
    factors : Mapping[str, float | None]
        Factor name (``egm``, ``ild``, ``rol``, ``pio``, ``ogm``) to its score in [-1, 1] or None.
    weights : Mapping[str, float]
        Factor name to its weight (>= 0; default design weights 0.2/0.3/0.3/0.1/0.1).

    Returns
    -------
    tuple[float, list[str]]
        The score in [-10, 10], and the names used in ``FACTOR_NAMES`` order. With no factor available
        the score is 0.0 and the list is empty.

    Raises
    ------
    ValueError
        If a factor value is NaN or a weight is negative.

    Notes
    -----
    Source: ARCHITECTURE.md §3 signal, ``combined`` and its renormalisation rule.
    """
    num = 0.0
    den = 0.0
    used: list[str] = []
    for name in FACTOR_NAMES:
        f = factors.get(name)
        w = weights.get(name, 0.0)
        if w < 0:
            raise ValueError(f"expected weight {name} >= 0, was {w}")
        if f is None or w == 0:
            continue
        if math.isnan(f):
            raise ValueError(f"expected factor {name} to be a number or None, was NaN")
        num += w * f
        den += w
        used.append(name)
    if den == 0:
        return 0.0, []
    return _clip(num / den * 10.0, -10.0, 10.0), used


def levels(rows: Sequence[tuple[float, float]]) -> Levels:
    """Return book rows as an ``NDArray[float64]`` of shape ``(n_levels, 2)`` (``(0, 2)`` when empty)."""
    if not rows:
        return np.empty((0, 2), dtype=np.float64)
    return np.asarray(rows, dtype=np.float64).reshape(-1, 2)


def _imbalance(b: float, a: float) -> float | None:
    total = b + a
    if not math.isfinite(total) or total <= 0:
        return None
    return (b - a) / total


def _clip(x: float, lo: float, hi: float) -> float:
    return lo if x < lo else hi if x > hi else x
