"""Record raw exchange frames with their receive time: to a compressed JSONL file, and/or to ``RAW``.

File format (``*.jsonl.xz``, ``*.jsonl.gz`` or plain ``*.jsonl``; read back by
:mod:`nertz_ingest.adapters.recording`, so ``python -m nertz_ingest replay`` replays it):

- line 1, the header: ``{"t":"header","format":"nertz-raw-frames","version":1,"venue":"bybit",
  "channel":"linear","url":"...","created_ns":<UNIX ns>}``;
- then one line per frame, in receive order: ``{"recv_ns":<UNIX ns>,"frame":"<the frame's text, exactly>"}``.

The file is a concatenation of complete compressed streams (xz or gzip members), one per flushed
chunk; both formats' readers (and ``xzcat``/``zcat``) read such files whole. Frames are buffered in
memory and a chunk is cut every ``flush_bytes`` of lines or ``flush_interval_ns`` of receive time
(whichever comes first), on :meth:`RecordingWriter.flush` and on close. Compression and the disk
write run on one background thread (``lzma``/``zlib`` release the GIL), so :meth:`RecordingWriter.write`
costs the event loop about a microsecond: one msgspec encode and a list append. If the process
dies, the file keeps every chunk already written; what is lost is the unflushed tail (at most one
chunk) and, if the write itself was cut, a truncated last stream, which the reader reports as a
``bad_recording_line`` rejection and stops there.

``RAW`` stream (optional, :class:`RawPublisher`): each frame is also published, as is, on
``raw.<venue>.<market>.<topic>`` (see :func:`nertz_common.subjects.raw`) with its receive time in
the ``Nertz-Recv-Ns`` header. The stream keeps a short window (``topology.raw_stream_config``: one day);
it is for forensics, the file is what replays. Acks are checked in order in a background task; a
failure is counted and logged, never raised into the feed.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import logging
import lzma
import queue
import threading
import time
from collections import deque
from pathlib import Path
from types import TracebackType
from typing import IO, Protocol, Self

import msgspec
import nats.errors
import nats.js.errors
from nats.js import JetStreamContext
from nats.js.api import PubAck

from nertz_common import subjects

log = logging.getLogger("nertz.ingest.recorder")

FORMAT = "nertz-raw-frames"
"""The ``format`` of the header line of a recording made here."""
VERSION = 1
"""The ``version`` of the format; readers refuse a higher one."""
RECV_NS_HEADER = "Nertz-Recv-Ns"
"""Header carrying a raw frame's receive time (UNIX ns) on the ``RAW`` stream."""


class RecordingWriteError(OSError):
    """The background writer failed (disk full, file removed...): the recording is incomplete."""


class RawSink(Protocol):
    """Where :class:`RecordingWriter` copies every frame besides the file (e.g. :class:`RawPublisher`)."""

    def submit(self, frame: str, recv_ns: int) -> None: ...

    def close(self) -> None: ...

    async def drain(self, timeout_s: float = ...) -> None: ...


class Header(msgspec.Struct, kw_only=True):
    """The first line of a recording.

    Attributes
    ----------
    t : str
        Always ``"header"``.
    format : str
        :data:`FORMAT`.
    version : int
        :data:`VERSION`.
    venue, channel : str
        E.g. ``bybit`` and ``linear`` (Bybit V5 public linear WebSocket).
    url : str
        Where the frames came from (``""`` if unknown).
    created_ns : int
        When the file was opened, UNIX ns (wall clock: a fact about the recording, not about the data).
    """

    t: str = "header"
    format: str = FORMAT
    version: int = VERSION
    venue: str = "bybit"
    channel: str = "linear"
    url: str = ""
    created_ns: int = 0


class FrameLine(msgspec.Struct):
    """One recorded frame: receive time (UNIX ns) and the frame's text exactly as received."""

    recv_ns: int
    frame: str


_encode = msgspec.json.Encoder().encode


def compression_of(path: Path) -> str:
    """Return ``"xz"``, ``"gz"`` or ``""`` from a recording's name.

    Raises
    ------
    ValueError
        If the name does not end in ``.jsonl``, ``.jsonl.xz`` or ``.jsonl.gz``.
    """
    name = path.name
    for suffix, kind in ((".jsonl.xz", "xz"), (".jsonl.gz", "gz"), (".jsonl", "")):
        if name.endswith(suffix):
            return kind
    raise ValueError(f"expected a recording named *.jsonl.xz, *.jsonl.gz or *.jsonl, was {path.name}")


class Closing:
    """How a recorder is closed: :meth:`close` (blocking), :meth:`aclose` from async code, and ``with`` /
    ``async with`` blocks that close it. A subclass defines :meth:`close`, ``raw_publisher`` and ``_closed``."""

    raw_publisher: RawSink | None
    _closed: bool

    def close(self) -> None:
        """Flush and close (idempotent)."""
        raise NotImplementedError

    async def aclose(self, timeout_s: float = 10.0) -> None:
        """Close from async code: drain the raw sink's acks (up to ``timeout_s``), then :meth:`close`."""
        if self.raw_publisher is not None and not self._closed:
            await self.raw_publisher.drain(timeout_s)
        await asyncio.to_thread(self.close)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()


class RecordingWriter(Closing):
    """Write raw frames and their receive times to a compressed JSONL recording (and/or a raw sink).

    Use from one thread (the event loop's); :meth:`write` never blocks on I/O, except if the
    background writer falls ``max_queued_chunks`` chunks behind (it then waits for it: a recording
    with a hole would replay differently).

    Parameters
    ----------
    path : Path, str or None
        The recording to create (``*.jsonl.xz``, ``*.jsonl.gz`` or ``*.jsonl``); it must not exist.
        None = no file (only ``raw_publisher``).
    raw_publisher : RawSink, optional
        Also hand every frame to it (e.g. :class:`RawPublisher` for the ``RAW`` stream).
    venue, channel, url : str
        Written in the header.
    xz_preset : int
        ``lzma`` preset, 0-9 (default 1: ~20 MB/s of frames per core, ratio ~8 on Bybit books).
    gzip_level : int
        ``zlib`` level, 1-9 (default 6).
    flush_bytes : int
        Cut a chunk when this many bytes of lines are buffered (default 1 MiB).
    flush_interval_ns : int
        Cut a chunk when the buffered frames span this much receive time, ns (default 1 s).
    max_queued_chunks : int
        Chunks waiting for the background writer before :meth:`write` waits (default 64).

    Attributes
    ----------
    frames : int
        Frames written.
    bytes_in, bytes_out : int
        Bytes of JSONL lines buffered; bytes written to the file (compressed), header included.

    Raises
    ------
    ValueError
        If the name has no recording suffix or a level is out of range.
    FileExistsError
        If ``path`` exists.
    """

    def __init__(
        self,
        path: Path | str | None,
        raw_publisher: RawSink | None = None,
        *,
        venue: str = "bybit",
        channel: str = "linear",
        url: str = "",
        xz_preset: int = 1,
        gzip_level: int = 6,
        flush_bytes: int = 1 << 20,
        flush_interval_ns: int = 1_000_000_000,
        max_queued_chunks: int = 64,
    ) -> None:
        if not 0 <= xz_preset <= 9:
            raise ValueError(f"expected xz_preset in [0, 9], was {xz_preset}")
        if not 1 <= gzip_level <= 9:
            raise ValueError(f"expected gzip_level in [1, 9], was {gzip_level}")
        if flush_bytes < 1 or flush_interval_ns < 0 or max_queued_chunks < 1:
            raise ValueError(
                f"expected flush_bytes >= 1, flush_interval_ns >= 0, max_queued_chunks >= 1, was "
                f"{flush_bytes}, {flush_interval_ns}, {max_queued_chunks}"
            )
        path = None if path is None else Path(path)
        self.path = path
        self.raw_publisher = raw_publisher
        self.frames = 0
        self.bytes_in = 0
        self.bytes_out = 0
        self._flush_bytes = flush_bytes
        self._flush_interval_ns = flush_interval_ns
        self._buf: list[bytes] = []
        self._buf_bytes = 0
        self._chunk_start_ns: int | None = None
        self._closed = False
        self._error: BaseException | None = None
        self._file: IO[bytes] | None = None
        self._thread: threading.Thread | None = None
        self._queue: queue.Queue[bytes | None] = queue.Queue(max_queued_chunks)
        if path is None:
            return
        kind = compression_of(path)
        if kind == "xz":
            self._compress = lambda data: lzma.compress(data, format=lzma.FORMAT_XZ, preset=xz_preset)
        elif kind == "gz":
            self._compress = lambda data: gzip.compress(data, compresslevel=gzip_level, mtime=0)
        else:
            self._compress = bytes
        self._file = open(path, "xb")  # noqa: SIM115 - closed by close(); never overwrite a recording
        header = Header(venue=venue, channel=channel, url=url, created_ns=time.time_ns())
        self._write_chunk(self._compress(_encode(header) + b"\n"))  # at once: a valid file from the start
        self._thread = threading.Thread(target=self._run, name=f"recorder:{path.name}", daemon=True)
        self._thread.start()

    # --- the event loop's side ----------------------------------------------------------------------

    def write(self, frame: str | bytes, recv_ns: int) -> None:
        """Record one frame.

        Parameters
        ----------
        frame : str or bytes
            The frame exactly as received (bytes are decoded as UTF-8, invalid bytes replaced).
        recv_ns : int
            When it was received, UNIX ns.

        Raises
        ------
        ValueError
            If the writer is closed.
        RecordingWriteError
            If the background writer failed earlier (the recording is incomplete from there on).
        """
        if self._closed:
            raise ValueError("expected an open RecordingWriter, was closed")
        self._raise_if_failed()
        if isinstance(frame, bytes):
            frame = frame.decode("utf-8", "replace")
        self.frames += 1
        if self.raw_publisher is not None:
            self.raw_publisher.submit(frame, recv_ns)
        if self._file is None:
            return
        line = _encode(FrameLine(recv_ns, frame)) + b"\n"
        self._buf.append(line)
        self._buf_bytes += len(line)
        if self._chunk_start_ns is None:
            self._chunk_start_ns = recv_ns
        if self._buf_bytes >= self._flush_bytes or recv_ns - self._chunk_start_ns >= self._flush_interval_ns:
            self.flush()

    def flush(self, wait: bool = False) -> None:
        """Hand the buffered frames to the background writer as one compressed chunk.

        Parameters
        ----------
        wait : bool
            Also wait until every chunk handed over so far is written to the file (blocks: for
            shutdown paths and tests, not for the event loop).

        Raises
        ------
        RecordingWriteError
            If the background writer failed.
        """
        self._raise_if_failed()
        if self._buf:
            chunk = b"".join(self._buf)
            self._buf = []
            self._buf_bytes = 0
            self._chunk_start_ns = None
            self.bytes_in += len(chunk)
            self._queue.put(chunk)  # waits only if the writer is max_queued_chunks behind
        if wait and self._thread is not None:
            self._queue.join()
            self._raise_if_failed()

    def _raise_if_failed(self) -> None:
        if self._error is not None:
            raise RecordingWriteError(f"recording {self.path} failed: {self._error!r}") from self._error

    def close(self) -> None:
        """Flush, wait for the background writer, close the file, and stop the raw sink (no drain).

        Idempotent. In async code prefer :meth:`aclose`, which also waits for the ``RAW`` acks.

        Raises
        ------
        RecordingWriteError
            If the background writer failed (the file holds what was written before the failure).
        """
        if self._closed:
            return
        self._closed = True
        try:
            if self._file is not None:
                with contextlib.suppress(RecordingWriteError):
                    self.flush()
                self._queue.put(None)
                if self._thread is not None:
                    self._thread.join()
                self._file.close()
        finally:
            if self.raw_publisher is not None:
                self.raw_publisher.close()
        self._raise_if_failed()
        log.info(
            "recorder.closed",
            extra={"path": str(self.path), "frames": self.frames, "bytes_in": self.bytes_in, "bytes": self.bytes_out},
        )

    # --- the background writer ----------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            chunk = self._queue.get()
            try:
                if chunk is None:
                    return
                if self._error is None:  # after a failure, keep draining: write() must never wait on it
                    self._write_chunk(self._compress(chunk))
            except Exception as e:  # reported to the caller of write(), flush() and close()
                self._error = e
                log.error("recorder.failed", extra={"path": str(self.path), "error": repr(e)})
            finally:
                self._queue.task_done()

    def _write_chunk(self, data: bytes) -> None:
        assert self._file is not None
        self._file.write(data)
        self._file.flush()  # to the OS: survives a crash of this process
        self.bytes_out += len(data)


class _Topic(msgspec.Struct):
    topic: str = ""


_topic_decoder = msgspec.json.Decoder(_Topic)


def raw_subject(frame: str, venue: str = "bybit", market: str = "linear") -> str:
    """Return the ``RAW`` subject of a frame: by its ``topic``, or ``...none`` without a usable one."""
    try:
        topic = _topic_decoder.decode(frame).topic
        return subjects.raw(venue, market, topic or subjects.RAW_NO_TOPIC)
    except (msgspec.DecodeError, ValueError):
        return subjects.raw(venue, market, subjects.RAW_NO_TOPIC)


class RawPublisher:
    """Publish raw frames to the ``RAW`` stream from sync code, acks checked in a background task.

    :meth:`submit` only queues (call it on the event loop's thread); a task started on the first
    frame publishes them pipelined (``publish_async``) in windows and checks every ack, in order:
    the ack's stream must be ``RAW``. A failed or missing ack is counted and logged, never raised: the
    feed goes on (the file recording is the copy that replays).

    Parameters
    ----------
    js : JetStreamContext
    venue, market : str
        Subject tokens (``raw.<venue>.<market>.<topic>``).
    stream : str
        Expected stream in the acks (default ``RAW``).
    window : int
        Frames per pipelined window.
    max_pending : int
        Frames queued before new ones are dropped (counted in ``dropped``).
    timeout_s : float
        Wait for a window's acks, s.

    Attributes
    ----------
    published, failed, dropped : int
        Frames acked by the stream; frames whose ack failed or never came; frames dropped (queue full).
    """

    def __init__(
        self,
        js: JetStreamContext,
        *,
        venue: str = "bybit",
        market: str = "linear",
        stream: str = subjects.RAW_STREAM,
        window: int = 500,
        max_pending: int = 100_000,
        timeout_s: float = 5.0,
    ) -> None:
        subjects.raw(venue, market, subjects.RAW_NO_TOPIC)  # validates the tokens
        self._js = js
        self.venue = venue
        self.market = market
        self.stream = stream
        self._window = window
        self._max_pending = max_pending
        self._timeout_s = timeout_s
        self._queue: deque[tuple[str, int]] = deque()
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self.published = 0
        self.failed = 0
        self.dropped = 0

    def submit(self, frame: str, recv_ns: int) -> None:
        """Queue one frame (from the event loop's thread); drop it if ``max_pending`` are queued.

        Raises
        ------
        RuntimeError
            If called with no running event loop.
        """
        if self._closing:
            return
        if len(self._queue) >= self._max_pending:
            self.dropped += 1
            if self.dropped in (1, 10, 100) or self.dropped % 10_000 == 0:
                log.warning("recorder.raw_dropped", extra={"dropped": self.dropped, "queued": len(self._queue)})
            return
        self._queue.append((frame, recv_ns))
        if self._task is None:
            self._wake = asyncio.Event()
            self._task = asyncio.get_running_loop().create_task(self._run(), name="raw-publisher")
        assert self._wake is not None
        self._wake.set()

    def close(self) -> None:
        """Stop accepting frames; the task publishes what is queued and ends (see :meth:`drain`)."""
        self._closing = True
        if self._wake is not None:
            self._wake.set()

    async def drain(self, timeout_s: float = 10.0) -> None:
        """Stop accepting frames and wait (up to ``timeout_s``) until every queued frame is acked or failed."""
        self.close()
        if self._task is None:
            return
        try:
            await asyncio.wait_for(asyncio.shield(self._task), timeout_s)
        except TimeoutError:
            self._task.cancel()
            self.failed += len(self._queue)
            self._queue.clear()
            log.error("recorder.raw_drain_timeout", extra={"failed": self.failed})

    async def _run(self) -> None:
        assert self._wake is not None
        while True:
            if not self._queue:
                if self._closing:
                    return
                self._wake.clear()
                await self._wake.wait()
                continue
            batch = [self._queue.popleft() for _ in range(min(self._window, len(self._queue)))]
            await self._publish(batch)

    async def _publish(self, batch: list[tuple[str, int]]) -> None:
        futs: list[asyncio.Future[PubAck]] = []
        settled = 0  # frames of the batch whose outcome is counted
        try:
            for frame, recv_ns in batch:
                futs.append(
                    await self._js.publish_async(
                        raw_subject(frame, self.venue, self.market),
                        frame.encode(),
                        headers={RECV_NS_HEADER: str(recv_ns)},
                    )
                )
            async with asyncio.timeout(self._timeout_s):
                for fut in futs:  # in order
                    try:
                        ack = await fut
                    except (nats.errors.Error, nats.js.errors.Error) as e:
                        settled += 1
                        self._fail(1, e)
                        continue
                    settled += 1
                    if ack.stream == self.stream:
                        self.published += 1
                    else:
                        self._fail(1, ValueError(f"expected an ack from stream {self.stream}, was {ack.stream}"))
        except (TimeoutError, nats.errors.Error, nats.js.errors.Error) as e:
            for f in futs:
                f.cancel()
            self._fail(len(batch) - settled, e)

    def _fail(self, n: int, e: BaseException) -> None:
        if n <= 0:
            return
        before, self.failed = self.failed, self.failed + n
        if before == 0 or before // 1000 != self.failed // 1000:  # the first, then one line per 1000
            log.warning("recorder.raw_publish_failed", extra={"frames": n, "failed": self.failed, "error": repr(e)})
