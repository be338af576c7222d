"""Privacy lifecycle: erasure of a contact everywhere (and, as it grows, consents, exports,
account deletion, retention and the audit log)."""
