"""The deployment's SNS verification (the one the SES events use), handed to the inbox by
`api.app` as two functions, so the inbox needs nothing of the email feature."""

from collections.abc import Callable
from typing import Any


class SnsCheck:
    def __init__(
        self, verify: Callable[[dict[str, Any]], None], subscribe_url_allowed: Callable[[str], bool]
    ) -> None:
        self.verify = verify
        self.subscribe_url_allowed = subscribe_url_allowed
