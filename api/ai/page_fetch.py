"""Reading a product page for the AI to ground its copy, without becoming an SSRF gadget.

Only http(s); every host (first URL and every redirect) is resolved and each address must be a
public one — no loopback, private, link-local (cloud metadata), multicast or reserved ranges;
at most three redirects, 1 MiB and 5 seconds for the whole fetch (redirects and reads together,
checked after every read, so a server dripping bytes cannot hold a worker; one read waits at
most what was left when its request began); only HTML or text; the visible text is returned.
A URL that cannot be parsed or encoded (a hostname label over 63 characters, a broken IPv6
literal, a port over 65535), first or in a redirect, is refused like any other.
(The address is checked at resolution; a resolver answering differently a moment later — DNS
rebinding — is not covered.)
"""

import ipaddress
import socket
import time
from collections.abc import Callable
from html.parser import HTMLParser
from urllib.parse import urljoin, urlsplit

import httpx

MAX_BYTES = 1024 * 1024
MAX_REDIRECTS = 3
TIMEOUT_SECONDS = 5.0
MAX_TEXT_CHARS = 4000

AddressPolicy = Callable[[ipaddress.IPv4Address | ipaddress.IPv6Address], bool]


def is_public(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    return address.is_global and not address.is_multicast


class TextExtractor(HTMLParser):
    """Visible text: everything outside script, style and similar."""

    HIDDEN = frozenset({"script", "style", "noscript", "template", "svg", "head"})

    def __init__(self) -> None:
        super().__init__()
        self.depth = 0
        self.parts: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self.HIDDEN:
            self.depth += 1

    def handle_endtag(self, tag: str) -> None:
        if tag in self.HIDDEN and self.depth:
            self.depth -= 1

    def handle_data(self, data: str) -> None:
        if not self.depth and data.strip():
            self.parts.append(data.strip())


class PageFetchError(Exception):
    """The page is not read, and why (the whole message is safe to show the user)."""

    code = "url_not_allowed"


def refused(reason: str) -> PageFetchError:
    return PageFetchError(f"The product URL cannot be read: {reason}")


def check_url(url: str, allow: AddressPolicy) -> None:
    try:
        parts = urlsplit(url)
        hostname, port = parts.hostname, parts.port
    except ValueError as error:
        raise refused("it is not a valid URL") from error
    if parts.scheme not in ("http", "https") or not hostname:
        raise refused("only http and https URLs")
    try:
        infos = socket.getaddrinfo(hostname, port or 443, proto=socket.IPPROTO_TCP)
    except (OSError, ValueError) as error:
        # gaierror, and the IDNA codec's UnicodeError for a name it cannot encode.
        raise refused("the host does not resolve") from error
    for info in infos:
        address = ipaddress.ip_address(info[4][0])
        if not allow(address):
            raise refused("it points to a private or local address")


def redirect_target(url: str, location: str) -> str:
    try:
        return urljoin(url, location)
    except ValueError as error:
        raise refused("it redirects to an invalid URL") from error


def fetch_page_text(
    url: str, allow: AddressPolicy = is_public, deadline_seconds: float = TIMEOUT_SECONDS
) -> str:
    deadline = time.monotonic() + deadline_seconds

    def seconds_left() -> float:
        """What remains of the whole fetch; each connect and read may wait at most that."""
        left = deadline - time.monotonic()
        if left <= 0:
            raise refused(f"it took longer than {deadline_seconds:g} s")
        return left

    with httpx.Client(follow_redirects=False) as client:
        for _ in range(MAX_REDIRECTS + 1):
            check_url(url, allow)
            try:
                with client.stream(
                    "GET", url, headers={"Accept": "text/html, text/plain"}, timeout=seconds_left()
                ) as response:
                    if response.is_redirect:
                        url = redirect_target(url, response.headers.get("location", ""))
                        continue
                    if not response.is_success:
                        raise refused(f"it answered HTTP {response.status_code}")
                    kind = response.headers.get("content-type", "").split(";")[0].strip()
                    if kind not in ("text/html", "text/plain", "application/xhtml+xml"):
                        raise refused(f"it is {kind or 'of unknown type'}, not a web page")
                    body = bytearray()
                    for chunk in response.iter_bytes():
                        body.extend(chunk)
                        if len(body) > MAX_BYTES:
                            raise refused("it is larger than 1 MiB")
                        seconds_left()
                    text = body.decode(response.encoding or "utf-8", errors="replace")
            except httpx.TimeoutException as error:
                # Every connect and read waits at most what was left, so a timeout is the deadline.
                raise refused(f"it took longer than {deadline_seconds:g} s") from error
            except (httpx.HTTPError, httpx.InvalidURL) as error:
                raise refused(type(error).__name__) from error
            if kind == "text/plain":
                return text[:MAX_TEXT_CHARS]
            extractor = TextExtractor()
            extractor.feed(text)
            return " ".join(extractor.parts)[:MAX_TEXT_CHARS]
    raise refused("too many redirects")
