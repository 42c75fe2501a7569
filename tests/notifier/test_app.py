"""The notifier service: off without a token, exit 2 on a refused token, refusals and stale events
recorded or skipped, and nothing posted twice when its consumer is recreated (state from the log alone)."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from types import SimpleNamespace

import pytest
from prometheus_client import CollectorRegistry

from nertz_common import bus, subjects, topology
from nertz_common import events as ev
from nertz_common.node.log import read_log
from nertz_common.testing.fake_telegram import FakeTelegram
from nertz_notifier.adapters import telegram as tg
from nertz_notifier.core.decide import NotifierConfig
from nertz_notifier.handlers import Notifier
from nertz_notifier.metrics import NotifierMetrics

pytestmark = pytest.mark.integration


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_notifier_without_token_says_it_is_off_and_exits_0_on_sigterm(
    nk: SimpleNamespace, tmp_path: Path
) -> None:
    log = tmp_path / "off.log"
    # NATS at a port nobody listens on: an idle notifier never connects anywhere
    proc = nk.start(f"nats://127.0.0.1:{free_port()}", None, log, TELEGRAM_BOT_TOKEN="", NERTZ_NOTIFIER__CHAT_ID="")
    try:
        await nk.wait_for(lambda: '"notifier.off"' in log.read_text(), "the notifier to say it is off")
    finally:
        status = await nk.stop(proc)
    assert status == 0
    text = log.read_text()
    assert "no Telegram bot token" in text and "nats.waiting" not in text and "Traceback" not in text


async def test_notifier_refused_token_exits_2_without_naming_it(
    nk: SimpleNamespace, nats_url: str, tmp_path: Path
) -> None:
    log = tmp_path / "refused.log"
    async with FakeTelegram("1:another-bot") as fake:
        proc = nk.start(nats_url, fake.base_url, log)
        try:
            await nk.wait_for(lambda: proc.poll() is not None, "the notifier to exit", timeout_s=20)
        finally:
            await nk.stop(proc)
        assert [(c.method, c.status) for c in fake.calls] == [("getMe", 401)]
    assert proc.returncode == 2
    text = log.read_text()
    assert '"configuration.error"' in text and "refused the bot token" in text and nk.TOKEN not in text


@asynccontextmanager
async def notifier(
    nats_url: str, api_url: str, token: str, clock: Callable[[], int], max_age_s: float
) -> AsyncIterator[Notifier]:
    """Run a Notifier in-process (the service's parts, no runtime) until the block ends."""
    nc = await bus.connect(nats_url, "notifier-test")
    js = nc.jetstream(timeout=15)
    stop = asyncio.Event()
    metrics = NotifierMetrics(CollectorRegistry())
    sender = tg.TelegramSender(tg.bot(token, api_url, 5.0), "-100777", metrics=metrics, stop=stop, token=token)
    n = Notifier(js=js, nc=nc, publisher=bus.Publisher(js, nc=nc), sender=sender, config=NotifierConfig(),
                 metrics=metrics, stop=stop, max_age_s=max_age_s, clock=clock)  # fmt: skip
    task = asyncio.create_task(n.run())
    try:
        await asyncio.wait_for(n.ready.wait(), 15)
        yield n
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)
        await sender.close()
        await nc.close()


def count(n: Notifier, kind: str, outcome: str) -> float:
    return n.metrics.registry.get_sample_value("nertz_notifier_posts_total", {"kind": kind, "outcome": outcome}) or 0.0


async def test_notifier_records_refusals_skips_stale_events_and_never_posts_twice_from_the_log(
    nk: SimpleNamespace, js_fresh, nats_url: str
) -> None:
    tr = nk.Trade("BTCUSDT", "long", 100.0, 1.0, nk.t(150))
    closed = tr.closed(nk.t(160), 103.0, "take_profit")
    events = [nk.stopped(nk.t(0), reason="old"), *tr.entry_events(), closed, nk.stopped(nk.t(170), reason="new")]
    pub = bus.Publisher(js_fresh)
    for e in events:
        await pub.publish(e)
    now = lambda: nk.t(200)  # noqa: E731 - the wall clock, 50 min after the entry
    async with FakeTelegram(nk.TOKEN) as fake:
        fake.inject(400, description="Bad Request: message is too long", at_call=2)  # the exit
        async with notifier(nats_url, fake.base_url, nk.TOKEN, now, max_age_s=3600) as n:
            await nk.drained(js_fresh)
            assert (count(n, "halt", "stale"), count(n, "exit", "refused"), count(n, "entry", "ok")) == (1, 1, 1)
        assert [m.html.split("\n")[0] for m in fake.messages] == [
            "🟢 LONG <b>BTCUSDT</b> opened", "⛔ <b>Trading stopped</b> (all symbols) by api: new"
        ]  # fmt: skip
        recs = [r.event for r in await read_log(js_fresh, filters=["sys.notify.>", "sys.dlq.>"])]
        (dl,) = [r for r in recs if isinstance(r, ev.DeadLettered)]
        assert dl.service == "notifier" and "400 Message is too long" in dl.reason
        assert ev.decode(dl.raw.encode()) == closed and dl.subject == subjects.for_event(closed)
        assert sum(isinstance(r, ev.NotificationPosted) for r in recs) == 2
        # the consumer recreated (its position lost): everything is delivered again, and the records on
        # the log say it was all done — nothing is posted or refused twice
        await js_fresh.delete_consumer(subjects.STREAM, "notifier")
        await topology.ensure_consumer(js_fresh, topology.spec("notifier"))
        calls = len(fake.calls_of("sendMessage"))
        async with notifier(nats_url, fake.base_url, nk.TOKEN, now, max_age_s=3600) as again:
            await nk.drained(js_fresh)
            assert again.handled == len(events) + 3  # the events and the three records
        assert len(fake.calls_of("sendMessage")) == calls == 3
