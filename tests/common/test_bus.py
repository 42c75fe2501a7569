"""The bus against a real JetStream: dedup, ack-after-effect, nak and dead-letter."""

from __future__ import annotations

import asyncio

import pytest

from nertz_common import bus, subjects
from nertz_common import events as ev
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
    c = bus.Consumer(js_fresh, "signal", "signal", pub)
    await c.start()
    got = []
    while len(got) < 50:
        got += await c.fetch(64)
    assert [d.event.event_id for d in got] == [b.event_id for b in bars]


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


async def test_consumer_poison_message_is_dead_lettered_and_loop_goes_on(js_fresh):
    pub = bus.Publisher(js_fresh)
    await js_fresh.publish(
        "md.bar.bybit.linear.BTCUSDT",
        b'{"type":"Bar","garbage":true}',
        headers={"Nats-Msg-Id": "bad"},
    )
    await pub.publish(f.bar(1))
    c = bus.Consumer(js_fresh, "signal", "signal", pub)
    await c.start()
    seen: list[ev.AnyEvent] = []

    async def handler(d: bus.Delivery) -> None:
        seen.append(d.event)
        c.stop()

    await asyncio.wait_for(c.run(handler), 10)
    assert [type(e).__name__ for e in seen] == ["Bar"]
    msg = await js_fresh.get_last_msg(subjects.STREAM, subjects.dead_letter("signal"))
    dl = ev.decode(msg.data)
    assert isinstance(dl, ev.DeadLettered) and dl.reason.startswith("undecodable") and "garbage" in dl.raw


async def test_consumer_transient_failure_is_redelivered_in_order(js_fresh):
    pub = bus.Publisher(js_fresh)
    await pub.publish_many([f.bar(i) for i in range(3)])
    c = bus.Consumer(js_fresh, "signal", "signal", pub, backoff_s=(0.05,))
    await c.start()
    seen: list[int] = []
    failed = False

    async def handler(d: bus.Delivery) -> None:
        nonlocal failed
        if d.stream_seq == 2 and not failed:
            failed = True
            raise bus.TransientError("database down")
        seen.append(d.stream_seq)
        if len(seen) == 3:
            c.stop()

    await asyncio.wait_for(c.run(handler), 10)
    assert seen == [1, 2, 3]


async def test_consumer_handler_exhausting_retries_dead_letters(js_fresh):
    pub = bus.Publisher(js_fresh)
    await pub.publish(f.bar(0))
    await pub.publish(f.bar(1))
    c = bus.Consumer(js_fresh, "signal", "signal", pub, max_deliver=3, backoff_s=(0.05,))
    await c.start()
    ok: list[int] = []

    async def handler(d: bus.Delivery) -> None:
        if d.stream_seq == 1:
            raise bus.TransientError("always fails")
        ok.append(d.stream_seq)
        c.stop()

    await asyncio.wait_for(c.run(handler), 10)
    assert ok == [2]
    dl = ev.decode((await js_fresh.get_last_msg(subjects.STREAM, subjects.dead_letter("signal"))).data)
    assert dl.reason.startswith("retries_exhausted") and dl.stream_seq == 1


async def test_iter_history_reads_in_order_up_to_seq_and_skips_undecodable(js_fresh):
    pub = bus.Publisher(js_fresh)
    await pub.publish_many([f.bar(i) for i in range(3)])
    await js_fresh.publish("md.bar.bybit.linear.BTCUSDT", b"{not json", headers={"Nats-Msg-Id": "junk"})
    await pub.publish_many([f.bar(i) for i in range(3, 6)])
    got = [r async for r in bus.iter_history(js_fresh, ["md.bar.>"], upto_seq=6)]
    assert [r.stream_seq for r in got] == [1, 2, 3, 5, 6]  # 4 is the junk, 7 is past upto_seq
    assert [r.event.event_id for r in got] == [f.bar(i).event_id for i in (0, 1, 2, 3, 4)]
    assert len(await bus.read_history(js_fresh, ["md.bar.>"])) == 6


def test_dead_letter_record_id_names_service_and_sequence_and_cuts_sizes():
    r = bus.dead_letter_record("api", "x" * 600, "md.bar.bybit.linear.BTCUSDT", 42, b"\xff" * 20_000)
    assert r.event_id == "dlq-api-42" and len(r.reason) == 500 and len(r.raw) == 10_000
    assert subjects.for_event(r) == subjects.dead_letter("api")
