"""Typed settings from the environment (``NERTZ_`` prefix, nested with ``__``).

Validated at start: one error lists every bad key. Secrets are ``SecretStr`` (repr ``***``); the
effective configuration is logged as a hash, never with secrets.

The names of the original NertzMetalEngine ``.env`` are accepted beside the nested ``NERTZ_*`` ones
(:data:`LEGACY_NAMES`; each has one meaning, translated by :func:`legacy_environ`); a ``NERTZ_*``
variable set to another value than its legacy name's is an error, never a silent choice.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sys
from collections.abc import Iterator, Mapping
from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict, SettingsError

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
    symbols: Annotated[list[str], NoDecode] = Field(
        ["BTCUSDT", "ETHUSDT", "SOLUSDT"], description="a JSON list or a comma-separated list (SYMBOL too)"
    )
    kernel: KernelSettings = KernelSettings()

    @field_validator("symbols", mode="before")
    @classmethod
    def _symbol_list(cls, value: Any) -> Any:
        """``BTCUSDT,ETHUSDT`` or ``["BTCUSDT","ETHUSDT"]``: upper-cased, blanks dropped, each once."""
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                try:
                    value = json.loads(text)
                except json.JSONDecodeError as e:
                    raise ValueError(f"expected a JSON list or a comma-separated list of symbols, was {value!r}") from e
            else:
                value = text.split(",")
        if isinstance(value, list | tuple):
            out = [str(v).strip().upper() for v in value if str(v).strip()]
            bad = [v for v in out if not (2 <= len(v) <= 30 and v.isalnum())]
            if bad or not out:
                raise ValueError(f"expected symbols of 2-30 letters and digits (BTCUSDT), was {value!r}")
            return list(dict.fromkeys(out))
        return value

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


#: Bybit intervals of the original ``TIMEFRAME`` values
TIMEFRAMES: dict[str, str] = {
    "1m": "1", "3m": "3", "5m": "5", "15m": "15", "30m": "30", "1h": "60", "2h": "120", "4h": "240",
    "6h": "360", "12h": "720", "1d": "D",
}  # fmt: skip

#: the original ``.env`` names and what each one means here (README "Configuration")
LEGACY_NAMES: dict[str, str] = {
    "SYMBOL": "the symbols to trade, comma-separated (NERTZ_SYMBOLS)",
    "TIMEFRAME": f"the bar interval intents come from ({', '.join(TIMEFRAMES)}): the signal trades its closed bars "
    "(NERTZ_SIGNAL__TIMEFRAME) and the live feed subscribes and backfills it (NERTZ_INGEST__LIVE__INTERVALS, with 1m)",
    "CAPITAL_USDT": "the starting equity, USDT, of every service (the signal's sizing, the executor's account, the "
    "validator's rules and breaker)",
    "RISK_FACTOR": "the fraction of equity lost at the stop-loss, costs included (NERTZ_SIGNAL__RISK_PER_TRADE; the "
    "executor refuses more than NERTZ_EXECUTOR__MAX_RISK_PER_TRADE, 0.015)",
    "TP_PERCENTAGE": "fixed take-profit distance, a fraction of the entry (0.02 = 2 %): the fixed stop mode",
    "SL_PERCENTAGE": "fixed stop-loss distance, a fraction of the entry (0.01 = 1 %): the fixed stop mode",
    "EGM_BUY_THRESHOLD": "the combined score a long needs on bars-only scores (NERTZ_SIGNAL__ENTRY_THRESHOLD)",
    "EGM_SELL_THRESHOLD": "the combined score a short needs: -EGM_BUY_THRESHOLD (the threshold is symmetric)",
    "BYBIT_ENV": "demo | testnet | mainnet, and live (= mainnet)",
}


def legacy_environ(environ: Mapping[str, str]) -> tuple[dict[str, str], list[str]]:
    """Translate the original ``.env`` names in ``environ`` into ``NERTZ_*`` variables.

    Returns
    -------
    additions : dict of str to str
        Variables to set (never one that ``environ`` sets to the same value already).
    errors : list of str
        One line per name that cannot be translated (a bad value, or a conflict with a ``NERTZ_*``
        variable set to something else).
    """
    add: dict[str, str] = {}
    errors: list[str] = []

    def put(target: str, value: str, source: str) -> None:
        have = environ.get(target)
        if have is not None and have != value and not _same_number(have, value):
            errors.append(f"{source} asks {target}={value}, but {target} is set to {have!r}: remove one of them")
        elif have is None:
            add[target] = value

    def fraction(name: str) -> float | None:
        text = environ.get(name, "").strip()
        if not text:
            return None
        try:
            x = float(text)
        except ValueError:
            errors.append(f"{name}: expected a number, was {text!r}")
            return None
        return x

    symbols = environ.get("SYMBOL", "").strip()
    if symbols:
        put("NERTZ_SYMBOLS", json.dumps([s.strip().upper() for s in symbols.split(",") if s.strip()]), "SYMBOL")
    tf = environ.get("TIMEFRAME", "").strip()
    if tf:
        interval = TIMEFRAMES.get(tf.lower()) or (tf if tf in TIMEFRAMES.values() else None)
        if interval is None:
            errors.append(f"TIMEFRAME: expected one of {', '.join(TIMEFRAMES)}, was {tf!r}")
        else:
            put("NERTZ_SIGNAL__TIMEFRAME", interval, "TIMEFRAME")
            put("NERTZ_INGEST__LIVE__INTERVALS", json.dumps(list(dict.fromkeys(["1", interval]))), "TIMEFRAME")
    capital = fraction("CAPITAL_USDT")
    if capital is not None:
        for target in (
            "NERTZ_SIGNAL__EQUITY_USDT", "NERTZ_EXECUTOR__EQUITY_USDT", "NERTZ_VALIDATOR__RULES__EQUITY_USDT",
            "NERTZ_VALIDATOR__BREAKER__EQUITY_USDT",
        ):  # fmt: skip
            put(target, repr(capital), "CAPITAL_USDT")
    risk = fraction("RISK_FACTOR")
    if risk is not None:
        put("NERTZ_SIGNAL__RISK_PER_TRADE", repr(risk), "RISK_FACTOR")
    fixed = False
    for name, target in (
        ("TP_PERCENTAGE", "NERTZ_SIGNAL__TP_PERCENTAGE"),
        ("SL_PERCENTAGE", "NERTZ_SIGNAL__SL_PERCENTAGE"),
    ):
        x = fraction(name)
        if x is None:
            continue
        if not 0 < x < 1:
            errors.append(f"{name}: expected a fraction of the entry price in (0, 1) (0.02 = 2 %), was {x:g}")
            continue
        put(target, repr(round(x * 100.0, 12)), name)  # the signal's fields are in percent
        fixed = True
    if fixed:
        put("NERTZ_SIGNAL__STOP_MODE", "fixed", "TP_PERCENTAGE/SL_PERCENTAGE")
    buy, sell = fraction("EGM_BUY_THRESHOLD"), fraction("EGM_SELL_THRESHOLD")
    if buy is not None and sell is not None and abs(buy + sell) > 1e-12:
        errors.append(
            f"EGM_SELL_THRESHOLD: expected -EGM_BUY_THRESHOLD (Nertz's entry threshold is symmetric), was {sell:g} "
            f"with EGM_BUY_THRESHOLD {buy:g}"
        )
    elif buy is not None or sell is not None:
        put("NERTZ_SIGNAL__ENTRY_THRESHOLD", repr(buy if buy is not None else -(sell or 0.0)), "EGM_BUY_THRESHOLD")
    if environ.get("BYBIT_ENV", "").strip().lower() == "live":
        add["BYBIT_ENV"] = "mainnet"
    return add, errors


#: parts of a setting's name that make its value a secret (never printed in an error)
_SECRET_WORDS = ("key", "secret", "token", "password", "database_url", "dsn")


def shown_input(key: str, value: Any) -> str:
    """`` (was <value>)`` for an error message, or nothing: a group's or a model-level rule's input is
    the whole environment it was given (secrets included) and a secret's value is never shown."""
    if isinstance(value, dict | list | tuple | SecretStr) or any(w in key.lower() for w in _SECRET_WORDS):
        return ""
    return f" (was {value!r})"


def _same_number(a: str, b: str) -> bool:
    try:
        return float(a) == float(b)
    except ValueError:
        return False


@contextlib.contextmanager
def legacy_applied() -> Iterator[list[str]]:
    """Set the translated legacy variables in ``os.environ`` for the duration (the settings read it);
    yields the lines of what could not be translated (empty when all was well)."""
    add, errors = legacy_environ(os.environ)
    before = {k: os.environ.get(k) for k in add}
    os.environ.update(add)
    try:
        yield errors
    finally:
        for k, v in before.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def load(cls: type[S]) -> S:
    """Build settings from the environment or exit with status 2 listing every bad key.

    The original ``.env`` names are translated first (:func:`legacy_environ`). A configuration error
    is the operator's to fix: retrying cannot help, so the service stops before connecting anywhere
    (STYLE.md: exceptions sorted by what the operator must do).
    """
    with legacy_applied() as legacy_errors:
        if legacy_errors:
            lines = [f"configuration error: {len(legacy_errors)} bad setting(s) of the original .env names"]
            lines += [f"  {e}" for e in legacy_errors]
            print("\n".join(lines), file=sys.stderr)
            raise SystemExit(2)
        return _build(cls)


def _build(cls: type[S]) -> S:
    try:
        return cls()
    except SettingsError as e:  # e.g. a list or dict variable that is not valid JSON
        print(f"configuration error in {cls.__name__}: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    except ValidationError as e:
        lines = [f"configuration error: {e.error_count()} bad setting(s) in {cls.__name__}"]
        for err in e.errors():
            key = ".".join(str(p) for p in err["loc"])
            lines.append(f"  {key}: {err['msg']}{shown_input(key, err.get('input'))}")
        print("\n".join(lines), file=sys.stderr)
        raise SystemExit(2) from None
