"""Where the log already is: what a (re)started ingest must not publish again, and where it resumes.

Every read here is a direct get of the last message on a subject (the stream allows direct gets), so
finding the log's end costs a few requests however long the log is.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass

import msgspec
import nats.js.errors
from nats.js import JetStreamContext

from nertz_common import events as ev
from nertz_common import subjects
from nertz_common.node.log import subject_messages

log = logging.getLogger("nertz.ingest")


@dataclass(frozen=True, slots=True)
class LogEnd:
    """The last event market-ingest put on the log.

    Attributes
    ----------
    seq : int
        Its stream sequence.
    event : Event
        The event (a market event on ``md.>`` or a dead letter on ``sys.dlq.<service>``).
    """

    seq: int
    event: ev.Event


async def last_bars(
    js: JetStreamContext,
    symbols: Iterable[str] | None = None,
    *,
    venue: str = "bybit",
    market: str = "linear",
    stream: str = subjects.STREAM,
) -> dict[str, ev.Bar]:
    """Return, per symbol, the last ``Bar`` on the log (any interval, open or closed).

    Parameters
    ----------
    symbols : iterable of str, optional
        The symbols to look up; None = every symbol with a bar subject on the stream.

    Returns
    -------
    dict of str to Bar
        Symbols with no (readable) bar yet are absent.

    Raises
    ------
    nats.errors.Error, nats.js.errors.APIError
        If the stream cannot be read (the bus is down, the stream is missing).
    """
    if symbols is None:
        info = await js.stream_info(stream, subjects_filter=subjects.filter_of("md", "bar"))
        names = [subjects.parse(s).symbol for s in (info.state.subjects or {})]
    else:
        names = list(symbols)
    out: dict[str, ev.Bar] = {}
    for symbol in names:
        bar = await _last(js, stream, subjects.instrument("md", "bar", venue, market, symbol))
        if bar is not None and isinstance(bar.event, ev.Bar):
            out[symbol] = bar.event
    return out


async def last_closed_bars(
    js: JetStreamContext,
    symbols: Iterable[str],
    *,
    venue: str = "bybit",
    market: str = "linear",
    stream: str = subjects.STREAM,
) -> dict[str, ev.Bar]:
    """Return, per symbol, the last *closed* ``Bar`` on the log: where its bar series resumes.

    The live feed's log can end on an update of a bar still open with the bar before it missing: the
    socket lost that bar's closing frame, and ingest stopped before the next closed bar would have made
    it fetch the gap by REST. What closes at or before that open update is then not all on the log, so
    a restart resumes the series from its last closed bar instead (:func:`last_bars` would skip the
    missing bar for good). When the last bar is open, the symbol's bar subject is read in windows of
    stream sequences going back, each 4x the one after it (256, 1,024, ...) and each read once, forward
    (:func:`~nertz_common.node.log.subject_messages`), until one holds a closed bar: a closing bar is
    among the last few dozen updates. Symbols without a closed bar are absent.

    Raises
    ------
    nats.errors.Error, nats.js.errors.APIError
        If the stream cannot be read (the bus is down, the stream is missing).
    """
    out: dict[str, ev.Bar] = {}
    for symbol in symbols:
        subject = subjects.instrument("md", "bar", venue, market, symbol)
        tail = await _last(js, stream, subject)
        if tail is None or not isinstance(tail.event, ev.Bar):
            continue
        if tail.event.closed:
            out[symbol] = tail.event
            continue
        end, window = tail.seq - 1, 256  # each window ends where the later one, with no closed bar, began
        while end >= 1 and symbol not in out:
            start = max(1, end - window + 1)
            async for msg in subject_messages(js, stream, subject, start, end, direct=True):
                try:
                    bar = ev.decode(msg.data or b"")
                except (msgspec.DecodeError, msgspec.ValidationError):
                    continue
                if isinstance(bar, ev.Bar) and bar.closed:
                    out[symbol] = bar  # the window's last closed bar wins
            end, window = start - 1, window * 4
    return out


async def last_universe(js: JetStreamContext, *, stream: str = subjects.STREAM) -> ev.UniverseChanged | None:
    """Return the log's last ``UniverseChanged`` (the universe in force), None before the first one.

    Raises
    ------
    nats.errors.Error, nats.js.errors.APIError
        If the stream cannot be read (the bus is down, the stream is missing).
    """
    last = await _last(js, stream, subjects.service(*subjects.ROUTES[ev.UniverseChanged], "all"))
    return last.event if last is not None and isinstance(last.event, ev.UniverseChanged) else None


async def log_end(js: JetStreamContext, service: str, *, stream: str = subjects.STREAM) -> LogEnd | None:
    """Return the last event ``service`` (market-ingest) put on the log, None on a log without one.

    Market-ingest is the only producer of ``md.>``; its dead letters are on ``sys.dlq.<service>``. The
    later of the last message on each is where it stopped.

    Raises
    ------
    nats.errors.Error, nats.js.errors.APIError
        If the stream cannot be read (the bus is down, the stream is missing).
    """
    ends = [
        await _last(js, stream, subjects.filter_of("md")),
        await _last(js, stream, subjects.dead_letter(service)),
    ]
    found = [e for e in ends if e is not None]
    return max(found, key=lambda e: e.seq) if found else None


async def _last(js: JetStreamContext, stream: str, subject: str) -> LogEnd | None:
    try:
        msg = await js.get_last_msg(stream, subject, direct=True)
    except nats.js.errors.NotFoundError:
        return None
    try:
        event = ev.decode(msg.data or b"")
    except (msgspec.DecodeError, msgspec.ValidationError) as e:
        log.warning("log.tail_unreadable", extra={"subject": subject, "stream_seq": msg.seq, "error": str(e)})
        return None
    return LogEnd(msg.seq or 0, event)
