"""Unsubscribe links from campaign mail. No login: the signed token names the contact.

GET only shows a confirmation page, because mail scanners and link previews fetch every link
in a message; unsubscribing takes a POST, which is both RFC 8058 one-click (mailbox providers
POST `List-Unsubscribe=One-Click` to the link in the List-Unsubscribe header) and the page's
button. The POST itself is the intent, so its body is not inspected. Browsers get HTML pages;
other clients get the JSON envelope. Tokens and addresses are never logged.
"""

from html import escape
from urllib.parse import urlencode

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse

from api.core.db import Database
from api.core.envelope import ok
from api.core.errors import ApiError
from api.core.settings import Settings
from api.email import unsubscribe_tokens
from api.email.errors import api_error

router = APIRouter(prefix="/api/v1/unsubscribe", tags=["email"])

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


def link_secret(request: Request) -> str:
    settings: Settings = request.app.state.settings
    if settings.email_link_secret is None:
        raise ApiError(503, "provider_not_configured", "Unsubscribing is not available right now")
    return settings.email_link_secret.get_secret_value()


def verified_link(request: Request, token: str) -> unsubscribe_tokens.UnsubscribeClaims:
    try:
        return unsubscribe_tokens.verify(link_secret(request), token)
    except unsubscribe_tokens.LinkError as failure:
        raise api_error(failure) from failure


def wants_html(request: Request) -> bool:
    return "text/html" in request.headers.get("accept", "")


def html_page(status: int, title: str, message: str, form_token: str | None = None) -> Response:
    form = (
        FORM.format(action=escape("?" + urlencode({"token": form_token})))
        if form_token is not None
        else ""
    )
    body = PAGE.format(title=escape(title), message=escape(message), form=form)
    return HTMLResponse(body, status_code=status, headers=PAGE_HEADERS)


def error_page(error: ApiError) -> Response:
    return html_page(error.status, error.message, HELP)


def unsubscribe_contact(request: Request, token: str) -> str:
    """Verifies the token and unsubscribes its contact; answers `unsubscribed` or
    `already_unsubscribed`, or raises 400 / 410 for a bad link and 404 for an unknown contact."""
    claims = verified_link(request, token)
    database: Database = request.app.state.database
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


@router.get("")
def confirmation_page(request: Request, token: str = "") -> Response:
    """Asks for a click; never unsubscribes by itself."""
    try:
        verified_link(request, token)
    except ApiError as error:
        return error_page(error)
    return html_page(
        200,
        "Unsubscribe from these emails?",
        "Once you confirm, you will not receive campaign emails from this sender any more.",
        form_token=token,
    )


@router.post("")
def unsubscribe(request: Request, token: str = "") -> Response:
    """One-click unsubscribe; repeating it is harmless."""
    try:
        outcome = unsubscribe_contact(request, token)
    except ApiError as error:
        if wants_html(request):
            return error_page(error)
        raise
    if wants_html(request):
        return html_page(
            200,
            "You are unsubscribed",
            "You will not receive campaign emails from this sender any more.",
        )
    return JSONResponse(ok({"outcome": outcome}))
