"""Settings of the api service: the common and database settings plus the ``api`` group.

Environment: ``DATABASE_URL``, ``NATS_URL``, ``NERTZ_SYMBOLS``, ``NERTZ_API__HOST``, ``NERTZ_API__PORT``,
``NERTZ_API__TOKEN`` (bearer token of the mutating endpoints; unset disables them), ``NERTZ_API__READ_TOKEN``
(bearer token of the reads; unset: reads are open), ``NERTZ_API__SERVICES``, ``NERTZ_API__BATCH``.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from nertz_api.liveness import EXPECTED
from nertz_common.settings import DatabaseSettings


class ApiGroup(BaseModel):
    """The HTTP server and the projector.

    Attributes
    ----------
    host : str
        Interface uvicorn binds (``0.0.0.0`` in a container).
    port : int
        HTTP port of the API and of its ``/metrics``.
    token : SecretStr or None
        Bearer token that ``POST /start`` and ``POST /stop`` require; None disables them (403). It
        also reads.
    read_token : SecretStr or None
        Bearer token that the reads (every ``GET`` but ``/health``, ``/metrics`` and the OpenAPI
        document) require; None or empty: reads are open.
    services : list of str
        The services a complete deployment runs: ``/status`` is degraded while one has no live heartbeat.
    batch : int
        Messages the projector fetches and commits per Postgres transaction.
    pool_size : int
        Maximum Postgres connections (projector, its lock, and HTTP reads share them).
    max_body_bytes : int
        Largest request body accepted, bytes (``NERTZ_API__MAX_BODY_BYTES``); larger is a 413.
    """

    model_config = ConfigDict(extra="forbid")

    host: str = "127.0.0.1"
    port: int = Field(default=8081, ge=0, le=65535)
    token: SecretStr | None = None
    read_token: SecretStr | None = None
    services: list[str] = Field(default_factory=lambda: list(EXPECTED), max_length=100)
    batch: int = Field(default=1000, ge=1, le=10_000)
    pool_size: int = Field(default=8, ge=3, le=100)
    max_body_bytes: int = Field(default=64 * 1024, ge=256, le=16 * 1024 * 1024)


class ApiSettings(DatabaseSettings):
    """Everything the api service reads from the environment (validated at start)."""

    api: ApiGroup = ApiGroup()
