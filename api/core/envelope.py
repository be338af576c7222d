"""The one JSON shape of every response: `{"data": ..., "error": null}` or the reverse."""

from typing import Any, Generic, TypeVar

from pydantic import BaseModel

T = TypeVar("T")


class Envelope(BaseModel, Generic[T]):
    data: T
    error: None = None


class Meta(BaseModel):
    total: int
    page: int
    per_page: int


class Page(BaseModel, Generic[T]):
    data: list[T]
    error: None = None
    meta: Meta


class ErrorBody(BaseModel):
    code: str
    message: str
    details: Any = None


class ErrorEnvelope(BaseModel):
    data: None = None
    error: ErrorBody


def ok(data: Any) -> dict[str, Any]:
    return {"data": data, "error": None}


def failure(code: str, message: str, details: Any = None) -> dict[str, Any]:
    return {"data": None, "error": {"code": code, "message": message, "details": details}}


def page(items: list[Any], *, total: int, page_number: int, per_page: int) -> dict[str, Any]:
    """A list response with the pagination meta of DESIGN.md §6."""
    return {
        "data": items,
        "error": None,
        "meta": {"total": total, "page": page_number, "per_page": per_page},
    }
