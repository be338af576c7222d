"""Inbound webhooks, one module per provider."""
