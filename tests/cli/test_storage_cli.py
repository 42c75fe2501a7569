"""``nertz export``, ``replay``, ``verify`` and ``backtest`` with object storage (a real S3 server on
127.0.0.1): a bundle exported to ``s3://`` replays as the same bundle exported to a local file; reports
go to ``s3://`` (a sweep's ``sweep.json`` is written by the same ``report.save``); inputs are read from
``s3://``; a store that cannot be used says so in one line."""

from __future__ import annotations

import asyncio
import gc
import json
import lzma
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nats
import pytest
from typer.testing import CliRunner

from nertz_cli import config, tools
from nertz_cli import main as cli
from nertz_cli.config import nodes
from nertz_common import events as ev
from nertz_common import subjects, topology
from nertz_common.node.component import Pos
from nertz_common.node.log import INPUT_SEQ, ORIGIN_SEQ
from nertz_common.node.log_runner import LogRunner
from nertz_common.storage import Storage
from nertz_common.testing.fake_bybit import loopback_only
from nertz_common.testing.s3 import LocalS3

BTC = Path(__file__).resolve().parents[2] / "data" / "bybit_kline_1m" / "BTCUSDT_1m.csv.xz"
BARS = 6_000  # ~4 days of 1m bars: past the stops' warm-up, one round trip and a lock


@pytest.fixture(autouse=True)
def _storage_env(local_s3: LocalS3, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for k, v in local_s3.env().items():
        monkeypatch.setenv(k, v)
    with loopback_only() as refused:
        yield
    assert refused == [], f"traffic beyond loopback was attempted: {refused}"


@pytest.fixture(scope="module")
def csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The first BARS real BTCUSDT 1m bars as a plain kline CSV."""
    path = tmp_path_factory.mktemp("data") / "BTCUSDT_1m.csv"
    with lzma.open(BTC, "rt") as src:
        path.write_text("".join(line for _, line in zip(range(BARS + 1), src, strict=False)))
    return path


@pytest.fixture
def s3(local_s3: LocalS3) -> Storage:
    return Storage(local_s3.settings())


def nertz(*args: str) -> Any:
    return CliRunner().invoke(cli.app, list(args))


async def _publish_log(nats_url: str, csv: Path) -> int:
    """Put a log on a fresh stream as the services would: each input, then what it led to, with the
    position headers; return the number of messages."""
    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream(timeout=15)
        await topology.recreate(js)
        return await _publish(js, csv)
    finally:
        await nc.close()


async def _publish(js: Any, csv: Path) -> int:
    records = tools.load_inputs([csv]).records
    log: list[tuple[ev.Event, dict[str, str] | None]] = []
    runner = LogRunner(
        nodes(config.load()),
        keep=False,
        on_output=lambda _n, e, p: log.append((e, {INPUT_SEQ: str(p.seq), ORIGIN_SEQ: str(p.origin)})),
    )
    for r in records:
        seq = len(log) + 1
        log.append((r.event, None))
        runner.feed(r.event, Pos(seq, seq))
    for i in range(0, len(log), 1000):
        futs = [await js.publish_async(subjects.for_event(e), ev.encode(e), headers=h) for e, h in log[i : i + 1000]]
        for n, f in enumerate(futs, start=i + 1):
            assert (await f).seq == n
    return len(log)


@pytest.mark.integration
def test_cli_export_to_s3_replays_like_a_local_bundle(
    nats_url: str, csv: Path, local_s3: LocalS3, s3: Storage, tmp_path: Path
) -> None:
    n = asyncio.run(_publish_log(nats_url, csv))
    assert n > 2 * BARS
    url = f"s3://{local_s3.bucket()}/incidents/x.nertz"
    local = tmp_path / "x.nertz"
    for target in (url, str(local)):
        done = nertz("export", "--out", target, "--nats-url", nats_url)
        assert done.exit_code == 0, done.output
        assert f"bundle written to {target}" in done.output
    assert s3.read_bytes(url)[:2] == b"PK" and s3.size(url) == pytest.approx(local.stat().st_size, rel=0.01)
    replays = [nertz("replay", "--bundle", b) for b in (url, str(local))]
    assert [r.exit_code for r in replays] == [0, 0], replays[0].output
    identical = [next(line for line in r.output.splitlines() if line.startswith("identical:")) for r in replays]
    assert identical[0] == identical[1] and f"identical: {n - BARS - 1:,} events" in identical[0]
    verified = nertz("verify", "--bundle", url)
    assert verified.exit_code == 0 and "every invariant holds" in verified.output, verified.output


def test_cli_backtest_reads_s3_inputs_and_writes_reports_to_s3(
    csv: Path, local_s3: LocalS3, s3: Storage, tmp_path: Path
) -> None:
    bucket = local_s3.bucket()
    data = f"s3://{bucket}/data/{csv.name}"
    s3.upload(csv, data)
    done = nertz("backtest", data, "--out", f"s3://{bucket}/reports/run-1")
    assert done.exit_code == 0, done.output
    assert s3.ls(f"s3://{bucket}/reports/run-1") == [
        f"s3://{bucket}/reports/run-1/report.html",
        f"s3://{bucket}/reports/run-1/report.json",
    ]
    assert f"report written to s3://{bucket}/reports/run-1/report.json" in done.output
    here = nertz("backtest", str(csv), "--out", str(tmp_path / "run-1"), "--no-html")
    assert here.exit_code == 0, here.output
    remote = json.loads(s3.read_bytes(f"s3://{bucket}/reports/run-1/report.json"))
    local = json.loads((tmp_path / "run-1" / "report.json").read_text())
    assert remote["total"] == local["total"] and remote["trades"] == local["trades"] and local["total"]["trades"] >= 1
    assert remote["run"]["files"] == [data]
    assert b"<html" in s3.read_bytes(f"s3://{bucket}/reports/run-1/report.html")[:500].lower()


def test_cli_missing_bucket_and_bundle_fail_in_one_line_naming_the_url(csv: Path, tmp_path: Path) -> None:
    gone = "s3://nertz-no-such-bucket/incidents/x.nertz"
    done = nertz("replay", "--bundle", gone)
    assert done.exit_code == 2
    assert "bucket 'nertz-no-such-bucket' does not exist" in done.output and gone in done.output
    done = nertz("backtest", "s3://nertz-no-such-bucket/BTCUSDT_1m.csv.xz")
    assert done.exit_code == 2 and "bucket 'nertz-no-such-bucket' does not exist" in done.output
    done = nertz("replay", "--bundle", "nope://b/x.nertz")
    assert done.exit_code == 2 and "unknown storage protocol 'nope'" in done.output


def test_cli_report_to_a_missing_bucket_exits_2_with_the_message(
    csv: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(sys, "argv", ["nertz", "backtest", str(csv), "--out", "s3://nertz-no-such-bucket/r"])
    try:
        with pytest.raises(SystemExit) as e:
            cli.main()
    finally:
        gc.enable()  # main() holds the collector back for the command's life
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "error: bucket 'nertz-no-such-bucket' does not exist" in err and "s3://nertz-no-such-bucket/r" in err
