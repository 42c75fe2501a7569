"""The decisions side of the closed-bar barrier (docs/decisions.md D1).

At a closed bar the executor pulls ``executor-decisions`` (``sig.intent``, ``sig.factor``,
``sys.control``) until it holds the bar's ``FactorSnapshot`` and, when the snapshot names an intent,
the intent; then ``executor-verdicts`` (``llm.verdict``) until that intent's ``VerdictIssued``.
Snapshots come in bar order and verdicts in ``VerdictAwaited`` order, so normally the next message is
the one wanted and nothing piles up. What arrives otherwise is sorted by content, never by timing:

- a ``FactorSnapshot`` of another bar before this bar's is a leftover of a finished step (its ack was
  lost): it is used up (acked with the step) and skipped; one arriving while a verdict is awaited is
  for a later bar and waits in a buffer keyed by bar id;
- a verdict for an intent whose barrier was already reached (``VerdictAwaited`` in the state) is a
  leftover too; any other verdict that is not the awaited one waits in a buffer keyed by intent id;
- ``TradingStarted``/``TradingStopped`` are applied when pulled.

Every delivery is acknowledged only by the step that uses it (after its market message), so a crash
redelivers exactly what was not finished. Held deliveries are kept alive (``+WPI``) while waiting.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from nertz_common import bus
from nertz_common import events as ev

log = logging.getLogger("nertz.executor")


class Stopped(Exception):
    """A stop was requested while waiting at a barrier; the step is abandoned unacknowledged."""


@dataclass
class BarrierHooks:
    """What the feed needs from the executor while it waits.

    Attributes
    ----------
    on_control : callable
        Apply an operator command to the state.
    is_awaited : callable
        True when the intent's barrier was already reached (its verdict is a leftover).
    held : callable
        Other deliveries the executor holds unacknowledged (kept alive during long waits).
    """

    on_control: Callable[[ev.TradingStarted | ev.TradingStopped], None]
    is_awaited: Callable[[str], bool]
    held: Callable[[], Iterable[bus.Delivery]]


class DecisionFeed:
    """Pull ``executor-decisions`` for the barrier, buffering what arrives early.

    Parameters
    ----------
    consumer : bus.Consumer
        The bound ``executor-decisions`` consumer.
    verdicts : bus.Consumer
        The bound ``executor-verdicts`` consumer.
    hooks : BarrierHooks
    batch : int
        Fetch size.
    keepalive_s : float
        While waiting, send ``+WPI`` for every held delivery this often (below the consumer's ack wait), s.
    horizon_ns : int
        A buffered verdict or intent whose ``ts_event`` is this much older than the current bar is a
        leftover (its bar is long past) and is dropped, ns.
    fetch_timeout_s : float
        Wait of one fetch, s.
    """

    def __init__(
        self,
        consumer: bus.Consumer,
        verdicts: bus.Consumer,
        hooks: BarrierHooks,
        *,
        batch: int = 256,
        keepalive_s: float = 15.0,
        horizon_ns: int = 3_600_000_000_000,
        fetch_timeout_s: float = 0.5,
    ) -> None:
        self._c = consumer
        self._vc = verdicts
        self._hooks = hooks
        self._batch = batch
        self._keepalive_s = keepalive_s
        self._horizon_ns = horizon_ns
        self._fetch_timeout_s = fetch_timeout_s
        self._queue: deque[bus.Delivery] = deque()
        self._vqueue: deque[bus.Delivery] = deque()
        self.factors: dict[str, list[bus.Delivery]] = {}
        self.verdicts: dict[str, list[bus.Delivery]] = {}
        self.intents: dict[str, list[bus.Delivery]] = {}
        self._used: list[bus.Delivery] = []
        self._last_keepalive = time.monotonic()

    def held(self) -> list[bus.Delivery]:
        """Return every delivery the feed holds unacknowledged (queued, buffered)."""
        out = [*self._queue, *self._vqueue]
        for buf in (self.factors, self.verdicts, self.intents):
            for ds in buf.values():
                out += ds
        return out

    async def factor_for(self, bar: ev.Bar, used: list[bus.Delivery]) -> ev.FactorSnapshot:
        """Return the ``FactorSnapshot`` of ``bar``, pulling until it arrives.

        Deliveries consumed on the way are appended to ``used`` (the step acks them).

        Raises
        ------
        Stopped
            If a stop is requested while waiting.
        """
        self._used = used
        self._prune(bar.ts_event, used)
        if self.factors:
            found: ev.FactorSnapshot | None = None
            for bar_id in list(self.factors):
                ds = self.factors.pop(bar_id)
                used += ds
                if bar_id == bar.event_id:
                    found = ds[-1].event  # type: ignore[assignment]
                    break
                log.warning("barrier.stale_factor", extra={"bar_id": bar_id, "symbol": bar.symbol})
            if found is not None:
                return found
        while True:
            d = await self._next()
            e = d.event
            if isinstance(e, ev.FactorSnapshot):
                used.append(d)
                if e.bar_id == bar.event_id:
                    return e
                log.info("barrier.leftover_factor", extra={"bar_id": e.bar_id, "stream_seq": d.stream_seq})
            else:
                self._route(d, bar, used, awaiting=None)

    async def verdict_for(self, intent_id: str, bar: ev.Bar, used: list[bus.Delivery]) -> ev.VerdictIssued:
        """Return the ``VerdictIssued`` of ``intent_id``, from the buffer or pulling until it arrives.

        Raises
        ------
        Stopped
            If a stop is requested while waiting.
        """
        return await self._correlated(self.verdicts, ev.VerdictIssued, intent_id, bar, used)  # type: ignore[return-value]

    async def intent_for(self, intent_id: str, bar: ev.Bar, used: list[bus.Delivery]) -> ev.IntentProposed:
        """Return the ``IntentProposed`` ``intent_id`` (signal publishes it just before its snapshot).

        Raises
        ------
        Stopped
            If a stop is requested while waiting.
        """
        return await self._correlated(self.intents, ev.IntentProposed, intent_id, bar, used)  # type: ignore[return-value]

    async def _correlated(
        self, buf: dict[str, list[bus.Delivery]], kind: type, intent_id: str, bar: ev.Bar, used: list[bus.Delivery]
    ) -> ev.Correlated:
        self._used = used
        if intent_id in buf:
            ds = buf.pop(intent_id)
            used += ds
            return ds[-1].event  # type: ignore[return-value]
        while True:
            d = await (self._next_verdict() if kind is ev.VerdictIssued else self._next())
            e = d.event
            if isinstance(e, ev.Correlated) and isinstance(e, kind) and e.correlation_id == intent_id:
                used.append(d)
                return e
            if isinstance(e, ev.FactorSnapshot):
                self.factors.setdefault(e.bar_id, []).append(d)  # a later bar's: wait for its barrier
            else:
                self._route(d, bar, used, awaiting=intent_id)

    def _route(self, d: bus.Delivery, bar: ev.Bar, used: list[bus.Delivery], awaiting: str | None) -> None:
        e = d.event
        if isinstance(e, ev.VerdictIssued | ev.IntentProposed):
            if self._hooks.is_awaited(e.correlation_id) and e.correlation_id != awaiting:
                used.append(d)  # its intent's step is done: a leftover
                log.info("barrier.leftover", extra={"type": type(e).__name__, "correlation_id": e.correlation_id})
            else:
                buf = self.verdicts if isinstance(e, ev.VerdictIssued) else self.intents
                buf.setdefault(e.correlation_id, []).append(d)
        elif isinstance(e, ev.TradingStarted | ev.TradingStopped):
            used.append(d)
            self._hooks.on_control(e)
        else:
            used.append(d)
            log.warning("barrier.unexpected", extra={"type": type(e).__name__, "stream_seq": d.stream_seq})

    def _prune(self, now_ns: int, used: list[bus.Delivery]) -> None:
        for buf in (self.verdicts, self.intents):
            for key in list(buf):
                ds = buf[key]
                if self._hooks.is_awaited(key) or ds[-1].event.ts_event < now_ns - self._horizon_ns:
                    used += buf.pop(key)
                    log.warning("barrier.dropped_buffered", extra={"correlation_id": key})

    async def _next(self) -> bus.Delivery:
        return await self._pull(self._c, self._queue)

    async def _next_verdict(self) -> bus.Delivery:
        return await self._pull(self._vc, self._vqueue)

    async def _pull(self, consumer: bus.Consumer, queue: deque[bus.Delivery]) -> bus.Delivery:
        while not queue:
            if consumer.stopping:
                raise Stopped
            got = await consumer.fetch(self._batch, timeout_s=self._fetch_timeout_s)
            queue.extend(got)
            if time.monotonic() - self._last_keepalive >= self._keepalive_s:
                await self._keepalive()
        return queue.popleft()

    async def _keepalive(self) -> None:
        self._last_keepalive = time.monotonic()
        held = [*self.held(), *self._used, *self._hooks.held()]
        for d in held:
            try:
                await d.msg.in_progress()
            except Exception as e:  # an already-settled message: nothing to keep alive
                log.debug("barrier.keepalive_failed", extra={"stream_seq": d.stream_seq, "error": repr(e)})
        await asyncio.sleep(0)
        log.info("barrier.waiting", extra={"held": len(held)})
