"""The validator's memory: recent performance, lock state and risk overrides per symbol.

The memory is a pure fold of the executor's events in log order (never read from Postgres), so a
replay sees the same memory. It is an immutable value: :meth:`Memory.apply` returns a new one, which
makes keeping "the memory as of this ``VerdictAwaited``" free, and a snapshot a plain encode. The lock
state comes from the one transition table (:mod:`nertz_common.lock`).

It is kept **per symbol**: the executor's events of one symbol reach the validator in that symbol's
order, whatever the timing of the services, but how two symbols' events interleave on the log depends
on when verdicts arrived. A verdict that depended on another symbol's recent trades would depend on
that timing (docs/decisions.md D13); the account-wide limits are the executor's risk guard.
"""

from __future__ import annotations

import msgspec
from msgspec import Struct
from msgspec.structs import replace

from nertz_common import events as ev
from nertz_common import lock

#: how many recent round trips each symbol remembers
WINDOW = 20


class RoundTrip(Struct, frozen=True, array_like=True):
    """One closed position as the memory keeps it.

    ``pnl_usdt`` is net of fees; ``r_multiple`` is the P&L in units of the risk planned at the entry
    (``qty × |entry − stop-loss|``, Van Tharp's R), None when the entry's stop was not seen.
    """

    pnl_usdt: float
    return_fraction: float
    exit_reason: str
    ts_close_ns: int
    side: str = ""
    r_multiple: float | None = None


class SymbolMemory(Struct, frozen=True):
    """Performance of one symbol.

    Attributes
    ----------
    trades : tuple[RoundTrip, ...]
        The last ``WINDOW`` round trips, oldest first.
    loss_streak, win_streak : int
        Consecutive losses / wins up to the last trade.
    cum_pnl_usdt, peak_pnl_usdt : float
        Cumulative realized P&L (USDT) and its running maximum; drawdown = peak − cum.
    lock_state : str
        The Hard Lock state implied by the executor's events.
    risk_usdt : float
        Planned risk of the open position (``qty × |entry − stop-loss|``), USDT; 0 when flat.
    overrides : tuple[RiskOverride, ...]
        The circuit breaker's overrides for the symbol, newest last (expired ones are dropped when
        a new review comes).
    reviewed_until_ns : int
        No new circuit-breaker review before this time, UNIX ns.
    """

    trades: tuple[RoundTrip, ...] = ()
    loss_streak: int = 0
    win_streak: int = 0
    cum_pnl_usdt: float = 0.0
    peak_pnl_usdt: float = 0.0
    lock_state: ev.LockState = "FLAT"
    risk_usdt: float = 0.0
    overrides: tuple[ev.RiskOverride, ...] = ()
    reviewed_until_ns: int = 0

    def active(self, ts_ns: int) -> list[ev.RiskOverride]:
        """The overrides in force at ``ts_ns`` (``until_ns`` after it)."""
        return [o for o in self.overrides if o.until_ns > ts_ns]

    def side_stats(self, side: str) -> tuple[int, float | None, float | None]:
        """``(trades, win rate, average R)`` of the remembered round trips of one side."""
        ts = [t for t in self.trades if t.side == side]
        if not ts:
            return 0, None, None
        rs = [t.r_multiple for t in ts if t.r_multiple is not None]
        return len(ts), sum(t.pnl_usdt > 0 for t in ts) / len(ts), (sum(rs) / len(rs) if rs else None)

    def average_r(self) -> float | None:
        """Average R-multiple of the remembered round trips (None when none has one)."""
        rs = [t.r_multiple for t in self.trades if t.r_multiple is not None]
        return sum(rs) / len(rs) if rs else None

    @property
    def drawdown_usdt(self) -> float:
        """Drawdown of the cumulative realized P&L from its peak, USDT (≥ 0)."""
        return self.peak_pnl_usdt - self.cum_pnl_usdt

    def since(self, ts_ns: int) -> SymbolMemory:
        """Return the performance of the remembered trades closed at or after ``ts_ns`` only.

        Streaks, cumulative P&L and its peak are recomputed over those trades (the peak starts at
        0, i.e. at the window's start); the lock state is kept.
        """
        mem = replace(self, trades=(), loss_streak=0, win_streak=0, cum_pnl_usdt=0.0, peak_pnl_usdt=0.0)
        for t in self.trades:
            if t.ts_close_ns >= ts_ns:
                mem = _add_trade(mem, t)
        return mem

    def win_rate(self, window: int) -> float | None:
        """Fraction of winning trades among the last ``window`` (None when fewer were made)."""
        recent = self.trades[-window:]
        if len(recent) < window:
            return None
        return sum(t.pnl_usdt > 0 for t in recent) / len(recent)


_EMPTY = SymbolMemory()


class Memory(Struct, frozen=True):
    """Per-symbol memory, folded from the executor's events in log order."""

    symbols: dict[str, SymbolMemory] = {}

    def of(self, symbol: str) -> SymbolMemory:
        """Return the memory of ``symbol`` (empty when it never traded)."""
        return self.symbols.get(symbol, _EMPTY)

    def apply(self, event: ev.Event) -> Memory:
        """Fold one executor event; return the new memory (``self`` when nothing changed)."""
        sym: str | None = getattr(event, "symbol", None)
        if sym is None:
            return self
        before = self.of(sym)
        after = _fold(before, event)
        if after is before:
            return self
        return self.put(sym, after)

    def put(self, symbol: str, m: SymbolMemory) -> Memory:
        """Return the memory with ``symbol``'s replaced by ``m``."""
        return Memory({**self.symbols, symbol: m})

    def with_review(self, e: ev.RiskOverrideIssued, cooloff_ns: int) -> Memory:
        """Fold a circuit-breaker review of ``e.symbol``: its overrides apply, no review for ``cooloff_ns``."""
        m = self.of(e.symbol)
        kept = tuple(o for o in m.overrides if o.until_ns > e.ts_event)
        return self.put(
            e.symbol, replace(m, overrides=(*kept, *e.overrides), reviewed_until_ns=e.ts_event + cooloff_ns)
        )


def _fold(m: SymbolMemory, event: ev.Event) -> SymbolMemory:
    if isinstance(event, ev.PositionOpened):
        m = replace(m, risk_usdt=event.qty * abs(event.entry_price - event.stop_loss))
    elif isinstance(event, ev.PositionClosed):  # the whole round trip (a TP1 closed earlier included)
        r = event.trade_pnl_usdt / m.risk_usdt if m.risk_usdt > 0 else None
        trade = RoundTrip(
            event.trade_pnl_usdt, event.trade_return_fraction, event.exit_reason, event.ts_event, event.side, r
        )
        m = replace(_add_trade(m, trade), risk_usdt=0.0)
    target = lock.target_of(event)
    if target is None or target == m.lock_state:
        return m
    return replace(m, lock_state=target)


def _add_trade(m: SymbolMemory, t: RoundTrip) -> SymbolMemory:
    won = t.pnl_usdt > 0
    cum = m.cum_pnl_usdt + t.pnl_usdt
    return replace(
        m,
        trades=(*m.trades, t)[-WINDOW:],
        loss_streak=0 if won else m.loss_streak + 1,
        win_streak=m.win_streak + 1 if won else 0,
        cum_pnl_usdt=cum,
        peak_pnl_usdt=max(m.peak_pnl_usdt, cum),
    )


def encode(m: Memory) -> bytes:
    """Encode a memory (msgpack)."""
    return msgspec.msgpack.encode(m)
