"""The imports feature's provider, as a typed dependency (installed by `api.app`)."""

from typing import Annotated

from fastapi import Depends

from api.core.deps import Slot
from api.imports.storage import ImportStorage

IMPORT_STORAGE = Slot(
    "import_storage", ImportStorage, "Supabase Storage is not configured (SUPABASE_SERVICE_KEY)"
)

Storage = Annotated[ImportStorage, Depends(IMPORT_STORAGE.required)]
OptionalStorage = Annotated[ImportStorage | None, Depends(IMPORT_STORAGE.optional)]
