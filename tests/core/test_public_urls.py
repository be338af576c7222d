"""URLs the edge hands out come from PUBLIC_BASE_URL only: no module reads the request's base
URL or its Host header, and the setting cannot carry a query or fragment."""

import re
from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError

from api.core.errors import ApiError
from api.core.public_urls import PublicUrls, require_public_urls
from api.core.settings import Settings

API = Path(__file__).resolve().parent.parent / "api"
FROM_THE_REQUEST = re.compile(
    r"request\.base_url|request\.url\.(netloc|hostname|scheme)|url_for\(|"
    r"""headers(\.get\(|\[)\s*["'](host|x-forwarded-host|forwarded)["']""",
    re.IGNORECASE,
)


def test_no_module_builds_a_url_from_the_request() -> None:
    offenders = [
        f"{path.relative_to(API.parent)}:{number}"
        for path in sorted(API.rglob("*.py"))
        for number, line in enumerate(path.read_text().splitlines(), start=1)
        if FROM_THE_REQUEST.search(line)
    ]
    assert offenders == []


def test_urls_are_absolute_from_the_setting() -> None:
    urls = PublicUrls("https://edge.example/base/")
    assert urls.make_callback() == "https://edge.example/base/api/v1/webhooks/result"


def settings(public_base_url: str | None) -> Settings:
    return Settings(
        database_url=SecretStr("postgresql://localhost/x"),
        supabase_url="http://127.0.0.1:54321",
        public_base_url=public_base_url,
    )


@pytest.mark.parametrize(
    "value", ["edge.example", "https://edge.example/?next=x", "https://edge.example/#x", "ftp://e"]
)
def test_a_base_url_with_a_query_fragment_or_other_scheme_is_refused(value: str) -> None:
    with pytest.raises(ValidationError):
        settings(value)


def test_without_the_setting_routes_answer_503() -> None:
    with pytest.raises(ApiError) as caught:
        require_public_urls(settings(None))
    assert (caught.value.status, caught.value.code) == (503, "public_base_url_not_configured")
