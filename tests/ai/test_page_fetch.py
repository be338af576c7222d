"""Reading a product page safely: public addresses only (checked on every redirect), size and
type limits, visible text extracted."""

import ipaddress
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from api.ai.page_fetch import PageFetchError, fetch_page_text
from tests.fakes.http_server import FakeHandler, serve

PAGES: dict[str, tuple[int, dict[str, str], bytes]] = {
    "/boots": (
        200,
        {"Content-Type": "text/html; charset=utf-8"},
        b"<html><head><title>x</title><script>var secret=1</script></head><body>"
        b"<h1>Trail boots</h1><p>Waterproof, 420 g.</p><style>p{}</style></body></html>",
    ),
    "/to-private": (302, {"Location": "http://10.0.0.1/admin"}, b""),
    "/to-metadata": (301, {"Location": "http://169.254.169.254/latest/meta-data/"}, b""),
    "/to-boots": (302, {"Location": "/boots"}, b""),
    "/huge": (200, {"Content-Type": "text/html"}, b"<p>" + b"a" * (1024 * 1024 + 10)),
    "/binary": (200, {"Content-Type": "application/pdf"}, b"%PDF-1.7"),
    "/to-broken-ipv6": (302, {"Location": "http://[::1"}, b""),
    "/to-port-out-of-range": (302, {"Location": "http://127.0.0.1:99999/"}, b""),
    "/to-long-label": (302, {"Location": "http://" + "a" * 64 + ".example/"}, b""),
}
# A page that arrives a byte at a time, each well within the read timeout: DRIP_BYTES bytes,
# one every DRIP_INTERVAL seconds (3 s in all), unless the reader hangs up first.
DRIP_BYTES = 300
DRIP_INTERVAL = 0.01


@pytest.fixture(scope="module")
def site() -> Iterator[str]:
    class Handler(FakeHandler):
        def do_GET(self) -> None:
            status, headers, body = PAGES.get(self.path, (404, {}, b""))
            self.reply(status, body, content_type=None, headers=headers)

    with serve(Handler) as base_url:
        yield base_url


def loopback_counts_as_public(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """The test site lives on loopback; everything else keeps the real rule."""
    return address.is_loopback or (address.is_global and not address.is_multicast)


def refused(url: str, **kwargs: Any) -> str:
    with pytest.raises(PageFetchError) as caught:
        fetch_page_text(url, **kwargs)
    assert caught.value.code == "url_not_allowed"
    return str(caught.value)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/",
        "http://localhost/",
        "http://10.1.2.3/",
        "http://192.168.0.1/",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]/",
        "file:///etc/passwd",
        "ftp://example.com/",
    ],
)
def test_local_private_and_metadata_addresses_are_refused(url: str) -> None:
    refused(url)


def test_the_visible_text_of_a_page_is_read(site: str) -> None:
    text = fetch_page_text(f"{site}/to-boots", allow=loopback_counts_as_public)
    assert text == "Trail boots Waterproof, 420 g."


def test_redirects_to_private_or_metadata_addresses_are_refused(site: str) -> None:
    assert "private or local" in refused(f"{site}/to-private", allow=loopback_counts_as_public)
    assert "private or local" in refused(f"{site}/to-metadata", allow=loopback_counts_as_public)


def test_oversized_and_non_html_pages_are_refused(site: str) -> None:
    assert "larger than 1 MiB" in refused(f"{site}/huge", allow=loopback_counts_as_public)
    assert "application/pdf" in refused(f"{site}/binary", allow=loopback_counts_as_public)


@pytest.mark.parametrize(
    "url",
    ["http://" + "a" * 64 + ".example/", "http://[::1", "http://127.0.0.1:99999/"],
)
def test_urls_that_cannot_be_parsed_or_encoded_are_refused(url: str) -> None:
    refused(url)


@pytest.mark.parametrize("path", ["/to-broken-ipv6", "/to-port-out-of-range", "/to-long-label"])
def test_redirects_that_cannot_be_parsed_or_encoded_are_refused(site: str, path: str) -> None:
    refused(f"{site}{path}", allow=loopback_counts_as_public)


@pytest.fixture
def dripping_site() -> Iterator[str]:
    hung_up = threading.Event()

    class Handler(FakeHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(DRIP_BYTES))
            self.end_headers()
            try:
                for _ in range(DRIP_BYTES):
                    self.wfile.write(b"a")
                    if hung_up.wait(DRIP_INTERVAL):
                        return
            except OSError:
                return

    with serve(Handler) as base_url:
        yield base_url
        hung_up.set()


def test_a_page_that_drips_in_is_cut_off_at_the_total_deadline(dripping_site: str) -> None:
    message = refused(
        f"{dripping_site}/slow", allow=loopback_counts_as_public, deadline_seconds=0.05
    )
    assert "took longer than" in message
