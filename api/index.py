"""Vercel's entry point: the ASGI app, built from the environment."""

from api.app import create_app

app = create_app()
