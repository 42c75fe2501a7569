"""What a news assessment means to the components that read it: its decayed impact and its critical events.

The news analyst (``llm-validator``'s second component) publishes ``NewsAssessed`` events; the signal
(entry veto, regime) and the executor (the news protection) read them in log order and decide with
these pure functions of the assessment's key events and of event time, so a replay decides the same.

A symbol's news is its latest assessment that did not fail: each assessment reviews the whole window
(the last 7 days), so it replaces the one before instead of adding to it (the impact does not grow
with how often the model is asked). Each key event counts with its own age:

``impact(now) = Σ impact_i × 0.5^(max(0, now − t_i) / half_life)`` (24 h half-life by default), with
``t_i`` the key event's time (:attr:`~nertz_common.events.NewsItem.ts_ns`).
"""

from __future__ import annotations

from collections.abc import Iterable

from nertz_common import events as ev

HOUR_NS = 3_600_000_000_000


def decayed_impact(items: Iterable[ev.NewsItem], now_ns: int, half_life_ns: int) -> float:
    """Return ``Σ impact × 0.5^(age / half_life)`` over ``items`` (score units, each impact in [-2, 2]).

    Parameters
    ----------
    items : iterable of NewsItem
        The key events of the symbol's latest assessment.
    now_ns : int
        Event time of the decision, UNIX ns.
    half_life_ns : int
        Half-life of an event's weight, ns (> 0).

    Raises
    ------
    ValueError
        If ``half_life_ns <= 0``.
    """
    if half_life_ns <= 0:
        raise ValueError(f"expected half_life_ns > 0, was {half_life_ns}")
    return sum(i.impact * 0.5 ** (max(0, now_ns - i.ts_ns) / half_life_ns) for i in items)


def critical(items: Iterable[ev.NewsItem], now_ns: int, within_ns: int, sign: int = 0) -> list[ev.NewsItem]:
    """Return the critical key events at most ``within_ns`` old at ``now_ns``, newest first.

    Parameters
    ----------
    items : iterable of NewsItem
    now_ns : int
        Event time, UNIX ns.
    within_ns : int
        How old a critical event may be to count, ns.
    sign : {-1, 0, 1}
        ``-1``: negative impact only (a threat to a long), ``1``: positive only (to a short), ``0``: any.
    """
    out = [
        i
        for i in items
        if i.critical and now_ns - i.ts_ns <= within_ns and (sign == 0 or (i.impact < 0 if sign < 0 else i.impact > 0))
    ]
    return sorted(out, key=lambda i: -i.ts_ns)


def describe(item: ev.NewsItem) -> str:
    """One line for a veto or an exit reason: ``"<title> (<date>, impact -2)"``."""
    return f"{item.title} ({item.date}, impact {item.impact:+g})"
