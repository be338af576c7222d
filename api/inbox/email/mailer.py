"""Sending a reply's raw MIME: the deployment's SES client (the email feature's), handed to the
inbox by `api.app` as a function, so the inbox needs nothing of that feature."""

from collections.abc import Callable


class Mailer:
    def __init__(self, send_raw: Callable[[bytes, str, str, dict[str, str]], str]) -> None:
        self.send_raw = send_raw
