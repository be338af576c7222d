"""The OpenAPI document is the contract clients are generated from: it must say, for every
operation, what a success looks like, which errors (and codes) can come back, which credential
it needs, and what the body is, with examples that match their own schemas."""

from collections.abc import Iterator
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from pydantic import SecretStr

from api.app import create_app
from api.core.settings import Settings

Document = dict[str, Any]
METHODS = {"get", "put", "post", "delete", "patch"}
# Operations anyone may call without a credential: the load balancer's health check.
PUBLIC = {"health"}
# Signed inside the body (SNS's Signature and SigningCertURL fields), which no OpenAPI security
# scheme can express; the operation's description and body schema say how it is verified.
SIGNED_IN_THE_BODY = {"ses_webhook", "ses_inbound_webhook"}


@pytest.fixture(scope="module")
def document() -> Document:
    settings = Settings(
        database_url=SecretStr("postgresql://nobody@127.0.0.1:1/none"),
        supabase_url="http://127.0.0.1:1",
    )
    return create_app(settings).openapi()


def operations(document: Document) -> Iterator[tuple[str, dict[str, Any]]]:
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method in METHODS:
                yield f"{method.upper()} {path}", operation


def examples_of(media: dict[str, Any]) -> list[Any]:
    found = [media["example"]] if "example" in media else []
    return found + [example["value"] for example in media.get("examples", {}).values()]


def validator(document: Document, schema: dict[str, Any]) -> Draft202012Validator:
    """A validator whose `#/components/...` references resolve inside the document."""
    return Draft202012Validator({**schema, "components": document["components"]})


def test_every_operation_has_a_written_summary_and_a_stable_unique_id(document: Document) -> None:
    seen: dict[str, str] = {}
    problems = []
    for label, operation in operations(document):
        operation_id = operation.get("operationId", "")
        generated = operation_id.replace("_", " ").title()
        if not operation.get("summary") or operation["summary"] == generated:
            problems.append(f"{label}: no written summary")
        if operation_id in seen:
            problems.append(f"{label}: operationId {operation_id} also names {seen[operation_id]}")
        seen[operation_id] = label
    assert problems == []
    assert len(seen) > 25


def test_every_success_is_a_typed_body_with_an_example(document: Document) -> None:
    problems = []
    for label, operation in operations(document):
        successes = {s: r for s, r in operation["responses"].items() if s.startswith("2")}
        if not successes:
            problems.append(f"{label}: no success response")
        for status, response in successes.items():
            content = response.get("content", {})
            if not content:
                problems.append(f"{label} {status}: no content")
            for media_type, media in content.items():
                schema = media.get("schema", {})
                if media_type == "application/json" and not schema.get("$ref", "").startswith(
                    "#/components/schemas/"
                ):
                    problems.append(f"{label} {status}: untyped JSON body {schema}")
                if not examples_of(media):
                    problems.append(f"{label} {status} {media_type}: no example")
    assert problems == []


def test_every_error_answer_is_the_error_envelope_with_its_codes(document: Document) -> None:
    problems = []
    for label, operation in operations(document):
        for status, response in operation["responses"].items():
            if int(status) < 400:
                continue
            media = response.get("content", {}).get("application/json", {})
            if media.get("schema") != {"$ref": "#/components/schemas/ErrorEnvelope"}:
                problems.append(f"{label} {status}: not the error envelope")
            codes = response.get("x-error-codes") or []
            if not codes:
                problems.append(f"{label} {status}: no error codes listed")
            for example in examples_of(media):
                if example["error"]["code"] not in codes:
                    problems.append(f"{label} {status}: example code not listed")
    assert problems == []
    error = document["components"]["schemas"]["ErrorBody"]
    assert set(error["required"]) >= {"code", "message"}
    assert set(error["properties"]) == {"code", "message", "details"}
    assert "HTTPValidationError" not in document["components"]["schemas"]


def test_every_operation_declares_what_its_input_gets_wrong(document: Document) -> None:
    problems = [
        label
        for label, operation in operations(document)
        if (operation.get("parameters") or operation.get("requestBody"))
        and "invalid_input" not in operation["responses"].get("422", {}).get("x-error-codes", [])
    ]
    assert problems == []


def test_every_operation_but_the_health_check_names_its_credential(document: Document) -> None:
    schemes = document["components"]["securitySchemes"]
    assert schemes["supabaseAuth"] == {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": schemes["supabaseAuth"]["description"],
    }
    assert schemes["cronSecret"]["scheme"] == "bearer"
    problems = []
    for label, operation in operations(document):
        named = {name for requirement in operation.get("security", []) for name in requirement}
        if operation["operationId"] in PUBLIC:
            continue
        if operation["operationId"] in SIGNED_IN_THE_BODY:
            if "Signature" not in operation["description"]:
                problems.append(f"{label}: signed in the body, but the description says nothing")
            continue
        if not named:
            problems.append(f"{label}: no security requirement")
        if not named <= set(schemes):
            problems.append(f"{label}: unknown schemes {named - set(schemes)}")
        if "supabaseAuth" in named and "token_expired" not in operation["responses"]["401"].get(
            "x-error-codes", []
        ):
            problems.append(f"{label}: signed-in operation without the token errors")
        if label.startswith("GET /api/v1/cron/") and named != {"cronSecret"}:
            problems.append(f"{label}: cron without the cron secret")
    assert problems == []


def test_every_answer_declares_the_request_id_and_retries_declare_retry_after(
    document: Document,
) -> None:
    problems = []
    for label, operation in operations(document):
        for status, response in operation["responses"].items():
            headers = response.get("headers", {})
            if "X-Request-Id" not in headers:
                problems.append(f"{label} {status}: no X-Request-Id")
            if status in ("429", "503") and "Retry-After" not in headers:
                problems.append(f"{label} {status}: no Retry-After")
    assert problems == []


def test_every_body_a_caller_sends_is_described_with_an_example(document: Document) -> None:
    """Webhooks and file uploads read their raw body themselves, so FastAPI cannot see it: the
    route must describe it (each provider's JSON, the CSV's columns)."""
    problems = []
    for label, operation in operations(document):
        body = operation.get("requestBody")
        if body is None:
            if "webhooks" in operation.get("tags", []):
                problems.append(f"{label}: a webhook without its provider's body")
            continue
        for media_type, media in body["content"].items():
            if not media.get("schema") or media["schema"] == {"type": "object"}:
                problems.append(f"{label} {media_type}: no schema")
            if not examples_of(media):
                problems.append(f"{label} {media_type}: no example")
    assert problems == []
    csv_import = document["paths"]["/api/v1/projects/{project_id}/orders/import"]["post"]
    assert "text/csv" in csv_import["requestBody"]["content"]


def test_every_example_matches_its_schema(document: Document) -> None:
    problems = []
    checked = 0
    for label, operation in operations(document):
        bodies = [("request", operation.get("requestBody", {}).get("content", {}))]
        bodies += [(status, r.get("content", {})) for status, r in operation["responses"].items()]
        for where, content in bodies:
            for media_type, media in content.items():
                if "json" not in media_type or "schema" not in media:
                    continue
                check = validator(document, media["schema"])
                for example in examples_of(media):
                    checked += 1
                    problems += [
                        f"{label} {where}: {error.message}" for error in check.iter_errors(example)
                    ]
    assert problems == []
    assert checked > 100
