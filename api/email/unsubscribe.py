"""Unsubscribe links from campaign mail. No login: the signed token names the contact.

GET only shows a confirmation page, because mail scanners and link previews fetch every link
in a message; unsubscribing takes a POST, which is both RFC 8058 one-click (mailbox providers
POST `List-Unsubscribe=One-Click` to the link in the List-Unsubscribe header) and the page's
button. The POST itself is the intent, so its body is not inspected. Browsers (an Accept header
naming text/html) get HTML pages; other clients get the JSON envelope, refusals included.
Tokens and addresses are never logged.
"""

from collections.abc import Mapping
from html import escape
from typing import Annotated, Any, Literal
from urllib.parse import urlencode
from uuid import UUID

from fastapi import APIRouter, Request, Response, Security
from fastapi.responses import HTMLResponse
from fastapi.security import APIKeyQuery
from pydantic import BaseModel

from api.core.db import Database
from api.core.deps import ServiceDatabase
from api.core.envelope import Envelope, ok
from api.core.errors import ApiError
from api.core.openapi import Responses, documented
from api.email import unsubscribe_tokens
from api.email.deps import LINK_SECRET, LinkSecret
from api.email.errors import api_error

router = APIRouter(prefix="/api/v1/unsubscribe", tags=["email"])

UNSUBSCRIBE_LINK = APIKeyQuery(
    name="token",
    scheme_name="unsubscribeLink",
    auto_error=False,
    description="The signed token of an unsubscribe link, as the edge puts it in every campaign "
    "mail's List-Unsubscribe header and footer (`/api/v1/unsubscribe?token=…`). It names one "
    "contact of one workspace and expires after UNSUBSCRIBE_LINK_DAYS; nobody signs in. A "
    "missing or forged token is `400 link_invalid`, an expired one `410 link_expired`.",
)
LinkToken = Annotated[str | None, Security(UNSUBSCRIBE_LINK)]

# The token is in the URL: keep it out of caches and out of Referer headers.
PAGE_HEADERS = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}
PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex">
<title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 32rem; margin: 4rem auto; padding: 0 1rem;
  color: #222; }}
button {{ font: inherit; padding: .6rem 1.2rem; border: 0; border-radius: .3rem; background: #222;
  color: #fff; cursor: pointer; }}
</style>
</head>
<body>
<h1>{title}</h1>
<p>{message}</p>
{form}
</body>
</html>
"""
FORM = """<form method="post" action="{action}">
<input type="hidden" name="List-Unsubscribe" value="One-Click">
<button type="submit">Unsubscribe</button>
</form>"""
HELP = "If you keep receiving emails you did not ask for, reply to one and ask to be removed."
CONFIRM_TITLE = "Unsubscribe from these emails?"
CONFIRM_MESSAGE = (
    "Once you confirm, you will not receive campaign emails from this sender any more."
)
DONE_TITLE = "You are unsubscribed"
DONE_MESSAGE = "You will not receive campaign emails from this sender any more."


class UnsubscribeOutcome(BaseModel):
    outcome: Literal["unsubscribed", "already_unsubscribed"]


def verified_link(secret: str, token: str | None) -> unsubscribe_tokens.UnsubscribeClaims:
    try:
        return unsubscribe_tokens.verify(secret, token or "")
    except unsubscribe_tokens.LinkError as failure:
        raise api_error(failure) from failure


def wants_html(request: Request) -> bool:
    return "text/html" in request.headers.get("accept", "")


def page(title: str, message: str, form_token: str | None = None) -> str:
    form = (
        FORM.format(action=escape("?" + urlencode({"token": form_token})))
        if form_token is not None
        else ""
    )
    return PAGE.format(title=escape(title), message=escape(message), form=form)


def html_page(status: int, title: str, message: str, form_token: str | None = None) -> Response:
    return HTMLResponse(page(title, message, form_token), status_code=status, headers=PAGE_HEADERS)


def refusal(request: Request, error: ApiError) -> Response:
    """A page saying what is wrong for a browser; the error envelope for anyone else."""
    if not wants_html(request):
        raise error
    return html_page(error.status, error.message, HELP)


def unsubscribe_contact(database: Database, secret: str, token: str | None) -> str:
    """Verifies the token and unsubscribes its contact; answers `unsubscribed` or
    `already_unsubscribed`, or raises 400 / 410 for a bad link and 404 for an unknown contact."""
    claims = verified_link(secret, token)
    with database.as_service() as conn:
        row = conn.execute(
            "select private.unsubscribe_contact(%s, %s, %s) as outcome",
            (claims.workspace_id, claims.contact_id, claims.recipient_id),
        ).fetchone()
    assert row is not None
    if row["outcome"] == "unknown_contact":
        raise ApiError(
            404, "contact_not_found", "This unsubscribe link no longer matches a subscriber"
        )
    return str(row["outcome"])


def with_pages(json_answers: Responses, pages: Mapping[int, str]) -> Responses:
    """The route's JSON answers with, beside each, the HTML page a browser gets instead. The
    contract sets every error's JSON schema itself, so no model is named here (a model would
    also put the error schema under the route's HTML media type)."""
    answers: Responses = {
        status: {key: value for key, value in answer.items() if key != "model"}
        for status, answer in json_answers.items()
    }
    for status, body in pages.items():
        answer = answers.setdefault(status, {})
        html = {"schema": {"type": "string"}, "example": body}
        answer["content"] = {**answer.get("content", {}), "text/html": html}
    return answers


# A real link's token, signed with a secret of the example's own.
EXAMPLE_TOKEN = unsubscribe_tokens.issue(
    "an-example-secret-as-long-as-a-real-one",
    workspace_id=UUID("3f2a9d4e-8b1c-4e7f-a6d5-0c9b8e7f6a5d"),
    contact_id=UUID("5b7e2f0c-3d1a-4c8e-9f6b-2a4d8c0e1f37"),
    recipient_id=UUID("a1c3e5f7-0b2d-4f6a-8c0e-1d3f5a7b9c2e"),
    valid_days=365,
    now=1_795_424_400,
)
LINK_ERRORS = {
    400: {"link_invalid": "This unsubscribe link is not valid"},
    410: {"link_expired": "This unsubscribe link has expired"},
}
ERROR_PAGES = {
    status: page(next(iter(codes.values())), HELP) for status, codes in LINK_ERRORS.items()
}
# The deployment's fault, not the link's: answered before the route runs, as the envelope.
NOT_CONFIGURED = {503: {"provider_not_configured": LINK_SECRET.unconfigured}}
UNSUBSCRIBE_ERRORS = {
    **LINK_ERRORS,
    **NOT_CONFIGURED,
    404: {"contact_not_found": "This unsubscribe link no longer matches a subscriber"},
}


@router.get(
    "",
    response_class=HTMLResponse,
    summary="Show the page that asks to confirm unsubscribing",
    responses=with_pages(
        # The page is HTML for everyone; only a refusal is JSON for clients that are no browser.
        {
            status: answer
            for status, answer in documented(None, errors={**LINK_ERRORS, **NOT_CONFIGURED}).items()
            if status != 200
        },
        {200: page(CONFIRM_TITLE, CONFIRM_MESSAGE, form_token=EXAMPLE_TOKEN), **ERROR_PAGES},
    ),
)
def confirmation_page(request: Request, secret: LinkSecret, token: LinkToken) -> Response:
    """What opening the link in a mail shows: a page with one button that POSTs back to this
    link. It never unsubscribes by itself, because mail scanners and link previews fetch every
    link in a message. A bad link is a page saying so for a browser (an Accept header naming
    text/html) and the error envelope for anyone else."""
    try:
        verified_link(secret, token)
    except ApiError as error:
        return refusal(request, error)
    return html_page(200, CONFIRM_TITLE, CONFIRM_MESSAGE, form_token=token)


@router.post(
    "",
    response_model=Envelope[UnsubscribeOutcome],
    summary="Unsubscribe the contact a signed link names (RFC 8058 one-click)",
    responses=with_pages(
        documented({"outcome": "unsubscribed"}, errors=UNSUBSCRIBE_ERRORS),
        {
            200: page(DONE_TITLE, DONE_MESSAGE),
            404: page(UNSUBSCRIBE_ERRORS[404]["contact_not_found"], HELP),
            **ERROR_PAGES,
        },
    ),
)
def unsubscribe(
    request: Request, secret: LinkSecret, database: ServiceDatabase, token: LinkToken
) -> Response | dict[str, Any]:
    """Mailbox providers POST `List-Unsubscribe=One-Click` (form-encoded) here for the
    List-Unsubscribe-Post header, and the confirmation page's button posts the same; the body is
    not read, the POST is the intent. The contact is never mailed by a campaign again, even if
    deleted and imported later; repeating it answers `already_unsubscribed`. Browsers get an
    HTML page, other clients the envelope."""
    try:
        outcome = unsubscribe_contact(database, secret, token)
    except ApiError as error:
        return refusal(request, error)
    if wants_html(request):
        return html_page(200, DONE_TITLE, DONE_MESSAGE)
    return ok({"outcome": outcome})
