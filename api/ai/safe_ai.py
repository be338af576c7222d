"""Every AI call goes through SafeAi: it charges credits in the database, redacts personal data
before anything leaves (PII Safe Mode), asks for structured output and validates it (one retry),
restores the redacted values in the answer, records usage, and refunds when the provider fails.
Routes get a SafeAi, never the provider client, so there is no way around Safe Mode.

The call is authorised and paid for before any work is done on its behalf (reading a product
page included): the database checks the role as the user, then the service records the call
with the configured model and debits it, in one transaction. Once paid, whatever goes wrong
(an expected refusal or a bug) finishes the call as failed and refunds it before the error is
answered. A call the edge never finishes (the function killed mid-call) is refunded by the cron
once it has been pending for ABANDONED_AFTER_MINUTES.
"""

import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from psycopg.types.json import Jsonb
from pydantic import BaseModel, ValidationError

from api.ai.groq_ai import GroqChat, GroqError
from api.ai.page_fetch import PageFetchError
from api.ai.pii import SafeSession
from api.core.db import Connection, become_service
from api.core.deps import UserScope

log = logging.getLogger("growthbase.ai")
Output = TypeVar("Output", bound=BaseModel)
ATTEMPTS = 2
# Far longer than any call may run (Vercel stops a function after 60 s).
ABANDONED_AFTER_MINUTES = 10
ABANDONED_SWEEP_LIMIT = 1000
UNEXPECTED_ERROR_CODE = "internal_error"


class ModelOutputError(Exception):
    """The model answered in the wrong shape on every attempt."""

    code = "invalid_model_output"


# The failures a call can end with that are not bugs: each has a code the call is recorded with,
# and the feature answers it (api.ai.errors).
CallFailure = GroqError | PageFetchError | ModelOutputError
CALL_FAILURES = (GroqError, PageFetchError, ModelOutputError)


def restore_all(value: Any, session: SafeSession) -> Any:
    """Put redacted values back into every string of a structured answer."""
    if isinstance(value, str):
        return session.restore(value)
    if isinstance(value, list):
        return [restore_all(item, session) for item in value]
    if isinstance(value, dict):
        return {key: restore_all(item, session) for key, item in value.items()}
    return value


@dataclass
class Usage:
    tokens_in: int = 0
    tokens_out: int = 0


class SafeAi:
    def __init__(self, chat: GroqChat, model: str) -> None:
        self._chat = chat
        self.model = model

    def generate(
        self,
        acting: UserScope,
        *,
        workspace_id: Any,
        feature: str,
        instructions: str,
        inputs: Mapping[str, str],
        output: type[Output],
        schema: dict[str, Any],
        gather: Callable[[], Mapping[str, str]] | None = None,
        keep: Callable[[Output], None] | None = None,
    ) -> tuple[Output, str]:
        """The validated, PII-restored answer and the id of the recorded call. `gather` reads
        further inputs (a product page) only once the call is authorised and paid for, and
        `keep` stores the answer (into a campaign) before the call counts as done; if either
        fails the call is refunded like any other failure."""
        call_id = self._start(acting, workspace_id, feature)
        session = SafeSession()
        started = time.perf_counter()
        usage = Usage()
        try:
            everything = {**inputs, **(gather() if gather else {})}
            prompt = "\n".join(
                f"{name}: {session.redact(text)}" for name, text in everything.items()
            )
            answer = self._ask(instructions, prompt, output, schema, session, feature, usage)
            if keep is not None:
                keep(answer)
        except Exception as error:
            # Provider failures, refused inputs, and bugs too: the user is not charged for any.
            # The error goes on to the feature (a CallFailure) or the envelope handlers (a bug
            # stays a logged 500).
            self._finish(acting, call_id, session, started, usage, error)
            raise
        self._finish(acting, call_id, session, started, usage, None)
        log.info("ai call=%s feature=%s redacted=%s", call_id, feature, session.category_counts())
        return answer, call_id

    def _start(self, acting: UserScope, workspace_id: Any, feature: str) -> str:
        """Members and above only (404 for outsiders, 403 for viewers), then the plan's rate
        limits, the usage row and its debit, all committed together before any work."""
        with acting.connection() as conn:
            conn.execute("select private.workspace_role_as(%s, 'member')", (workspace_id,))
            become_service(conn)
            row = conn.execute(
                "select private.start_ai_call(%s, %s, %s, %s) as id",
                (workspace_id, acting.user.user_id, feature, self.model),
            ).fetchone()
        assert row is not None
        return str(row["id"])

    def _ask(
        self,
        instructions: str,
        prompt: str,
        output: type[Output],
        schema: dict[str, Any],
        session: SafeSession,
        feature: str,
        usage: Usage,
    ) -> Output:
        for _ in range(ATTEMPTS):
            completion = self._chat.complete_json(
                model=self.model,
                system=instructions,
                user=prompt,
                schema_name=feature,
                schema=schema,
            )
            usage.tokens_in += completion.tokens_in
            usage.tokens_out += completion.tokens_out
            try:
                raw = json.loads(completion.content)
                return output.model_validate(restore_all(raw, session))
            except (ValueError, ValidationError, RecursionError):
                # RecursionError: JSON nested deeper than the parser goes is the wrong shape too.
                continue
        raise ModelOutputError("The AI answered in the wrong shape twice; try again")

    def _finish(
        self,
        acting: UserScope,
        call_id: str,
        session: SafeSession,
        started: float,
        usage: Usage,
        error: Exception | None,
    ) -> None:
        if error is None:
            code = None
        elif isinstance(error, CALL_FAILURES):
            code = error.code
        else:
            code = UNEXPECTED_ERROR_CODE
        with acting.database.as_service() as conn:
            conn.execute(
                "select private.finish_ai_call(%s, %s, %s, %s, %s, %s, %s)",
                (
                    call_id,
                    error is None,
                    usage.tokens_in,
                    usage.tokens_out,
                    int((time.perf_counter() - started) * 1000),
                    code,
                    Jsonb(session.category_counts()),
                ),
            )


def refund_abandoned_calls(conn: Connection) -> int:
    """Fails and refunds, once, the calls pending for longer than any call may run (the edge
    was stopped before it could finish them); the cron calls this as the service."""
    row = conn.execute(
        "select private.refund_abandoned_ai_calls(%s, %s) as swept",
        (ABANDONED_AFTER_MINUTES, ABANDONED_SWEEP_LIMIT),
    ).fetchone()
    swept = int(row["swept"]) if row else 0
    if swept:
        log.warning("ai calls abandoned and refunded=%s", swept)
    return swept
