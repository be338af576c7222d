"""Sending a reply's raw MIME: the deployment's SES sender (the email feature's), handed to the
inbox by `api.app` as a function, so the inbox needs nothing of that feature. The reply's
workspace goes with it, so the sender can send as that workspace's SES tenant."""

from typing import Protocol
from uuid import UUID


class SendRaw(Protocol):
    def __call__(
        self,
        raw: bytes,
        sender: str,
        recipient: str,
        tags: dict[str, str],
        workspace_id: UUID | None = None,
    ) -> str: ...


class Mailer:
    def __init__(self, send_raw: SendRaw) -> None:
        self.send_raw = send_raw
