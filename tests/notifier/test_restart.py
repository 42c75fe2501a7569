"""SIGKILL of the notifier mid-way: every post reaches the fake Telegram exactly once, exits threaded as
replies to their entry, Telegram's 429 retry_after honoured.

The notifier runs as a process (``python -m nertz_notifier``) on a fresh stream holding the whole
scenario (two symbols across a UTC midnight, a risk override, venue mismatches, an adoption's lock, an
operator's stop), posting to the fake Bot API on 127.0.0.1 through the real python-telegram-bot. The
fake answers the 3rd ``sendMessage`` with 429 ``retry_after=1`` (the first process waits it out) and
the 6th too: the test kills the process while it waits, and starts it again.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from nertz_common import bus
from nertz_common import events as ev
from nertz_common.node.log import read_log
from nertz_common.testing.fake_telegram import FakeTelegram

pytestmark = pytest.mark.integration


async def test_sigkill_mid_way_every_post_once_replies_threaded_retry_after_honoured(
    nk: SimpleNamespace, js_fresh, nats_url: str, tmp_path: Path
) -> None:
    sc = nk.scenario()
    pub = bus.Publisher(js_fresh)
    for e in sc.events:
        await pub.publish(e)
    async with FakeTelegram(nk.TOKEN) as fake:
        fake.inject(429, retry_after=1, at_call=3)  # the BTC reduce: waited out by the first process
        fake.inject(429, retry_after=1, at_call=6)  # the ETH exit: the process is killed while it waits
        proc = nk.start(nats_url, fake.base_url, tmp_path / "notifier-0.log")
        try:
            statuses = lambda: [c.status for c in fake.calls_of("sendMessage")]  # noqa: E731
            await nk.wait_for(lambda: statuses()[5:6] == [429], "the 6th sendMessage answered 429")
            nk.kill(proc)
            assert [m.message_id for m in fake.messages] == [1, 2, 3, 4]
            proc = nk.start(nats_url, fake.base_url, tmp_path / "notifier-1.log")
            await nk.wait_for(lambda: len(fake.messages) >= len(sc.kinds), f"{len(sc.kinds)} posts")
            await nk.drained(js_fresh)
        finally:
            status = await nk.stop(proc)
    assert status == 0
    # exactly once, in log order, each reply threaded to its entry's message (the ETH exit's across the kill)
    assert [m.message_id for m in fake.messages] == list(range(1, len(sc.kinds) + 1))
    assert {m.message_id: m.reply_to_message_id for m in fake.messages if m.reply_to_message_id} == sc.replies
    records = [r.event for r in await read_log(js_fresh, filters=["sys.notify.>"])]
    assert all(isinstance(r, ev.NotificationPosted) for r in records)
    assert [(r.kind, r.message_id) for r in records] == [(k, i + 1) for i, k in enumerate(sc.kinds)]  # type: ignore[union-attr]
    assert fake.messages[6].html.startswith("📊 <b>Daily statistics 2025-05-30</b>")
    assert all(m.html.endswith("<i>Not financial advice. Automated message from Nertz.</i>") for m in fake.messages)
    # retry_after honoured: the first process sent the reduce again no sooner than 1 s after its 429; the
    # ETH exit, 429 when the process died, was sent by the new one (and only by it)
    calls = fake.calls_of("sendMessage")
    assert [c.status for c in calls].count(429) == 2 and len(calls) == len(sc.kinds) + 2
    assert calls[2].status == 429 and calls[3].status == 200 and calls[3].at - calls[2].at >= 1.0
    assert calls[5].status == 429 and calls[6].params["reply_parameters"]["message_id"] == 2
    for log in tmp_path.glob("notifier-*.log"):
        assert nk.TOKEN not in log.read_text()
