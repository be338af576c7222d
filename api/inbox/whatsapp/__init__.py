"""WhatsApp Cloud API: the Graph client, the webhook and the template catalog."""
