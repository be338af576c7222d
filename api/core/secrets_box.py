"""Encryption of shop credentials at rest: the key lives in the edge's environment only, so a
database dump alone never reveals a shop's API token or webhook secret."""

from cryptography.fernet import Fernet, InvalidToken


class KeyMismatchError(Exception):
    """A stored secret this key did not seal: INTEGRATIONS_ENCRYPTION_KEY changed since the
    credentials were stored. The feature that stores them says how to answer."""

    code = "integration_key_mismatch"


class SecretBox:
    def __init__(self, key: str) -> None:
        self.fernet = Fernet(key.encode())

    def seal(self, secret: str) -> str:
        return self.fernet.encrypt(secret.encode()).decode()

    def open(self, sealed: str) -> str:
        try:
            return self.fernet.decrypt(sealed.encode()).decode()
        except InvalidToken as error:
            raise KeyMismatchError("Stored credentials cannot be decrypted") from error
