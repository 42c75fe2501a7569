"""Composition root of the notifier: Telegram posts of what the log says (see :mod:`nertz_notifier.handlers`).

With a bot token it runs on the kernel's runtime (NATS, publisher, ``/metrics``, heartbeats); without one
it is off (:func:`nertz_notifier.idle.idle`).
"""

from __future__ import annotations

import logging

from nertz_common.errors import ConfigurationError
from nertz_common.runtime import runtime
from nertz_notifier.adapters import telegram
from nertz_notifier.handlers import Notifier
from nertz_notifier.idle import idle
from nertz_notifier.metrics import NotifierMetrics
from nertz_notifier.settings import NotifierSettings

SERVICE = "notifier"

log = logging.getLogger("nertz.notifier")


async def serve(settings: NotifierSettings) -> None:
    """Run the notifier until SIGTERM/SIGINT: check the token, fold the log, then post in log order.

    Raises
    ------
    ConfigurationError
        If a token has no chat, or Telegram refuses the token (exit 2).
    nats.js.errors.NotFoundError
        If the ``NERTZ`` stream is missing (run ``nertz streams apply``).
    """
    problem = settings.problem()
    if problem is not None:
        raise ConfigurationError(problem)
    cfg = settings.notifier
    if cfg.bot_token is None or cfg.chat_id is None:
        await idle(settings)
        return
    token = cfg.bot_token.get_secret_value()
    async with runtime(SERVICE, settings) as rt:
        telegram.redact_logs(token)
        m = NotifierMetrics(rt.registry)
        m.enabled.set(1)
        sender = telegram.TelegramSender(
            telegram.bot(token, cfg.api_url, cfg.timeout_s), cfg.chat_id, metrics=m, stop=rt.stop, token=token,
            backoff_max_s=cfg.backoff_max_s,
        )  # fmt: skip
        notifier = Notifier(
            js=rt.js, nc=rt.nc, publisher=rt.publisher, sender=sender, config=cfg.to_config(), metrics=m,
            stop=rt.stop, max_age_s=cfg.max_age_s,
        )  # fmt: skip
        rt.report(SERVICE, notifier.progress)
        log.info("notifier.on", extra={"chat_id": cfg.chat_id, "api_url": cfg.api_url, "max_age_s": cfg.max_age_s})
        try:
            await rt.until_stopped(notifier.run())
        finally:
            await sender.close()
