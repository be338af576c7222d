"""The unified inbox: channels (WhatsApp, Telegram, email, X), their verified webhooks in, and
replies out through the inbox outbox."""
