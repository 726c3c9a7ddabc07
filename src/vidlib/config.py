"""Settings: one pydantic-settings class, environment prefix ``VIDLIB_``."""

from __future__ import annotations

import json
import secrets
from functools import cached_property
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

GIB = 1024**3


class ConfigError(Exception):
    """The configuration cannot work; the message is one sentence for the operator."""


class Settings(BaseSettings):
    """Everything the service reads from its environment."""

    model_config = SettingsConfigDict(
        env_prefix="VIDLIB_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    data_dir: Path = Path("./var")
    database_url: str | None = None
    # Connections each process keeps open (PostgreSQL). Sized for the concurrency one
    # process serves: past pool + overflow, requests wait; an overflow connection is
    # opened and closed per use, which costs a full connect (TLS, auth) each time.
    db_pool_size: int = Field(default=20, ge=1, le=1000)
    db_max_overflow: int = Field(default=10, ge=0, le=1000)
    # Keep callers' account rows in memory, kept exact by PostgreSQL LISTEN/NOTIFY (one
    # extra connection per process). Turn off behind a transaction-pooling proxy such
    # as PgBouncer, where LISTEN does not work. SQLite never uses it.
    account_cache: bool = True
    storage_backend: Literal["local", "s3"] = "local"
    s3_bucket: str | None = None
    s3_endpoint_url: str | None = None
    s3_region: str = "us-east-1"
    s3_addressing_style: Literal["auto", "path", "virtual"] = "auto"
    s3_public_base_url: str | None = None
    # Base URL clients use to reach this server; local-store URLs are built on it.
    public_url: str = "http://127.0.0.1:8000"
    url_ttl_seconds: int = Field(default=3600, ge=60, le=7 * 24 * 3600)
    redis_url: str | None = None
    jwt_secret: SecretStr | None = None
    access_token_ttl_seconds: int = Field(default=900, ge=30, le=24 * 3600)
    refresh_token_ttl_seconds: int = Field(default=30 * 24 * 3600, ge=300)
    max_upload_bytes: int = Field(default=5 * GIB, ge=1)
    # Comma-separated (or a JSON list); NoDecode lets ``_split_origins`` see the raw text.
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # Rate limits ("N/second|minute|hour"), shared through Redis when it is configured.
    rate_limit_enabled: bool = True
    rate_limit_per_user: str = "1200/minute"
    rate_limit_per_ip: str = "3000/minute"
    # Login, register, token and refresh, per client address: guessing passwords is slow.
    rate_limit_auth: str = "20/minute"
    # Uploads streamed through the API at once per user (video and transcript alike),
    # counted through Redis when it is configured, else per process.
    upload_concurrency_per_user: int = Field(default=3, ge=1)
    # Direct upload sessions per user that are neither completed, aborted nor expired.
    direct_upload_sessions_per_user: int = Field(default=20, ge=1)
    # Background work. "auto": the Redis queue when VIDLIB_REDIS_URL is set (then run
    # `vidlib worker`), else in-process. "memory" keeps it in-process even with Redis.
    queue_backend: Literal["auto", "memory", "redis"] = "auto"
    worker_concurrency: int = Field(default=8, ge=1, le=256)
    # Media analysis: a pool of memory-capped processes (or threads); None = cores, max 4.
    media_executor: Literal["process", "thread"] = "process"
    media_workers: int | None = Field(default=None, ge=1, le=64)
    media_memory_limit_mb: int = Field(default=2048, ge=256)
    # Soft-deleted videos are purged for good after this many days.
    purge_retention_days: int = Field(default=30, ge=0)
    log_level: str = "INFO"
    log_json: bool = True

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        if isinstance(value, str):
            if value.strip().startswith("["):
                return json.loads(value)
            return [v.strip() for v in value.split(",") if v.strip()]
        return value

    @field_validator("rate_limit_per_user", "rate_limit_per_ip", "rate_limit_auth")
    @classmethod
    def _rate(cls, value: str) -> str:
        from limits import parse

        try:
            parse(value)
        except ValueError as exc:
            raise ValueError(f"{value!r} is not a rate such as 100/minute") from exc
        return value

    @field_validator("public_url", "s3_public_base_url")
    @classmethod
    def _strip_slash(cls, value: str | None) -> str | None:
        return value.rstrip("/") if value else value

    @model_validator(mode="after")
    def _check(self) -> Settings:
        if self.storage_backend == "s3" and not self.s3_bucket:
            raise ValueError("VIDLIB_S3_BUCKET must be set when VIDLIB_STORAGE_BACKEND is s3")
        if not self.is_embedded and self.jwt_secret is None:
            raise ValueError(
                "VIDLIB_JWT_SECRET must be set when the database is not the embedded SQLite "
                "default or storage is S3"
            )
        if self.jwt_secret is not None and len(self.jwt_secret.get_secret_value()) < 32:
            raise ValueError("VIDLIB_JWT_SECRET must be at least 32 characters long")
        return self

    @property
    def is_embedded(self) -> bool:
        """True on the no-configuration default: SQLite and the local store."""
        return self.database_url is None and self.storage_backend == "local"

    @cached_property
    def resolved_database_url(self) -> str:
        """The database URL, defaulting to a SQLite file in ``data_dir``."""
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'vidlib.db').resolve()}"

    @property
    def storage_dir(self) -> Path:
        """Where the local object store keeps its files."""
        return self.data_dir / "storage"

    @cached_property
    def secret_key(self) -> str:
        """The signing secret; generated once and kept in ``data_dir`` on the embedded default."""
        if self.jwt_secret is not None:
            return self.jwt_secret.get_secret_value()
        path = self.data_dir / "jwt_secret"
        if path.exists():
            return path.read_text().strip()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        value = secrets.token_urlsafe(48)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(value)
        tmp.chmod(0o600)
        tmp.replace(path)
        return value


def load_settings(**overrides: object) -> Settings:
    """Read settings, turning validation errors into one clear sentence."""
    from pydantic import ValidationError

    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(p) for p in first["loc"])
        msg = str(first["msg"]).removeprefix("Value error, ")
        where = f"VIDLIB_{loc.upper()}: " if loc else ""
        raise ConfigError(f"Invalid configuration: {where}{msg}.") from exc
