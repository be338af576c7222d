"""Encryption of shop credentials at rest: the key lives in the edge's environment only, so a
database dump alone never reveals a shop's API token or webhook secret."""

from cryptography.fernet import Fernet, InvalidToken

from api.core.errors import ApiError


class SecretBox:
    def __init__(self, key: str) -> None:
        self.fernet = Fernet(key.encode())

    def seal(self, secret: str) -> str:
        return self.fernet.encrypt(secret.encode()).decode()

    def open(self, sealed: str) -> str:
        try:
            return self.fernet.decrypt(sealed.encode()).decode()
        except InvalidToken as error:
            raise ApiError(
                503, "integration_key_mismatch", "Stored credentials cannot be decrypted"
            ) from error
