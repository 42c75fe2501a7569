"""The ordered log as data: records read from JetStream (or a bundle), with their positions and origins.

Every event a component publishes carries two headers (never payload fields, since sequences differ
between streams):

- ``Nertz-Input-Seq``: the stream sequence of the driver input of the step that produced it;
- ``Nertz-Origin-Seq``: the origin of that step, i.e. the position of the external input (market
  data, an operator command) that started the chain of steps, through every service, that led to it.

Origins give the log one logical clock shared by all services: the FactorSnapshot of a bar, the
executor's ``VerdictAwaited`` for its intent and the validator's verdict all have the bar's position
as origin, whatever their own positions. A replay that starts at position ``B`` re-derives every step
whose origin is ``>= B`` and takes the recorded outputs of earlier steps as they are.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

import msgspec

from nertz_common import events as ev
from nertz_common import subjects

if TYPE_CHECKING:
    from nats.js import JetStreamContext
    from nats.js.api import RawStreamMsg

#: header naming the stream sequence of the driver input of the step that produced an event
INPUT_SEQ = "Nertz-Input-Seq"
#: header naming the origin of that step: the position of the external input that started it
ORIGIN_SEQ = "Nertz-Origin-Seq"
#: JetStream's de-duplication header, which every publish sets to the event id
MSG_ID = "Nats-Msg-Id"


class Record(NamedTuple):
    """One message of the log.

    Attributes
    ----------
    seq : int
        Stream sequence (or the position in a file for a backtest's inputs).
    subject : str
    event : Event
    input_seq : int or None
        ``Nertz-Input-Seq`` of a derived event; None for external inputs.
    origin : int
        The step's origin (``seq`` for an external input).
    raw : bytes
        The payload as stored (empty when the record was built from an event).
    """

    seq: int
    subject: str
    event: ev.AnyEvent
    input_seq: int | None
    origin: int
    raw: bytes = b""


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """Hold the cyclic garbage collector back while a log is read or run.

    Events are immutable values and the components build no reference cycles worth collecting; with
    hundreds of thousands of live objects, the collector's passes cost as much as the work itself
    (measured: a third of a backtest, half of a bundle's decoding). Reference counting still frees
    everything as usual. Afterwards what survived is moved to the collector's permanent generation
    (``gc.freeze``): a log read once is kept, and scanning it at every later collection would cost
    seconds each time.
    """
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if was:
            gc.enable()


def ack_fields(reply: str) -> tuple[int, int, int, int]:
    """Return ``(stream seq, consumer seq, num delivered, num pending)`` of a JetStream delivery.

    The fields are read from the reply subject (``$JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.
    <ts>.<pending>``, or the longer form with a domain and an account hash) without nats-py's metadata
    object, whose timestamp conversion costs more than the rest of a message's handling.

    Raises
    ------
    ValueError
        If ``reply`` is not a JetStream ack subject.
    """
    t = reply.split(".")
    if len(t) == 9 and t[0] == "$JS":
        return int(t[5]), int(t[6]), int(t[4]), int(t[8])
    if len(t) >= 11 and t[0] == "$JS":
        return int(t[7]), int(t[8]), int(t[6]), int(t[10])
    raise ValueError(f"expected a JetStream ack subject, was {reply!r}")


def origin_of(seq: int, headers: dict[str, str] | None, origins: dict[int, int]) -> tuple[int | None, int]:
    """Return ``(input_seq, origin)`` of the message at ``seq`` from its headers.

    ``origins`` maps earlier positions to their origins, for logs written before the origin header
    existed (the input's origin is then looked up; an unknown input is its own origin).
    """
    if not headers:
        return None, seq
    raw_in = headers.get(INPUT_SEQ)
    input_seq = int(raw_in) if raw_in else None
    raw_origin = headers.get(ORIGIN_SEQ)
    if raw_origin:
        return input_seq, int(raw_origin)
    if input_seq is None:
        return None, seq
    return input_seq, origins.get(input_seq, input_seq)


def records_of(events: Sequence[ev.Event], first_seq: int = 1) -> list[Record]:
    """Return external inputs as records at consecutive positions (a backtest's source)."""
    return [
        Record(first_seq + i, subjects.for_event(e), e, None, first_seq + i)  # type: ignore[arg-type]
        for i, e in enumerate(events)
    ]


class LogRange(NamedTuple):
    """The stream's extent: first and last sequence held (``first > last`` when empty)."""

    first_seq: int
    last_seq: int


async def subject_messages(
    js: JetStreamContext, stream: str, subject: str, start: int = 1, end: int | None = None, *, direct: bool = False
) -> AsyncIterator[RawStreamMsg]:
    """Yield the messages on ``subject`` at stream sequences ``start``..``end`` (default: to the end), in order.

    One get of "the next message on the subject" per message (``direct``: a direct get, for a stream
    that allows them), so a sparse subject costs as many requests as it has messages in the range,
    however many other messages the stream holds; no consumer, so none of a watcher's races.

    Raises
    ------
    nats.errors.Error, nats.js.errors.APIError
        If the stream cannot be read (the bus is down, the stream is missing).
    """
    import nats.js.errors

    seq = start
    while end is None or seq <= end:
        try:
            msg = await js.get_msg(stream, seq=seq, subject=subject, next=True, direct=direct)
        except nats.js.errors.NotFoundError:
            return
        if msg.seq is None or (end is not None and msg.seq > end):
            return
        yield msg
        seq = msg.seq + 1


async def log_range(js: JetStreamContext, stream: str = subjects.STREAM) -> LogRange:
    """Return the first and last sequence the stream holds."""
    st = (await js.stream_info(stream)).state
    return LogRange(st.first_seq, st.last_seq)


async def read_log(
    js: JetStreamContext,
    *,
    from_seq: int = 1,
    to_seq: int | None = None,
    filters: Sequence[str] | None = None,
    stream: str = subjects.STREAM,
    progress: Callable[[int, int], None] | None = None,
    idle_timeout_s: float = 10.0,
) -> list[Record]:
    """Read the log from ``from_seq`` to ``to_seq`` (inclusive; default the stream's end) in order.

    An ordered push consumer (AckNone, client-side gap detection; ~140k messages/s here, BUS.md §4)
    does the reading; undecodable messages are skipped (their consumer dead-lettered them).

    Parameters
    ----------
    filters : sequence of str, optional
        Subject filters (default every subject of the stream).
    progress : callable, optional
        Called with ``(seq reached, last seq)`` every few thousand messages.
    idle_timeout_s : float
        Give up when nothing arrives for this long while messages remain, s.

    Raises
    ------
    TimeoutError
        If the read stalls for ``idle_timeout_s``.
    """
    from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

    start, last = await _bounds(js, stream, from_seq, to_seq)
    if last < start:
        return []
    out: list[Record] = []
    origins: dict[int, int] = {}
    done = asyncio.get_running_loop().create_future()
    decode = ev.decode
    reached = 0

    async def on_msg(m) -> None:  # type: ignore[no-untyped-def]
        # the hot loop of every replay: the ack subject split by hand (see ack_fields), headers read
        # only when present, no helper calls
        nonlocal reached
        t = m.reply.split(".")
        if len(t) == 9:
            seq, pending = int(t[5]), int(t[8])
        else:
            seq, pending = int(t[7]), int(t[10])
        reached = seq
        if seq <= last:
            h = m.headers
            input_seq = None
            origin = seq
            if h:
                raw_in = h.get(INPUT_SEQ)
                raw_origin = h.get(ORIGIN_SEQ)
                if raw_in:
                    input_seq = int(raw_in)
                if raw_origin:
                    origin = int(raw_origin)
                elif input_seq is not None:
                    origin = origins.get(input_seq, input_seq)
                if origin != seq:
                    origins[seq] = origin
            data = m.data
            try:  # noqa: SIM105 - a suppress() context per message costs more than the decode
                out.append(Record(seq, m.subject, decode(data), input_seq, origin, data))
            except (msgspec.DecodeError, msgspec.ValidationError):
                pass
            if progress is not None and not seq & 4095:
                progress(seq, last)
        if (seq >= last or pending == 0) and not done.done():
            done.set_result(None)

    cfg = ConsumerConfig(
        deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
        opt_start_seq=start,
        ack_policy=AckPolicy.NONE,
        filter_subjects=list(filters) if filters else None,
    )
    subject = filters[0] if filters and len(filters) == 1 else ">"
    if filters and len(filters) == 1:
        cfg.filter_subjects = None
    sub = await js.subscribe(subject, stream=stream, cb=on_msg, ordered_consumer=True, config=cfg)
    with gc_paused():
        await _until_read(sub, done, lambda: reached, last, idle_timeout_s)
    if progress is not None:
        progress(last, last)
    return out


async def _bounds(js: JetStreamContext, stream: str, from_seq: int, to_seq: int | None) -> tuple[int, int]:
    """The first and last sequence a read from ``from_seq`` to ``to_seq`` (None: the end) covers."""
    rng = await log_range(js, stream)
    return max(from_seq, rng.first_seq), rng.last_seq if to_seq is None else min(to_seq, rng.last_seq)


async def _until_read(
    sub: Any, done: asyncio.Future[None], reached: Callable[[], int], last: int, idle_timeout_s: float
) -> None:
    """Wait until the ordered consumer ``sub`` delivered up to ``last`` (``done``) or has nothing more
    that matches, then unsubscribe it; raise TimeoutError if ``reached()`` stands still for ``idle_timeout_s``."""
    try:
        seen = -1
        wait_s = min(0.5, idle_timeout_s)
        while not done.done():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(done), wait_s)
            if done.done():
                break
            if (await sub.consumer_info()).num_pending == 0 and not sub.pending_msgs:
                break  # nothing (more) matches the filters up to the stream's end
            if reached() == seen:
                raise TimeoutError(f"expected the log up to seq {last}, the read stalled at {reached()}")
            seen = reached()
            wait_s = idle_timeout_s
    finally:
        with contextlib.suppress(Exception):
            await sub.unsubscribe()


async def read_ids(
    js: JetStreamContext,
    filters: Sequence[str],
    *,
    to_seq: int | None = None,
    stream: str = subjects.STREAM,
    progress: Callable[[int, int], None] | None = None,
    idle_timeout_s: float = 10.0,
) -> list[str]:
    """Return the event id (``Nats-Msg-Id``, which every publish sets to it) of each message on
    ``filters`` up to ``to_seq`` (default the stream's end), in log order; ``""`` for a message without one.

    Headers only (a headers-only ordered consumer): no payload crosses the wire or is decoded, which
    makes a check of ids over the bulk of a log (market data, factor snapshots) ~40 % cheaper than
    :func:`read_log` (the demo's 261k: 3.0 s against 5.0 s). ``progress`` as in :func:`read_log`.

    Raises TimeoutError as :func:`read_log` does.
    """
    from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

    start, last = await _bounds(js, stream, 1, to_seq)
    if last < start:
        return []
    out: list[str] = []
    done = asyncio.get_running_loop().create_future()
    reached = 0

    async def on_msg(m) -> None:  # type: ignore[no-untyped-def]
        nonlocal reached
        t = m.reply.split(".")
        seq, pending = (int(t[5]), int(t[8])) if len(t) == 9 else (int(t[7]), int(t[10]))
        reached = seq
        if seq <= last:
            h = m.headers
            out.append((h.get(MSG_ID) if h else None) or "")
            if progress is not None and not seq & 4095:
                progress(seq, last)
        if (seq >= last or pending == 0) and not done.done():
            done.set_result(None)

    cfg = ConsumerConfig(
        deliver_policy=DeliverPolicy.ALL, ack_policy=AckPolicy.NONE, headers_only=True, filter_subjects=list(filters)
    )
    sub = await js.subscribe(">", stream=stream, cb=on_msg, ordered_consumer=True, config=cfg)
    await _until_read(sub, done, lambda: reached, last, idle_timeout_s)
    if progress is not None:
        progress(last, last)
    return out
