"""The API contract as a client generator reads it: every operation's success body in the
envelope with an example, every error status it can answer with the codes it can carry, the
security scheme it needs, and the headers every answer has.

Routes declare what is theirs with `documented(...)` (their example and their own error codes);
a dependency declares the errors it answers with `@answers(...)`; `install_contract` adds what
every operation shares (the request id header, the errors of validation, authentication and the
database) and what its dependencies declared when the document is built, so no route repeats
them and none can forget them."""

from collections.abc import Callable, Iterator, Mapping
from typing import Any, Literal, TypeVar

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.encoders import jsonable_encoder
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute, iter_route_contexts

from api.core.envelope import ErrorEnvelope, failure

Responses = dict[int | str, dict[str, Any]]
ErrorTable = Mapping[int, Mapping[str, str]]
Dependency = TypeVar("Dependency", bound=Callable[..., Any])

ERROR_REF = "#/components/schemas/ErrorEnvelope"
JSON = "application/json"

REQUEST_ID_HEADER = {
    "description": "The request's id (the caller's `X-Request-Id` if it was sane): quote it when "
    "reporting a problem; the edge logs it with every line about the request.",
    "schema": {"type": "string"},
}
RETRY_AFTER_HEADER = {
    "description": "Seconds to wait before trying again, when the edge knows.",
    "schema": {"type": "integer", "minimum": 0},
}

# Errors any operation can answer, whatever it does.
EVERY_OPERATION: Mapping[int, Mapping[str, str]] = {
    500: {"internal_error": "Something went wrong on our side"},
    503: {
        "database_unavailable": "The database cannot be reached; try again shortly",
        "database_busy": "The database was busy; try again",
        "database_timeout": "The database took too long; try again",
    },
}
# Errors of an operation that takes parameters or a body.
WITH_INPUT: Mapping[int, Mapping[str, str]] = {
    422: {"invalid_input": "The request is not valid"},
}
# Errors of an operation whose JSON body FastAPI decodes (a body that is not UTF-8 JSON).
WITH_JSON_BODY: Mapping[int, Mapping[str, str]] = {
    400: {"bad_request": "There was an error parsing the body"},
}
# Errors of an operation that needs a signed-in user's access token.
SIGNED_IN: Mapping[int, Mapping[str, str]] = {
    401: {
        "authentication_required": "Send a Supabase access token as 'Authorization: Bearer'",
        "token_invalid": "The token is not a valid access token",
        "token_expired": "The token has expired",
        "token_audience_invalid": "The token is not meant for this API",
        "token_issuer_invalid": "The token was not issued by this project",
        "token_key_unknown": "The token was signed by a key this project does not use",
        "token_subject_missing": "The token names no user",
    },
    503: {"auth_unavailable": "The signing keys cannot be fetched; try again shortly"},
}
# Errors of the core SQL helpers that features call: the workspace role check
# (private.workspace_role_as, lock_workspace_as and the functions built on them) refuses
# outsiders with 404 and lower roles with 403; the plan's rate limits (public.take_action_quota,
# and those enqueue_automation and start_ai_call take) answer 429 with Retry-After.
WORKSPACE_NOT_FOUND: ErrorTable = {404: {"workspace_not_found": "Workspace not found"}}
RATE_LIMITED: ErrorTable = {429: {"rate_limited": "Too many requests: at most 5 per 60 seconds"}}


def insufficient_role(role: Literal["member", "admin"]) -> ErrorTable:
    """The role check's 403 for a route that needs `role` or higher."""
    return {403: {"insufficient_role": f"This needs the {role} role or higher"}}


VALIDATION_EXAMPLE = failure(
    "invalid_input",
    "The request is not valid",
    [
        {
            "field": "body.project_id",
            "message": "Input should be a valid UUID",
            "type": "uuid_parsing",
        }
    ],
)


def answers(errors: ErrorTable) -> Callable[[Dependency], Dependency]:
    """Declares the errors a dependency can answer (beside the code that raises them): every
    operation that depends on it, directly or through another dependency, documents them."""

    def declare(dependency: Dependency) -> Dependency:
        DECLARED_BY_DEPENDENCIES[dependency] = errors
        return dependency

    return declare


DECLARED_BY_DEPENDENCIES: dict[Callable[..., Any], ErrorTable] = {}


def error_examples(codes: Mapping[str, str]) -> dict[str, Any]:
    return {
        code: {"summary": message, "value": failure(code, message)}
        for code, message in codes.items()
    }


def documented(
    example: Any,
    *,
    errors: Mapping[int, Mapping[str, str]] | None = None,
    status: int = 200,
    meta: Mapping[str, int] | None = None,
) -> Responses:
    """An operation's own answers: its success body's example (in the envelope; `meta` for a
    list) and, per error status, the codes it can answer with an example message each."""
    success: dict[str, Any] = {"data": example, "error": None}
    if meta is not None:
        success["meta"] = dict(meta)
    responses: Responses = {status: {"content": {JSON: {"example": success}}}}
    for error_status, codes in (errors or {}).items():
        responses[error_status] = {
            "model": ErrorEnvelope,
            "content": {JSON: {"examples": error_examples(codes)}},
        }
    return responses


def merged_errors(*tables: Mapping[int, Mapping[str, str]]) -> dict[int, dict[str, str]]:
    """Error tables of several sources merged per status, for `documented(errors=...)`."""
    merged: dict[int, dict[str, str]] = {}
    for table in tables:
        for status, codes in table.items():
            merged.setdefault(status, {}).update(codes)
    return merged


def json_body_example(example: Any) -> dict[str, Any]:
    """`openapi_extra` giving the JSON body FastAPI describes (from the route's model) its
    example."""
    return {"requestBody": {"content": {JSON: {"example": example}}}}


def json_body_examples(examples: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """`openapi_extra` giving a JSON body that takes several shapes one named example
    (`{"summary", "value"}`) per shape."""
    return {"requestBody": {"content": {JSON: {"examples": dict(examples)}}}}


def raw_request_body(media_type: str, schema: dict[str, Any], example: Any) -> dict[str, Any]:
    """`openapi_extra` for a route that reads its body itself (a signed webhook, a CSV file):
    the body the caller sends, which FastAPI cannot see in the signature."""
    return {
        "requestBody": {
            "required": True,
            "content": {media_type: {"schema": schema, "example": example}},
        }
    }


def inline_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """A JSON schema (a pydantic model's or type adapter's) with its `$defs` written in place:
    a raw body's schema sits inside the OpenAPI document as it is, where `#/$defs/...` would
    point at nothing."""
    definitions = schema.get("$defs", {})

    def inline(node: Any) -> Any:
        if isinstance(node, dict):
            reference = node.get("$ref")
            if isinstance(reference, str) and reference.startswith("#/$defs/"):
                siblings = {key: value for key, value in node.items() if key != "$ref"}
                return inline({**definitions[reference.removeprefix("#/$defs/")], **siblings})
            return {key: inline(value) for key, value in node.items() if key != "$defs"}
        if isinstance(node, list):
            return [inline(item) for item in node]
        return node

    inlined: dict[str, Any] = inline(schema)
    return inlined


def install_contract(app: FastAPI) -> None:
    """Builds the document once, with what every operation shares added to each."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = get_openapi(
                title=app.title,
                version=app.version,
                openapi_version=app.openapi_version,
                summary=app.summary,
                description=app.description,
                routes=app.routes,
                tags=app.openapi_tags,
                servers=app.servers,
                separate_input_output_schemas=app.separate_input_output_schemas,
            )
            restore_examples(document, app)
            complete(document, decoded_bodies(app), dependency_errors(app))
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def restore_examples(document: dict[str, Any], app: FastAPI) -> None:
    """FastAPI drops every null from the document it builds, examples included, so an example
    of a nullable field would lose it; put the routes' examples back as they were written."""
    for context in iter_route_contexts(app.routes):
        route = context.original_route
        if not isinstance(route, APIRoute) or not route.include_in_schema:
            continue
        for method in context.methods or ():
            operation = document["paths"][context.path_format][method.lower()]
            for status, response in context.responses.items():
                copy_examples(
                    response.get("content", {}),
                    operation["responses"][str(status)].get("content", {}),
                )
            body = (context.openapi_extra or {}).get("requestBody", {})
            copy_examples(
                body.get("content", {}), operation.get("requestBody", {}).get("content", {})
            )


def copy_examples(written: dict[str, Any], built: dict[str, Any]) -> None:
    for media_type, media in written.items():
        for key in ("example", "examples"):
            if key in media and media_type in built:
                built[media_type][key] = jsonable_encoder(media[key])


def decoded_bodies(app: FastAPI) -> set[tuple[str, str]]:
    """(path, method) of the operations whose body FastAPI decodes itself (not a raw body)."""
    return {
        (str(context.path_format), method.lower())
        for context in iter_route_contexts(app.routes)
        if isinstance(context.original_route, APIRoute)
        and context.original_route.body_field is not None
        for method in context.methods or ()
    }


def dependency_errors(app: FastAPI) -> dict[tuple[str, str], list[ErrorTable]]:
    """(path, method) -> the errors the operation's dependencies declared with `answers`."""
    declared: dict[tuple[str, str], list[ErrorTable]] = {}
    for context in iter_route_contexts(app.routes):
        route = context.original_route
        if not isinstance(route, APIRoute):
            continue
        tables = [
            DECLARED_BY_DEPENDENCIES[call]
            for call in dependency_calls(route.dependant)
            if call in DECLARED_BY_DEPENDENCIES
        ]
        for method in context.methods or ():
            declared[(str(context.path_format), method.lower())] = tables
    return declared


def dependency_calls(dependant: Dependant) -> Iterator[Callable[..., Any]]:
    for dependency in dependant.dependencies:
        if dependency.call is not None:
            yield dependency.call
        yield from dependency_calls(dependency)


def operation_id(route: APIRoute) -> str:
    """Stable ids: the route function's name, which is unique across the edge (a test checks)."""
    return route.name


def complete(
    document: dict[str, Any],
    decoded: set[tuple[str, str]],
    declared: Mapping[tuple[str, str], list[ErrorTable]],
) -> None:
    components = document.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    error_schema = ErrorEnvelope.model_json_schema(ref_template="#/components/schemas/{model}")
    schemas.update(error_schema.pop("$defs", {}))
    schemas["ErrorEnvelope"] = error_schema
    schemas.pop("HTTPValidationError", None)
    schemas.pop("ValidationError", None)
    for path, path_item in document.get("paths", {}).items():
        for method, operation in path_item.items():
            complete_operation(
                operation,
                decodes_body=(path, method) in decoded,
                dependencies=declared.get((path, method), []),
            )


def complete_operation(
    operation: dict[str, Any], *, decodes_body: bool, dependencies: list[ErrorTable]
) -> None:
    responses: dict[str, Any] = operation.setdefault("responses", {})
    shared: list[ErrorTable] = [EVERY_OPERATION, *dependencies]
    if operation.get("parameters") or operation.get("requestBody"):
        shared.append(WITH_INPUT)
    if decodes_body:
        shared.append(WITH_JSON_BODY)
    if any("supabaseAuth" in requirement for requirement in operation.get("security", [])):
        shared.append(SIGNED_IN)
    for errors in shared:
        for error_status, codes in errors.items():
            merge_error(responses.setdefault(str(error_status), {}), codes)
    for status, response in responses.items():
        if int(status) >= 400:
            describe_error(status, response)
        headers = response.setdefault("headers", {})
        headers["X-Request-Id"] = REQUEST_ID_HEADER
        if status in ("429", "503"):
            headers["Retry-After"] = RETRY_AFTER_HEADER


def merge_error(response: dict[str, Any], codes: Mapping[str, str]) -> None:
    media = response.setdefault("content", {}).setdefault(JSON, {})
    examples = media.setdefault("examples", {})
    for code, example in error_examples(codes).items():
        examples.setdefault(code, example)


def describe_error(status: str, response: dict[str, Any]) -> None:
    """Every error answer is the error envelope; its description lists the codes it carries."""
    media = response.setdefault("content", {}).setdefault(JSON, {})
    media["schema"] = {"$ref": ERROR_REF}
    examples = media.setdefault("examples", {})
    if status == "422":
        examples["invalid_input"] = {"summary": "Field errors", "value": VALIDATION_EXAMPLE}
    codes = sorted(examples)
    response["description"] = "`error.code` is one of: " + ", ".join(f"`{code}`" for code in codes)
    response["x-error-codes"] = codes
