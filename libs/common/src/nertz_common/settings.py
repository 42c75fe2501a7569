"""Typed settings from the environment (``NERTZ_`` prefix, nested with ``__``).

Validated at start: one error lists every bad key. Secrets are ``SecretStr`` (repr ``***``); the
effective configuration is logged as a hash, never with secrets.
"""

from __future__ import annotations

import hashlib
import json
import sys
from typing import TypeVar

from pydantic import BaseModel, Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict, SettingsError

S = TypeVar("S", bound=BaseSettings)


class KernelSettings(BaseModel):
    """How a service's components run on JetStream (``NERTZ_KERNEL__...``); no decision depends on these."""

    model_config = {"extra": "forbid"}

    fetch_batch: int = Field(512, ge=1, le=10_000, description="messages per fetch")
    snapshot_every: int = Field(20_000, ge=1, description="snapshot after this many driver inputs ...")
    snapshot_interval_s: float = Field(60.0, gt=0, description="... or this many seconds, whichever first")
    snapshots: bool = Field(True, description="write snapshots to the nertz-snapshots bucket")


class CommonSettings(BaseSettings):
    """What every service needs. Environment: ``NATS_URL``, ``NERTZ_LOG_LEVEL``, ``NERTZ_METRICS_PORT``,
    ``NERTZ_METRICS_ADDR`` (the interface ``/metrics`` binds: loopback unless set, ``0.0.0.0`` in a container)...
    """

    model_config = SettingsConfigDict(env_prefix="NERTZ_", env_nested_delimiter="__", extra="ignore")

    nats_url: str = Field("nats://127.0.0.1:4222", validation_alias="NATS_URL")
    log_level: str = "INFO"
    metrics_port: int = Field(0, ge=0, le=65535, description="0 disables /metrics")
    metrics_addr: str = Field("127.0.0.1", min_length=1, description="interface /metrics listens on")
    nats_connect_wait_s: float = Field(
        600.0, gt=0, description="how long a service started while NATS is down waits for it, s"
    )
    symbols: list[str] = ["BTCUSDT", "ETHUSDT", "SOLUSDT"]
    kernel: KernelSettings = KernelSettings()

    def fingerprint(self) -> str:
        """Return a short hash of the configuration decisions depend on (secrets and where things run
        excluded: a restart on another metrics port or NATS URL is the same configuration, and keeps
        its snapshots)."""
        data = self.model_dump(mode="json", exclude=_secret_fields(self) | (_INFRASTRUCTURE & set(self.__dict__)))
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:12]


class DatabaseSettings(CommonSettings):
    """Settings of services that use Postgres (``DATABASE_URL``)."""

    database_url: SecretStr = Field(
        SecretStr("postgresql://postgres@127.0.0.1:5432/nertz"), validation_alias="DATABASE_URL"
    )


#: settings that say where and how a service runs, never what it decides (not in the fingerprint)
_INFRASTRUCTURE = frozenset(
    {
        *("nats_url", "log_level", "metrics_port", "metrics_addr", "nats_connect_wait_s", "kernel", "database_url"),
        *("bybit", "bybit_env"),  # the executor's Bybit connection (where orders go, not what is decided)
    }
)


def _secret_fields(s: BaseSettings) -> set[str]:
    return {k for k, v in s.__dict__.items() if isinstance(v, SecretStr)}


def load(cls: type[S]) -> S:
    """Build settings from the environment or exit with status 2 listing every bad key.

    A configuration error is the operator's to fix: retrying cannot help, so the service stops
    before connecting anywhere (STYLE.md: exceptions sorted by what the operator must do).
    """
    try:
        return cls()
    except SettingsError as e:  # e.g. a list or dict variable that is not valid JSON
        print(f"configuration error in {cls.__name__}: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    except ValidationError as e:
        lines = [f"configuration error: {e.error_count()} bad setting(s) in {cls.__name__}"]
        for err in e.errors():
            key = ".".join(str(p) for p in err["loc"])
            lines.append(f"  {key}: {err['msg']} (was {err.get('input')!r})")
        print("\n".join(lines), file=sys.stderr)
        raise SystemExit(2) from None
