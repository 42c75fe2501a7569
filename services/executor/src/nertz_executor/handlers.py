"""The executor's merge loop: market data drives it in log order, decisions are pulled at the barrier.

One **step** per ``executor-market`` delivery (docs/decisions.md D1, D3):

1. decide the market message (paper fills, TP/SL, stale exits, entry expiry, cooldown release);
2. if it is a closed bar: pull decisions until its ``FactorSnapshot``; if that names an intent, publish
   ``VerdictAwaited`` (with the lock state now), then pull until the intent's ``VerdictIssued`` and
   decide it (suppression, risk guard, entry order);
3. publish every resulting event in order with header ``Nertz-Input-Seq`` = the market message's
   stream sequence, folding each into the state;
4. ack the market message, then the decision messages the step used.

A restart (:class:`~nertz_executor.core.recovery.Recovery`) skips market messages before ``S``, redoes
``S`` from the state before it without re-publishing the events already stored, and goes on.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Iterable

from nertz_common import bus, subjects
from nertz_common import events as ev
from nertz_executor.adapters.feed import BarrierHooks, DecisionFeed, Stopped
from nertz_executor.adapters.metrics import ExecutorMetrics
from nertz_executor.core.config import ExecutorConfig
from nertz_executor.core.lock import (
    BarrierInput,
    ExecutorState,
    MarketInput,
    VerdictInput,
    apply_control,
    decide,
    evolve,
)
from nertz_executor.core.recovery import Recovery

log = logging.getLogger("nertz.executor")

_MARKET_TYPES = (ev.Bar, ev.BookSnapshot, ev.Ticker, ev.FeedGap, ev.FeedResynced, ev.FeedStale)

#: log event name of each published event type
_LOG_NAMES: dict[type[ev.Event], str] = {
    ev.VerdictAwaited: "verdict.awaited",
    ev.SignalSuppressed: "signal.suppressed",
    ev.RiskDenied: "risk.denied",
    ev.OrderSubmitted: "order.submitted",
    ev.OrderRejected: "order.rejected",
    ev.OrderFilled: "order.filled",
    ev.PositionOpened: "position.opened",
    ev.LockEngaged: "lock.engaged",
    ev.PositionClosed: "position.closed",
    ev.EntryExpired: "entry.expired",
    ev.LockReleased: "lock.released",
}


class Executor:
    """Run the steps over the three consumers, keeping the state and publishing the decisions.

    Parameters
    ----------
    publisher : bus.Publisher
    market, decisions, verdicts : bus.Consumer
        The bound ``executor-market``, ``executor-decisions`` and ``executor-verdicts`` consumers.
    config : ExecutorConfig
    recovery : Recovery
        Where to resume (see :func:`~nertz_executor.core.recovery.recover`).
    metrics : ExecutorMetrics
    symbols : list[str]
        Symbols shown in the lock gauge from the start.
    batch : int
        Messages per fetch.
    keepalive_s, horizon_ns : float, int
        See :class:`~nertz_executor.adapters.feed.DecisionFeed`.
    stream : str
    """

    def __init__(
        self,
        *,
        publisher: bus.Publisher,
        market: bus.Consumer,
        decisions: bus.Consumer,
        verdicts: bus.Consumer,
        config: ExecutorConfig,
        recovery: Recovery,
        metrics: ExecutorMetrics,
        symbols: list[str] | None = None,
        batch: int = 256,
        keepalive_s: float = 15.0,
        horizon_ns: int = 3_600_000_000_000,
        stream: str = subjects.STREAM,
    ) -> None:
        self._publisher = publisher
        self._market = market
        self._config = config
        self._metrics = metrics
        self._symbols = symbols or []
        self._batch = batch
        self._stream = stream
        self._recovery: Recovery | None = recovery if recovery.input_seq is not None else None
        self.state: ExecutorState = recovery.before if self._recovery else recovery.after()
        self._done_seq = 0
        self._inflight: deque[bus.Delivery] = deque()
        self._current: bus.Delivery | None = None
        self._current_used: list[bus.Delivery] = []
        hooks = BarrierHooks(on_control=self._on_control, is_awaited=self._is_awaited, held=self._held)
        self.feed = DecisionFeed(
            decisions, verdicts, hooks, batch=batch, keepalive_s=keepalive_s, horizon_ns=horizon_ns
        )
        self._metrics.observe_state(self.state, self._symbols)

    async def run(self) -> None:
        """Handle market messages in log order until the market consumer is stopped.

        Raises
        ------
        bus.PublishError
            If a publish is not acknowledged (the process exits; a restart resumes the step).
        LockViolation
            If a decision would break the Hard Lock (an invariant violation: exit loudly).
        """
        while not self._market.stopping:
            self._inflight = deque(await self._market.fetch(self._batch))
            while self._inflight:
                d = self._inflight.popleft()
                try:
                    await self.handle(d)
                except Stopped:
                    log.info("executor.stopped_mid_step", extra={"stream_seq": d.stream_seq})
                    return
                if self._market.stopping:
                    return

    async def handle(self, d: bus.Delivery) -> None:
        """Run one step for market delivery ``d`` (see the module docstring).

        Raises
        ------
        Stopped
            If a stop is requested while the step waits at the barrier (nothing is acked).
        """
        seq = d.stream_seq
        if seq <= self._done_seq:
            await d.ack()  # a redelivery of a finished step
            self._metrics.steps.labels(kind="duplicate").inc()
            return
        known: frozenset[str] = frozenset()
        if self._recovery is not None:
            s = self._recovery.input_seq
            assert s is not None
            if seq < s:
                await d.ack()
                self._done_seq = seq
                self._metrics.steps.labels(kind="recovered_skip").inc()
                return
            if seq == s:
                known = self._recovery.known_ids
                log.info("executor.redo_step", extra={"stream_seq": seq, "known_events": len(known)})
            else:
                self.state = self._recovery.after()
            self._recovery = None
        event = d.event
        used: list[bus.Delivery] = []
        self._current, self._current_used = d, used
        if isinstance(event, _MARKET_TYPES):
            await self._emit(decide(self.state, MarketInput(event), self._config), seq, known)
            if isinstance(event, ev.Bar) and event.closed:
                await self._barrier(event, seq, used, known)
                self._metrics.steps.labels(kind="barrier").inc()
            else:
                self._metrics.steps.labels(kind="market").inc()
        else:
            log.warning("executor.unexpected_market", extra={"type": type(event).__name__, "stream_seq": seq})
        await d.ack()
        for u in used:
            await u.ack()
        self._done_seq = seq
        self._current, self._current_used = None, []
        self._metrics.observe_state(self.state, self._symbols)

    async def _barrier(self, bar: ev.Bar, seq: int, used: list[bus.Delivery], known: frozenset[str]) -> None:
        t0 = time.perf_counter()
        factor = await self.feed.factor_for(bar, used)
        await self._emit(decide(self.state, BarrierInput(bar, factor), self._config), seq, known)
        iid = factor.intent_id
        if iid is not None and iid not in self.state.decided:
            intent = await self.feed.intent_for(iid, bar, used)
            verdict = await self.feed.verdict_for(iid, bar, used)
            await self._emit(decide(self.state, VerdictInput(bar, factor, verdict, intent), self._config), seq, known)
        self._metrics.barrier_wait.observe(time.perf_counter() - t0)

    async def _emit(self, events: list[ev.Event], seq: int, known: frozenset[str]) -> None:
        for e in events:
            if e.event_id not in known:
                await self._publisher.publish(e, headers={bus.INPUT_SEQ: str(seq)})
            self.state = evolve(self.state, e)  # type: ignore[arg-type]
            self._metrics.observe_event(e)
            self._log(e, seq, republished=e.event_id in known)

    def _log(self, e: ev.Event, seq: int, *, republished: bool) -> None:
        assert isinstance(e, ev.Correlated)
        extra: dict[str, object] = {
            "symbol": e.symbol,
            "stream_seq": seq,
            "event_id": e.event_id,
            "correlation_id": e.correlation_id,
        }
        if republished:
            extra["already_stored"] = True
        for f in ("reason", "rule", "lock_state", "order_id", "side", "qty", "price", "exit_reason"):
            if hasattr(e, f):
                extra[f] = getattr(e, f)
        if isinstance(e, ev.PositionClosed):
            extra["realized_pnl_usdt"] = round(e.realized_pnl_usdt, 6)
        log.info(_LOG_NAMES.get(type(e), "executor.event"), extra=extra)

    def _on_control(self, e: ev.TradingStarted | ev.TradingStopped) -> None:
        self.state = apply_control(self.state, e)
        log.info(
            "trading.started" if isinstance(e, ev.TradingStarted) else "trading.stopped",
            extra={"event_id": e.event_id, "actor": e.actor},
        )

    def _is_awaited(self, intent_id: str) -> bool:
        return intent_id in self.state.awaited

    def _held(self) -> Iterable[bus.Delivery]:
        current = [self._current] if self._current is not None else []
        return [*self._inflight, *current, *self._current_used]
