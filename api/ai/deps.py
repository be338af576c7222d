"""The AI feature's provider, as a typed dependency (installed by `api.app`)."""

from typing import Annotated

from fastapi import Depends

from api.ai.safe_ai import SafeAi
from api.core.deps import Slot

AI = Slot("ai", SafeAi, "GROQ_API_KEY is not configured")

Ai = Annotated[SafeAi, Depends(AI.required)]
