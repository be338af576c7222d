"""Errors a dependency declares with `answers` are documented once, by the contract, on every
operation that depends on it (directly or through another dependency), and on no other."""

from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI
from fastapi.routing import APIRoute, iter_route_contexts
from pydantic import SecretStr

from api.app import create_app
from api.core.openapi import answers, dependency_calls, install_contract
from api.core.settings import Settings
from api.webhooks.body import raw_body

DECLARED = {418: {"teapot": "Short and stout"}}


@answers(DECLARED)
def brewed() -> str:
    return "tea"


def poured(tea: Annotated[str, Depends(brewed)]) -> str:
    return tea


def documented_codes(document: dict[str, Any], path: str) -> dict[str, list[str]]:
    responses = document["paths"][path]["post"]["responses"]
    return {status: answer.get("x-error-codes", []) for status, answer in responses.items()}


def test_a_declared_error_reaches_each_operation_that_depends_on_it() -> None:
    router = APIRouter()

    @router.post("/direct", summary="Brew")
    def direct(tea: Annotated[str, Depends(brewed)]) -> str:
        return tea

    @router.post("/nested", summary="Pour")
    def nested(tea: Annotated[str, Depends(poured)]) -> str:
        return tea

    @router.post("/none", summary="Wait")
    def none() -> str:
        return "nothing"

    app = FastAPI()
    app.include_router(router)
    install_contract(app)
    document = app.openapi()
    assert documented_codes(document, "/direct")["418"] == ["teapot"]
    assert documented_codes(document, "/nested")["418"] == ["teapot"]
    assert "418" not in documented_codes(document, "/none")


def test_every_operation_reading_its_raw_body_documents_a_body_too_large() -> None:
    settings = Settings(
        database_url=SecretStr("postgresql://nobody@127.0.0.1:1/none"),
        supabase_url="http://127.0.0.1:1",
    )
    app = create_app(settings)
    document = app.openapi()
    too_large = {
        path
        for path, item in document["paths"].items()
        for operation in item.values()
        if "payload_too_large" in operation["responses"].get("413", {}).get("x-error-codes", [])
    }
    reading_raw_bodies = {
        context.path_format
        for context in iter_route_contexts(app.routes)
        if isinstance(context.original_route, APIRoute)
        and raw_body in dependency_calls(context.original_route.dependant)
    }
    assert "/api/v1/webhooks/razorpay" in reading_raw_bodies
    assert reading_raw_bodies <= too_large
