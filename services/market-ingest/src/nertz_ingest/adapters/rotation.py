"""Recordings kept in object storage: local files, rotated, each finished file uploaded to a URL.

The recorder (:class:`~nertz_ingest.adapters.recorder.RecordingWriter`) streams to a local file, chunk by
chunk, so that a crash loses at most one chunk; an object store cannot be appended to. So a recording
whose target is a URL is written to a local *spool* file, and the file is uploaded (one atomic object)
once it is finished:

- ``target`` names the recording, e.g. ``s3://bucket/recordings/bybit.jsonl.xz``. Without rotation the
  object is exactly that; with rotation every ``rotate_ns`` of receive time a new file is started,
  named ``<stem>-<UTC start>.<suffix>`` next to it (``bybit-20250601T130000Z.jsonl.xz``, the receive
  time of its first frame: a file is opened by its first frame, so a run that receives nothing leaves
  none). Periods are aligned on multiples of ``rotate_ns`` of receive time (hourly files cut on the hour).
  ``python -m nertz_ingest replay s3://bucket/recordings/`` (or ``nertz backtest``) reads them all,
  merged by receive time; each file starts with its own header and is a complete recording (a book
  starts again at its next snapshot when one file is replayed alone).
- The spool is ``<spool>/<target directory, as a file name>``: one per target, so what is left in it
  belongs to that target. A finished file is uploaded by a background thread (the event loop never
  waits for the network) and deleted from the spool once the object is stored. A file the store
  refused stays in the spool and is tried again after the next rotation and at close.
- Start-up and crash recovery are one path: the files left in the spool by an earlier run (finished,
  or cut by a crash: a cut last stream is read up to the cut) are uploaded first.
- An existing object is never overwritten (as a local recording is never): without rotation, a target
  that exists is refused at start; a rotated file whose name exists is kept in the spool and reported.

A local ``target`` with rotation writes the rotated files in the target's own directory (nothing to
upload).
"""

from __future__ import annotations

import logging
import queue
import re
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from nertz_common.storage import Storage, Target, is_remote, join, local_path, name_of, parent_of, safe_url
from nertz_ingest.adapters.recorder import Closing, RawSink, RecordingWriteError, RecordingWriter, compression_of

log = logging.getLogger("nertz.ingest.recorder")

_SUFFIXES = (".jsonl.xz", ".jsonl.gz", ".jsonl")


class RecordingUploadError(OSError):
    """Finished recordings could not be uploaded; they are kept in the spool (retried at the next start)."""


class RotatingRecorder(Closing):
    """Record raw frames to rotated local files and upload each finished one to a URL directory.

    Same interface as :class:`~nertz_ingest.adapters.recorder.RecordingWriter` (``write``, ``flush``,
    ``close``, ``aclose``, ``with``, ``frames``): use from one thread (the event loop's).

    Parameters
    ----------
    target : Path, str
        The recording's path or URL (``*.jsonl.xz``, ``*.jsonl.gz`` or ``*.jsonl``); rotated files are
        named after it (see the module docstring).
    spool : Path
        Local directory under which recordings to a URL are written before they are uploaded.
    raw_publisher : RawSink, optional
        Also hand every frame to it (e.g. the ``RAW`` stream publisher); closed at close.
    rotate_ns : int
        Start a new file when a frame's receive time is this much past the start of the current file's
        rotation period (periods are aligned on multiples of it in UNIX time), ns; 0 = never.
    storage : Storage, optional
        Where URLs go (default: settings from the environment).
    **writer_options
        Passed to each :class:`RecordingWriter` (``venue``, ``url``, ``xz_preset``, ``flush_bytes``...).

    Attributes
    ----------
    frames : int
        Frames written over all files.
    uploaded : list[str]
        URLs of the files uploaded so far (in order).

    Raises
    ------
    ValueError
        If the target has no recording suffix or ``rotate_ns < 0``.
    FileExistsError
        If, without rotation, the target exists.
    StorageError
        If the store cannot be reached to check the target.
    """

    def __init__(
        self,
        target: Target,
        spool: Path,
        raw_publisher: RawSink | None = None,
        *,
        rotate_ns: int = 0,
        storage: Storage | None = None,
        **writer_options: Any,
    ) -> None:
        if rotate_ns < 0:
            raise ValueError(f"expected rotate_ns >= 0, was {rotate_ns}")
        name = name_of(target)
        compression_of(Path(name))  # validates the suffix
        self.target = str(target)
        self.remote = is_remote(target)
        self.rotate_ns = rotate_ns
        self.raw_publisher = raw_publisher
        self.frames = 0
        self.uploaded: list[str] = []
        self._storage = storage or Storage()
        self._dir = parent_of(target)
        self._suffix = next(s for s in _SUFFIXES if name.endswith(s))
        self._stem = name[: -len(self._suffix)]
        self._options = writer_options
        self._spool = spool / _slug(self._dir) if self.remote else local_path(target).parent
        self._spool.mkdir(parents=True, exist_ok=True)
        self._closed = False
        self._failed: list[Path] = []
        spooled = sorted(p for p in self._spool.iterdir() if p.is_file() and p.name.endswith(_SUFFIXES))
        leftovers = spooled if self.remote else []
        taken = not rotate_ns and ((self._spool / name).exists() or self._storage.exists(self.target))
        self._queue: queue.Queue[RecordingWriter | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, args=(leftovers,), name="recorder-upload", daemon=True)
        self._thread.start()  # the leftovers of an earlier run go first, even if this run is refused
        if taken:
            self._queue.put(None)
            self._thread.join()
            raise FileExistsError(f"expected no recording at {safe_url(self.target)} (never overwritten), found one")
        self._writer: RecordingWriter | None = None  # opened by the first frame: files follow receive time
        self._next_cut = 0

    # --- the event loop's side ----------------------------------------------------------------------

    def write(self, frame: str | bytes, recv_ns: int) -> None:
        """Record one frame (starting a new file first when its receive time crosses a rotation).

        Raises
        ------
        ValueError
            If the recorder is closed.
        RecordingWriteError
            If the current file's background writer failed.
        """
        if self._closed:
            raise ValueError("expected an open RotatingRecorder, was closed")
        if self._writer is None or recv_ns >= self._next_cut:
            old, self._writer = self._writer, self._open(recv_ns)
            self._next_cut = self._cut_after(recv_ns)
            if old is not None:
                self._queue.put(old)  # closed (its last chunk compressed) and uploaded on the upload thread
        if isinstance(frame, bytes):
            frame = frame.decode("utf-8", "replace")
        self.frames += 1
        if self.raw_publisher is not None:
            self.raw_publisher.submit(frame, recv_ns)
        self._writer.write(frame, recv_ns)

    def flush(self, wait: bool = False) -> None:
        """Flush the current file (see :meth:`RecordingWriter.flush`)."""
        if self._writer is not None:
            self._writer.flush(wait)

    def close(self) -> None:
        """Close the current file, upload every finished one, stop the raw sink (no drain). Idempotent.

        Blocks until the uploads are done; in async code use :meth:`aclose`.

        Raises
        ------
        RecordingUploadError
            If some files could not be uploaded (they stay in the spool).
        RecordingWriteError
            If the last file's background writer failed (the file holds what was written before).
        """
        if self._closed:
            return
        self._closed = True
        error: RecordingWriteError | None = None
        try:
            if self._writer is not None:
                try:
                    self._writer.close()
                except RecordingWriteError as e:
                    error = e
                self._queue.put(self._writer)
            self._queue.put(None)
            self._thread.join()
        finally:
            if self.raw_publisher is not None:
                self.raw_publisher.close()
        if self._failed:
            left = ", ".join(str(p) for p in self._failed)
            raise RecordingUploadError(
                f"recordings not uploaded to {safe_url(self._dir)}, kept in the spool: {left}"
            ) from error
        if error is not None:
            raise error
        log.info("recorder.closed", extra={"target": safe_url(self.target), "frames": self.frames})

    # --- files ----------------------------------------------------------------------------------------

    def _open(self, start_ns: int) -> RecordingWriter:
        if not self.rotate_ns:
            return RecordingWriter(self._spool / f"{self._stem}{self._suffix}", **self._options)
        stamp = datetime.fromtimestamp(start_ns / 1e9, UTC).strftime("%Y%m%dT%H%M%SZ")
        path = self._spool / f"{self._stem}-{stamp}{self._suffix}"
        n = 1
        while path.exists():  # the clock went back, or two rotations in one second
            path = self._spool / f"{self._stem}-{stamp}-{n}{self._suffix}"
            n += 1
        return RecordingWriter(path, **self._options)

    def _cut_after(self, ns: int) -> int:
        return (ns // self.rotate_ns + 1) * self.rotate_ns if self.rotate_ns else 1 << 63

    # --- the upload thread ----------------------------------------------------------------------------

    def _run(self, leftovers: list[Path]) -> None:
        if leftovers:
            log.info("recorder.spool_leftovers", extra={"files": [p.name for p in leftovers]})
        pending = list(leftovers)
        while True:
            if self.remote:
                pending = [p for p in pending if not self._upload(p)]
            self._failed = pending
            item = self._queue.get()
            if item is None:
                return
            try:
                item.close()  # idempotent: close() closed the last one already
            except RecordingWriteError as e:  # the file holds what was written before the failure
                log.error("recorder.failed", extra={"path": str(item.path), "error": repr(e)})
            if self.remote and item.path is not None:
                pending.append(item.path)

    def _upload(self, path: Path) -> bool:
        url = join(self._dir, path.name)
        try:
            if self._storage.exists(url):
                log.error("recorder.upload_refused", extra={"path": str(path), "url": safe_url(url),
                                                            "reason": "an object of that name exists"})  # fmt: skip
                return False
            self._storage.upload(path, url)
        except OSError as e:  # StorageError included: kept, tried again later
            log.error("recorder.upload_failed", extra={"path": str(path), "url": safe_url(url), "error": str(e)})
            return False
        size = path.stat().st_size
        path.unlink()
        self.uploaded.append(url)
        log.info("recorder.uploaded", extra={"url": safe_url(url), "bytes": size})
        return True


def _slug(url: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", safe_url(url)).strip("_") or "root"
