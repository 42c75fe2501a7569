"""The notifier's Telegram sender against the fake Bot API, through the real python-telegram-bot (no NATS)."""

from __future__ import annotations

import asyncio
import io
import logging
import socket
from collections.abc import AsyncIterator

import pytest
from prometheus_client import CollectorRegistry

from nertz_common.errors import ConfigurationError
from nertz_common.testing.fake_telegram import FakeTelegram
from nertz_notifier.adapters import telegram as tg
from nertz_notifier.core.decide import Post
from nertz_notifier.metrics import NotifierMetrics

TOKEN = "123456:test-token-not-secret-elsewhere"
CHAT = "-100777"


@pytest.fixture
async def fake() -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram(TOKEN) as f:
        yield f


def sender(api_url: str, stop: asyncio.Event, token: str = TOKEN, backoff_max_s: float = 0.2) -> tg.TelegramSender:
    m = NotifierMetrics(CollectorRegistry())
    return tg.TelegramSender(tg.bot(token, api_url, 5.0), CHAT, metrics=m, stop=stop, token=token,
                             backoff_max_s=backoff_max_s)  # fmt: skip


def post(text: str = "<b>hello</b> &amp; bye", reply: int | None = None) -> Post:
    return Post(source_event_id="src-1", kind="entry", text=text, reply_to_message_id=reply)


def value(s: tg.TelegramSender, name: str, **labels: str) -> float:
    return s.metrics.registry.get_sample_value(name, labels or None) or 0.0


async def test_sender_honours_retry_after_then_posts_once(fake: FakeTelegram) -> None:
    s = sender(fake.base_url, asyncio.Event())
    await s.start()
    fake.inject(429, retry_after=1)
    message = await s.send(post())
    calls = fake.calls_of("sendMessage")
    assert [c.status for c in calls] == [429, 200] and calls[1].at - calls[0].at >= 1.0
    assert message.message_id == 1 and len(fake.messages) == 1
    assert value(s, "nertz_notifier_retry_after_seconds_total") == 1.0
    assert value(s, "nertz_notifier_retries_total", reason="rate_limited") == 1.0
    await s.close()


async def test_sender_refused_for_good_raises_refused_and_sends_once(fake: FakeTelegram) -> None:
    s = sender(fake.base_url, asyncio.Event())
    await s.start()
    fake.inject(403)
    with pytest.raises(tg.Refused, match=r"^403 Forbidden: bot was blocked by the user$"):
        await s.send(post())
    with pytest.raises(tg.Refused, match=r"(?i)can't parse entities"):
        await s.send(post("a < b"))  # not escaped: Telegram refuses it
    assert [c.status for c in fake.calls_of("sendMessage")] == [403, 400] and not fake.messages
    await s.close()


async def test_sender_retries_a_network_error_until_the_api_answers() -> None:
    with socket.socket() as probe:  # a free port with nothing listening yet
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    s = sender(f"http://127.0.0.1:{port}", asyncio.Event())
    sending = asyncio.create_task(s.send(post()))
    while value(s, "nertz_notifier_retries_total", reason="network") < 2:
        assert not sending.done(), sending
        await asyncio.sleep(0.02)
    async with FakeTelegram(TOKEN, port=port) as fake:
        message = await asyncio.wait_for(sending, 10)
        assert message.message_id == 1 and len(fake.messages) == 1
    await s.close()


async def test_sender_stop_during_retry_after_ends_the_wait_without_sending(fake: FakeTelegram) -> None:
    stop = asyncio.Event()
    s = sender(fake.base_url, stop)
    fake.inject(429, retry_after=30)
    sending = asyncio.create_task(s.send(post()))
    while not fake.calls_of("sendMessage"):
        await asyncio.sleep(0.01)
    stop.set()
    with pytest.raises(tg.Stopping):
        await asyncio.wait_for(sending, 2)
    assert not fake.messages
    await s.close()


async def test_sender_wrong_token_is_a_configuration_error_that_never_names_the_token(fake: FakeTelegram) -> None:
    wrong = "424242:the-wrong-secret"
    s = sender(fake.base_url, asyncio.Event(), token=wrong)
    with pytest.raises(ConfigurationError) as info:
        await s.start()
    assert wrong not in str(info.value) and info.value.__cause__ is None
    await s.close()


def test_redact_logs_masks_the_token_and_quiets_http_loggers() -> None:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(logging.Formatter("%(message)s %(url)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        tg.redact_logs(TOKEN)
        logging.getLogger("nertz.test").warning("POST %s", f"/bot{TOKEN}/sendMessage", extra={"url": f"/bot{TOKEN}/x"})
        assert TOKEN not in out.getvalue() and out.getvalue().count(tg.REDACTED) == 2
        assert logging.getLogger("httpx").getEffectiveLevel() == logging.WARNING
    finally:
        root.removeHandler(handler)
