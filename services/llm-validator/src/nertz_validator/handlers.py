"""Glue between the bus and the rendezvous core: intents are acked only once their verdict is on
the log; executor events are acked once folded.
"""

from __future__ import annotations

import logging
from collections import defaultdict

from prometheus_client import CollectorRegistry, Counter, Gauge

from nertz_common import bus
from nertz_common import events as ev
from nertz_validator.core.rendezvous import Rendezvous

log = logging.getLogger("nertz.validator")


class ValidatorMetrics:
    """``nertz_llm_validator_*`` metrics: verdicts by decision and policy, intents waiting."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.verdicts = Counter(
            "nertz_llm_validator_verdicts_total", "Verdicts issued", ["symbol", "decision", "policy"], registry=registry
        )
        self.waiting = Gauge(
            "nertz_llm_validator_intents_waiting", "Intents held until the executor reaches them", registry=registry
        )


class ValidatorHandler:
    """Feed deliveries to the rendezvous and publish its verdicts before acking their intents."""

    def __init__(self, core: Rendezvous, publisher: bus.Publisher, metrics: ValidatorMetrics) -> None:
        self.core = core
        self._publisher = publisher
        self._metrics = metrics
        self._held: dict[str, list[bus.Delivery]] = defaultdict(list)

    async def handle(self, d: bus.Delivery) -> None:
        """Handle one delivery; intents stay unacked until judged."""
        event = d.event
        if isinstance(event, ev.IntentProposed):
            verdicts = self.core.on_intent(event)
            if not verdicts and event.correlation_id in self.core.answered:
                await d.ack()  # redelivery of an intent already judged
                return
            self._held[event.correlation_id].append(d)
        else:
            verdicts = self.core.on_exec(event, d.stream_seq)
        for v in verdicts:
            await self._publisher.publish(v)
            self._metrics.verdicts.labels(symbol=v.symbol, decision=v.decision, policy=v.policy).inc()
            log.info(
                "verdict.issued",
                extra={
                    "symbol": v.symbol,
                    "correlation_id": v.correlation_id,
                    "decision": v.decision,
                    "policy": v.policy,
                    "reasons": v.reasons,
                },
            )
            for held in self._held.pop(v.correlation_id, []):
                await held.ack()
        if not isinstance(event, ev.IntentProposed):
            await d.ack()
        self._metrics.waiting.set(len(self.core.pending))
