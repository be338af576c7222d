"""X (Account Activity API and v2 direct messages): the client and the webhook."""
