"""Workspace API keys: requests that bear one are checked, and their use recorded, by the
database."""
