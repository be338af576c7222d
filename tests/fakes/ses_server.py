"""moto's SES server on a free local port: real boto3 over real HTTP, and its state dump."""

import socket
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
from moto.server import ThreadedMotoServer

REGION = "eu-central-1"


def moto_client_settings(endpoint: str) -> dict[str, Any]:
    """An SesClient's settings for moto's server (moto accepts any credentials)."""
    return {
        "region": REGION,
        "access_key_id": "testing",
        "secret_access_key": "testing",
        "endpoint_url": endpoint,
        "configuration_set": None,
        "max_connections": 8,
    }


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def moto_ses() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=free_port(), verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


def sent_raw_messages(endpoint: str) -> list[dict[str, Any]]:
    """Every raw message moto accepted since its last reset."""
    state = httpx.get(f"{endpoint}/moto-api/data.json", timeout=30).json()
    messages: list[dict[str, Any]] = state["ses"]["RawMessage"]
    return messages


def reset(endpoint: str) -> None:
    httpx.post(f"{endpoint}/moto-api/reset", timeout=30)
