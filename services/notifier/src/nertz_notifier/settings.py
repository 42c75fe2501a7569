"""The notifier's settings: the common ones plus the ``notifier`` group.

Environment: ``NATS_URL``, ``NERTZ_METRICS_PORT``..., and ``NERTZ_NOTIFIER__BOT_TOKEN``,
``NERTZ_NOTIFIER__CHAT_ID``, ``NERTZ_NOTIFIER__API_URL``... (nested with ``__``). The common names
``TELEGRAM_BOT_TOKEN`` and ``TELEGRAM_CHAT_ID`` are read too, when the ``NERTZ_NOTIFIER__`` ones are unset.
Without a token the notifier is off (it says so and idles); a token without a chat id is a configuration
error (:meth:`NotifierSettings.problem`).
"""

from __future__ import annotations

from pydantic import BaseModel, Field, SecretStr, model_validator

from nertz_common.settings import CommonSettings
from nertz_notifier.core.decide import NotifierConfig
from nertz_notifier.core.render import DEFAULT_DISCLAIMER

SECOND_NS = 1_000_000_000


class NotifierGroup(BaseModel):
    """The ``NERTZ_NOTIFIER__`` group: where to post, and how patiently."""

    model_config = {"extra": "forbid"}

    bot_token: SecretStr | None = Field(default=None, description="Telegram bot token (@BotFather); unset = off")
    chat_id: str | None = Field(
        default=None, description="chat to post to: a numeric id (-100... for a group) or @channel"
    )
    api_url: str = Field(
        default="https://api.telegram.org", min_length=1, description="Bot API base URL (tests: the fake's)"
    )
    disclaimer: str = Field(default=DEFAULT_DISCLAIMER, min_length=1, description="last line of every post")
    timeout_s: float = Field(default=10.0, gt=0, description="per Bot API request (connect, read, write), s")
    backoff_max_s: float = Field(default=60.0, gt=0, description="longest wait between retries of a network error, s")
    max_age_s: float = Field(
        default=86_400.0,
        ge=0,
        description="events older than this (wall clock) are not posted, s; 0 = post any age (a first start "
        "on a month of log does not flood the chat)",
    )
    dead_letter_interval_s: float = Field(
        default=3600.0, gt=0, description="one dead-letter alert per producing service per this window, s"
    )

    def to_config(self) -> NotifierConfig:
        """Return the core's :class:`~nertz_notifier.core.decide.NotifierConfig`."""
        return NotifierConfig(
            disclaimer=self.disclaimer, dead_letter_interval_ns=round(self.dead_letter_interval_s * SECOND_NS)
        )


class NotifierSettings(CommonSettings):
    """Settings of the notifier; ``notifier`` holds the Telegram connection and its posting rules (the
    ``TELEGRAM_*`` names fill in what the group leaves unset; blank values count as unset)."""

    notifier: NotifierGroup = NotifierGroup()
    telegram_bot_token: SecretStr | None = Field(default=None, validation_alias="TELEGRAM_BOT_TOKEN")
    telegram_chat_id: str | None = Field(default=None, validation_alias="TELEGRAM_CHAT_ID")

    @model_validator(mode="after")
    def _aliases(self) -> NotifierSettings:
        n = self.notifier
        token = _secret(n.bot_token) or _secret(self.telegram_bot_token)
        chat = (n.chat_id or "").strip() or (self.telegram_chat_id or "").strip() or None
        self.notifier = n.model_copy(update={"bot_token": token, "chat_id": chat})
        return self

    def problem(self) -> str | None:
        """Return what is wrong with the Telegram settings (a token without a chat), None when nothing is.

        Checked here rather than in a validator: a validator's error would quote the environment, token
        included.
        """
        if self.notifier.bot_token is not None and self.notifier.chat_id is None:
            return "a Telegram bot token needs a chat to post to: set NERTZ_NOTIFIER__CHAT_ID (or TELEGRAM_CHAT_ID)"
        return None

    @property
    def enabled(self) -> bool:
        """True when a bot token is set (the notifier posts), False when it is off."""
        return self.notifier.bot_token is not None


def _secret(value: SecretStr | None) -> SecretStr | None:
    """``value`` unless it is unset or blank (an empty variable in a compose file)."""
    return value if value is not None and value.get_secret_value().strip() else None
