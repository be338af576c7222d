"""Inbound mail, read with the standard library's parser (`email.policy.default`): who wrote,
to which of our addresses, in reply to what (Message-ID, In-Reply-To, References), the new
text apart from the quoted history and signature, sanitised HTML (nh3: no scripts, no event
handlers, no `javascript:` links), attachments' names and sizes, and whether it is an
auto-reply or a bounce (RFC 3834 `Auto-Submitted`, `X-Autoreply`, `Precedence`, out-of-office
subjects; delivery-status reports, mailer-daemon senders), which never count as replies.

And outbound mail: a reply in the thread (`In-Reply-To` and `References` of the message it
answers, `Re:` subject) from the channel's address."""

import re
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from email.utils import format_datetime, getaddresses, make_msgid, parseaddr, parsedate_to_datetime
from typing import Any

import nh3

MAX_TEXT = 200_000
MAX_HTML = 2_000_000
MESSAGE_ID = re.compile(r"<([^<>\s]{1,900})>")
TOKEN = re.compile(r"^reply\+([cr])([0-9a-f]{32})$")
QUOTE_MARKERS = [
    re.compile(r"^On .{1,300} wrote:\s*$"),
    re.compile(r"^Le .{1,300} a écrit\s*:\s*$"),
    re.compile(r"^Am .{1,300} schrieb .{0,200}:\s*$"),
    re.compile(r"^Dne .{1,300} napsal.{0,200}:\s*$"),
    re.compile(r"^-{2,}\s*Original Message\s*-{2,}\s*$", re.IGNORECASE),
    re.compile(r"^-{2,}\s*Forwarded message\s*-{2,}\s*$", re.IGNORECASE),
    re.compile(r"^From: .{1,300}$"),
    re.compile(r"^_{10,}\s*$"),
]
SIGNATURE = re.compile(r"^(-- ?|—|Sent from my .{1,60})$")
AUTO_SUBJECT = re.compile(
    r"^\s*(auto(matic)?[ -]?reply|auto:|out of (the )?office|abwesenheitsnotiz|"
    r"automatická odpověď|réponse automatique|respuesta automática|i am out of the office)",
    re.IGNORECASE,
)
BOUNCE_SENDER = re.compile(r"^(mailer-daemon|postmaster)@", re.IGNORECASE)


@dataclass
class InboundMail:
    message_id: str | None
    sender: str | None
    sender_name: str | None
    recipients: list[str]
    subject: str | None
    sent_at: str | None
    references: list[str]  # In-Reply-To first, then References, newest last, without <>
    text: str | None
    quoted_text: str | None
    html: str | None
    attachments: list[dict[str, Any]] = field(default_factory=list)
    auto_reply: bool = False
    bounce: bool = False
    defects: int = 0

    def as_json(self) -> dict[str, Any]:
        return {
            "message_id": self.message_id,
            "from": self.sender,
            "from_name": self.sender_name,
            "subject": self.subject,
            "sent_at": self.sent_at,
            "references": self.references,
            "text": self.text,
            "quoted_text": self.quoted_text,
            "html": self.html,
            "attachments": self.attachments,
            "auto_reply": self.auto_reply,
            "bounce": self.bounce,
        }


def message_ids(value: str | None) -> list[str]:
    return MESSAGE_ID.findall(value or "")


def sanitise_html(html: str) -> str:
    """nh3's allow-list (no script, style, iframe, event handlers or `javascript:` URLs), and
    links that open with no referrer."""
    return nh3.clean(html, link_rel="noopener noreferrer nofollow")[:MAX_HTML]


def text_of_html(html: str) -> str:
    """The readable text of an HTML body, for mail without a plain part."""
    spaced = re.sub(r"(?i)<\s*(br|/p|/div|/li|/tr|/h[1-6])\b[^>]*>", "\n", html)
    text = nh3.clean(spaced, tags=set())
    for entity, char in (
        ("&nbsp;", " "),
        ("&lt;", "<"),
        ("&gt;", ">"),
        ("&quot;", '"'),
        ("&#39;", "'"),
        ("&amp;", "&"),
    ):
        text = text.replace(entity, char)
    return re.sub(r"\n{3,}", "\n\n", text).strip()


def split_quoted(text: str) -> tuple[str, str | None]:
    """The new text and what follows it: the quoted history (a `>` block, an "On … wrote:"
    line, an Outlook header block) or the signature (`-- `)."""
    lines = text.replace("\r\n", "\n").split("\n")
    for index, line in enumerate(lines):
        stripped = line.strip()
        if (
            any(marker.match(stripped) for marker in QUOTE_MARKERS)
            or (
                stripped.startswith(">")
                and all(not rest.strip() or rest.lstrip().startswith(">") for rest in lines[index:])
            )
            or SIGNATURE.match(line.rstrip())
        ):
            new = "\n".join(lines[:index]).strip()
            rest = "\n".join(lines[index:]).strip()
            if new:
                return new, rest or None
    return text.strip(), None


def is_auto_reply(message: EmailMessage, subject: str) -> bool:
    auto_submitted = str(message.get("Auto-Submitted", "no")).strip().lower()
    precedence = str(message.get("Precedence", "")).strip().lower()
    return (
        auto_submitted not in ("", "no")
        or message.get("X-Autoreply") is not None
        or message.get("X-Autorespond") is not None
        or message.get("X-Auto-Response-Suppress", "").lower() in ("all", "oof")
        or precedence in ("auto_reply", "bulk", "junk", "list")
        or bool(AUTO_SUBJECT.match(subject))
    )


def is_bounce(message: EmailMessage, sender: str | None) -> bool:
    report = message.get_content_type() == "multipart/report" and message.get_param(
        "report-type", header="content-type"
    ) in ("delivery-status", "disposition-notification")
    return bool(report or (sender and BOUNCE_SENDER.match(sender)))


def parse(raw: bytes) -> InboundMail:
    """Never raises on malformed mail: the parser records defects and reads what it can."""
    message = BytesParser(policy=policy.default).parsebytes(raw)
    assert isinstance(message, EmailMessage)
    name, address = parseaddr(str(message.get("From", "")))
    sender = address.strip().lower() if "@" in address else None
    subject = str(message.get("Subject", "") or "")[:998]
    recipients = [
        address.strip().lower()
        for _, address in getaddresses(
            [str(v) for key in ("To", "Cc", "Delivered-To") for v in message.get_all(key, [])]
        )
        if "@" in address
    ]
    sent_at = None
    try:
        date = parsedate_to_datetime(str(message.get("Date", "")))
        sent_at = date.isoformat() if date.tzinfo else None
    except (TypeError, ValueError, IndexError):
        sent_at = None
    own = message_ids(str(message.get("Message-ID", "")))
    references = message_ids(str(message.get("In-Reply-To", ""))) + message_ids(
        str(message.get("References", ""))
    )
    text, html = body_parts(message)
    if text is None and html is not None:
        text = text_of_html(html)
    new, quoted = split_quoted(text) if text else (None, None)
    return InboundMail(
        message_id=own[0] if own else None,
        sender=sender,
        sender_name=name[:200] or None,
        recipients=recipients,
        subject=subject or None,
        sent_at=sent_at,
        references=list(dict.fromkeys(references))[:50],
        text=new[:MAX_TEXT] if new else None,
        quoted_text=quoted[:MAX_TEXT] if quoted else None,
        html=sanitise_html(html) if html else None,
        attachments=attachments(message),
        auto_reply=is_auto_reply(message, subject),
        bounce=is_bounce(message, sender),
        defects=len(message.defects),
    )


def decoded(part: EmailMessage) -> str | None:
    try:
        content = part.get_content()
    except (LookupError, UnicodeError, ValueError, AssertionError):
        payload = part.get_payload(decode=True)
        content = payload.decode("utf-8", "replace") if isinstance(payload, bytes) else None
    if not isinstance(content, str):
        return None
    return content.replace("\x00", "")


def body_parts(message: EmailMessage) -> tuple[str | None, str | None]:
    text: str | None = None
    html: str | None = None
    for part in message.walk():
        if part.is_multipart() or part.get_content_disposition() == "attachment":
            continue
        kind = part.get_content_type()
        if kind == "text/plain" and text is None:
            text = decoded(part)
        elif kind == "text/html" and html is None:
            html = decoded(part)
    return text, html


def attachment_parts(message: EmailMessage) -> list[EmailMessage]:
    """The parts that are attachments, in order: the n-th is the message's n-th attachment."""
    found = []
    for part in message.walk():
        if part.is_multipart():
            continue
        if part.get_content_disposition() != "attachment" and not part.get_filename():
            continue
        found.append(part)
    return found[:50]


def attachments(message: EmailMessage) -> list[dict[str, Any]]:
    found = []
    for part in attachment_parts(message):
        filename = part.get_filename()
        payload = part.get_payload(decode=True)
        found.append(
            {
                "kind": "file",
                "filename": (filename or "attachment")[:255].replace("\x00", ""),
                "mime_type": part.get_content_type()[:200],
                "size": len(payload) if isinstance(payload, bytes) else 0,
            }
        )
    return found


def attachment_payload(raw: bytes, index: int) -> tuple[bytes, str] | None:
    """The decoded bytes and declared type of the mail's `index`-th attachment (as numbered by
    `attachments`), or None when it has no such part."""
    message = BytesParser(policy=policy.default).parsebytes(raw)
    assert isinstance(message, EmailMessage)
    parts = attachment_parts(message)
    if not 0 <= index < len(parts):
        return None
    payload = parts[index].get_payload(decode=True)
    if not isinstance(payload, bytes):
        return None
    return payload, parts[index].get_content_type()[:200]


def reply_token(address: str) -> tuple[str, uuid.UUID] | None:
    """`reply+c<conversation id>@…` or `reply+r<campaign recipient id>@…`: ("c" | "r", id)."""
    local = address.split("@", 1)[0]
    match = TOKEN.match(local)
    return (match.group(1), uuid.UUID(match.group(2))) if match else None


def reply_message(
    *,
    sender: str,
    sender_name: str | None,
    recipient: str,
    subject: str | None,
    text: str,
    in_reply_to: str | None,
    references: list[str],
    conversation_id: uuid.UUID,
) -> tuple[bytes, str]:
    """The raw MIME of a reply in the thread, and its Message-ID (without <>). Replies to it
    come back to `reply+c<conversation>@<our domain>` when a client drops the thread headers."""
    domain = sender.rsplit("@", 1)[-1]
    message = EmailMessage()
    message["From"] = f"{sender_name} <{sender}>" if sender_name else sender
    message["To"] = recipient
    message["Reply-To"] = f"reply+c{conversation_id.hex}@{domain}"
    base = subject or "Your message"
    message["Subject"] = base if base.lower().startswith("re:") else f"Re: {base}"
    message_id = make_msgid(domain=domain)
    message["Message-ID"] = message_id
    message["Date"] = format_datetime(datetime.now(UTC))
    if in_reply_to:
        message["In-Reply-To"] = f"<{in_reply_to}>"
        message["References"] = " ".join(f"<{ref}>" for ref in [*references, in_reply_to][-20:])
    message.set_content(text)
    return bytes(message), message_id.strip("<>")
