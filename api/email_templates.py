"""Merge fields in campaign templates, rendered in Jinja's sandbox.

Templates are written by workspace members, so they run sandboxed (no attribute tricks) with
strict undefined values: a field the contact lacks is an error naming that field unless the
template gives a default (`{{ first_name | default("there") }}`); it never becomes a blank in a
sent mail. The HTML part is HTML-escaped; subject and text parts are not. Every message gets a
visible unsubscribe link, added as a footer when the template does not place
`{{ unsubscribe_url }}` itself.
"""

from dataclasses import dataclass
from html import escape
from typing import Any

from jinja2 import StrictUndefined, TemplateError, UndefinedError
from jinja2.sandbox import SandboxedEnvironment

from api.errors import ApiError

CONTACT_FIELDS = ("email", "first_name", "last_name", "phone")
UNSUBSCRIBE_FIELD = "unsubscribe_url"

html_environment = SandboxedEnvironment(autoescape=True, undefined=StrictUndefined)
text_environment = SandboxedEnvironment(autoescape=False, undefined=StrictUndefined)


@dataclass(frozen=True)
class EmailContent:
    subject: str
    html: str
    text: str | None


@dataclass(frozen=True)
class RenderedEmail:
    subject: str
    html: str
    text: str | None


class MergeFieldError(Exception):
    """A template cannot be rendered for a contact; the message names the reason."""


def merge_fields(contact: dict[str, Any], unsubscribe_url: str) -> dict[str, Any]:
    """The values a template may use; empty values are left out so that they count as missing."""
    fields: dict[str, Any] = {
        name: contact[name] for name in CONTACT_FIELDS if contact.get(name) not in (None, "")
    }
    attributes = contact.get("attributes") or {}
    fields["attributes"] = {
        key: value for key, value in attributes.items() if value not in (None, "")
    }
    fields[UNSUBSCRIBE_FIELD] = unsubscribe_url
    return fields


def render(content: EmailContent, contact: dict[str, Any], unsubscribe_url: str) -> RenderedEmail:
    fields = merge_fields(contact, unsubscribe_url)
    try:
        subject = text_environment.from_string(content.subject).render(fields)
        html = html_environment.from_string(content.html).render(fields)
        text = (
            text_environment.from_string(content.text).render(fields)
            if content.text is not None
            else None
        )
    except UndefinedError as error:
        raise MergeFieldError(f"missing merge field: {error.message}") from error
    except TemplateError as error:
        raise MergeFieldError(f"template error: {error.message}") from error
    if UNSUBSCRIBE_FIELD not in content.html:
        html += (
            '<p style="font-size:12px;color:#666">'
            f'<a href="{escape(unsubscribe_url)}">Unsubscribe</a></p>'
        )
    if text is not None and UNSUBSCRIBE_FIELD not in (content.text or ""):
        text += f"\n\nUnsubscribe: {unsubscribe_url}\n"
    return RenderedEmail(" ".join(subject.split()), html, text)


def preview(content: EmailContent, contact: dict[str, Any], unsubscribe_url: str) -> RenderedEmail:
    """Rendering for a person looking at it: problems are a 422 naming the field."""
    try:
        return render(content, contact, unsubscribe_url)
    except MergeFieldError as error:
        raise ApiError(422, "merge_field_missing", str(error)) from error
