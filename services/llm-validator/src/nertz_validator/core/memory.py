"""The validator's memory: recent performance and lock state per symbol, folded from ``exec.*``.

The memory is a pure fold of the executor's events in log order (never read from Postgres), so a
replay sees the same memory. It is an immutable value: :meth:`Memory.apply` returns a new one, which
makes keeping "the memory as of this ``VerdictAwaited``" free, and a snapshot a plain encode. The lock
state comes from the one transition table (:mod:`nertz_common.lock`).
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
    """One closed position as the memory keeps it. ``pnl_usdt`` is net of fees."""

    pnl_usdt: float
    return_fraction: float
    exit_reason: str
    ts_close_ns: int


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
    """

    trades: tuple[RoundTrip, ...] = ()
    loss_streak: int = 0
    win_streak: int = 0
    cum_pnl_usdt: float = 0.0
    peak_pnl_usdt: float = 0.0
    lock_state: ev.LockState = "FLAT"

    @property
    def drawdown_usdt(self) -> float:
        """Drawdown of the cumulative realized P&L from its peak, USDT (≥ 0)."""
        return self.peak_pnl_usdt - self.cum_pnl_usdt

    def since(self, ts_ns: int) -> SymbolMemory:
        """Return the performance of the remembered trades closed at or after ``ts_ns`` only.

        Streaks, cumulative P&L and its peak are recomputed over those trades (the peak starts at
        0, i.e. at the window's start); the lock state is kept.
        """
        mem = SymbolMemory(lock_state=self.lock_state)
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
        return Memory({**self.symbols, sym: after})


def _fold(m: SymbolMemory, event: ev.Event) -> SymbolMemory:
    if isinstance(event, ev.PositionClosed):
        trade = RoundTrip(event.realized_pnl_usdt, event.return_fraction, event.exit_reason, event.ts_event)
        m = _add_trade(m, trade)
    target = lock.target_of(event)
    if target is None or target == m.lock_state:
        return m
    return replace(m, lock_state=target)


def _add_trade(m: SymbolMemory, t: RoundTrip) -> SymbolMemory:
    won = t.pnl_usdt > 0
    cum = m.cum_pnl_usdt + t.pnl_usdt
    return SymbolMemory(
        trades=(*m.trades, t)[-WINDOW:],
        loss_streak=0 if won else m.loss_streak + 1,
        win_streak=m.win_streak + 1 if won else 0,
        cum_pnl_usdt=cum,
        peak_pnl_usdt=max(m.peak_pnl_usdt, cum),
        lock_state=m.lock_state,
    )


def encode(m: Memory) -> bytes:
    """Encode a memory (msgpack)."""
    return msgspec.msgpack.encode(m)
