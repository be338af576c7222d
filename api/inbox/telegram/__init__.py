"""Telegram Bot API: the client and the webhook."""
