"""The runners' pull consumer against a real JetStream: batches in order, timeouts, a deleted consumer."""

from __future__ import annotations

import nats.errors
import pytest

from nertz_common import subjects
from nertz_common.node.log import ack_fields
from nertz_common.node.pull import Puller

pytestmark = pytest.mark.integration

SUBJECT = "sig.factor.bybit.linear.BTCUSDT"  # read by the executor-decisions consumer


async def _publish(js, n: int, first: int = 0) -> None:  # type: ignore[no-untyped-def]
    for i in range(first, first + n):
        await js.publish(SUBJECT, f"m{i}".encode(), headers={"Nats-Msg-Id": f"pull-{i}"})


async def test_puller_gives_every_message_once_in_order_in_batches(js_fresh):
    await _publish(js_fresh, 1200)
    p = Puller(js_fresh._nc, subjects.STREAM, "executor-decisions")
    await p.start()
    try:
        got: list[bytes] = []
        sizes = []
        while len(got) < 1200:
            batch = await p.fetch(500, 2.0)
            sizes.append(len(batch))
            got += [m.data for m in batch]
            await batch[-1].ack()  # ack-all: the last acks the batch
        assert got == [f"m{i}".encode() for i in range(1200)]
        assert max(sizes) <= 500
        dseqs = [ack_fields(m.reply)[1] for m in batch]
        assert dseqs == sorted(dseqs)
        with pytest.raises(nats.errors.TimeoutError):
            await p.fetch(500, 0.3)  # nothing left
        await _publish(js_fresh, 3, first=1200)  # and what comes later is delivered to a waiting fetch
        later = await p.fetch(500, 3.0)
        while len(later) < 3:
            later += await p.fetch(500, 3.0)
        assert [m.data for m in later] == [b"m1200", b"m1201", b"m1202"]
    finally:
        await p.stop()


async def test_puller_says_no_responders_when_its_consumer_is_gone(js_fresh):
    """JetStream answers a pull for a missing consumer 503: the runner then binds again (and finds out)."""
    p = Puller(js_fresh._nc, subjects.STREAM, "executor-decisions")
    await p.start()
    try:
        await js_fresh.delete_consumer(subjects.STREAM, "executor-decisions")
        with pytest.raises(nats.errors.NoRespondersError):
            await p.fetch(10, 2.0)
    finally:
        await p.stop()
