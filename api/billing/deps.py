"""The billing feature's provider and webhook secret, as typed dependencies (installed by
`api.app`)."""

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends

from api.billing.errors import billing_failure
from api.billing.razorpay_billing import RazorpayBilling, RazorpayError
from api.core.deps import Slot

BILLING = Slot("billing", RazorpayBilling, "Razorpay is not configured")
# The webhook's own secret, not the API key secret: Razorpay signs webhooks with it.
WEBHOOK_SECRET = Slot("razorpay_webhook_secret", str, "RAZORPAY_WEBHOOK_SECRET is not set")


def billing(
    client: Annotated[RazorpayBilling, Depends(BILLING.required)],
) -> Iterator[RazorpayBilling]:
    """The Razorpay client; whatever it raises in the route leaves as the envelope's error, so
    no route can forget to map it."""
    try:
        yield client
    except RazorpayError as error:
        raise billing_failure(error) from error


Billing = Annotated[RazorpayBilling, Depends(billing)]
WebhookSecret = Annotated[str, Depends(WEBHOOK_SECRET.required)]
# For the cron: without Razorpay, queued cancellations wait.
OptionalBilling = Annotated[RazorpayBilling | None, Depends(BILLING.optional)]
