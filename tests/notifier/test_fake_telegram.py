"""The fake Telegram Bot API, spoken to by the real python-telegram-bot (and by plain HTTP)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from telegram import Bot, ReplyParameters
from telegram.error import BadRequest, InvalidToken, RetryAfter

from nertz_common.testing.fake_telegram import FakeTelegram, html_problem

TOKEN = "123456:test-token"
CHAT = "-100777"


@pytest.fixture
async def fake() -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram(TOKEN) as f:
        yield f


async def test_fake_threads_replies_and_answers_like_the_bot_api(fake: FakeTelegram) -> None:
    async with Bot(TOKEN, base_url=f"{fake.base_url}/bot") as bot:
        first = await bot.send_message(CHAT, "<b>entry</b>", parse_mode="HTML")
        reply = await bot.send_message(CHAT, "exit", reply_parameters=ReplyParameters(message_id=first.message_id))
    assert (first.message_id, first.text, first.chat.id) == (1, "entry", int(CHAT))
    assert reply.message_id == 2 and reply.reply_to_message is not None and reply.reply_to_message.message_id == 1
    assert [(m.message_id, m.html, m.reply_to_message_id) for m in fake.messages] == [
        (1, "<b>entry</b>", None),
        (2, "exit", 1),
    ]
    async with httpx.AsyncClient() as http:  # a JSON body, as other clients send it
        r = await http.post(f"{fake.base_url}/bot{TOKEN}/sendMessage", json={"chat_id": CHAT, "text": "json",
                            "reply_parameters": {"message_id": 99}})  # fmt: skip
        assert r.status_code == 400 and r.json()["description"] == "Bad Request: message to be replied not found"
        r = await http.post(f"{fake.base_url}/bot{TOKEN}/sendPhoto", data={"chat_id": CHAT})
        assert r.status_code == 404 and r.json() == {"ok": False, "error_code": 404, "description": "Not Found"}


async def test_fake_refuses_a_wrong_token_with_401(fake: FakeTelegram) -> None:
    with pytest.raises(InvalidToken):
        await Bot("999:wrong", base_url=f"{fake.base_url}/bot").initialize()
    assert [(c.method, c.status) for c in fake.calls] == [("getMe", 401)]


async def test_fake_injects_429_with_retry_after_for_the_next_k_calls(fake: FakeTelegram) -> None:
    fake.inject(429, retry_after=2, k=2)
    async with Bot(TOKEN, base_url=f"{fake.base_url}/bot") as bot:
        for _ in range(2):
            with pytest.raises(RetryAfter) as info:
                await bot.send_message(CHAT, "x")
            assert "Retry in 2 seconds" in str(info.value)
        assert (await bot.send_message(CHAT, "x")).message_id == 1
    assert [c.status for c in fake.calls_of("sendMessage")] == [429, 429, 200]


async def test_fake_refuses_html_telegram_cannot_parse(fake: FakeTelegram) -> None:
    async with Bot(TOKEN, base_url=f"{fake.base_url}/bot") as bot:
        with pytest.raises(BadRequest, match=r"(?i)can't parse entities"):
            await bot.send_message(CHAT, "<b>open", parse_mode="HTML")
    assert not fake.messages
    assert html_problem("<b>P&amp;L</b> <i>a &lt; b</i> &#128200;") is None
    for bad in ("a < b", "AT&T", "<div>x</div>", "<b><i>x</b></i>"):
        assert html_problem(bad) is not None, bad
