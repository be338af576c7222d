"""AI copy and content through SafeAi (credits, PII Safe Mode, validation, usage)."""

from typing import Annotated, Any, Literal
from uuid import UUID

from fastapi import APIRouter, Request
from pydantic import AnyHttpUrl, BaseModel, ConfigDict, Field, field_validator

from api.ai import SafeAi
from api.auth import CurrentUser
from api.envelope import ok
from api.errors import ApiError
from api.page_fetch import fetch_page_text

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


def safe_ai(request: Request) -> SafeAi:
    ai: SafeAi | None = request.app.state.ai
    if ai is None:
        raise ApiError(503, "provider_not_configured", "GROQ_API_KEY is not configured")
    return ai


@router.post("/campaign-copy")
def campaign_copy(body: CampaignCopyRequest, request: Request, user: CurrentUser) -> dict[str, Any]:
    ai = safe_ai(request)
    inputs = {
        "Product URL": str(body.product_url),
        "Ideal customer profile": body.ideal_customer_profile,
        "Tone": body.tone,
        "Language": body.language,
    }
    if body.read_product_page:
        inputs["Product page text"] = fetch_page_text(str(body.product_url))
    copy, call_id = ai.generate(
        request.app.state.database,
        user,
        workspace_id=body.workspace_id,
        feature="campaign_copy",
        instructions=CAMPAIGN_COPY_INSTRUCTIONS,
        inputs=inputs,
        output=CampaignCopy,
        schema=CAMPAIGN_COPY_SCHEMA,
    )
    return ok({"ai_call_id": call_id, **copy.model_dump()})


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
