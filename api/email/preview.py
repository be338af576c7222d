"""Previewing a template, or content being edited, as one contact will receive it.

Contact and template are read as the user, so RLS decides what may be previewed; a template is
only rendered with a contact of its own workspace. The unsubscribe link is a placeholder of the
real link's shape (it unsubscribes nobody).
"""

from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from api.core.action_quotas import take_workspace_quota
from api.core.deps import ActingUser, AppSettings
from api.core.envelope import Envelope, ok
from api.core.errors import ApiError
from api.core.openapi import RATE_LIMITED, documented, json_body_examples
from api.core.public_urls import configured_public_urls
from api.email.errors import api_error
from api.email.sender import UNSUBSCRIBE_PATH
from api.email.templates import EmailContent, RenderError, render

router = APIRouter(prefix="/api/v1/email/preview", tags=["email"])

# The same limits as public.email_templates.
Subject = Annotated[str, Field(min_length=1, max_length=998)]
Body = Annotated[str, Field(max_length=500_000)]
CONTACT_ID = "5b7e2f0c-3d1a-4c8e-9f6b-2a4d8c0e1f37"
TEMPLATE_ID = "c2d9a4e1-7b3f-4e5a-8c6d-0f1e2a3b4c5d"


class TemplatePreview(BaseModel):
    """A saved template as the contact would receive it."""

    model_config = ConfigDict(extra="forbid")

    contact_id: UUID
    template_id: UUID


class ContentPreview(BaseModel):
    """Content being edited, before it is saved anywhere."""

    model_config = ConfigDict(extra="forbid")

    contact_id: UUID
    subject: Subject
    html: Body
    text: Body | None = None


class RenderedPreview(BaseModel):
    """The message as the contact would receive it; `text` is null when there is no text
    part."""

    subject: str
    html: str
    text: str | None


PREVIEW_EXAMPLE = {
    "subject": "Jana, your Brno offer",
    "html": '<p>20% off</p><a href="https://edge.example.com/api/v1/unsubscribe?token=preview">'
    "Leave</a>",
    "text": "20% off\n\nUnsubscribe: https://edge.example.com/api/v1/unsubscribe?token=preview\n",
}
PREVIEW_ERRORS = {
    404: {
        "contact_not_found": "Contact not found",
        "template_not_found": "Template not found",
    },
    422: {
        "merge_field_missing": "missing merge field: attributes.city",
        "template_invalid": "template error: unexpected '}'",
        "template_over_budget": "the template takes more than 100,000 steps",
        "template_too_large": "a template part may have at most 65,536 characters",
    },
    **RATE_LIMITED,
}
PREVIEW_BODY_EXAMPLES = {
    "template": {
        "summary": "A saved template",
        "value": {"contact_id": CONTACT_ID, "template_id": TEMPLATE_ID},
    },
    "content": {
        "summary": "Content being edited",
        "value": {
            "contact_id": CONTACT_ID,
            "subject": "{{ first_name | default('there') }}, your {{ attributes.city }} offer",
            "html": '<p>{{ attributes.discount }} off</p><a href="{{ unsubscribe_url }}">Leave</a>',
            "text": "{{ attributes.discount }} off",
        },
    },
}


@router.post(
    "",
    response_model=Envelope[RenderedPreview],
    summary="Render a template or draft content for one contact",
    responses=documented(PREVIEW_EXAMPLE, errors=PREVIEW_ERRORS),
    openapi_extra=json_body_examples(PREVIEW_BODY_EXAMPLES),
)
def preview_email(
    body: TemplatePreview | ContentPreview, acting: ActingUser, settings: AppSettings
) -> dict[str, Any]:
    """Shows a saved template (`template_id`) or content not yet saved (`subject`, `html`,
    `text`) as the contact will receive it, with merge fields filled and the unsubscribe link
    as a placeholder. A merge field the contact lacks is a 422 naming it; each preview spends
    one request of the workspace's `preview` limit."""
    with acting.connection() as conn:
        contact = conn.execute(
            "select workspace_id, email, first_name, last_name, phone, attributes"
            " from public.contacts where id = %s",
            (body.contact_id,),
        ).fetchone()
        if contact is None:
            raise ApiError(404, "contact_not_found", "Contact not found")
        take_workspace_quota(conn, contact["workspace_id"], "preview")
        if isinstance(body, ContentPreview):
            content = EmailContent(body.subject, body.html, body.text)
        else:
            template = conn.execute(
                "select subject, html, text from public.email_templates"
                " where id = %s and workspace_id = %s",
                (body.template_id, contact["workspace_id"]),
            ).fetchone()
            if template is None:
                raise ApiError(404, "template_not_found", "Template not found")
            content = EmailContent(template["subject"], template["html"], template["text"])
    urls = configured_public_urls(settings)
    placeholder_link = f"{urls.base_url if urls else ''}{UNSUBSCRIBE_PATH}?token=preview"
    try:
        rendered = render(content, dict(contact), placeholder_link)
    except RenderError as failure:
        raise api_error(failure) from failure
    return ok({"subject": rendered.subject, "html": rendered.html, "text": rendered.text})
