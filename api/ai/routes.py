"""AI copy and content through SafeAi (credits, PII Safe Mode, validation, usage)."""

from html import escape
from typing import Annotated, Any, Literal
from uuid import UUID

from fastapi import APIRouter
from pydantic import AnyHttpUrl, BaseModel, ConfigDict, Field, field_validator

from api.ai.deps import AI, Ai
from api.ai.errors import GENERATION_FAILURES, PAGE_REFUSED, api_error
from api.ai.page_fetch import fetch_page_text
from api.ai.safe_ai import CALL_FAILURES
from api.core.deps import ActingUser, UserScope
from api.core.envelope import Envelope, ok
from api.core.errors import ApiError
from api.core.openapi import (
    RATE_LIMITED,
    WORKSPACE_NOT_FOUND,
    documented,
    insufficient_role,
    json_body_example,
    merged_errors,
)

router = APIRouter(prefix="/api/v1/ai", tags=["ai"])

ShortText = Annotated[str, Field(min_length=1, max_length=2000)]
Language = Annotated[str, Field(pattern=r"^[a-z]{2}(-[A-Z]{2})?$")]
Angle = Literal["problem", "benefit", "question"]
ContentKind = Literal["product_description", "blog_post", "meta"]


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
    kind: ContentKind
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


class CampaignCopyAnswer(BaseModel):
    ai_call_id: UUID
    variants: Annotated[
        list[Variant],
        Field(min_length=3, max_length=3, description="One of each angle"),
    ]
    campaign_variant_ids: Annotated[
        list[UUID],
        Field(description="The variants saved into `campaign_id`; empty without one"),
    ]


class ContentAnswer(Content):
    ai_call_id: UUID
    kind: ContentKind


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


def assert_draft_campaign(acting: UserScope, body: CampaignCopyRequest) -> None:
    """Checked before Groq is called, so a campaign that cannot take variants costs nothing."""
    with acting.connection() as conn:
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


def save_variants(acting: UserScope, body: CampaignCopyRequest, copy: CampaignCopy) -> list[str]:
    with acting.connection() as conn:
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


# What any generation can answer: the membership, rate limits and credits the database checks
# before anything is done, then the provider's and the model's failures (refunded).
GENERATION_ERRORS = merged_errors(
    {402: {"insufficient_credits": "Not enough credits for this"}},
    insufficient_role("member"),
    WORKSPACE_NOT_FOUND,
    RATE_LIMITED,
    GENERATION_FAILURES,
    {503: {"provider_not_configured": AI.unconfigured}},
)
# Copy saved into a campaign can also meet a campaign that is gone, started, or written to by
# another request at the same moment.
CAMPAIGN_COPY_ERRORS = merged_errors(
    GENERATION_ERRORS,
    {
        403: {"forbidden": "You do not have permission to do that"},
        404: {"campaign_not_found": "Campaign not found in this workspace"},
        409: {
            "campaign_not_draft": "Variants can only be added to a draft campaign",
            "conflict": "That conflicts with an existing record",
        },
    },
    PAGE_REFUSED,
)
WORKSPACE_ID = "3f2a9d4e-8b1c-4e7f-a6d5-0c9b8e7f6a5d"
CAMPAIGN_COPY_REQUEST = {
    "workspace_id": WORKSPACE_ID,
    "product_url": "https://shop.example/trail-boots",
    "ideal_customer_profile": "Trail runners in Czechia who run through the winter",
    "tone": "friendly",
    "language": "en",
    "read_product_page": True,
    "campaign_id": "5b8e2f1a-7c4d-4e9b-8a3f-2d1c0b9e8f7a",
}
CAMPAIGN_COPY_EXAMPLE = {
    "ai_call_id": "9d4c2b1a-0e8f-4a7b-9c6d-5e4f3a2b1c0d",
    "variants": [
        {
            "angle": "problem",
            "subject": "Cold, wet feet by kilometre five?",
            "body": "Hi,\n\nWinter trails soak most boots within the hour...",
        },
        {
            "angle": "benefit",
            "subject": "Dry feet for the whole winter run",
            "body": "Hi,\n\nOur trail boots stay waterproof at 420 g...",
        },
        {
            "angle": "question",
            "subject": "What do you run in when the trail turns to mud?",
            "body": "Hi,\n\nWhen the snow melts, what keeps you going...",
        },
    ],
    "campaign_variant_ids": [
        "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d",
        "1b2c3d4e-5f6a-4b7c-9d8e-0f1a2b3c4d5e",
        "2c3d4e5f-6a7b-4c8d-8e9f-1a2b3c4d5e6f",
    ],
}
CONTENT_REQUEST = {
    "workspace_id": WORKSPACE_ID,
    "kind": "blog_post",
    "subject": "Trail running for beginners",
    "keywords": ["trail running", "beginners"],
    "language": "en",
}
CONTENT_EXAMPLE = {
    "ai_call_id": "8c3b1a0f-9e7d-4c6b-8a5f-4e3d2c1b0a9f",
    "kind": "blog_post",
    "title": "Trail running for beginners: your first ten kilometres",
    "meta_title": "Trail running for beginners",
    "meta_description": "How to start trail running: shoes, pace, and your first routes.",
    "outline": ["Why run trails", "What to wear", "Your first route"],
    "body": "Trail running is running where the path is softer and the views are better...",
}


@router.post(
    "/campaign-copy",
    response_model=Envelope[CampaignCopyAnswer],
    summary="Write three cold-email variants for a product",
    responses=documented(CAMPAIGN_COPY_EXAMPLE, errors=CAMPAIGN_COPY_ERRORS),
    openapi_extra=json_body_example(CAMPAIGN_COPY_REQUEST),
)
def campaign_copy(body: CampaignCopyRequest, acting: ActingUser, ai: Ai) -> dict[str, Any]:
    """One problem-focused, one benefit-focused and one question-based email for the ideal
    customer, through SafeAi (3 credits, refunded if the call fails; personal data never leaves).
    With `read_product_page` the product page's visible text grounds the copy; with
    `campaign_id` (a draft of the same workspace, checked before anything is charged) the
    variants are also saved into it, literally."""
    if body.campaign_id is not None:
        assert_draft_campaign(acting, body)
    inputs = {
        "Product URL": str(body.product_url),
        "Ideal customer profile": body.ideal_customer_profile,
        "Tone": body.tone,
        "Language": body.language,
    }

    def read_product_page() -> dict[str, str]:
        """Fetched only once the call is authorised and paid for (refunded if it fails)."""
        return {"Product page text": fetch_page_text(str(body.product_url))}

    saved: list[str] = []

    def save_into_campaign(copy: CampaignCopy) -> None:
        """Inside the call: a variant the campaign refuses (a race with a launch, a subject too
        long once made literal) refunds the credits like a provider failure."""
        saved.extend(save_variants(acting, body, copy))

    try:
        copy, call_id = ai.generate(
            acting,
            workspace_id=body.workspace_id,
            feature="campaign_copy",
            instructions=CAMPAIGN_COPY_INSTRUCTIONS,
            inputs=inputs,
            output=CampaignCopy,
            schema=CAMPAIGN_COPY_SCHEMA,
            gather=read_product_page if body.read_product_page else None,
            keep=save_into_campaign if body.campaign_id is not None else None,
        )
    except CALL_FAILURES as failure:
        raise api_error(failure) from failure
    return ok({"ai_call_id": call_id, **copy.model_dump(), "campaign_variant_ids": saved})


@router.post(
    "/content",
    response_model=Envelope[ContentAnswer],
    summary="Write a product description, a blog post draft or SEO metadata",
    responses=documented(CONTENT_EXAMPLE, errors=GENERATION_ERRORS),
    openapi_extra=json_body_example(CONTENT_REQUEST),
)
def content(body: ContentRequest, acting: ActingUser, ai: Ai) -> dict[str, Any]:
    """A title, meta title and description, an outline and a body for the subject, through
    SafeAi (2 credits, refunded if the call fails; personal data never leaves)."""
    try:
        generated, call_id = ai.generate(
            acting,
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
    except CALL_FAILURES as failure:
        raise api_error(failure) from failure
    return ok({"ai_call_id": call_id, "kind": body.kind, **generated.model_dump()})
