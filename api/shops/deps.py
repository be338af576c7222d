"""The shops feature's credential box, as typed dependencies (installed by `api.app`)."""

from collections.abc import Iterator
from typing import Annotated, TypeVar

from fastapi import Depends

from api.core.deps import Slot
from api.core.secrets_box import KeyMismatchError, SecretBox
from api.shops.errors import NO_KEY, key_mismatch

SECRET_BOX = Slot("secret_box", SecretBox, NO_KEY)
T = TypeVar("T")


def answering_key_mismatch(value: T) -> Iterator[T]:
    """Hands `value` to the route; a stored credential the box cannot open, anywhere in the
    route, leaves as the envelope's 503 integration_key_mismatch."""
    try:
        yield value
    except KeyMismatchError as error:
        raise key_mismatch(error) from error


def box(client: Annotated[SecretBox, Depends(SECRET_BOX.required)]) -> Iterator[SecretBox]:
    yield from answering_key_mismatch(client)


Box = Annotated[SecretBox, Depends(box)]

# Work outside a request (the cron): no key configured leaves shop credentials closed.
OptionalBox = Annotated[SecretBox | None, Depends(SECRET_BOX.optional)]
