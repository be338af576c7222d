"""One client per external provider."""
