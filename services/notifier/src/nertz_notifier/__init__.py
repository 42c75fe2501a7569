"""Nertz notifier: posts what the log says to Telegram (entries, exits as replies, daily statistics, alerts)."""
