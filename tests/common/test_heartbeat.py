"""Service heartbeats: masked settings, the KV bucket beside the log, and what a runtime writes there
(real NATS; a toy component on the kernel as the runner that reports)."""

from __future__ import annotations

import asyncio
import logging
import signal
import uuid
from typing import ClassVar

import msgspec
import nats.js.errors
import pytest
from pydantic import BaseModel, SecretStr

from nertz_common import bus, heartbeat, runtime, subjects, topology
from nertz_common import events as ev
from nertz_common.heartbeat import Heartbeat, HeartbeatSettings, HeartbeatWriter, Progress
from nertz_common.node.component import Component, Node
from nertz_common.node.log import read_log
from nertz_common.settings import CommonSettings, DatabaseSettings, KernelSettings
from nertz_common.testing import factories as f

SENTINEL = f"sentinel-{uuid.uuid4().hex}"


class _Group(BaseModel):
    token: SecretStr | None = None
    api_key: str = ""
    url: str = ""
    port: int = 8081
    keys: list[SecretStr] = []


class _Settings(BaseModel):
    password: str = ""
    database_url: SecretStr = SecretStr("postgresql://u:pw@h/db")
    nats_url: str = "nats://127.0.0.1:4222"
    group: _Group = _Group()
    unset: SecretStr | None = None
    max_tokens: int = 512  # a number under a secret-looking name is not a secret


def test_masked_hides_secret_types_secret_names_and_url_passwords():
    s = _Settings(
        password=SENTINEL, database_url=SecretStr(f"postgresql://u:{SENTINEL}@h/db"),
        nats_url=f"nats://nertz:{SENTINEL}@nats:4222",
        group=_Group(token=SecretStr(SENTINEL), api_key=SENTINEL, url=f"https://x:{SENTINEL}@h/p",
                     keys=[SecretStr(SENTINEL)]),
    )  # fmt: skip
    m = heartbeat.masked(s)
    assert SENTINEL not in repr(m)
    assert m == {
        "password": "***",
        "database_url": "***",
        "nats_url": "nats://nertz:***@nats:4222",
        "group": {"token": "***", "api_key": "***", "url": "https://x:***@h/p", "port": 8081, "keys": ["***"]},
        "unset": None,
        "max_tokens": 512,
    }
    assert heartbeat.masked({"url": "nats://127.0.0.1:4222", "token": ""}) == {"url": "nats://127.0.0.1:4222",
                                                                                "token": ""}  # fmt: skip


def _beat(**kw: object) -> Heartbeat:
    fields: dict[str, object] = dict(
        service="signal", pid=1, host="h", started_ns=f.T0_NS, beat_ns=f.T0_NS, interval_s=5.0, beats=1,
        version="v", config_hash="c",
    )  # fmt: skip
    fields.update(kw)
    return Heartbeat(**fields)  # type: ignore[arg-type]


def test_heartbeat_round_trips_and_is_alive_for_three_intervals():
    hb = _beat(lanes={"signal": heartbeat.LaneState(consumed=7, acked=6, pending=0)}, settings={"a": [1, "***"]})
    assert heartbeat.decode(heartbeat.encode(hb)) == hb
    assert hb.alive(f.T0_NS + 14_999_000_000) and not hb.alive(f.T0_NS + 15_000_000_000)
    assert hb.age_s(f.T0_NS - 10**9) == 0.0  # the reader's clock behind the writer's
    assert not _beat(stopped=True).alive(f.T0_NS)
    with pytest.raises(ValueError, match=r"expected a Nertz heartbeat of format 1.*\$\.format"):
        heartbeat.decode(heartbeat.encode(_beat(format=2)))
    with pytest.raises(ValueError, match="expected a Nertz heartbeat"):
        heartbeat.decode(b'{"service": 1}')


def test_heartbeat_settings_validate_the_interval():
    assert HeartbeatSettings().interval_s == 5.0
    with pytest.raises(ValueError, match="interval_s"):
        HeartbeatSettings(interval_s=0)


# --- against NATS ----------------------------------------------------------------------------------


async def _wait_for(js, service: str, pred, timeout_s: float = 10.0) -> Heartbeat:  # type: ignore[no-untyped-def]
    async with asyncio.timeout(timeout_s):
        while True:
            hb = (await heartbeat.read_all(js)).get(service)
            if hb is not None and pred(hb):
                return hb
            await asyncio.sleep(0.02)


@pytest.mark.integration
async def test_topology_declares_the_heartbeat_bucket_history_1_short_ttl(js_fresh):
    info = await js_fresh.stream_info(f"KV_{heartbeat.BUCKET}")
    assert info.config.max_msgs_per_subject == 1 and info.config.max_age == heartbeat.TTL_S
    assert not any(topology.matches(s, f"$KV.{heartbeat.BUCKET}.signal") for s in subjects.stream_subjects())
    assert f"heartbeats {heartbeat.BUCKET}: kept" in await topology.apply(js_fresh)


@pytest.mark.integration
async def test_writer_without_bucket_logs_once_runs_on_and_resumes_once_declared(js_fresh, caplog):
    caplog.set_level(logging.INFO, logger="nertz.heartbeat")
    await js_fresh.delete_key_value(heartbeat.BUCKET)
    settings = DatabaseSettings(DATABASE_URL=f"postgresql://u:{SENTINEL}@h/db")
    w = HeartbeatWriter(js_fresh, "hb-missing", settings, config_hash=settings.fingerprint(), interval_s=0.02)
    w.start()
    try:
        await asyncio.sleep(0.3)
        assert w.beats == 0
        assert [r.getMessage() for r in caplog.records].count("heartbeat.bucket_missing") == 1
        await topology.apply(js_fresh)
        hb = await _wait_for(js_fresh, "hb-missing", lambda hb: hb.beats >= 2)
        assert "heartbeat.resumed" in [r.getMessage() for r in caplog.records]
        assert hb.settings["database_url"] == "***" and hb.config_hash == settings.fingerprint()
        raw = (await (await js_fresh.key_value(heartbeat.BUCKET)).get("hb-missing")).value
        assert SENTINEL.encode() not in raw
    finally:
        await w.close()
    assert (await heartbeat.read_all(js_fresh))["hb-missing"].stopped


@pytest.mark.integration
async def test_read_all_without_bucket_raises_bucket_not_found(js_fresh):
    await js_fresh.delete_key_value(heartbeat.BUCKET)
    try:
        with pytest.raises(nats.js.errors.BucketNotFoundError):
            await heartbeat.read_all(js_fresh)
    finally:
        await topology.apply(js_fresh)


class _Counted(msgspec.Struct):
    bars: int = 0


class _EveryTenth(Component):
    """A toy component on the signal lane: one TradingStarted per ten bars."""

    name: ClassVar[str] = "hb-every-tenth"
    inputs: ClassVar[tuple[type[ev.Event], ...]] = (ev.Bar,)
    state_type: ClassVar[type[msgspec.Struct]] = _Counted

    def __init__(self) -> None:
        self.s = _Counted()

    def on_bar(self, bar: ev.Bar) -> list[ev.Event]:
        self.s.bars += 1
        if self.s.bars % 10:
            return []
        return [ev.TradingStarted(event_id=f"hb-{bar.event_id}", ts_event=bar.ts_event, ts_init=bar.ts_event)]

    def get_state(self) -> _Counted:
        return self.s

    def set_state(self, state: _Counted) -> None:
        self.s = state


def _acked(hb: Heartbeat) -> int | None:
    lane = hb.lanes.get("signal")
    return lane.acked if lane is not None else None


@pytest.mark.integration
async def test_runtime_beats_what_its_runner_did_into_kv_never_onto_the_log(js_fresh, nats_url):
    """A component's runner reports its steps, last output and lane; the NERTZ stream holds its inputs
    and outputs only; a clean stop writes a last beat that says so."""
    bars = [f.bar(i, close=100.0 + 0.1 * i) for i in range(60)]
    await bus.Publisher(js_fresh).publish_many(bars)
    settings = CommonSettings(NATS_URL=nats_url, kernel=KernelSettings(snapshots=False))
    seen: list[Heartbeat] = []

    async def watch(rt: runtime.Runtime) -> None:  # until the last bar's output is published and acked
        seen.append(await _wait_for(js_fresh, "hb-service", lambda hb: hb.out_seq == 66 and _acked(hb) == 60))
        rt.stop.set()

    loop = asyncio.get_running_loop()
    try:
        async with runtime.runtime("hb-service", settings, HeartbeatSettings(interval_s=0.05)) as rt:
            runner = await rt.component(
                Node(_EveryTenth()), settings, config_hash=settings.fingerprint(), lanes=("signal",),
                outputs=(subjects.filter_of("sys", "control"),),
            )  # fmt: skip
            rt.report("extra", lambda: Progress(steps=0, paused="database_unavailable"))
            await rt.until_stopped(runner.run(), watch(rt))
    finally:  # the runtime's handlers would outlive the test
        loop.remove_signal_handler(signal.SIGTERM)
        loop.remove_signal_handler(signal.SIGINT)
    hb = seen[0]
    outputs = await read_log(js_fresh, filters=[subjects.filter_of("sys", "control")])
    assert len(outputs) == 6
    assert hb.iterations == 60 and hb.components["hb-every-tenth"].steps == 60
    assert hb.out_seq == outputs[-1].seq and hb.published == len(outputs)
    assert hb.lanes["signal"].consumed == 60 and hb.lanes["signal"].pending == 0
    assert hb.paused == ["extra: database_unavailable"] and not hb.stopped
    assert (hb.service, hb.config_hash, hb.interval_s) == ("hb-service", settings.fingerprint(), 0.05)
    assert hb.settings["symbols"] == settings.symbols and hb.settings["heartbeat"]["interval_s"] == 0.05
    assert hb.started_ns <= hb.beat_ns and hb.pid > 0 and hb.host
    last = (await heartbeat.read_all(js_fresh))["hb-service"]
    assert last.stopped and last.beats > hb.beats
    state = (await js_fresh.stream_info(subjects.STREAM)).state
    assert state.messages == state.last_seq == len(bars) + len(outputs)  # no heartbeat on the log
