"""The billing feature's provider, as a typed dependency (installed by `api.app`)."""

from typing import Annotated

from fastapi import Depends

from api.billing.razorpay_billing import RazorpayBilling
from api.core.deps import Slot

BILLING = Slot("billing", RazorpayBilling, "Razorpay is not configured")

Billing = Annotated[RazorpayBilling, Depends(BILLING.required)]
