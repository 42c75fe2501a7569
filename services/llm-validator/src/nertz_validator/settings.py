"""Settings of the llm-validator (``NERTZ_VALIDATOR__...``)."""

from __future__ import annotations

from pydantic import BaseModel, Field, SecretStr

from nertz_common.settings import CommonSettings


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


class ValidatorGroup(BaseModel):
    """The ``NERTZ_VALIDATOR__`` group."""

    model_config = {"extra": "forbid"}

    rules: RulesSettings = RulesSettings()


class ValidatorSettings(CommonSettings):
    """Environment: ``NATS_URL``, ``DASHSCOPE_API_KEY`` (Qwen, later issue), ``NERTZ_VALIDATOR__RULES__...``."""

    dashscope_api_key: SecretStr | None = Field(None, validation_alias="DASHSCOPE_API_KEY")
    validator: ValidatorGroup = ValidatorGroup()
