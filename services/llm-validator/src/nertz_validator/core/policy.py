"""Validator policies: the opinion they give, and the deterministic rules policy (the default without
a ``DASHSCOPE_API_KEY``). The model policies ask Qwen through a call (:mod:`nertz_validator.core.component`)
and read its answer with :mod:`nertz_validator.core.answer`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from nertz_common import events as ev
from nertz_common.derive import derive
from nertz_validator.core.memory import SymbolMemory


@dataclass(frozen=True, slots=True)
class Opinion:
    """What a policy says about one intent (the verdict's content without its envelope)."""

    decision: ev.Decision
    confidence: float
    size_multiplier: float
    reasons: tuple[str, ...]
    risk_flags: tuple[str, ...] = ()
    policy: str = "rules"
    failure: str | None = None


class Policy(Protocol):
    """Judge one intent given the symbol's memory."""

    name: str

    def judge(self, intent: ev.IntentProposed, memory: SymbolMemory) -> Opinion: ...


@dataclass(frozen=True, slots=True)
class RulesConfig:
    """Thresholds of the rules policy (docs/validator.md explains each).

    Attributes
    ----------
    max_loss_streak : int
        Reject after this many losses in a row (ARCHITECTURE: 5).
    win_rate_window, min_win_rate : int, float
        Reject when the win rate over the last ``win_rate_window`` trades is below ``min_win_rate``
        (fraction). The default 0.25 is break-even at the default R:R of 3.
    max_drawdown_fraction : float
        Reject when the symbol's realized drawdown exceeds this fraction of ``equity_usdt`` (0.15).
    equity_usdt : float
        Reference equity for the drawdown rule, USDT.
    caution_loss_streak : int
        From this many losses in a row on, approve at half size.
    lookback_h : float
        The rules see only trades closed in the last ``lookback_h`` hours of event time, so every
        circuit breaker is bounded: with no new losses it lifts by itself (24 h by default).
    """

    max_loss_streak: int = 5
    win_rate_window: int = 12
    min_win_rate: float = 0.25
    max_drawdown_fraction: float = 0.15
    equity_usdt: float = 10_000.0
    caution_loss_streak: int = 3
    lookback_h: float = 24.0


class RulesPolicy:
    """Deterministic rules: circuit breakers on the symbol's recent performance, half size after a
    short losing streak, confidence = |combined| / 10.

    PANIC is flagged, not sized: signal already widened the stop and halved the size of a PANIC
    intent, and the design halves it once (a second halving here made it 1/6).
    """

    name = "rules"

    def __init__(self, config: RulesConfig | None = None) -> None:
        self.config = config or RulesConfig()

    def judge(self, intent: ev.IntentProposed, memory: SymbolMemory) -> Opinion:
        """Return approve/reject with reasons; never raises for a valid intent."""
        c = self.config
        recent = memory.since(intent.ts_event - int(c.lookback_h * 3_600_000_000_000))
        confidence = min(1.0, abs(intent.combined) / 10.0)
        vetoes: list[str] = []
        if recent.loss_streak >= c.max_loss_streak:
            vetoes.append(f"loss streak {recent.loss_streak} >= {c.max_loss_streak} in {c.lookback_h:g} h")
        wr = recent.win_rate(c.win_rate_window)
        if wr is not None and wr < c.min_win_rate:
            vetoes.append(f"win rate {wr:.2f} < {c.min_win_rate:.2f} over {c.win_rate_window} trades")
        dd = recent.drawdown_usdt / c.equity_usdt
        if dd > c.max_drawdown_fraction:
            vetoes.append(f"drawdown {dd:.3f} > {c.max_drawdown_fraction:.3f} of equity in {c.lookback_h:g} h")
        if vetoes:
            return Opinion("reject", confidence, 0.0, tuple(vetoes), ("circuit_breaker",))
        flags: list[str] = []
        size, reasons = 1.0, [f"combined {intent.combined:+.2f} with trend {intent.trend}"]
        if intent.regime == "panic":
            flags = [*flags, "panic"]
        if recent.loss_streak >= c.caution_loss_streak:
            size, flags = size * 0.5, [*flags, "loss_streak"]
        return Opinion("approve", confidence, size, tuple(reasons), tuple(flags))


def verdict_of(intent: ev.IntentProposed, opinion: Opinion, awaited: ev.VerdictAwaited) -> ev.VerdictIssued:
    """Wrap an opinion into the ``VerdictIssued`` event (deterministic id; time = the intent's)."""
    return derive(
        ev.VerdictIssued,
        intent,
        intent.event_id,
        correlation_id=intent.correlation_id,
        causation_id=awaited.event_id,
        decision=opinion.decision,
        confidence=opinion.confidence,
        size_multiplier=opinion.size_multiplier,
        policy=opinion.policy,
        reasons=list(opinion.reasons),
        risk_flags=list(opinion.risk_flags),
    )


def skipped_locked(lock_state: str) -> Opinion:
    """The verdict for an intent whose symbol is locked: not sent to any model (ARCHITECTURE §3)."""
    return Opinion("reject", 1.0, 0.0, (f"skipped: locked ({lock_state})",), ("locked",), "skipped")
