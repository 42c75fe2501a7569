"""Errors sorted by what the operator (and the runner) must do with them.

::

    NertzError
    ├── ConfigurationError   stop before connecting anywhere; the operator fixes a setting (exit 2)
    ├── TransientError       retry later: a database or a venue is down, a timeout (the message is held)
    ├── PoisonError          this input can never be handled: dead-letter it with the reason and go on
    ├── DomainRefusal        a decision to refuse (risk denial, locked): publish its event, then ack
    └── InvariantViolation   a broken invariant (the Hard Lock, a log gap, a join that cannot be met):
                             log critical and exit non-zero; redelivery resumes after the restart (exit 3)

The kernel's runners map each branch to a bus action (ARCHITECTURE.md §3 "The kernel"; after
Freqtrade's ``exceptions.py`` and NautilusTrader's fail-fast ``Condition``). No ``assert`` carries an
invariant in production code: ``python -O`` strips them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from nertz_common.events import Event

#: process exit status of each terminal branch
EXIT_CONFIGURATION = 2
EXIT_INVARIANT = 3


class NertzError(Exception):
    """Root of every error the kernel knows how to handle."""


class ConfigurationError(NertzError):
    """A setting is wrong or missing: retrying cannot help, the operator must fix it."""


class TransientError(NertzError):
    """A failure worth retrying later (database down, venue timeout): the runner holds the message,
    backs off and tries again, in place, so that log order is kept."""


class PoisonError(NertzError):
    """An input that can never be handled (undecodable, invalid): it is dead-lettered and terminated."""


class DomainRefusal(NertzError):
    """A component refused an input on purpose; ``event`` records why and is published before the ack.

    Parameters
    ----------
    event : Event
        The refusal's record (e.g. ``RiskDenied``, ``SignalSuppressed``).
    """

    def __init__(self, event: Event) -> None:
        super().__init__(f"{type(event).__name__} {event.event_id}")
        self.event = event


class InvariantViolation(NertzError):
    """Something that must never happen happened: stop loudly rather than act on corrupt state."""


def require(condition: bool, message: str) -> None:
    """Raise :class:`InvariantViolation` with ``message`` unless ``condition`` holds (survives ``-O``).

    Raises
    ------
    InvariantViolation
        If ``condition`` is false.
    """
    if not condition:
        raise InvariantViolation(message)
