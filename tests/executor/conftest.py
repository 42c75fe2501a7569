"""Helpers of the executor tests, exposed as the session fixture ``kit`` (importlib mode: no shared modules)."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator, Callable, Iterable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from nertz_common import bus, subjects
from nertz_common import events as ev
from nertz_common.ids import derive_id
from nertz_common.node.component import Node, Pos
from nertz_common.node.log import Record, read_log
from nertz_common.testing import factories as f
from nertz_executor.core import lock
from nertz_executor.core.component import Executor
from nertz_executor.core.config import MINUTE_NS, ExecutorConfig

A, B = "BTCUSDT", "ETHUSDT"
EXEC_FILTERS = ["exec.>", "venue.>"]


def factor(bar: ev.Bar, intent_id: str | None = None, **kw: Any) -> ev.FactorSnapshot:
    """Return the FactorSnapshot of ``bar`` (naming ``intent_id`` when the bar proposed one)."""
    fields: dict[str, Any] = dict(
        event_id=derive_id("FactorSnapshot", bar.event_id),
        ts_event=bar.ts_event,
        ts_init=bar.ts_event,
        symbol=bar.symbol,
        bar_id=bar.event_id,
        interval=bar.interval,
        close=bar.close,
        intent_id=intent_id,
    )
    fields.update(kw)
    return ev.FactorSnapshot(**fields)


def bar(i: int, symbol: str = A, close: float = 100.0, open_: float | None = None, **kw: Any) -> ev.Bar:
    """Return closed 1m bar ``i`` with an explicit open (default: the close) and a ±0.1 % range."""
    return f.bar(i, symbol=symbol, close=close, open=close if open_ is None else open_, **kw)


def book_after(i: int, symbol: str, mid: float, spread: float = 0.02) -> ev.BookSnapshot:
    """Return a book 30 s into minute ``i + 1`` (after bar ``i`` closed) around ``mid``."""
    return f.book(f.T0_NS + (i + 1) * MINUTE_NS + 30 * 1_000_000_000, symbol=symbol, mid=mid, spread=spread, levels=3)


def spec(symbol: str = A) -> ev.InstrumentSpec:
    """Bybit's rules of ``symbol`` as BTCUSDT's (tick 0.1, step 0.001, min 0.001, 5 USDT), before any bar."""
    ts = f.T0_NS - 60 * 1_000_000_000
    return ev.InstrumentSpec(
        event_id=derive_id("InstrumentSpec", symbol), ts_event=ts, ts_init=ts, symbol=symbol, tick_size=0.1,
        qty_step=0.001, min_order_qty=0.001, min_notional_usdt=5.0,
    )  # fmt: skip


def config(**kw: Any) -> ExecutorConfig:
    """Return an ExecutorConfig with the defaults overridden by ``kw``."""
    return ExecutorConfig(**kw)


class Exe:
    """An executor node fed by hand; attribute reads go to its lock state (``exe.symbol(...)``)."""

    def __init__(self, cfg: ExecutorConfig) -> None:
        self.cfg = cfg
        self.node = Node(Executor(cfg))
        self.seq = 0

    @property
    def executor(self) -> Executor:
        return self.node.component  # type: ignore[return-value]

    @property
    def state(self) -> lock.ExecutorState:
        return self.executor.state

    def __getattr__(self, name: str) -> Any:
        return getattr(self.executor.state, name)

    def feed(self, e: ev.Event) -> list[ev.Event]:
        self.seq += 1
        return [o for o, _ in self.node.feed(e, Pos(self.seq, self.seq))]


def fresh(cfg: ExecutorConfig | None = None) -> Exe:
    """Return a new executor (every symbol FLAT)."""
    return Exe(cfg or ExecutorConfig())


def on_bar(
    exe: Exe,
    b: ev.Bar,
    cfg: ExecutorConfig | None = None,
    intent: ev.IntentProposed | None = None,
    verdict: ev.VerdictIssued | None = None,
) -> tuple[Exe, list[ev.Event]]:
    """Run one closed-bar step: the bar, its snapshot, then the intent and its verdict (if any)."""
    out = exe.feed(b)
    out += exe.feed(factor(b, intent.event_id if intent else None))
    if intent is not None:
        out += exe.feed(intent)
        out += exe.feed(verdict or f.verdict(intent))
    return exe, out


def on_market(exe: Exe, e: ev.Event, cfg: ExecutorConfig | None = None) -> tuple[Exe, list[ev.Event]]:
    """Run one market (non-barrier) step."""
    return exe, exe.feed(e)


def names(events: Iterable[ev.Event]) -> list[str]:
    """Return the type names of ``events``."""
    return [type(e).__name__ for e in events]


# --- integration scenario -----------------------------------------------------------------------


def scenario(n: int = 40) -> SimpleNamespace:
    """Two symbols, ``n`` minutes: bars and books, one FactorSnapshot per closed bar, some intents.

    BTCUSDT: a long at bar 2 runs into its take-profit; verdicts at bars 4 (long) and 5 (short,
    rejected) meet the lock; a long at bar 30 after the cooldown. ETHUSDT: a short at bar 3 runs into
    its stop-loss; a rejected intent at bar 10 meets the cooldown; an approved one at 25 trades.

    Returns a namespace with ``market`` (list of md events in log order), ``minutes`` (per minute:
    the market events, and the decisions ``(factor, intent | None, verdict | None)`` of its bars),
    ``intents`` and ``verdicts`` (by intent id).
    """
    a_close = [100.0 if i <= 3 else min(100.0 + 0.6 * (i - 3), 103.6) for i in range(n)]
    b_close = [50.0 if i <= 4 else min(50.0 + 0.2 * (i - 4), 51.4) for i in range(n)]
    plan = {
        (A, 2): ("long", "approve"),
        (A, 4): ("long", "approve"),
        (A, 5): ("short", "reject"),
        (A, 30): ("long", "approve"),
        (B, 3): ("short", "approve"),
        (B, 10): ("long", "reject"),
        (B, 25): ("long", "approve"),
    }
    market: list[ev.Event] = []
    minutes: list[SimpleNamespace] = []
    intents: dict[str, ev.IntentProposed] = {}
    verdicts: dict[str, ev.VerdictIssued] = {}
    for i in range(n):
        md: list[ev.Event] = []
        dec: list[tuple[ev.FactorSnapshot, ev.IntentProposed | None, ev.VerdictIssued | None]] = []
        for sym, closes in ((A, a_close), (B, b_close)):
            b = bar(i, sym, closes[i], closes[i - 1] if i else closes[0])
            md.append(b)
            intent = verdict = None
            if (sym, i) in plan:
                side, decision = plan[(sym, i)]
                intent = f.intent(b, side=side, sl=0.01, qty=0.5)
                verdict = f.verdict(intent, decision, size_multiplier=0.8)
                intents[intent.event_id] = intent
                verdicts[intent.event_id] = verdict
            dec.append((factor(b, intent.event_id if intent else None), intent, verdict))
        md += [book_after(i, A, a_close[i]), book_after(i, B, b_close[i])]
        market += md
        minutes.append(SimpleNamespace(market=md, decisions=dec))
    return SimpleNamespace(market=market, minutes=minutes, intents=intents, verdicts=verdicts)


async def publish_early(pub: bus.Publisher, sc: SimpleNamespace) -> None:
    """Publish minute by minute: bars, then intents and verdicts (before their snapshots), snapshots, books."""
    for m in sc.minutes:
        bars = [e for e in m.market if isinstance(e, ev.Bar)]
        books = [e for e in m.market if not isinstance(e, ev.Bar)]
        for e in bars:
            await pub.publish(e)
        for _, intent, verdict in m.decisions:
            if intent is not None:
                await pub.publish(intent)
                await pub.publish(verdict)
        for fs, _, _ in m.decisions:
            await pub.publish(fs)
        for e in books:
            await pub.publish(e)


async def read_output(js: Any) -> list[Record]:
    """Return the exec.* and venue.* messages of the stream, in log order."""
    return await read_log(js, filters=EXEC_FILTERS)


async def wait_log(js: Any, cond: Callable[[list[Record]], bool], timeout_s: float = 20.0) -> list[Record]:
    """Poll the exec.* and venue.* log until ``cond(records)``; return the records."""
    recs: list[Record] = []

    async def met() -> bool:
        nonlocal recs
        recs = await read_output(js)
        return cond(recs)

    deadline = asyncio.get_running_loop().time() + timeout_s
    while not await met():
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(f"log condition not met; have {names(r.event for r in recs)[-20:]}")
        await asyncio.sleep(0.05)
    return recs


def of(records: Iterable[Record], t: type) -> list[Any]:
    """Return the events of type ``t`` among ``records``, in log order."""
    return [r.event for r in records if isinstance(r.event, t)]


@contextlib.asynccontextmanager
async def executor_with_venue(cfg: Any) -> AsyncIterator[Any]:
    """Run the executor and its real venue's adapter in-process (``cfg``: ExecutorSettings naming the venue)
    until the block ends; yield the adapter once it reconciled and is ready."""
    from nertz_common import runtime
    from nertz_executor import app
    from nertz_executor.adapters.metrics import ExecutorMetrics

    async with runtime.runtime("executor", cfg) as rt:
        try:
            metrics = ExecutorMetrics(rt.registry)
            _, runner = await app.start(rt, cfg, metrics)
            venue = app.venue_adapter(rt, cfg, metrics)
            task = asyncio.create_task(rt.until_stopped(runner.run(), venue.run()))
            try:
                await asyncio.wait_for(venue.ready.wait(), 20)
                yield venue
            finally:
                rt.stop.set()
                await asyncio.wait_for(asyncio.gather(task, return_exceptions=True), 20)
        finally:
            remove_signal_handlers()


async def wait_drained(js: Any, timeout_s: float = 30.0, consumer: str = "executor-market") -> None:
    """Wait until ``consumer`` has nothing pending and nothing unacknowledged."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        info = await js.consumer_info(subjects.STREAM, consumer)
        if info.num_pending == 0 and info.num_ack_pending == 0:
            return
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(
                f"expected {consumer} drained, was pending={info.num_pending} ack={info.num_ack_pending}"
            )
        await asyncio.sleep(0.05)


class Validator:
    """A stand-in for the validator's rendezvous: publishes each intent (and its verdict) only after
    the executor's ``VerdictAwaited`` for it is on the log; ``hold`` lists intents to keep back.
    """

    def __init__(self, js: Any, pub: bus.Publisher, sc: SimpleNamespace) -> None:
        self.js, self.pub, self.sc = js, pub, sc
        self.answered: list[str] = []
        self.hold: set[str] = set()

    async def answer_awaited(self) -> int:
        """Publish the verdict of every awaited intent not yet answered (nor held); return how many."""
        n = 0
        for r in await read_log(self.js, filters=["exec.awaited.>"]):
            iid = r.event.correlation_id  # type: ignore[union-attr]
            if iid in self.answered or iid in self.hold:
                continue
            await self.pub.publish(self.sc.verdicts[iid])
            self.answered.append(iid)
            n += 1
        return n

    async def run(self, stop: asyncio.Event) -> None:
        """Answer until ``stop`` is set."""
        while not stop.is_set():
            await self.answer_awaited()
            await asyncio.sleep(0.05)


async def publish_late(pub: bus.Publisher, sc: SimpleNamespace) -> None:
    """Publish every market message first, then snapshots and intents (verdicts come from a Validator)."""
    for e in sc.market:
        await pub.publish(e)
    for m in sc.minutes:
        for fs, intent, _ in m.decisions:
            if intent is not None:
                await pub.publish(intent)
            await pub.publish(fs)


def remove_signal_handlers() -> None:
    """Undo the runtime's SIGTERM/SIGINT handlers (the in-process executor ran on pytest's loop)."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(Exception):
            loop.remove_signal_handler(sig)


def payloads(records: Iterable[Record]) -> dict[str, list[bytes]]:
    """Return the encoded events (payloads, no headers) per symbol, in log order.

    Two symbols' events interleave on the log by timing (docs/decisions.md D13); each symbol's are the
    same events in the same order.
    """
    out: dict[str, list[bytes]] = {}
    for r in records:
        out.setdefault(getattr(r.event, "symbol", ""), []).append(ev.encode(r.event))
    return out


INSTRUMENTS = Path(__file__).resolve().parents[1] / "ingest" / "data" / "bybit_instruments_linear.json"


@pytest.fixture
async def fake() -> AsyncIterator[Any]:
    """A started fake Bybit with its trading side (key ``nertz-test-key``, see ``fake.trading.api_key``)
    over the bundled instruments; the test makes no connection beyond loopback meanwhile."""
    from nertz_common.testing.fake_bybit import FakeBybit, load_instruments, loopback_only

    with loopback_only() as refused:
        async with FakeBybit(instruments=load_instruments(INSTRUMENTS)) as fb:
            fb.enable_trading(api_key="nertz-test-key", api_secret="nertz-test-secret", balance_usdt=10_000.0)
            yield fb
    assert not refused, f"traffic beyond loopback: {refused}"


@pytest.fixture(scope="session")
def kit() -> SimpleNamespace:
    """The helpers above, as one namespace."""
    fns: dict[str, Callable[..., Any] | Any] = dict(
        A=A,
        B=B,
        factor=factor,
        bar=bar,
        book_after=book_after,
        config=config,
        spec=spec,
        fresh=fresh,
        Exe=Exe,
        on_bar=on_bar,
        on_market=on_market,
        names=names,
        scenario=scenario,
        publish_early=publish_early,
        publish_late=publish_late,
        read_output=read_output,
        wait_drained=wait_drained,
        executor_with_venue=executor_with_venue,
        wait_log=wait_log,
        of=of,
        Validator=Validator,
        remove_signal_handlers=remove_signal_handlers,
        payloads=payloads,
    )
    return SimpleNamespace(**fns)
