"""Glue between the bus and the engine: one delivery in, its events published, then the ack.

The consumer (``Consumer.run``) acks a message only after :meth:`SignalHandler.__call__` returns, and
the handler returns only after every derived event's publish was acked by JetStream, so an ack means
"the effect is durable" (STYLE.md §5). Events are published one by one, in the engine's order
(``IntentProposed`` before its ``FactorSnapshot``), each with the header ``Nertz-Input-Seq`` naming the
input's stream sequence.
"""

from __future__ import annotations

import logging

from nertz_common import bus
from nertz_common import events as ev
from nertz_signal.core.engine import SignalEngine
from nertz_signal.metrics import SignalMetrics

log = logging.getLogger("nertz.signal")


class SignalHandler:
    """Dispatch each delivery to the engine and publish what it returns, in order, before the ack.

    A publish that still fails after the publisher's retry budget raises
    :class:`~nertz_common.bus.PublishError` out of the consumer loop: the process exits non-zero with
    the message unacked. It is not retried in place (the engine has already folded the message) nor
    dead-lettered (the executor waits for every bar's snapshot, docs/decisions.md D1). After the
    restart, :func:`nertz_signal.adapters.rebuild.rebuild` restores the state up to the ack floor and
    redelivery derives the same events again (same ids, so JetStream drops any already stored).

    Parameters
    ----------
    engine : SignalEngine
    publisher : Publisher
        Checked publisher of the runtime.
    metrics : SignalMetrics or None
    """

    def __init__(self, engine: SignalEngine, publisher: bus.Publisher, metrics: SignalMetrics | None = None) -> None:
        self.engine = engine
        self._publisher = publisher
        self._metrics = metrics
        self.published = 0

    async def __call__(self, d: bus.Delivery) -> None:
        """Handle one delivery: engine, then every derived event published (acked by JetStream).

        Raises
        ------
        PublishError
            If a publish was not acked within the publisher's retry budget.
        """
        await self.handle_batch([d])

    async def handle_batch(self, deliveries: list[bus.Delivery]) -> None:
        """Handle a fetched batch in log order, then publish every derived event pipelined, in order.

        The consumer acks the batch only after this returns, i.e. after JetStream acked every
        derived event. Pipelining the publishes is what lets signal keep up with a replay at full
        speed (one publish round trip per bar would bound it to a few thousand bars/s).

        Raises
        ------
        PublishError
            If a publish was not acked within the publisher's retry budget.
        """
        out: list[ev.Event] = []
        input_seq: dict[str, str] = {}
        for d in deliveries:
            resets = self.engine.resets
            derived = self.engine.handle(d.event)
            if self.engine.resets != resets and self._metrics:
                self._metrics.resets.labels(symbol=getattr(d.event, "symbol", "")).inc()
            for e in derived:
                input_seq[e.event_id] = str(d.stream_seq)
                self._log(e, d.stream_seq)
            out += derived
        await self._publisher.publish_many(out, headers=lambda e: {bus.INPUT_SEQ: input_seq[e.event_id]})
        self.published += len(out)
        if self._metrics:
            self._metrics.observe(out)

    def _log(self, e: ev.Event, stream_seq: int) -> None:
        if isinstance(e, ev.IntentProposed):
            log.info(
                "intent.proposed",
                extra={
                    "symbol": e.symbol,
                    "side": e.side,
                    "event_id": e.event_id,
                    "correlation_id": e.correlation_id,
                    "causation_id": e.causation_id,
                    "stream_seq": stream_seq,
                    "entry_price": e.entry_price,
                    "take_profit": e.take_profit,
                    "stop_loss": e.stop_loss,
                    "qty": e.qty,
                    "leverage": e.leverage,
                    "combined": e.combined,
                    "regime": e.regime,
                },
            )
        elif isinstance(e, ev.FactorSnapshot) and e.veto:
            log.info(
                "intent.vetoed",
                extra={"symbol": e.symbol, "event_id": e.event_id, "stream_seq": stream_seq, "veto": e.veto},
            )
