"""Helpers of the notifier tests, exposed as the session fixture ``nk`` (importlib mode: no shared modules).

Trades are built the way the executor writes them (entry order, ``PositionOpened`` + ``LockEngaged``,
maybe ``PositionReduced``, ``PositionClosed``), with P&L net of fees, so what the notifier renders and
sums can be checked by hand.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from nertz_common import events as ev
from nertz_common.ids import derive_id

MIN_NS = 60_000_000_000
#: 2025-05-30 22:00 UTC: two hours before a UTC midnight
T0 = int(dt.datetime(2025, 5, 30, 22, 0, tzinfo=dt.UTC).timestamp()) * 1_000_000_000
FEE = 0.00055


def t(minutes: float) -> int:
    """UNIX ns ``minutes`` after :data:`T0` (120 = 2025-05-31 00:00 UTC)."""
    return T0 + round(minutes * MIN_NS)


@dataclass
class Trade:
    """One round trip of ``symbol``: build its events in order."""

    symbol: str
    side: ev.PositionSide
    entry: float
    qty: float
    opened_at: int
    sl: float = 0.01
    rr: float = 3.0
    leverage: float = 5.0
    reduced_qty: float = 0.0
    reduced_pnl: float = 0.0
    reduced_fee: float = 0.0
    ids: dict[str, str] = field(default_factory=dict)

    @property
    def cid(self) -> str:
        return derive_id("IntentProposed", self.symbol, self.opened_at)

    @property
    def sign(self) -> int:
        return 1 if self.side == "long" else -1

    @property
    def stop_loss(self) -> float:
        return round(self.entry * (1 - self.sign * self.sl), 6)

    @property
    def take_profit(self) -> float:
        return round(self.entry * (1 + self.sign * self.rr * self.sl), 6)

    def _head(self, kind: str, ts: int, *key: object) -> dict[str, Any]:
        eid = derive_id(kind, self.cid, *key)
        return dict(event_id=eid, ts_event=ts, ts_init=ts, symbol=self.symbol, correlation_id=self.cid,
                    causation_id=self.cid)  # fmt: skip

    def order(self) -> ev.OrderSubmitted:
        return ev.OrderSubmitted(
            **self._head("OrderSubmitted", self.opened_at - 1), order_id=derive_id("order", self.cid),
            side="Buy" if self.side == "long" else "Sell", qty=self.qty, price_ref=self.entry,
            take_profit=self.take_profit, stop_loss=self.stop_loss, leverage=self.leverage,
        )  # fmt: skip

    def opened(self) -> ev.PositionOpened:
        return ev.PositionOpened(
            **self._head("PositionOpened", self.opened_at), position_id=derive_id("position", self.cid),
            side=self.side, qty=self.qty, entry_price=self.entry, take_profit=self.take_profit,
            stop_loss=self.stop_loss, fee_usdt=round(self.entry * self.qty * FEE, 6),
        )  # fmt: skip

    def lock(self, reason: str = "position_opened") -> ev.LockEngaged:
        return ev.LockEngaged(**self._head("LockEngaged", self.opened_at, reason), reason=reason)

    def entry_events(self) -> list[ev.Event]:
        return [self.order(), self.opened(), self.lock()]

    def reduced(self, at: int, price: float, qty: float) -> ev.PositionReduced:
        fee = round(price * qty * FEE + self.entry * qty * FEE, 6)
        pnl = round(self.sign * (price - self.entry) * qty - fee, 6)
        self.reduced_qty += qty
        self.reduced_pnl += pnl
        self.reduced_fee += fee
        return ev.PositionReduced(
            **self._head("PositionReduced", at, qty), position_id=derive_id("position", self.cid), side=self.side,
            qty_closed=qty, qty_left=self.qty - self.reduced_qty, entry_price=self.entry, exit_price=price,
            realized_pnl_usdt=pnl, fee_usdt=fee,
        )  # fmt: skip

    def closed(self, at: int, price: float, reason: ev.ExitReason) -> ev.PositionClosed:
        qty = self.qty - self.reduced_qty
        fee = round(price * qty * FEE + self.entry * qty * FEE, 6)
        pnl = round(self.sign * (price - self.entry) * qty - fee, 6)
        return ev.PositionClosed(
            **self._head("PositionClosed", at), position_id=derive_id("position", self.cid), side=self.side,
            qty=qty, entry_price=self.entry, exit_price=price, exit_reason=reason, realized_pnl_usdt=pnl,
            fee_usdt=fee, return_fraction=pnl / (self.entry * qty), holding_ns=at - self.opened_at,
            reduced_qty=self.reduced_qty, reduced_pnl_usdt=round(self.reduced_pnl, 6),
            reduced_fee_usdt=round(self.reduced_fee, 6),
        )  # fmt: skip


def override(closed: ev.PositionClosed, trigger: str = "loss_streak") -> ev.RiskOverrideIssued:
    """The circuit breaker's review after ``closed``: halve ``closed.symbol``'s size for 24 h."""
    rid = derive_id("RiskOverrideIssued", closed.event_id)
    return ev.RiskOverrideIssued(
        event_id=rid, ts_event=closed.ts_event, ts_init=closed.ts_event, symbol=closed.symbol,
        correlation_id=closed.correlation_id, causation_id=closed.event_id, trigger=trigger, policy="rules",
        overrides=[ev.RiskOverride(override_id=derive_id("override", rid), kind="position_size",
                                   symbol=closed.symbol, value=0.5, until_ns=closed.ts_event + 1440 * MIN_NS)],
        note="3 losses in a row <halving size> & waiting",
    )  # fmt: skip


def mismatch(symbol: str, at: int, action: str = "halted") -> ev.VenueMismatch:
    """A reconciliation of ``symbol`` the log does not explain."""
    cid = derive_id("reconcile", symbol, at)
    return ev.VenueMismatch(
        event_id=derive_id("VenueMismatch", cid, action), ts_event=at, ts_init=at, symbol=symbol, correlation_id=cid,
        causation_id=cid, action=action, reason="venue holds 0.2 long, the log none",  # type: ignore[arg-type]
    )  # fmt: skip


def stopped(at: int, scope: str = "all", reason: str = "maintenance") -> ev.TradingStopped:
    """An operator's halt of new entries (its time is the API's wall clock)."""
    return ev.TradingStopped(event_id=derive_id("TradingStopped", at, scope), ts_event=at, ts_init=at, scope=scope,
                             reason=reason)  # fmt: skip


def dead_letter(service: str, at: int, n: int = 0) -> ev.DeadLettered:
    """Dead letter number ``n`` of ``service``."""
    return ev.DeadLettered(event_id=f"dlq-{service}-{n}", ts_event=at, ts_init=at, service=service,
                           reason=f"bad frame {n}: expected a price, was NaN", subject=f"md.book.bybit.linear.X{n}",
                           stream_seq=n)  # fmt: skip


def scenario() -> SimpleNamespace:
    """The integration sequence: two symbols across a UTC midnight, alerts between.

    ========  =======================================================  ===========================
    minute    events (log order)                                       posts
    ========  =======================================================  ===========================
    0         BTC long entry (order, opened, routine lock)             1 entry BTC
    10        ETH short entry                                          2 entry ETH
    30        BTC TP1: half reduced                                    3 reduce (reply to 1)
    60        BTC closed at take-profit                                4 exit (reply to 1)
    90        ETH closed at stop-loss                                  5 exit (reply to 2)
    90        risk override on ETH                                     6 override
    125       BTC long entry #2 (its order crosses midnight)           7 daily 2025-05-30, 8 entry
    130       venue mismatch on ETH: halted                            9 mismatch
    131       SOL found at the venue: adopted, opened, locked          10 mismatch, 11 entry, 12 lock
    135       operator stops trading                                   13 halt
    150       BTC #2 closed by the trailing stop                       14 exit (reply to 8)
    ========  =======================================================  ===========================
    """
    btc = Trade("BTCUSDT", "long", 100_000.0, 0.01, t(0))
    eth = Trade("ETHUSDT", "short", 2_500.0, 0.4, t(10), leverage=3.0)
    btc2 = Trade("BTCUSDT", "long", 101_000.0, 0.01, t(125), leverage=7.0)
    sol = Trade("SOLUSDT", "long", 150.0, 2.0, t(131))
    eth_closed = eth.closed(t(90), 2_525.0, "stop_loss")
    events: list[ev.Event] = [
        *btc.entry_events(),
        *eth.entry_events(),
        btc.reduced(t(30), 101_500.0, 0.005),
        btc.closed(t(60), 103_000.0, "take_profit"),
        eth_closed,
        override(eth_closed),
        *btc2.entry_events(),
        mismatch("ETHUSDT", t(130)),
        mismatch("SOLUSDT", t(131), "adopted"),
        sol.opened(),
        sol.lock("position_adopted"),
        stopped(t(135)),
        btc2.closed(t(150), 101_800.0, "trailing_stop"),
    ]
    kinds = ["entry", "entry", "reduce", "exit", "exit", "override", "daily", "entry", "mismatch", "mismatch",
             "entry", "lock", "halt", "exit"]  # fmt: skip
    #: post number (1-based) -> the post number it replies to
    replies = {3: 1, 4: 1, 5: 2, 12: 11, 14: 8}
    return SimpleNamespace(events=events, btc=btc, eth=eth, btc2=btc2, sol=sol, kinds=kinds, replies=replies)


# --- the notifier as a process ---------------------------------------------------------------------

TOKEN = "7000001:fake-token-of-the-tests"
CHAT = "-1001234567890"


def start(nats_url: str | None, api_url: str | None, log: Path, **env: str) -> subprocess.Popen[bytes]:
    """Start ``python -m nertz_notifier`` posting to ``api_url`` (the fake) with :data:`TOKEN` and
    :data:`CHAT`; ``api_url`` None starts it without a token. Output goes to ``log``."""
    full = {k: v for k, v in os.environ.items() if not k.startswith(("NERTZ_NOTIFIER__", "TELEGRAM_"))}
    full.update({"NERTZ_METRICS_PORT": "0", "NERTZ_LOG_LEVEL": "INFO"})
    if nats_url is not None:
        full["NATS_URL"] = nats_url
    if api_url is not None:
        full.update({"NERTZ_NOTIFIER__API_URL": api_url, "NERTZ_NOTIFIER__BOT_TOKEN": TOKEN,
                     "NERTZ_NOTIFIER__CHAT_ID": CHAT, "NERTZ_NOTIFIER__MAX_AGE_S": "0"})  # fmt: skip
    full.update(env)
    out = log.open("ab")
    return subprocess.Popen([sys.executable, "-m", "nertz_notifier"], env=full, stdout=out, stderr=out)


def kill(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL ``proc`` and reap it."""
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)


async def stop(proc: subprocess.Popen[bytes]) -> int | None:
    """SIGTERM ``proc`` (SIGKILL after 15 s); return its exit status. The event loop keeps serving the fake
    meanwhile."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.to_thread(proc.wait, 15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
    return proc.returncode


async def wait_for(check: Callable[[], object], what: str, timeout_s: float = 20.0) -> None:
    """Poll ``check()`` every 20 ms until it is true; TimeoutError naming ``what`` after ``timeout_s``."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not check():
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(f"expected {what} within {timeout_s} s")
        await asyncio.sleep(0.02)


async def drained(js: Any, timeout_s: float = 20.0) -> None:
    """Wait until the ``notifier`` consumer has nothing pending and nothing unacknowledged."""
    from nertz_common import subjects

    async def done() -> bool:
        info = await js.consumer_info(subjects.STREAM, "notifier")
        return info.num_pending == 0 and info.num_ack_pending == 0

    deadline = asyncio.get_running_loop().time() + timeout_s
    while not await done():
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError("expected the notifier consumer drained")
        await asyncio.sleep(0.05)


@pytest.fixture(scope="session")
def nk() -> SimpleNamespace:
    """The helpers above, as one namespace."""
    return SimpleNamespace(
        T0=T0, MIN_NS=MIN_NS, t=t, Trade=Trade, override=override, mismatch=mismatch, stopped=stopped,
        dead_letter=dead_letter, scenario=scenario, TOKEN=TOKEN, CHAT=CHAT, start=start, kill=kill, stop=stop,
        wait_for=wait_for, drained=drained,
    )  # fmt: skip
