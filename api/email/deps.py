"""The email feature's providers, as typed dependencies (installed by `api.app`)."""

from typing import Annotated

from fastapi import Depends

from api.core.deps import Slot
from api.email.ses import SesClient
from api.email.sns import SnsVerifier

SES = Slot("ses", SesClient, "Amazon SES is not configured")
SNS = Slot("sns", SnsVerifier, "SNS message verification is not set up")

Ses = Annotated[SesClient, Depends(SES.required)]
OptionalSes = Annotated[SesClient | None, Depends(SES.optional)]
Sns = Annotated[SnsVerifier, Depends(SNS.required)]
