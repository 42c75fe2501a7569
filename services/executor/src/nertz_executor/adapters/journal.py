"""Reading the log back: the executor's own output (restart), operator commands, and intents.

Also the consumer reset of a restart: after a crash the durable consumers still count the dead
process's deliveries as pending, and JetStream would redeliver them only after their ack wait, after
newer messages. Resetting both consumers to their ack floor (ADR-60, nats-server ≥ 2.14) makes every
unfinished message come again, in log order, at once.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import nats.errors
import nats.js.errors
from nats.js import JetStreamContext

from nertz_common import bus, subjects
from nertz_common import events as ev
from nertz_executor.core.lock import Folded

log = logging.getLogger("nertz.executor")

MARKET = "executor-market"
DECISIONS = "executor-decisions"
VERDICTS = "executor-verdicts"
#: what the executor publishes (its own log, folded on restart)
OUTPUT_FILTERS = (subjects.filter_of("exec"), subjects.filter_of("venue"))
CONTROL_FILTER = "sys.control.>"


@dataclass(frozen=True, slots=True)
class AckFloors:
    """Stream sequences up to which each executor consumer has acknowledged everything."""

    market: int
    decisions: int
    verdicts: int


async def ack_floors(js: JetStreamContext, *, reset: bool = True, stream: str = subjects.STREAM) -> AckFloors:
    """Read the consumers' ack floors and, when ``reset``, reset their delivery state to them (ADR-60).

    A server without the reset API (< 2.14) is logged and tolerated: unfinished messages then come back
    after the consumer's ack wait.

    Raises
    ------
    nats.js.errors.NotFoundError
        If a consumer was not declared (run ``nertz streams apply``).
    """
    floors = []
    for name in (MARKET, DECISIONS, VERDICTS):
        info = await js.consumer_info(stream, name)
        floors.append(info.ack_floor.stream_seq if info.ack_floor else 0)
        if not reset:
            continue
        try:
            r = await js.reset_consumer(stream, name)
            log.info("consumer.reset", extra={"consumer": name, "reset_seq": r.reset_seq})
        except (nats.js.errors.Error, nats.errors.Error) as e:
            log.warning("consumer.reset_unavailable", extra={"consumer": name, "error": repr(e)})
    return AckFloors(market=floors[0], decisions=floors[1], verdicts=floors[2])


async def read_output(js: JetStreamContext, *, stream: str = subjects.STREAM) -> list[tuple[int, Folded]]:
    """Return ``(Nertz-Input-Seq, event)`` of everything the executor published, in log order.

    Raises
    ------
    ValueError
        If an event lacks the ``Nertz-Input-Seq`` header or is not an executor event.
    """
    out: list[tuple[int, Folded]] = []
    for r in await bus.read_history(js, OUTPUT_FILTERS, stream=stream):
        raw = r.headers.get(bus.INPUT_SEQ)
        if raw is None:
            raise ValueError(f"expected header {bus.INPUT_SEQ} on {r.subject} seq {r.stream_seq}, was none")
        if not isinstance(r.event, ev.ExecEvent | ev.OrderFilled):
            raise ValueError(f"expected an executor event on {r.subject}, was {type(r.event).__name__}")
        out.append((int(raw), r.event))
    return out


async def read_controls(
    js: JetStreamContext, upto_seq: int, *, stream: str = subjects.STREAM
) -> list[ev.TradingStarted | ev.TradingStopped]:
    """Return the operator commands up to ``upto_seq`` (those the decisions consumer already took)."""
    if upto_seq <= 0:
        return []
    records = await bus.read_history(js, [CONTROL_FILTER], upto_seq=upto_seq, stream=stream)
    return [r.event for r in records if isinstance(r.event, ev.TradingStarted | ev.TradingStopped)]
