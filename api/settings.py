"""Configuration from the environment (and `.env` locally), validated once at start-up."""

from functools import lru_cache
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Every knob of the edge; `.env.example` documents each one."""

    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    database_url: SecretStr
    database_pool_mode: Literal["session", "transaction"] = "session"
    database_pool_max_size: int = Field(default=5, ge=1, le=50)
    database_timeout_seconds: float = Field(default=5.0, gt=0, le=60)

    supabase_url: str = Field(pattern=r"^https?://[^\s/]+(/[^\s]*)?$")
    supabase_jwt_secret: SecretStr | None = None
    jwt_audience: str = "authenticated"
    jwks_cache_seconds: int = Field(default=600, ge=0, le=600)

    cors_allowed_origins: list[str] = Field(default_factory=list)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()  # type: ignore[call-arg]  # values come from the environment
