"""Merge fields in campaign templates, rendered in Jinja's sandbox.

Templates are written by workspace members, so they run sandboxed (no attribute tricks) with
strict undefined values: a field the contact lacks is an error naming that field unless the
template gives a default (`{{ first_name | default("there") }}`); it never becomes a blank in a
sent mail. The HTML part is HTML-escaped; subject and text parts are not. Every message gets a
visible unsubscribe link, added as a footer when the template does not place
`{{ unsubscribe_url }}` itself.
"""

import operator
import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from html import escape
from typing import Any

from jinja2 import StrictUndefined, Template, TemplateError, UndefinedError, nodes
from jinja2.sandbox import SandboxedEnvironment

from api.errors import ApiError

CONTACT_FIELDS = ("email", "first_name", "last_name", "phone")
UNSUBSCRIBE_FIELD = "unsubscribe_url"
# Templates come from users: a rendered part may not exceed this, nor may any value built by
# repetition (`'x' * 50000000`), so one template cannot exhaust a worker's memory or time.
MAX_RENDERED_CHARACTERS = 1_000_000
# Loops produce no output to bound, so their work is: ranges of at most MAX_RANGE, nested at
# most MAX_LOOP_DEPTH deep (a million iterations, well under a second), and powers of at most
# MAX_POWER_BITS bits.
MAX_RANGE = 1000
MAX_LOOP_DEPTH = 2
MAX_POWER_BITS = 10_000
MISSING_ATTRIBUTE = re.compile(r"^'dict object' has no attribute '([^']*)'$")


class TemplateTooLargeError(TemplateError):
    """The template would render more than MAX_RENDERED_CHARACTERS."""


def bounded_range(*arguments: int) -> range:
    numbers = range(*arguments)
    if len(numbers) > MAX_RANGE:
        raise TemplateTooLargeError(f"a range may have at most {MAX_RANGE} numbers")
    return numbers


class BoundedEnvironment(SandboxedEnvironment):
    """Jinja's sandbox, with repetition (`*`) and powers (`**`) bounded in size."""

    intercepted_binops = frozenset({"*", "**"})

    def __init__(self, *, autoescape: bool) -> None:
        super().__init__(autoescape=autoescape, undefined=StrictUndefined)
        self.globals["range"] = bounded_range

    def call_binop(self, context: Any, operator_name: str, left: Any, right: Any) -> Any:
        if operator_name == "**":
            if (
                isinstance(left, int)
                and isinstance(right, int)
                and left.bit_length() * right > MAX_POWER_BITS
            ):
                raise TemplateTooLargeError("the template computes too large a number")
            return operator.pow(left, right)
        sized, count = (left, right) if isinstance(right, int) else (right, left)
        if (
            isinstance(sized, str | list)
            and isinstance(count, int)
            and len(sized) * count > MAX_RENDERED_CHARACTERS
        ):
            raise TemplateTooLargeError("the template repeats a value too many times")
        return operator.mul(left, right)


html_environment = BoundedEnvironment(autoescape=True)
text_environment = BoundedEnvironment(autoescape=False)


def loop_depth(node: nodes.Node) -> int:
    inner = max((loop_depth(child) for child in node.iter_child_nodes()), default=0)
    return inner + 1 if isinstance(node, nodes.For) else inner


@lru_cache(maxsize=128)
def compiled(source: str, *, html: bool) -> Template:
    """A campaign renders the same few sources thousands of times; compiling is ~50x rendering."""
    environment = html_environment if html else text_environment
    if loop_depth(environment.parse(source)) > MAX_LOOP_DEPTH:
        raise TemplateTooLargeError(f"loops may nest at most {MAX_LOOP_DEPTH} deep")
    return environment.from_string(source)


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


class RenderError(Exception):
    """A template cannot be rendered for a contact; the message names the reason."""


class MergeFieldError(RenderError):
    """The contact lacks a field the template uses without a default."""


class TemplateInvalidError(RenderError):
    """The template itself is broken (syntax) or too large."""


def bounded(chunks: Iterator[str]) -> str:
    """Joins rendered output, stopping as soon as it grows past the limit."""
    parts: list[str] = []
    size = 0
    for chunk in chunks:
        size += len(chunk)
        if size > MAX_RENDERED_CHARACTERS:
            raise TemplateTooLargeError("the rendered message is larger than 1,000,000 characters")
        parts.append(chunk)
    return "".join(parts)


def missing_field(error: UndefinedError) -> str:
    """Names a missing field as the template writes it: `attributes.city`, not Jinja's
    "'dict object' has no attribute 'city'"."""
    message = error.message or "a merge field is undefined"
    attribute = MISSING_ATTRIBUTE.match(message)
    if attribute:
        return f"missing merge field: attributes.{attribute.group(1)}"
    name = message.removesuffix(" is undefined").strip("'")
    return f"missing merge field: {name}"


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
        subject = bounded(compiled(content.subject, html=False).generate(fields))
        html = bounded(compiled(content.html, html=True).generate(fields))
        text = (
            bounded(compiled(content.text, html=False).generate(fields))
            if content.text is not None
            else None
        )
    except UndefinedError as error:
        raise MergeFieldError(missing_field(error)) from error
    except TemplateError as error:
        raise TemplateInvalidError(f"template error: {error.message}") from error
    except Exception as error:
        # Whatever else a template's expression raises ({{ 1 / 0 }}, a filter on the wrong
        # type) is the template's fault, not a reason to stop the worker.
        raise TemplateInvalidError(f"template error: {type(error).__name__}: {error}") from error
    # Judged on the output, so a link hidden in a comment or a false branch does not count.
    if escape(unsubscribe_url) not in html:
        html += (
            '<p style="font-size:12px;color:#666">'
            f'<a href="{escape(unsubscribe_url)}">Unsubscribe</a></p>'
        )
    if text is not None and unsubscribe_url not in text:
        text += f"\n\nUnsubscribe: {unsubscribe_url}\n"
    return RenderedEmail(" ".join(subject.split()), html, text)


def preview(content: EmailContent, contact: dict[str, Any], unsubscribe_url: str) -> RenderedEmail:
    """Rendering for a person looking at it: problems are a 422 naming the field."""
    try:
        return render(content, contact, unsubscribe_url)
    except MergeFieldError as error:
        raise ApiError(422, "merge_field_missing", str(error)) from error
    except TemplateInvalidError as error:
        raise ApiError(422, "template_invalid", str(error)) from error
