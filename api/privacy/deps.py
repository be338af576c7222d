"""The privacy feature's provider, as a typed dependency (installed by `api.app`)."""

from typing import Annotated

from fastapi import Depends

from api.core.deps import Slot
from api.privacy.supabase_admin import SupabaseAdmin

SUPABASE_ADMIN = Slot(
    "supabase_admin",
    SupabaseAdmin,
    "Supabase's admin APIs are not configured (SUPABASE_SERVICE_KEY)",
)

Supabase = Annotated[SupabaseAdmin, Depends(SUPABASE_ADMIN.required)]
OptionalSupabase = Annotated[SupabaseAdmin | None, Depends(SUPABASE_ADMIN.optional)]
