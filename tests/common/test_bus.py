"""The bus against a real JetStream: dedup, ordered pipelined publishes, headers, the dead-letter record.

Consuming the log (acks after effect, dead letters, redelivery, restarts) is the kernel's job:
``tests/common/test_nats_runner.py``.
"""

from __future__ import annotations

import pytest

from nertz_common import bus, subjects
from nertz_common import events as ev
from nertz_common.node.log import read_log
from nertz_common.testing import factories as f

pytestmark = pytest.mark.integration


async def test_publish_same_event_twice_is_stored_once(js_fresh):
    pub = bus.Publisher(js_fresh)
    b = f.bar(0)
    s1 = await pub.publish(b)
    s2 = await pub.publish(b)
    assert s1 == s2
    assert (await js_fresh.stream_info(subjects.STREAM)).state.messages == 1


async def test_publish_many_keeps_order_and_dedups(js_fresh):
    pub = bus.Publisher(js_fresh)
    bars = [f.bar(i) for i in range(50)]
    assert await pub.publish_many(bars, window=16) == 50
    assert await pub.publish_many(bars, window=16) == 0
    got = await read_log(js_fresh)
    assert [r.event.event_id for r in got] == [b.event_id for b in bars]
    assert pub.last_seq == 50


async def test_publish_many_with_extra_headers_stores_them_and_msg_id(js_fresh):
    pub = bus.Publisher(js_fresh)
    bars = [f.bar(i) for i in range(5)]
    assert await pub.publish_many(bars, headers=lambda e: {bus.INPUT_SEQ: str(bars.index(e) + 10)}) == 5
    for i, b in enumerate(bars, start=1):
        msg = await js_fresh.get_msg(subjects.STREAM, i)
        assert msg.headers[bus.MSG_ID] == b.event_id and msg.headers[bus.INPUT_SEQ] == str(i + 9)
        assert ev.decode(msg.data) == b


async def test_publish_many_ack_from_another_stream_raises(js_fresh):
    pub = bus.Publisher(js_fresh, stream="OTHER")
    with pytest.raises(bus.PublishError, match="expected ack from stream OTHER"):
        await pub.publish_many([f.bar(0)])


async def test_publish_many_without_a_stream_retries_then_raises(js_fresh):
    await js_fresh.delete_stream(subjects.STREAM)  # no responders on md.*: retried, then given up
    pub = bus.Publisher(js_fresh, timeout_s=0.5, retry_s=1.0)
    with pytest.raises(bus.PublishError, match="not acked"):
        await pub.publish_many([f.bar(i) for i in range(3)])


async def test_publish_many_with_one_header_dict_per_event(js_fresh):
    pub = bus.Publisher(js_fresh)
    bars = [f.bar(i) for i in range(3)]
    await pub.publish_many(bars, headers=[{bus.ORIGIN_SEQ: str(100 + i)} for i in range(3)], window=2)
    got = await read_log(js_fresh)
    assert [r.origin for r in got] == [100, 101, 102]
    with pytest.raises(ValueError, match="one header dict per event"):
        await pub.publish_many(bars, headers=[{}])


async def test_read_log_gives_positions_origins_and_skips_undecodable(js_fresh):
    pub = bus.Publisher(js_fresh)
    await pub.publish_many([f.bar(i) for i in range(3)])
    await js_fresh.publish("md.bar.bybit.linear.BTCUSDT", b"{not json", headers={"Nats-Msg-Id": "junk"})
    derived = f.intent(f.bar(0))
    await pub.publish(derived, headers={bus.INPUT_SEQ: "2"})  # an older log without the origin header
    got = await read_log(js_fresh, from_seq=2)
    assert [r.seq for r in got] == [2, 3, 5]  # 4 is the junk
    assert (got[-1].input_seq, got[-1].origin) == (2, 2)
    assert await read_log(js_fresh, filters=["sys.>"]) == []  # nothing matches: no wait


def test_dead_letter_record_id_names_service_and_sequence_and_cuts_sizes():
    r = bus.dead_letter_record("api", "x" * 600, "md.bar.bybit.linear.BTCUSDT", 42, b"\xff" * 20_000)
    assert r.event_id == "dlq-api-42" and len(r.reason) == 500 and len(r.raw) == 10_000
    assert subjects.for_event(r) == subjects.dead_letter("api")


async def test_connect_started_while_nats_is_down_waits_for_it(tmp_path):
    """A service (re)started during a NATS outage connects once NATS is back, instead of exiting."""
    import asyncio

    from nertz_common import infra

    port = infra.free_port()
    connecting = asyncio.create_task(bus.connect(f"nats://127.0.0.1:{port}", "test", first_connect_s=60))
    await asyncio.sleep(0)  # let it try against nothing
    done, _ = await asyncio.wait({connecting}, timeout=3)
    assert not done, "expected connect to keep waiting while nothing listens"
    server = await asyncio.to_thread(infra.start_nats, tmp_path / "nats", port)
    try:
        nc = await asyncio.wait_for(connecting, 30)
        assert nc.is_connected
        await nc.close()
    finally:
        server.stop()


async def test_connect_gives_up_after_its_wait_with_a_clear_error():
    from nertz_common import infra

    url = f"nats://127.0.0.1:{infra.free_port()}"
    with pytest.raises(ConnectionError, match=r"could not connect to NATS at .* within 1 s"):
        await bus.connect(url, "test", first_connect_s=1)
