"""The notifier's I/O: Telegram's Bot API through python-telegram-bot."""
