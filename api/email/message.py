"""The MIME message of one campaign email, with RFC 8058 one-click unsubscribe headers."""

from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import formatdate

from api.email.templates import RenderedEmail

# Lines up to RFC 5322's hard limit: a List-Unsubscribe URL has no place to fold, and with the
# default 78 the library would turn it into encoded words that no mail client reads as a link.
WIRE_POLICY = SMTP.clone(max_line_length=998)


def build_message(
    *,
    sender_name: str | None,
    sender_email: str,
    reply_to: str | None,
    recipient: str,
    content: RenderedEmail,
    unsubscribe_url: str,
    feedback_id: str | None = None,
) -> bytes:
    message = EmailMessage(policy=WIRE_POLICY)
    local, _, domain = sender_email.partition("@")
    message["From"] = Address(display_name=sender_name or "", username=local, domain=domain)
    message["To"] = recipient
    message["Subject"] = content.subject
    message["Date"] = formatdate(localtime=False)
    if reply_to:
        message["Reply-To"] = reply_to
    message["List-Unsubscribe"] = f"<{unsubscribe_url}>"
    message["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    if feedback_id:
        message["Feedback-ID"] = feedback_id
    if content.text is not None:
        message.set_content(content.text)
        message.add_alternative(content.html, subtype="html")
    else:
        message.set_content(content.html, subtype="html")
    return message.as_bytes()
