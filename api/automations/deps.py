"""The automations feature's provider, as a typed dependency (installed by `api.app`)."""

from typing import Annotated

from fastapi import Depends

from api.automations.make import MakeClient
from api.core.deps import Slot

MAKE = Slot("make", MakeClient, "Make.com is not configured")

Make = Annotated[MakeClient, Depends(MAKE.required)]
OptionalMake = Annotated[MakeClient | None, Depends(MAKE.optional)]
