"""The email feature's providers, as typed dependencies (installed by `api.app`)."""

from typing import Annotated

from fastapi import Depends

from api.core.deps import Slot
from api.email.dmarc import DmarcLookup
from api.email.ses import SesClient
from api.email.sns import SnsVerifier

SES = Slot("ses", SesClient, "Amazon SES is not configured")
# Without our topics listed, a valid signature proves nothing (anyone can publish validly
# signed messages from a topic of their own), so no verifier is installed.
SNS = Slot("sns", SnsVerifier, "SNS_TOPIC_ARNS is not set")
# Signs unsubscribe links; without it no link can be made or checked.
LINK_SECRET = Slot("email_link_secret", str, "Unsubscribing is not available right now")
# DNS for DMARC records: always there (the system's resolver unless one is configured).
DMARC = Slot("dmarc", DmarcLookup, "DNS lookups are not available")

Ses = Annotated[SesClient, Depends(SES.required)]
OptionalSes = Annotated[SesClient | None, Depends(SES.optional)]
Sns = Annotated[SnsVerifier, Depends(SNS.required)]
LinkSecret = Annotated[str, Depends(LINK_SECRET.required)]
Dmarc = Annotated[DmarcLookup, Depends(DMARC.required)]
