"""Recordings in object storage (a real S3 server on 127.0.0.1): rotated files uploaded as they finish,
a crashed run's leftovers uploaded first, nothing overwritten, and a directory URL replayed to the very
events of the source."""

from __future__ import annotations

from pathlib import Path

import pytest

from nertz_common import events as ev
from nertz_common.storage import Storage
from nertz_common.testing.s3 import ISOLATED_AWS_ENV, LocalS3
from nertz_ingest import app
from nertz_ingest.adapters.recorder import RecordingWriter
from nertz_ingest.adapters.recording import RawFrame, SourceFile
from nertz_ingest.adapters.rotation import RecordingUploadError, RotatingRecorder
from nertz_ingest.app import Recording, build_parser, main
from nertz_ingest.core.rejection import Rejected
from nertz_ingest.replay import dead_letter, parse_files

ROTATE_NS = 10_000_000_000  # the bundled recording spans 42 s of receive time, from 21:26:59.5 UTC
FILE_STARTS = ["212659", "212700", "212710", "212720", "212730", "212740"]  # the first frame's, then every 10 s


@pytest.fixture(autouse=True)
def _no_real_aws(monkeypatch: pytest.MonkeyPatch) -> None:
    for k, v in ISOLATED_AWS_ENV.items():
        monkeypatch.setenv(k, v)


@pytest.fixture
def s3(local_s3: LocalS3) -> Storage:
    return Storage(local_s3.settings())


def _encoded(paths: list[Path | str], storage: Storage | None = None) -> list[bytes]:
    return [ev.encode(dead_letter(o) if isinstance(o, Rejected) else o) for o in parse_files(paths, storage=storage)]


def _record(recorder: RotatingRecorder, frames: list[RawFrame]) -> None:
    with recorder as w:
        for f in frames:
            w.write(f.raw, f.recv_ns)


def test_rotating_recorder_uploads_each_file_and_the_directory_replays_like_the_source(
    s3: Storage, local_s3: LocalS3, tmp_path: Path, recording: Path, frames: list[RawFrame]
) -> None:
    target = f"s3://{local_s3.bucket()}/rec/bybit.jsonl.xz"
    rec = RotatingRecorder(target, tmp_path / "spool", rotate_ns=ROTATE_NS, storage=s3, flush_bytes=16_384)
    _record(rec, frames)
    listed = s3.ls(target.rsplit("/", 1)[0])
    assert listed == rec.uploaded  # uploaded in time order: the names sort as the files follow each other
    assert [u.rsplit("/", 1)[1] for u in listed] == [f"bybit-20260809T{t}Z.jsonl.xz" for t in FILE_STARTS]
    assert [p for p in (tmp_path / "spool").rglob("*") if p.is_file()] == []  # deleted once stored
    # every file is a whole recording; together, by URL, they replay to the very events of the source
    one = SourceFile(listed[-1], storage=s3)
    assert one.kind == "jsonl" and one.size == s3.size(listed[-1])
    assert _encoded([target.rsplit("/", 1)[0] + "/"], s3) == _encoded([recording])


def test_rotating_recorder_uploads_a_crashed_runs_leftovers_first(
    s3: Storage, local_s3: LocalS3, tmp_path: Path, frames: list[RawFrame]
) -> None:
    bucket = local_s3.bucket()
    target = f"s3://{bucket}/rec/bybit.jsonl.gz"
    spool = tmp_path / "spool"
    crashed = RotatingRecorder(target, spool, rotate_ns=ROTATE_NS, storage=s3)
    for f in frames[:100]:
        crashed.write(f.raw, f.recv_ns)
    crashed.flush(wait=True)  # a kill -9 now: the file is in the spool, never uploaded
    [left] = [p for p in spool.rglob("*.jsonl.gz")]
    again = RotatingRecorder(target, spool, rotate_ns=ROTATE_NS, storage=s3)
    _record(again, frames[100:200])
    assert f"s3://{bucket}/rec/{left.name}" in again.uploaded and not left.exists()
    got = [r for r in SourceFile(f"s3://{bucket}/rec/{left.name}", storage=s3).records() if isinstance(r, RawFrame)]
    assert [g.raw for g in got] == [f.raw for f in frames[:100]]


def test_rotating_recorder_without_rotation_never_overwrites_an_object(
    s3: Storage, local_s3: LocalS3, tmp_path: Path, frames: list[RawFrame]
) -> None:
    target = f"s3://{local_s3.bucket()}/rec/one.jsonl"
    _record(RotatingRecorder(target, tmp_path / "spool", storage=s3), frames[:10])
    assert s3.exists(target)
    with pytest.raises(FileExistsError, match="never overwritten"):
        RotatingRecorder(target, tmp_path / "spool", storage=s3)


def test_rotating_recorder_upload_refused_keeps_the_file_in_the_spool(
    s3: Storage, tmp_path: Path, frames: list[RawFrame]
) -> None:
    target = "s3://nertz-no-such-bucket/rec/bybit.jsonl.xz"
    rec = RotatingRecorder(target, tmp_path / "spool", rotate_ns=ROTATE_NS, storage=s3)
    with pytest.raises(RecordingUploadError, match="kept in the spool"):
        _record(rec, frames)
    kept = sorted(p for p in (tmp_path / "spool").rglob("*.jsonl.xz"))
    assert len(kept) == len(FILE_STARTS) and rec.uploaded == []
    assert sum(1 for p in kept for r in SourceFile(p).records() if isinstance(r, RawFrame)) == len(frames)


def test_rotating_recorder_local_target_rotates_in_place(tmp_path: Path, frames: list[RawFrame]) -> None:
    rec = RotatingRecorder(tmp_path / "rec" / "bybit.jsonl", tmp_path / "unused", rotate_ns=ROTATE_NS)
    _record(rec, frames)
    files = sorted((tmp_path / "rec").iterdir())
    assert len(files) == len(FILE_STARTS) and not (tmp_path / "unused").exists()
    assert _encoded([tmp_path / "rec"]) == _encoded(files)  # a directory stands for its recordings


def test_live_recording_to_a_url_rotates_hourly_by_default_a_path_records_as_before(
    s3: Storage, local_s3: LocalS3, tmp_path: Path
) -> None:
    remote = Recording(f"s3://{local_s3.bucket()}/rec/bybit.jsonl.xz", None, tmp_path / "spool", s3)
    w = remote.writer(None, "wss://stream.bybit.com/v5/public/linear")
    assert isinstance(w, RotatingRecorder) and w.rotate_ns == 3_600_000_000_000
    w.close()
    local = Recording(tmp_path / "live.jsonl.gz").writer(None, "wss://stream.bybit.com/v5/public/linear")
    assert type(local) is RecordingWriter and local.path == tmp_path / "live.jsonl.gz"
    local.close()


def test_cli_record_and_replay_arguments_keep_urls_and_paths() -> None:
    args = build_parser().parse_args(["live", "--record", "s3://b/rec/x.jsonl.xz", "--record-rotate-min", "30"])
    assert (args.record, args.record_rotate_min, args.spool) == ("s3://b/rec/x.jsonl.xz", 30.0, Path("var/spool"))
    args = build_parser().parse_args(["replay", "s3://b/rec/", "local.csv"])
    assert args.files == ["s3://b/rec/", Path("local.csv")]


@pytest.mark.integration
def test_cli_replay_of_a_recording_by_url_publishes_the_events(
    js_fresh, nats_url: str, s3: Storage, local_s3: LocalS3, recording: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    url = f"s3://{local_s3.bucket()}/cryptofeed/{recording.name}"
    s3.upload(recording, url)
    for k, v in {**local_s3.env(), "NATS_URL": nats_url, "NERTZ_LOG_LEVEL": "WARNING"}.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setattr(app, "settle_heap", lambda: None)  # a process's, not the test runner's
    assert main(["replay", url, "--instruments", "none"]) == 0
    out = capsys.readouterr().out
    assert "2220 events published" in out and "stored 2220" in out
    assert main(["replay", "s3://nertz-no-such-bucket/x.jsonl.xz"]) == 2
    err = capsys.readouterr().err
    assert "error: bucket 'nertz-no-such-bucket' does not exist" in err
    assert "s3://nertz-no-such-bucket/x.jsonl.xz" in err


def test_recording_writer_unchanged_for_local_paths(tmp_path: Path, frames: list[RawFrame]) -> None:
    path = tmp_path / "plain.jsonl.xz"
    with RecordingWriter(path) as w:
        for f in frames[:50]:
            w.write(f.raw, f.recv_ns)
    assert [r.raw for r in SourceFile(path).records() if isinstance(r, RawFrame)] == [f.raw for f in frames[:50]]
