"""AI copy and content through SafeAi (credits, PII Safe Mode, validation, usage)."""

from html import escape
from typing import Annotated, Any, Literal
from uuid import UUID

from fastapi import APIRouter, Request
from pydantic import AnyHttpUrl, BaseModel, ConfigDict, Field, field_validator

from api.ai.page_fetch import fetch_page_text
from api.ai.safe_ai import SafeAi
from api.core.db import Database
from api.core.deps import CurrentUser
from api.core.envelope import ok
from api.core.errors import ApiError

router = APIRouter(prefix="/api/v1/ai", tags=["ai"])

ShortText = Annotated[str, Field(min_length=1, max_length=2000)]
Language = Annotated[str, Field(pattern=r"^[a-z]{2}(-[A-Z]{2})?$")]
Angle = Literal["problem", "benefit", "question"]


class CampaignCopyRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    workspace_id: UUID
    product_url: AnyHttpUrl
    ideal_customer_profile: ShortText
    tone: Annotated[str, Field(min_length=1, max_length=60)] = "friendly"
    language: Language = "en"
    read_product_page: bool = False
    # A draft campaign of the same workspace to save the three variants into.
    campaign_id: UUID | None = None


class Variant(BaseModel):
    angle: Angle
    subject: Annotated[str, Field(min_length=1, max_length=200)]
    body: Annotated[str, Field(min_length=1, max_length=5000)]


class CampaignCopy(BaseModel):
    variants: list[Variant]

    @field_validator("variants")
    @classmethod
    def one_of_each_angle(cls, variants: list[Variant]) -> list[Variant]:
        if sorted(v.angle for v in variants) != ["benefit", "problem", "question"]:
            raise ValueError("one problem-focused, one benefit-focused and one question-based")
        return variants


CAMPAIGN_COPY_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["variants"],
    "properties": {
        "variants": {
            "type": "array",
            "minItems": 3,
            "maxItems": 3,
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["angle", "subject", "body"],
                "properties": {
                    "angle": {"type": "string", "enum": ["problem", "benefit", "question"]},
                    "subject": {"type": "string"},
                    "body": {"type": "string"},
                },
            },
        }
    },
}

CAMPAIGN_COPY_INSTRUCTIONS = (
    "You write cold emails. Return exactly three variants as JSON: one problem-focused "
    "(angle 'problem'), one benefit-focused ('benefit'), one question-based ('question'), each "
    "with a subject line under 80 characters and a body under 150 words, in the requested "
    "language and tone. Keep placeholders such as [EMAIL_1] exactly as written."
)


class ContentRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    workspace_id: UUID
    kind: Literal["product_description", "blog_post", "meta"]
    subject: ShortText
    keywords: list[Annotated[str, Field(min_length=1, max_length=60)]] = Field(
        default_factory=list, max_length=20
    )
    language: Language = "en"


class Content(BaseModel):
    title: str
    meta_title: Annotated[str, Field(max_length=120)]
    meta_description: Annotated[str, Field(max_length=320)]
    outline: list[str]
    body: str


CONTENT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["title", "meta_title", "meta_description", "outline", "body"],
    "properties": {
        "title": {"type": "string"},
        "meta_title": {"type": "string"},
        "meta_description": {"type": "string"},
        "outline": {"type": "array", "items": {"type": "string"}},
        "body": {"type": "string"},
    },
}

CONTENT_INSTRUCTIONS = {
    "product_description": "Write a product description: a title, a meta title (under 60 "
    "characters), a meta description (under 155), a short outline of selling points and the "
    "description as the body.",
    "blog_post": "Write an SEO blog post: a title, a meta title (under 60 characters), a meta "
    "description (under 155), an outline of H2 headings and a first draft as the body.",
    "meta": "Write SEO metadata: a title, a meta title (under 60 characters) and a meta "
    "description (under 155); the outline may be empty and the body one sentence.",
}


def assert_draft_campaign(request: Request, user: CurrentUser, body: CampaignCopyRequest) -> None:
    """Checked before Groq is called, so a campaign that cannot take variants costs nothing."""
    database: Database = request.app.state.database
    with database.as_user(user.claims) as conn:
        campaign = conn.execute(
            "select workspace_id, status from public.campaigns where id = %s", (body.campaign_id,)
        ).fetchone()
    if campaign is None or campaign["workspace_id"] != body.workspace_id:
        raise ApiError(404, "campaign_not_found", "Campaign not found in this workspace")
    if campaign["status"] != "draft":
        raise ApiError(409, "campaign_not_draft", "Variants can only be added to a draft campaign")


def literal_template(text: str) -> str:
    """A template that renders `text` as written, whatever it contains (Jinja drops one trailing
    newline, nothing else). Every Jinja tag opens with
    `{` (`{{`, `{%`, `{#`), so each `{` becomes an expression printing one; with none left, no
    tag can open and the closing delimiters are plain text. (A `{% raw %}` block would not do:
    the model's text could close it with `{% endraw %}`.)"""
    return text.replace("{", "{{ '{' }}")


def variant_html(body: str) -> str:
    """The copy as escaped paragraphs, kept literal (never read as merge fields)."""
    paragraphs = (escape(part).replace("\n", "<br>") for part in body.split("\n\n") if part.strip())
    return literal_template("".join(f"<p>{paragraph}</p>" for paragraph in paragraphs))


def unused_name(angle: str, taken: set[str]) -> str:
    """The angle, or `angle 2`, `angle 3`…: variant names are unique per campaign, and a second
    request for copy into the same draft must not lose the copy it paid for."""
    name, number = angle, 1
    while name in taken:
        number += 1
        name = f"{angle} {number}"
    taken.add(name)
    return name


def save_variants(
    request: Request, user: CurrentUser, body: CampaignCopyRequest, copy: CampaignCopy
) -> list[str]:
    database: Database = request.app.state.database
    with database.as_user(user.claims) as conn:
        taken = {
            row["name"]
            for row in conn.execute(
                "select name from public.campaign_variants where campaign_id = %s",
                (body.campaign_id,),
            )
        }
        rows = [
            conn.execute(
                "insert into public.campaign_variants"
                " (campaign_id, workspace_id, name, subject, html, text)"
                " values (%s, %s, %s, %s, %s, %s) returning id",
                (
                    body.campaign_id,
                    body.workspace_id,
                    unused_name(variant.angle, taken),
                    literal_template(variant.subject),
                    variant_html(variant.body),
                    literal_template(variant.body),
                ),
            ).fetchone()
            for variant in copy.variants
        ]
    return [str(row["id"]) for row in rows if row]


def safe_ai(request: Request) -> SafeAi:
    ai: SafeAi | None = request.app.state.ai
    if ai is None:
        raise ApiError(503, "provider_not_configured", "GROQ_API_KEY is not configured")
    return ai


@router.post("/campaign-copy")
def campaign_copy(body: CampaignCopyRequest, request: Request, user: CurrentUser) -> dict[str, Any]:
    ai = safe_ai(request)
    if body.campaign_id is not None:
        assert_draft_campaign(request, user, body)
    inputs = {
        "Product URL": str(body.product_url),
        "Ideal customer profile": body.ideal_customer_profile,
        "Tone": body.tone,
        "Language": body.language,
    }

    def read_product_page() -> dict[str, str]:
        """Fetched only once the call is authorised and paid for (refunded if it fails)."""
        return {"Product page text": fetch_page_text(str(body.product_url))}

    copy, call_id = ai.generate(
        request.app.state.database,
        user,
        workspace_id=body.workspace_id,
        feature="campaign_copy",
        instructions=CAMPAIGN_COPY_INSTRUCTIONS,
        inputs=inputs,
        output=CampaignCopy,
        schema=CAMPAIGN_COPY_SCHEMA,
        gather=read_product_page if body.read_product_page else None,
    )
    saved = save_variants(request, user, body, copy) if body.campaign_id is not None else []
    return ok({"ai_call_id": call_id, **copy.model_dump(), "campaign_variant_ids": saved})


@router.post("/content")
def content(body: ContentRequest, request: Request, user: CurrentUser) -> dict[str, Any]:
    ai = safe_ai(request)
    generated, call_id = ai.generate(
        request.app.state.database,
        user,
        workspace_id=body.workspace_id,
        feature="content",
        instructions=CONTENT_INSTRUCTIONS[body.kind],
        inputs={
            "Subject": body.subject,
            "Keywords": ", ".join(body.keywords),
            "Language": body.language,
        },
        output=Content,
        schema=CONTENT_SCHEMA,
    )
    return ok({"ai_call_id": call_id, "kind": body.kind, **generated.model_dump()})
