"""The one JSON shape of every response: `{"data": ..., "error": null}` or the reverse."""

from typing import Any, Generic, TypeVar

from pydantic import BaseModel

T = TypeVar("T")


class Envelope(BaseModel, Generic[T]):
    data: T
    error: None = None


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
