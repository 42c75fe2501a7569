"""Rebuild the engine's state after a restart by re-reading the log up to the consumer's ack floor.

The engine's state (bar windows, EMAs, ATR and its 30-day median, funding, feed health) lives in
memory. On start, the ``signal`` durable consumer resumes after its ack floor; without a rebuild the
first bars after a restart would be scored cold. So before consuming, the service replays the market
events it already handled — bars and feed status, from the stream's first message up to the ack
floor — through the engine and discards the output (already published). Books and tickers are skipped:
only the latest of each matters and live ones arrive many times a second, so the rebuild costs about
one message per bar instead of millions. (Consequence: a bar handled before the first post-restart book
or ticker is scored without them; an uninterrupted run would have had them.)
"""

from __future__ import annotations

import logging
import time

from nats.js import JetStreamContext

from nertz_common import bus, subjects
from nertz_signal.core.engine import SignalEngine

log = logging.getLogger("nertz.signal.rebuild")

REBUILD_KINDS = ("bar", "status")


async def rebuild(
    engine: SignalEngine,
    js: JetStreamContext,
    durable: str = "signal",
    *,
    stream: str = subjects.STREAM,
    batch: int = 2048,
    timeout_s: float = 2.0,
) -> int:
    """Feed the engine every bar and status event up to ``durable``'s ack floor; return how many.

    Parameters
    ----------
    engine : SignalEngine
        A fresh engine; its output during the rebuild is discarded.
    js : JetStreamContext
    durable : str
        The consumer whose ack floor bounds the rebuild.

    Raises
    ------
    nats.js.errors.NotFoundError
        If the stream or the durable consumer does not exist.
    TimeoutError
        If the stream stops delivering while messages are still pending.
    """
    floor = (await js.consumer_info(stream, durable)).ack_floor.stream_seq
    if floor == 0:
        return 0
    t0 = time.perf_counter()
    applied = 0
    filters = [subjects.filter_of("md", k) for k in REBUILD_KINDS]
    async for r in bus.iter_history(js, filters, upto_seq=floor, stream=stream, batch=batch, fetch_timeout_s=timeout_s):
        engine.handle(r.event)
        applied += 1
    log.info(
        "state.rebuilt",
        extra={"ack_floor": floor, "events": applied, "seconds": round(time.perf_counter() - t0, 3)},
    )
    return applied
