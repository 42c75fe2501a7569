"""The validator as a kernel component: judge each intent once the executor has reached it.

Its driver inputs are the executor's events (``exec.*``), in log order; they fold the memory. At a
``VerdictAwaited`` the component joins the intent (``Join(IntentProposed, "correlation_id")``) and
judges it with the memory *as of that point*: exactly the executor's log up to this intent, whatever
the timing of the services (docs/decisions.md D1). Pure and synchronous.
"""

from __future__ import annotations

from typing import ClassVar

import msgspec

from nertz_common import events as ev
from nertz_common.node.component import Component, Join
from nertz_validator.core.memory import Memory
from nertz_validator.core.policy import Policy, skipped_locked, verdict_of


class ValidatorState(msgspec.Struct):
    """The validator's state between steps: its memory."""

    memory: Memory = Memory()


class Validator(Component):
    """Approve or reject intents with a policy and a memory folded from ``exec.*``.

    Parameters
    ----------
    policy : Policy
        Who decides (the rules policy by default; a recorded or model policy in other issues).

    Attributes
    ----------
    memory : Memory
        Folded from every executor event seen, in log order.
    """

    name: ClassVar[str] = "llm-validator"
    inputs: ClassVar[tuple[type[ev.Event], ...]] = (
        ev.VerdictAwaited, ev.SignalSuppressed, ev.RiskDenied, ev.OrderSubmitted, ev.OrderRejected,
        ev.PositionOpened, ev.LockEngaged, ev.PositionClosed, ev.EntryExpired, ev.LockReleased,
    )  # fmt: skip
    joins: ClassVar[tuple[Join, ...]] = (Join(ev.IntentProposed, "correlation_id"),)
    state_type: ClassVar[type[msgspec.Struct]] = ValidatorState

    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        self.memory = Memory()
        self._awaited: tuple[ev.VerdictAwaited, Memory] | None = None

    def on_verdict_awaited(self, e: ev.VerdictAwaited) -> list[ev.Event]:
        """The executor waits for this intent's verdict: join the intent, judge with today's memory."""
        self._awaited = (e, self.memory)
        self.memory = self.memory.apply(e)
        self.awaiting = (ev.IntentProposed, e.correlation_id)
        return []

    def on_intent_proposed(self, intent: ev.IntentProposed) -> list[ev.Event]:
        """Judge the awaited intent; a locked symbol is skipped (no model asked)."""
        if self._awaited is None:
            raise ValueError(f"expected a VerdictAwaited before intent {intent.correlation_id}")
        awaited, memory = self._awaited
        self._awaited = None
        self.awaiting = None
        if awaited.lock_state != "FLAT":
            opinion = skipped_locked(awaited.lock_state)
        else:
            opinion = self.policy.judge(intent, memory.of(intent.symbol))
        return [verdict_of(intent, opinion, awaited)]

    def _fold(self, e: ev.Event) -> list[ev.Event]:
        self.memory = self.memory.apply(e)
        return []

    on_signal_suppressed = on_risk_denied = on_order_submitted = on_order_rejected = _fold
    on_position_opened = on_lock_engaged = on_position_closed = on_entry_expired = on_lock_released = _fold

    def get_state(self) -> ValidatorState:
        """Return the memory (between steps nothing else is held)."""
        return ValidatorState(self.memory)

    def set_state(self, state: ValidatorState) -> None:
        """Put back a memory from :meth:`get_state`."""
        self.memory = state.memory
        self._awaited = None
