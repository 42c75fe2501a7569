"""Where the log already is: what a (re)started live feed must not publish again."""

from __future__ import annotations

import logging
from collections.abc import Iterable

import msgspec
import nats.js.errors
from nats.js import JetStreamContext

from nertz_common import events as ev
from nertz_common import subjects

log = logging.getLogger("nertz.ingest")


async def last_bar_ts(
    js: JetStreamContext,
    symbols: Iterable[str],
    *,
    venue: str = "bybit",
    market: str = "linear",
    stream: str = subjects.STREAM,
) -> dict[str, int]:
    """Return, per symbol, the ``ts_event`` (UNIX ns) of the last ``Bar`` on the log (any interval).

    Bars are published in time order, so every bar closing at or before it is on the log already.
    Symbols with no bar yet are absent. One direct get per symbol (the stream allows direct gets).
    """
    out: dict[str, int] = {}
    for symbol in symbols:
        subject = subjects.instrument("md", "bar", venue, market, symbol)
        try:
            msg = await js.get_last_msg(stream, subject, direct=True)
        except nats.js.errors.NotFoundError:
            continue
        try:
            event = ev.decode(msg.data or b"")
        except (msgspec.DecodeError, msgspec.ValidationError) as e:
            log.warning("live.last_bar_unreadable", extra={"symbol": symbol, "error": str(e)})
            continue
        if isinstance(event, ev.Bar):
            out[symbol] = event.ts_event
    return out
