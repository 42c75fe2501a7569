"""Settings of the llm-validator (``NERTZ_VALIDATOR__...``, and DashScope's own ``DASHSCOPE_*``)."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import BaseModel, Field, SecretStr, field_validator

from nertz_common.settings import CommonSettings

#: USD per 1k tokens (input, output): Alibaba Cloud Model Studio's international list prices as of
#: 2026; check your region's price list and set ``NERTZ_VALIDATOR__QWEN__PRICES`` to match
DEFAULT_PRICES: dict[str, tuple[float, float]] = {
    "qwen-flash": (0.00005, 0.0004),
    "qwen-turbo": (0.00005, 0.0002),
    "qwen-plus": (0.0004, 0.0012),
    "qwen-max": (0.0016, 0.0064),
    "qwen3-max": (0.0012, 0.006),
}


class RulesSettings(BaseModel):
    """Thresholds of the rules policy; see :class:`nertz_validator.core.policy.RulesConfig`."""

    model_config = {"extra": "forbid"}

    max_loss_streak: int = Field(5, ge=1)
    win_rate_window: int = Field(12, ge=1)
    min_win_rate: float = Field(0.25, ge=0, le=1)
    max_drawdown_fraction: float = Field(0.15, gt=0, le=1)
    equity_usdt: float = Field(10_000.0, gt=0)
    caution_loss_streak: int = Field(3, ge=1)
    lookback_h: float = Field(24.0, gt=0)


class BreakerSettings(BaseModel):
    """Limits of the circuit breaker; see :class:`nertz_validator.core.breaker.BreakerConfig`."""

    model_config = {"extra": "forbid"}

    enabled: bool = True
    min_win_rate: float = Field(0.40, ge=0, le=1)
    win_rate_window: int = Field(10, ge=1)
    max_drawdown_fraction: float = Field(0.15, gt=0, le=1)
    equity_usdt: float = Field(10_000.0, gt=0)
    max_loss_streak: int = Field(5, ge=1)
    cooloff_h: float = Field(6.0, gt=0)


class QwenSettings(BaseModel):
    """How Qwen is asked (``NERTZ_VALIDATOR__QWEN__...``)."""

    model_config = {"extra": "forbid"}

    model: str = Field("qwen-plus", min_length=1, description="pinned model id; prefer a dated snapshot")
    prompt: str = Field("verdict.v1", description="template of the single-model verdict (prompts/<id>.txt)")
    council: tuple[str, str, str] = Field(
        ("quant.v1", "strategist.v1", "judge.v1"), description="templates of the quant, strategist and judge"
    )
    breaker_prompt: str = "breaker.v1"
    temperature: float = Field(0.0, ge=0, le=2)
    seed: int = Field(7, ge=0)
    request_timeout_s: float = Field(10.0, gt=0, description="one HTTP attempt, s")
    budget_s: float = Field(
        40.0, gt=0, description="every attempt of one call, s (a signal on 1m bars is decided within its bar)"
    )
    max_attempts: int = Field(4, ge=1, le=20)
    backoff_s: float = Field(0.25, gt=0, description="first retry wait, s; doubles with full jitter")
    key_cooloff_429_s: float = Field(30.0, ge=0, description="a key answered 429 rests this long, s")
    key_cooloff_401_s: float = Field(3600.0, ge=0, description="a key answered 401 rests this long, s")
    max_concurrency: int = Field(32, ge=1, description="model calls in flight at once (across symbols)")
    prices: dict[str, tuple[float, float]] = Field(
        default_factory=lambda: dict(DEFAULT_PRICES),
        description="USD per 1k tokens (input, output) by model; a dated id uses its family's price",
    )


class NewsSettings(BaseModel):
    """The news analyst (``NERTZ_VALIDATOR__NEWS__...``): Qwen with web search asked for each symbol's news.

    It runs in the llm-validator process when a DashScope key is set and ``enabled`` is true, and says
    at start why when it does not (docs/decisions.md D25).
    """

    model_config = {"extra": "forbid"}

    enabled: bool = Field(True, description="run the news analyst when a DashScope key is set")
    model: str = Field("qwen3-max", min_length=1, description="pinned model id with web search (enable_search)")
    prompt: str = Field("news.v1", description="template of the news question (prompts/<id>.txt)")
    refresh_h: float = Field(6.0, gt=0, le=168, description="ask each symbol once per slot of this many hours, h")
    window_days: int = Field(7, ge=1, le=30, description="days of news asked for, up to the bar's time")
    forced_search: bool = Field(True, description="search_options.forced_search: search on every question")
    json_mode: bool = Field(False, description="also ask for a JSON object (response_format) with the search")
    request_timeout_s: float = Field(60.0, gt=0, description="one HTTP attempt, s (a search takes a while)")
    budget_s: float = Field(150.0, gt=0, description="every attempt of one question, s")
    max_lag_s: float = Field(
        3600.0, gt=0, description="a question about a bar older than this (wall clock) is not searched: stale, s"
    )


class ValidatorGroup(BaseModel):
    """The ``NERTZ_VALIDATOR__`` group.

    ``policy``: ``auto`` asks Qwen when a DashScope key is set and runs the rules otherwise; ``rules``,
    ``qwen`` and ``council`` force one.
    """

    model_config = {"extra": "forbid"}

    #: what a ``ConfigChanged`` cannot change while running (which policy decides, and how the model is
    #: asked: a recorded answer must stay the answer to the same question); the rules' and the
    #: breaker's limits can (``validator.rules.min_win_rate``...)
    RESTART_KEYS: ClassVar[frozenset[str]] = frozenset({"policy", "qwen", "news"})

    policy: Literal["auto", "rules", "qwen", "council"] = "auto"
    rules: RulesSettings = RulesSettings()
    breaker: BreakerSettings = BreakerSettings()
    qwen: QwenSettings = QwenSettings()
    news: NewsSettings = NewsSettings()

    def resolved(self, has_key: bool) -> Literal["rules", "qwen", "council"]:
        """The policy that decides: ``auto`` is ``qwen`` with a key, ``rules`` without."""
        if self.policy == "auto":
            return "qwen" if has_key else "rules"
        return self.policy


class ValidatorSettings(CommonSettings):
    """Environment: ``NATS_URL``; ``DASHSCOPE_API_KEY`` or a pool ``DASHSCOPE_API_KEYS=k1,k2`` (rotated on
    429/401); ``DASHSCOPE_HTTP_BASE_URL`` (another region, or a fake); ``NERTZ_VALIDATOR__...``."""

    dashscope_api_key: SecretStr | None = Field(None, validation_alias="DASHSCOPE_API_KEY")
    dashscope_api_keys: SecretStr | None = Field(None, validation_alias="DASHSCOPE_API_KEYS")
    dashscope_base_url: str | None = Field(None, validation_alias="DASHSCOPE_HTTP_BASE_URL")
    validator: ValidatorGroup = ValidatorGroup()

    @field_validator("dashscope_api_key", "dashscope_api_keys", mode="before")
    @classmethod
    def _blank_is_none(cls, v: object) -> object:
        return None if v in ("", None) else v

    def keys(self) -> list[str]:
        """The API keys of the pool, in order (``DASHSCOPE_API_KEYS`` first, then ``DASHSCOPE_API_KEY``)."""
        out: list[str] = []
        if self.dashscope_api_keys is not None:
            out += [k.strip() for k in self.dashscope_api_keys.get_secret_value().split(",") if k.strip()]
        if self.dashscope_api_key is not None:
            k = self.dashscope_api_key.get_secret_value().strip()
            if k and k not in out:
                out.append(k)
        return out

    @property
    def policy(self) -> Literal["rules", "qwen", "council"]:
        """The policy that decides (see :meth:`ValidatorGroup.resolved`)."""
        return self.validator.resolved(bool(self.keys()))
