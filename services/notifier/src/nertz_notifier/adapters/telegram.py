"""Telegram through python-telegram-bot: one message at a time, Telegram's rate limits honoured.

``telegram.Bot(token, base_url=f"{api_url}/bot")`` sends ``sendMessage`` in HTML parse mode, a reply
through ``reply_parameters`` (``allow_sending_without_reply``: a deleted entry message never blocks its
exit). What Telegram answers decides what happens (https://core.telegram.org/bots/api#making-requests):

==============================================  ==================================================
answer                                          action
==============================================  ==================================================
200                                             the message (its id is recorded on the log)
429 ``parameters.retry_after`` (``RetryAfter``)  wait exactly that long (interruptible), send again;
                                                counted in ``nertz_notifier_retry_after_seconds_total``
``parameters.migrate_to_chat_id``               the group became a supergroup: send there, at once
network error, timeout, 5xx, unparsable answer  send again with exponential backoff and jitter
                                                (0.5 s doubling up to ``backoff_max_s``), for as
                                                long as it takes
400 ``BadRequest``, 403 ``Forbidden``           refused for good: :class:`Refused` with Telegram's
                                                description (recorded, never sent again)
401/404 ``InvalidToken``                        the token is wrong: :class:`ConfigurationError`
                                                (exit 2; the event is not acknowledged)
==============================================  ==================================================

A timeout after the request was written may have posted the message (Telegram has no idempotency
key): sending again can then duplicate it — the one case where at-least-once shows.

The token is a secret: it is never logged. PTB puts it into some error messages (``InvalidToken``) and
httpx logs request URLs (which hold it) at INFO: :func:`redact_logs` keeps both out of the logs.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
import warnings
from typing import Any

from telegram import Bot, LinkPreviewOptions, Message, ReplyParameters
from telegram.constants import ParseMode
from telegram.error import BadRequest, ChatMigrated, Forbidden, InvalidToken, RetryAfter, TelegramError
from telegram.request import HTTPXRequest
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, wait_exponential_jitter

from nertz_common.errors import ConfigurationError
from nertz_notifier.core.decide import Post
from nertz_notifier.metrics import NotifierMetrics

log = logging.getLogger("nertz.notifier.telegram")

#: loggers of the HTTP stack that would print request URLs (and so the token) at INFO or DEBUG
_CHATTY = ("httpx", "httpcore", "telegram", "hpack")
REDACTED = "***"


class Stopping(Exception):
    """The service is stopping while a call waits to be sent again (the call was not made)."""


class Refused(Exception):
    """Telegram refused a message for good (400 Bad Request, 403 Forbidden).

    Parameters
    ----------
    reason : str
        ``<status> <Telegram's description>``, e.g. ``400 Bad Request: chat not found`` (token redacted).
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def bot(token: str, api_url: str, timeout_s: float) -> Bot:
    """Return a PTB ``Bot`` on the Bot API at ``api_url`` (``https://api.telegram.org`` or a fake's).

    Parameters
    ----------
    token : str
    api_url : str
        Base URL without ``/bot``; PTB appends ``/bot<token>/<method>``.
    timeout_s : float
        Connect, read, write and pool timeout of every request, s.
    """
    base = api_url.rstrip("/")

    def request() -> HTTPXRequest:
        return HTTPXRequest(
            connection_pool_size=4, connect_timeout=timeout_s, read_timeout=timeout_s, write_timeout=timeout_s,
            pool_timeout=timeout_s,
        )  # fmt: skip

    return Bot(
        token, base_url=f"{base}/bot", base_file_url=f"{base}/file/bot", request=request(),
        get_updates_request=request(),
    )  # fmt: skip


def retry_after_s(e: RetryAfter) -> float:
    """Return the wait Telegram asked for, s (PTB gives an int or a ``timedelta`` by version and setting)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # PTB 22.2+ warns that the attribute becomes a timedelta
        value: Any = e.retry_after
    return value.total_seconds() if isinstance(value, dt.timedelta) else float(value)


def transient(e: BaseException) -> bool:
    """True for an answer worth sending again (rate limit, migration, network, 5xx); False for a refusal
    (400, 403) or a wrong token, and for anything not from Telegram."""
    return isinstance(e, TelegramError) and not isinstance(e, BadRequest | Forbidden | InvalidToken)


class TelegramSender:
    """Send posts to one chat through ``bot`` (see the module docstring).

    Parameters
    ----------
    bot : telegram.Bot
    chat_id : str
        A numeric chat id or ``@channel``; a migration to a supergroup replaces it.
    metrics : NotifierMetrics
    stop : asyncio.Event
        Set on shutdown: a wait in progress ends with :class:`Stopping`.
    token : str
        The bot's token, to redact from what is logged.
    backoff_max_s : float
        Longest wait between two sends after a network error, s.
    """

    def __init__(
        self,
        bot: Bot,
        chat_id: str,
        *,
        metrics: NotifierMetrics,
        stop: asyncio.Event,
        token: str,
        backoff_max_s: float = 60.0,
    ) -> None:
        self.bot, self.chat_id, self.metrics, self.stop = bot, chat_id, metrics, stop
        self._token = token
        self._backoff = wait_exponential_jitter(multiplier=0.5, max=backoff_max_s, jitter=0.5)

    def redact(self, text: str) -> str:
        """Return ``text`` with the token replaced by ``***``."""
        return text.replace(self._token, REDACTED) if self._token else text

    async def start(self) -> None:
        """Check the token with ``getMe``, trying again while Telegram cannot be reached.

        Raises
        ------
        ConfigurationError
            If Telegram refuses the token.
        Stopping
            If ``stop`` is set while waiting.
        """
        try:
            await self._retrying("getMe", self.bot.initialize)
        except InvalidToken:
            raise ConfigurationError(
                "Telegram refused the bot token (401/404): check NERTZ_NOTIFIER__BOT_TOKEN (or TELEGRAM_BOT_TOKEN)"
            ) from None
        me = self.bot.bot
        log.info("telegram.ready", extra={"bot": me.username, "bot_id": me.id, "chat_id": self.chat_id})

    async def close(self) -> None:
        """Close the HTTP connections."""
        try:
            await self.bot.shutdown()
        except Exception as e:  # closing must never hide the error that stopped the service
            log.warning("telegram.close_failed", extra={"error": self.redact(repr(e))})

    async def send(self, post: Post) -> Message:
        """Send ``post`` and return Telegram's message (its ``message_id`` and ``chat``).

        Raises
        ------
        Refused
            If Telegram refused it for good (400, 403).
        ConfigurationError
            If Telegram refused the token (401, 404).
        Stopping
            If ``stop`` is set while waiting to send it again.
        """
        reply = (
            ReplyParameters(message_id=post.reply_to_message_id, allow_sending_without_reply=True)
            if post.reply_to_message_id
            else None
        )

        async def once() -> Message:
            return await self.bot.send_message(
                chat_id=self.chat_id, text=post.text, parse_mode=ParseMode.HTML, reply_parameters=reply,
                link_preview_options=LinkPreviewOptions(is_disabled=True),
            )  # fmt: skip

        t0 = time.perf_counter()
        try:
            message = await self._retrying(post.kind, once)
        except (BadRequest, Forbidden) as e:
            status = 403 if isinstance(e, Forbidden) else 400
            raise Refused(f"{status} {self.redact(e.message)}") from None
        except InvalidToken:
            raise ConfigurationError(
                "Telegram refused the bot token (401/404) while posting: check NERTZ_NOTIFIER__BOT_TOKEN"
            ) from None
        self.metrics.send_seconds.observe(time.perf_counter() - t0)
        return message

    async def _retrying(self, what: str, fn: Any) -> Any:
        async for attempt in AsyncRetrying(
            retry=retry_if_exception(transient), wait=self._wait, sleep=self._sleep,
            before_sleep=lambda state: self._before_sleep(what, state), reraise=True,
        ):  # fmt: skip
            with attempt:
                return await fn()
        raise AssertionError("unreachable")  # pragma: no cover

    def _wait(self, state: RetryCallState) -> float:
        error = state.outcome.exception() if state.outcome else None
        if isinstance(error, RetryAfter):
            return retry_after_s(error)
        if isinstance(error, ChatMigrated):
            return 0.0
        return float(self._backoff(state))

    async def _sleep(self, seconds: float) -> None:
        if seconds <= 0:
            return
        try:
            await asyncio.wait_for(self.stop.wait(), seconds)
        except TimeoutError:
            return
        raise Stopping("stopping while waiting to send again")

    def _before_sleep(self, what: str, state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome else None
        wait = state.next_action.sleep if state.next_action else 0.0
        if isinstance(error, RetryAfter):
            self.metrics.retries.labels(reason="rate_limited").inc()
            self.metrics.retry_after_seconds.inc(wait)
            log.warning("telegram.rate_limited", extra={"call": what, "retry_after_s": wait})
        elif isinstance(error, ChatMigrated):
            self.metrics.retries.labels(reason="chat_migrated").inc()
            log.warning("telegram.chat_migrated", extra={"from_chat_id": self.chat_id, "to_chat_id": error.new_chat_id})
            self.chat_id = str(error.new_chat_id)
        else:
            self.metrics.retries.labels(reason="network").inc()
            log.warning(
                "telegram.unreachable",
                extra={"call": what, "error": self.redact(repr(error)), "retry_in_s": round(wait, 2),
                       "attempt": state.attempt_number},
            )  # fmt: skip


class _Redact(logging.Filter):
    def __init__(self, secret: str) -> None:
        super().__init__()
        self.secret = secret

    def filter(self, record: logging.LogRecord) -> bool:
        s = self.secret
        if isinstance(record.msg, str) and s in record.msg:
            record.msg = record.msg.replace(s, REDACTED)
        if record.args:
            args = record.args if isinstance(record.args, tuple) else (record.args,)
            if any(s in str(a) for a in args):
                record.msg, record.args = record.getMessage().replace(s, REDACTED), None
        for k, v in list(record.__dict__.items()):
            if isinstance(v, str) and s in v:
                setattr(record, k, v.replace(s, REDACTED))
        return True


def redact_logs(secret: str) -> None:
    """Keep ``secret`` out of every log line: the HTTP stack's loggers to WARNING, and a filter on the root
    handlers that replaces it by ``***`` wherever it still appears (messages, arguments, extra fields)."""
    for name in _CHATTY:
        logging.getLogger(name).setLevel(logging.WARNING)
    if not secret:
        return
    f = _Redact(secret)
    for h in logging.getLogger().handlers:
        h.addFilter(f)
