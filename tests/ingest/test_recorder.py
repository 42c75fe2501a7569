"""The recorder: its JSONL file replays to the very events of the source, survives a crash, and copies
frames to the short-retention RAW stream."""

from __future__ import annotations

import gzip
import json
import lzma
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from nertz_common import bus, subjects, topology
from nertz_common import events as ev
from nertz_ingest.adapters.recorder import (
    FORMAT,
    RECV_NS_HEADER,
    RawPublisher,
    RecordingWriteError,
    RecordingWriter,
    raw_subject,
)
from nertz_ingest.adapters.recording import RawFrame, RecordingError, SourceFile
from nertz_ingest.core.rejection import Rejected
from nertz_ingest.replay import dead_letter, parse_files, replay_files

T0 = 1_786_310_820_000_000_000
TICKER = '{"topic":"tickers.BTCUSDT","type":"delta","cs":%d,"ts":%d,"data":{"symbol":"BTCUSDT","lastPrice":"%s"}}'


def _ticker(ms: int, price: str = "65000.5") -> str:
    return TICKER % (ms, ms, price)


def _encoded(paths: list[Path]) -> list[bytes]:
    return [ev.encode(dead_letter(o) if isinstance(o, Rejected) else o) for o in parse_files(paths)]


def _record(path: Path, frames: list[RawFrame], **kw) -> Path:
    with RecordingWriter(path, **kw) as w:
        for f in frames:
            w.write(f.raw, f.recv_ns)
    return path


def _lines(path: Path) -> list[str]:
    opener = {".xz": lzma.open, ".gz": gzip.open}.get(path.suffix, open)
    with opener(path, "rt", encoding="utf-8") as fh:
        return fh.read().splitlines()


@pytest.mark.parametrize("name", ["rec.jsonl.xz", "rec.jsonl.gz", "rec.jsonl"])
def test_recorder_output_replays_to_the_same_events_as_the_source(
    tmp_path: Path, recording: Path, frames: list[RawFrame], name: str
) -> None:
    # small chunks: the file is many concatenated compressed streams, as after hours of live recording
    ours = _record(tmp_path / name, frames, flush_bytes=16_384)
    replayed = list(SourceFile(ours).records())
    assert [(f.recv_ns, f.raw) for f in replayed] == [(f.recv_ns, f.raw) for f in frames]  # type: ignore[union-attr]
    original = _encoded([recording])
    assert len(original) == 2220
    assert _encoded([ours]) == original


def test_recorder_file_is_a_header_then_one_frame_per_line(tmp_path: Path) -> None:
    path = tmp_path / "x.jsonl"
    with RecordingWriter(path, url="wss://stream.bybit.com/v5/public/linear") as w:
        w.write(_ticker(1), T0 + 5)
        w.write(b'{"op":"pong"}', T0 + 7)
    head, *rows = (json.loads(line) for line in _lines(path))
    assert head["t"] == "header" and head["format"] == FORMAT and head["version"] == 1
    assert (head["venue"], head["channel"], head["url"]) == (
        "bybit",
        "linear",
        "wss://stream.bybit.com/v5/public/linear",
    )
    assert head["created_ns"] > 0
    assert rows == [{"recv_ns": T0 + 5, "frame": _ticker(1)}, {"recv_ns": T0 + 7, "frame": '{"op":"pong"}'}]
    assert (w.frames, w.bytes_out) == (2, path.stat().st_size)


def test_recorder_cuts_a_chunk_per_flush_interval_of_receive_time(tmp_path: Path) -> None:
    path = tmp_path / "x.jsonl.gz"
    w = RecordingWriter(path, flush_interval_ns=1_000_000_000)
    w.write(_ticker(1), T0)
    w.write(_ticker(2), T0 + 999_999_999)
    w.flush(wait=True)  # nothing was due: only the header is on disk... and now this chunk
    written = path.stat().st_size
    w.write(_ticker(3), T0 + 1_500_000_000)
    w.write(_ticker(4), T0 + 2_600_000_000)  # 1.1 s after the chunk started: cut
    w._queue.join()
    assert path.stat().st_size > written
    assert [f.raw for f in SourceFile(path).records()] == [_ticker(i) for i in (1, 2, 3, 4)]  # type: ignore[union-attr]
    w.close()


def test_recorder_crash_loses_only_the_unflushed_tail(tmp_path: Path) -> None:
    path = tmp_path / "crash.jsonl.xz"
    script = f"""
import os, signal
from nertz_ingest.adapters.recorder import RecordingWriter
w = RecordingWriter({str(path)!r}, flush_bytes=4096)
for i in range(3000):
    w.write('{{"topic":"tickers.BTCUSDT","n":%d}}' % i, {T0} + i)
w.flush(wait=True)
for i in range(3000, 3100):
    w.write('{{"topic":"tickers.BTCUSDT","n":%d}}' % i, {T0} + i)
os.kill(os.getpid(), signal.SIGKILL)
"""
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=60)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()
    got = list(SourceFile(path).records())
    assert all(isinstance(r, RawFrame) for r in got)
    ns = [r.recv_ns for r in got]  # type: ignore[union-attr]
    assert ns == [T0 + i for i in range(len(ns))] and 3000 <= len(ns) <= 3100


def test_recorder_truncated_last_stream_is_read_up_to_the_cut_and_reported(tmp_path: Path, frames) -> None:
    path = _record(tmp_path / "cut.jsonl.xz", frames[:400], flush_bytes=32_768)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 300])  # the last stream loses its end (its index, then data)
    got = list(SourceFile(path).records())
    cut = got[-1]
    assert isinstance(cut, Rejected) and cut.reason == "bad_recording_line" and "ends early" in cut.detail
    good = [r for r in got if isinstance(r, RawFrame)]
    assert 0 < len(good) < 400
    assert [(f.recv_ns, f.raw) for f in good] == [(f.recv_ns, f.raw) for f in frames[: len(good)]]


def test_recorder_refuses_to_overwrite_and_bad_names(tmp_path: Path) -> None:
    path = tmp_path / "x.jsonl.gz"
    RecordingWriter(path).close()
    with pytest.raises(FileExistsError):
        RecordingWriter(path)
    with pytest.raises(ValueError, match="jsonl"):
        RecordingWriter(tmp_path / "x.txt")
    w = RecordingWriter(tmp_path / "y.jsonl")
    w.close()
    w.close()  # idempotent
    with pytest.raises(ValueError, match="closed"):
        w.write("{}", 1)


def test_recorder_background_failure_is_raised_to_the_writer(tmp_path: Path) -> None:
    w = RecordingWriter(tmp_path / "x.jsonl.xz")

    def broken(data: bytes) -> bytes:
        raise OSError(28, "No space left on device")

    w._compress = broken
    w.write(_ticker(1), T0)
    with pytest.raises(RecordingWriteError, match="No space left"):
        w.flush(wait=True)
    with pytest.raises(RecordingWriteError):
        w.write(_ticker(2), T0 + 1)
    with pytest.raises(RecordingWriteError):
        w.close()


def test_recording_reader_refuses_unknown_header_and_newer_version(tmp_path: Path) -> None:
    newer = tmp_path / "new.jsonl"
    newer.write_text(json.dumps({"t": "header", "format": FORMAT, "version": 99}) + "\n")
    with pytest.raises(RecordingError, match="version"):
        list(SourceFile(newer).records())
    other = tmp_path / "other.jsonl"
    other.write_text(json.dumps({"t": "header", "format": "something"}) + "\n")
    with pytest.raises(RecordingError, match="header"):
        list(SourceFile(other).records())


def test_recording_reader_rejects_bad_lines_and_goes_on(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(
        "\n".join(
            [
                json.dumps({"t": "header", "format": FORMAT, "version": 1}),
                json.dumps({"recv_ns": T0, "frame": _ticker(1)}),
                "{not json",
                json.dumps({"recv_ns": -5, "frame": "{}"}),
                json.dumps({"recv_ns": T0 + 9, "frame": _ticker(2)}),
            ]
        )
        + "\n"
    )
    got = list(SourceFile(path).records())
    assert [type(r).__name__ for r in got] == ["RawFrame", "Rejected", "Rejected", "RawFrame"]
    assert got[1].ts_ns == T0 and got[1].source.endswith("bad.jsonl:3")  # type: ignore[union-attr]


def test_raw_subjects_are_outside_the_nertz_stream() -> None:
    assert subjects.raw("bybit", "linear", "orderbook.200.BTCUSDT") == "raw.bybit.linear.orderbook.200.BTCUSDT"
    assert subjects.parse_raw("raw.bybit.linear.kline.1.BTCUSDT") == ("bybit", "linear", "kline.1.BTCUSDT")
    assert subjects.raw_filter("bybit", "linear") == "raw.bybit.linear.>"
    assert subjects.raw_stream_subjects() == ["raw.>"]
    assert not any(s.startswith("raw.") for s in subjects.stream_subjects())
    with pytest.raises(ValueError):
        subjects.raw("bybit", "linear", "a b")
    assert raw_subject(_ticker(1)) == "raw.bybit.linear.tickers.BTCUSDT"
    assert raw_subject('{"op":"pong"}') == "raw.bybit.linear.none"
    assert raw_subject("{not json") == "raw.bybit.linear.none"
    assert raw_subject('{"topic":"bad topic"}') == "raw.bybit.linear.none"
    cfg = topology.raw_stream_config()
    assert (cfg.name, cfg.subjects, cfg.max_age) == ("RAW", ["raw.>"], 86_400.0)


@pytest.mark.integration
async def test_topology_apply_declares_raw_stream_idempotently(js_fresh) -> None:
    info = await js_fresh.stream_info(subjects.RAW_STREAM)
    assert info.config.subjects == ["raw.>"] and info.config.max_age == 86_400.0
    changes = await topology.apply(js_fresh)
    assert changes[0] == "stream NERTZ: updated" and "stream RAW: updated" in changes
    assert (await js_fresh.stream_info(subjects.STREAM)).config.subjects == subjects.stream_subjects()


@pytest.mark.integration
async def test_recorder_copies_frames_to_raw_stream_with_receive_time(js_fresh, tmp_path: Path, frames) -> None:
    before = (await js_fresh.stream_info(subjects.RAW_STREAM)).state.last_seq
    sample = [*frames[:300], RawFrame(T0, '{"op":"pong"}', "")]
    raw = RawPublisher(js_fresh, window=64)
    path = tmp_path / "both.jsonl.gz"
    async with RecordingWriter(path, raw_publisher=raw) as w:
        for f in sample:
            w.write(f.raw, f.recv_ns)
    assert (raw.published, raw.failed, raw.dropped) == (len(sample), 0, 0)
    got = []
    for seq in range(before + 1, before + len(sample) + 1):
        msg = await js_fresh.get_msg(subjects.RAW_STREAM, seq)
        got.append((msg.subject, int(msg.headers[RECV_NS_HEADER]), msg.data.decode()))
    assert got == [(raw_subject(f.raw), f.recv_ns, f.raw) for f in sample]
    assert got[0][0].startswith("raw.bybit.linear.") and got[-1][0] == "raw.bybit.linear.none"
    assert (await js_fresh.stream_info(subjects.STREAM)).state.messages == 0  # nothing on the log of record
    assert [(f.recv_ns, f.raw) for f in SourceFile(path).records()] == [(f.recv_ns, f.raw) for f in sample]  # type: ignore[union-attr]


@pytest.mark.integration
async def test_raw_publisher_without_raw_stream_counts_failures_and_never_raises(js_fresh, tmp_path: Path) -> None:
    await js_fresh.delete_stream(subjects.RAW_STREAM)
    raw = RawPublisher(js_fresh, timeout_s=2.0)
    try:
        async with RecordingWriter(tmp_path / "x.jsonl", raw_publisher=raw) as w:
            for i in range(5):
                w.write(_ticker(i), T0 + i)
        assert (raw.published, raw.failed) == (0, 5)
        assert len(list(SourceFile(w.path).records())) == 5  # type: ignore[arg-type]
    finally:
        await topology.apply(js_fresh)


@pytest.mark.integration
async def test_recorder_output_replays_onto_the_log_like_the_source(
    js_fresh, tmp_path: Path, recording: Path, frames
) -> None:
    ours = _record(tmp_path / "rec.jsonl.xz", frames)
    pub = bus.Publisher(js_fresh)
    first = await replay_files(pub, [recording])
    assert (first.stored, first.published) == (2220, 2220)
    again = await replay_files(pub, [ours])  # same events, same ids: the stream stores nothing new
    assert (again.stored, again.duplicates, dict(again.events)) == (0, 2220, dict(first.events))


@pytest.mark.integration
async def test_recorder_output_replays_paced_by_receive_time(js_fresh, tmp_path: Path) -> None:
    # exchange ts 10 s apart, received 0.6 s apart: pacing follows the receive time
    path = tmp_path / "paced.jsonl"
    with RecordingWriter(path) as w:
        w.write(_ticker(1_786_310_820_000), T0)
        w.write(_ticker(1_786_310_830_000, "65001"), T0 + 600_000_000)
    t0 = time.monotonic()
    stats = await replay_files(bus.Publisher(js_fresh), [path], speed=2.0)
    assert stats.stored == 2
    assert 0.28 <= time.monotonic() - t0 < 2.0


def test_recorder_write_is_cheap_for_the_event_loop(tmp_path: Path, frames) -> None:
    # not a timing test: the loop's side only encodes and appends; compression is on the writer thread
    w = RecordingWriter(tmp_path / "x.jsonl.xz", flush_bytes=1 << 30, flush_interval_ns=10**18)
    for f in frames:
        w.write(f.raw, f.recv_ns)
    assert w.bytes_out < 200  # only the header reached the file: nothing was compressed on this thread
    w.close()
    assert os.path.getsize(w.path) == w.bytes_out > 200  # type: ignore[arg-type]
