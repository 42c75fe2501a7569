"""The rendezvous of intents with the executor's ``VerdictAwaited`` (decisions.md D1).

An intent is judged only when the executor has reached its bar: then the memory holds exactly the
executor's events before that point, whatever the timing of the services. Pure and synchronous.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from nertz_common import events as ev
from nertz_validator.core.memory import Memory
from nertz_validator.core.policy import Policy, skipped_locked, verdict_of


@dataclass
class Rendezvous:
    """Pairs intents with ``VerdictAwaited`` in either arrival order and judges each pair once.

    Attributes
    ----------
    memory : Memory
        Folded from every ``exec.*`` event seen, in log order.
    pending : dict[str, IntentProposed]
        Intents waiting for the executor.
    awaited : dict[str, tuple[VerdictAwaited, Memory]]
        ``VerdictAwaited`` seen before its intent (after a restart), with the memory as of then.
    answered : set[str]
        Intent ids already judged (a redelivered intent is not judged twice).
    """

    policy: Policy
    memory: Memory = field(default_factory=Memory)
    pending: dict[str, ev.IntentProposed] = field(default_factory=dict)
    awaited: dict[str, tuple[ev.VerdictAwaited, Memory]] = field(default_factory=dict)
    answered: set[str] = field(default_factory=set)

    def on_intent(self, intent: ev.IntentProposed) -> list[ev.VerdictIssued]:
        """Hold the intent, or judge it now if the executor already awaits it."""
        iid = intent.correlation_id
        if iid in self.answered:
            return []
        if iid in self.awaited:
            awaited, memory = self.awaited.pop(iid)
            return [self._judge(intent, awaited, memory)]
        self.pending[iid] = intent
        return []

    def on_exec(self, event: ev.AnyEvent, stream_seq: int) -> list[ev.VerdictIssued]:
        """Fold an executor event; on ``VerdictAwaited`` judge its intent (or remember the memory)."""
        if stream_seq <= self.memory.last_seq:
            return []
        if isinstance(event, ev.VerdictAwaited):
            iid = event.correlation_id
            intent = self.pending.pop(iid, None)
            memory = self.memory
            self.memory = self.memory.apply(event, stream_seq)
            if iid in self.answered:
                return []
            if intent is None:
                self.awaited[iid] = (event, memory)
                return []
            return [self._judge(intent, event, memory)]
        self.memory = self.memory.apply(event, stream_seq)
        return []

    def _judge(self, intent: ev.IntentProposed, awaited: ev.VerdictAwaited, memory: Memory) -> ev.VerdictIssued:
        self.answered.add(intent.correlation_id)
        if awaited.lock_state != "FLAT":
            opinion = skipped_locked(awaited.lock_state)
        else:
            opinion = self.policy.judge(intent, memory.of(intent.symbol))
        return verdict_of(intent, opinion, awaited)
