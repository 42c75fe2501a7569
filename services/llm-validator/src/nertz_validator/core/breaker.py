"""The circuit breaker: when a symbol breaches a performance limit, decide bounded, expiring overrides.

After AlphaStrike's LLM circuit breaker. A review is due at a ``PositionClosed`` when the symbol's
rolling win rate is below 40 % (over the last 10 round trips), its realized drawdown exceeds 15 % of
the reference equity, or it has lost 5 times in a row, and no review happened in the last
``cooloff_h`` hours. With a model, the model gets the performance report and answers through the tool
palette (:mod:`nertz_validator.core.answer`); without one, or when the model fails, the **rules
breaker** decides the same kind of overrides deterministically:

- a losing streak → ``disable_symbol`` for 6 h;
- a drawdown → ``adjust_position_size(0.5)`` for 24 h;
- a low win rate → ``adjust_position_size(0.5)`` for 12 h.

Either way the decision is a ``RiskOverrideIssued`` event, folded into the symbol's memory and applied
to the symbol's later verdicts until it expires, so a replay reproduces it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from nertz_common import events as ev
from nertz_common.ids import derive_id
from nertz_validator.core.memory import SymbolMemory
from nertz_validator.core.prompt import memory_doc, overrides_doc

HOUR_NS = 3_600_000_000_000


@dataclass(frozen=True, slots=True)
class BreakerConfig:
    """Limits of the circuit breaker.

    Attributes
    ----------
    enabled : bool
    min_win_rate : float
        Review below this win rate (fraction) over the last ``win_rate_window`` round trips.
    win_rate_window : int
    max_drawdown_fraction : float
        Review when the symbol's realized drawdown exceeds this fraction of ``equity_usdt``.
    equity_usdt : float
        Reference equity, USDT.
    max_loss_streak : int
        Review at this many losses in a row.
    cooloff_h : float
        No new review of a symbol within this many hours of the last one.
    """

    enabled: bool = True
    min_win_rate: float = 0.40
    win_rate_window: int = 10
    max_drawdown_fraction: float = 0.15
    equity_usdt: float = 10_000.0
    max_loss_streak: int = 5
    cooloff_h: float = 6.0

    @property
    def cooloff_ns(self) -> int:
        """``cooloff_h`` in ns."""
        return int(self.cooloff_h * HOUR_NS)


def breaches(m: SymbolMemory, cfg: BreakerConfig) -> list[tuple[str, str]]:
    """Return ``(kind, description)`` of every limit ``m`` breaches (``loss_streak``, ``drawdown``, ``win_rate``)."""
    out = []
    if m.loss_streak >= cfg.max_loss_streak:
        out.append(("loss_streak", f"{m.loss_streak} losses in a row (limit {cfg.max_loss_streak})"))
    dd = m.drawdown_usdt / cfg.equity_usdt
    if dd > cfg.max_drawdown_fraction:
        out.append(("drawdown", f"drawdown {dd:.1%} of equity (limit {cfg.max_drawdown_fraction:.0%})"))
    wr = m.win_rate(cfg.win_rate_window)
    if wr is not None and wr < cfg.min_win_rate:
        out.append(("win_rate", f"win rate {wr:.0%} over {cfg.win_rate_window} trades (limit {cfg.min_win_rate:.0%})"))
    return out


def due(m: SymbolMemory, cfg: BreakerConfig, now_ns: int) -> list[tuple[str, str]]:
    """The breaches that call for a review now (none while the last review's cool-off runs)."""
    if not cfg.enabled or now_ns < m.reviewed_until_ns:
        return []
    return breaches(m, cfg)


_RULES: dict[str, tuple[ev.OverrideKind, float | None, float]] = {
    "loss_streak": ("disable_symbol", None, 6.0),
    "drawdown": ("position_size", 0.5, 24.0),
    "win_rate": ("position_size", 0.5, 12.0),
}


def rules_overrides(symbol: str, found: list[tuple[str, str]], review_id: str, now_ns: int) -> list[ev.RiskOverride]:
    """The rules breaker's overrides for the breaches ``found`` (see the module docstring)."""
    out = []
    for i, (kind, what) in enumerate(found):
        o_kind, value, hours = _RULES[kind]
        out.append(
            ev.RiskOverride(
                override_id=derive_id("RiskOverride", review_id, i),
                kind=o_kind,
                symbol=symbol,
                value=value,
                until_ns=now_ns + int(hours * HOUR_NS),
                reason=f"rules breaker: {what}",
            )
        )
    return out


def report_doc(symbol: str, found: list[tuple[str, str]], m: SymbolMemory, now_ns: int) -> dict[str, Any]:
    """The performance report the model reviews (user document of ``breaker.*``)."""
    return {
        "task": "circuit_breaker",
        "symbol": symbol,
        "breaches": [what for _, what in found],
        "performance": memory_doc(m, now_ns, last=10),
        "long": dict(zip(("round_trips", "win_rate", "average_r"), m.side_stats("long"), strict=True)),
        "short": dict(zip(("round_trips", "win_rate", "average_r"), m.side_stats("short"), strict=True)),
        "overrides_in_force": overrides_doc(m.active(now_ns), now_ns),
    }
