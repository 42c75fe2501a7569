"""The notifier's settings: its own names first, the common TELEGRAM_* ones as aliases, blanks as unset."""

from __future__ import annotations

import pytest

from nertz_notifier.settings import NotifierSettings

KEYS = ("NERTZ_NOTIFIER__BOT_TOKEN", "NERTZ_NOTIFIER__CHAT_ID", "TELEGRAM_BOT_TOKEN", "TELEGRAM_CHAT_ID")


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for k in KEYS:
        monkeypatch.delenv(k, raising=False)


def test_settings_telegram_aliases_fill_in_what_the_group_leaves_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", "1:alias")
    monkeypatch.setenv("TELEGRAM_CHAT_ID", "-1001")
    s = NotifierSettings()
    assert s.enabled and s.problem() is None
    assert (s.notifier.bot_token.get_secret_value(), s.notifier.chat_id) == ("1:alias", "-1001")  # type: ignore[union-attr]
    monkeypatch.setenv("NERTZ_NOTIFIER__BOT_TOKEN", "2:own")
    monkeypatch.setenv("NERTZ_NOTIFIER__CHAT_ID", "@nertz")
    s = NotifierSettings()
    assert (s.notifier.bot_token.get_secret_value(), s.notifier.chat_id) == ("2:own", "@nertz")  # type: ignore[union-attr]


def test_settings_blank_token_is_off_and_a_token_without_chat_is_a_problem(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NERTZ_NOTIFIER__BOT_TOKEN", " ")
    monkeypatch.setenv("TELEGRAM_CHAT_ID", "")
    s = NotifierSettings()
    assert not s.enabled and s.problem() is None and s.notifier.chat_id is None
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", "3:no-chat")
    problem = NotifierSettings().problem()
    assert problem is not None and "NERTZ_NOTIFIER__CHAT_ID" in problem and "3:no-chat" not in problem


def test_settings_never_show_the_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NERTZ_NOTIFIER__BOT_TOKEN", "4:very-secret")
    monkeypatch.setenv("NERTZ_NOTIFIER__CHAT_ID", "42")
    s = NotifierSettings()
    assert "4:very-secret" not in repr(s) and "4:very-secret" not in s.model_dump_json()
    assert s.notifier.to_config().dead_letter_interval_ns == 3600 * 10**9
