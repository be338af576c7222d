"""Previewing a template, or content being edited, as one contact will receive it.

Contact and template are read as the user, so RLS decides what may be previewed; a template is
only rendered with a contact of its own workspace. The unsubscribe link is a placeholder of the
real link's shape (it unsubscribes nobody).
"""

from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field

from api.core.action_quotas import take_workspace_quota
from api.core.db import Database
from api.core.deps import CurrentUser
from api.core.envelope import ok
from api.core.errors import ApiError
from api.core.public_urls import configured_public_urls
from api.email.errors import api_error
from api.email.sender import UNSUBSCRIBE_PATH
from api.email.templates import EmailContent, RenderError, render

router = APIRouter(prefix="/api/v1/email/preview", tags=["email"])

# The same limits as public.email_templates.
Subject = Annotated[str, Field(min_length=1, max_length=998)]
Body = Annotated[str, Field(max_length=500_000)]


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


@router.post("")
def preview_email(
    body: TemplatePreview | ContentPreview, request: Request, user: CurrentUser
) -> dict[str, Any]:
    """Answers the rendered subject, html and text; a missing merge field is a 422 naming it."""
    database: Database = request.app.state.database
    with database.as_user(user.claims, request.method, request.url.path) as conn:
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
    urls = configured_public_urls(request.app.state.settings)
    placeholder_link = f"{urls.base_url if urls else ''}{UNSUBSCRIBE_PATH}?token=preview"
    try:
        rendered = render(content, dict(contact), placeholder_link)
    except RenderError as failure:
        raise api_error(failure) from failure
    return ok({"subject": rendered.subject, "html": rendered.html, "text": rendered.text})
