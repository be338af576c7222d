"""Growthbase edge: the thin FastAPI layer between providers, the SPA and Postgres."""
