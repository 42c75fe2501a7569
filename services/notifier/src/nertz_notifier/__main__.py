"""``python -m nertz_notifier``: run the notifier (settings from the environment)."""

from __future__ import annotations

import argparse
import json
import sys

from nertz_common.settings import load
from nertz_notifier.settings import NotifierSettings

_EPILOG = """\
environment (nested with __):
  NERTZ_NOTIFIER__BOT_TOKEN     the bot's token from @BotFather (or TELEGRAM_BOT_TOKEN); unset = off:
                                the notifier says so and idles until SIGTERM (exit 0)
  NERTZ_NOTIFIER__CHAT_ID       the chat to post to (or TELEGRAM_CHAT_ID): a numeric id, -100... for a
                                group or channel, or @channelname; required with a token
  NERTZ_NOTIFIER__API_URL       Bot API base URL (default https://api.telegram.org; tests: the fake's)
  NERTZ_NOTIFIER__DISCLAIMER    last line of every post (default "Not financial advice. Automated
                                message from Nertz.")
  NERTZ_NOTIFIER__MAX_AGE_S     events older than this are not posted, s (default 86400; 0 = any age)
  NERTZ_NOTIFIER__TIMEOUT_S     per Bot API request, s (default 10)
  NERTZ_NOTIFIER__BACKOFF_MAX_S longest wait between retries of a network error, s (default 60)
  NERTZ_NOTIFIER__DEAD_LETTER_INTERVAL_S  one dead-letter alert per service per window, s (default 3600)
  NATS_URL                      NATS server (default nats://127.0.0.1:4222)
  NERTZ_METRICS_PORT            /metrics port, 0 = off (compose: 9105)
  NERTZ_LOG_LEVEL               INFO, DEBUG...

Telegram's 429 retry_after is waited out exactly; network errors are retried with backoff; a post
Telegram refuses for good (400, 403) is recorded on sys.dlq.notifier and not retried; a token Telegram
refuses exits 2. Run `nertz streams apply` first (the notifier's durable consumer).
"""


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, validate settings, and run the service; return the exit code."""
    parser = argparse.ArgumentParser(
        prog="python -m nertz_notifier",
        description=(
            "Nertz notifier: posts to Telegram what the log says, in log order (durable consumer 'notifier' "
            "over exec.>, llm.override.>, sys.>): entries; exits and partial exits as replies to their entry; "
            "daily statistics when the log's time crosses 00:00 UTC; alerts of locks, venue mismatches and "
            "halts, risk overrides, operator stops and dead letters. Every post ends with a disclaimer. Each "
            "post is recorded on the log (NotificationPosted with Telegram's message id), so a restart, even "
            "after SIGKILL, posts nothing twice and keeps threading replies."
        ),
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--print-config", action="store_true", help="print the effective settings as JSON (secrets masked) and exit"
    )
    args = parser.parse_args(argv)
    settings = load(NotifierSettings)  # exits 2 listing every bad setting
    problem = settings.problem()
    if problem is not None:
        print(f"configuration error: {problem}", file=sys.stderr)
        return 2
    if args.print_config:
        print(json.dumps(settings.model_dump(mode="json"), indent=2, sort_keys=True))
        return 0
    if not settings.enabled:  # off: neither the bus nor the Telegram library is loaded
        import asyncio

        from nertz_notifier.idle import idle

        asyncio.run(idle(settings))
        return 0
    from nertz_common.runtime import run_service
    from nertz_notifier.app import serve

    return run_service(serve(settings))


if __name__ == "__main__":
    sys.exit(main())
