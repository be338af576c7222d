"""The MIME message of one campaign email, with RFC 8058 one-click unsubscribe headers.

Written out directly rather than through `email.message.EmailMessage`, whose header and part
machinery costs about a millisecond of CPU per message, which at SES's rates is most of a send
thread's time: headers as RFC 5322 lines (RFC 2047 encoded words where a subject or name is not
ASCII), each body part UTF-8 in quoted-printable, lines ending in CRLF. `email` parses the
result back to the same headers and text (tests/email).
"""

import binascii
import uuid
from email.header import Header
from email.utils import formataddr, formatdate

from api.email.templates import RenderedEmail

# Folded header lines stay within RFC 5322's 78 characters where they can; a List-Unsubscribe
# URL cannot fold, and is one line up to the hard limit of 998.
FOLD_AT = 78


def header_text(value: str, name: str) -> str:
    """A header value as it goes on the wire: plain ASCII as is, else encoded words."""
    if value.isascii() and len(name) + 2 + len(value) <= FOLD_AT:
        return value
    return Header(value, "utf-8", header_name=name).encode(linesep="\r\n", maxlinelen=FOLD_AT)


def quoted_printable(text: str) -> bytes:
    """UTF-8 text as quoted-printable lines ending in CRLF."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").encode("utf-8")
    return binascii.b2a_qp(lines, quotetabs=False, istext=True).replace(b"\n", b"\r\n")


def part(subtype: str, text: str) -> bytes:
    return (
        f'Content-Type: text/{subtype}; charset="utf-8"\r\n'
        "Content-Transfer-Encoding: quoted-printable\r\n\r\n"
    ).encode() + quoted_printable(text)


def build_message(
    *,
    sender_name: str | None,
    sender_email: str,
    reply_to: str | None,
    recipient: str,
    content: RenderedEmail,
    unsubscribe_url: str,
    feedback_id: str | None = None,
    in_reply_to: str | None = None,
) -> bytes:
    """`in_reply_to`, a Message-ID with its angle brackets, makes the message a reply in that
    message's thread (In-Reply-To and References, RFC 5322 3.6.4; the parent being a thread's
    first message, its References are its own Message-ID)."""
    headers = [
        ("From", formataddr((sender_name or "", sender_email), charset="utf-8")),
        ("To", recipient),
        ("Subject", header_text(content.subject, "Subject")),
        ("Date", formatdate(localtime=False)),
    ]
    if in_reply_to:
        headers += [("In-Reply-To", in_reply_to), ("References", in_reply_to)]
    if reply_to:
        headers.append(("Reply-To", reply_to))
    headers += [
        ("List-Unsubscribe", f"<{unsubscribe_url}>"),
        ("List-Unsubscribe-Post", "List-Unsubscribe=One-Click"),
    ]
    if feedback_id:
        headers.append(("Feedback-ID", feedback_id))
    headers.append(("MIME-Version", "1.0"))
    head = "".join(f"{name}: {value}\r\n" for name, value in headers).encode()
    if content.text is None:
        return head + part("html", content.html)
    boundary = f"=_{uuid.uuid4().hex}"
    return (
        head
        + f'Content-Type: multipart/alternative; boundary="{boundary}"\r\n\r\n'.encode()
        + f"--{boundary}\r\n".encode()
        + part("plain", content.text)
        + f"\r\n--{boundary}\r\n".encode()
        + part("html", content.html)
        + f"\r\n--{boundary}--\r\n".encode()
    )
