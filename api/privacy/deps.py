"""The privacy feature's providers, as typed dependencies (installed by `api.app`)."""

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Annotated
from uuid import UUID

from fastapi import Depends

from api.core.deps import Slot
from api.privacy.supabase_admin import SupabaseAdmin

SUPABASE_ADMIN = Slot(
    "supabase_admin",
    SupabaseAdmin,
    "Supabase's admin APIs are not configured (SUPABASE_SERVICE_KEY)",
)


@dataclass(frozen=True)
class SubscriptionCanceller:
    """Cancels at the billing provider the subscriptions the database queued when workspaces
    went, answering counts (`cancelled`, `retrying`, `failed`). The billing feature's client
    does it, wired in `api.app`: privacy knows no billing."""

    cancel_for: Callable[[Sequence[UUID]], dict[str, int]]


SUBSCRIPTION_CANCELLER = Slot(
    "subscription_canceller", SubscriptionCanceller, "Razorpay is not configured"
)

Supabase = Annotated[SupabaseAdmin, Depends(SUPABASE_ADMIN.required)]
OptionalSupabase = Annotated[SupabaseAdmin | None, Depends(SUPABASE_ADMIN.optional)]
# Without Razorpay the queue waits (the cron cancels once Razorpay is configured).
OptionalCanceller = Annotated[
    SubscriptionCanceller | None, Depends(SUBSCRIPTION_CANCELLER.optional)
]
