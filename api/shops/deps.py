"""The shops feature's credential box, as typed dependencies (installed by `api.app`)."""

from typing import Annotated

from fastapi import Depends

from api.core.deps import Slot
from api.core.secrets_box import SecretBox

SECRET_BOX = Slot("secret_box", SecretBox, "INTEGRATIONS_ENCRYPTION_KEY is not configured")

Box = Annotated[SecretBox, Depends(SECRET_BOX.required)]
OptionalBox = Annotated[SecretBox | None, Depends(SECRET_BOX.optional)]
