"""The signal service's settings: the common ones plus the ``signal`` group.

Environment: ``NATS_URL``, ``NERTZ_METRICS_PORT``..., and ``NERTZ_SIGNAL__ENTRY_THRESHOLD``,
``NERTZ_SIGNAL__WEIGHTS__ILD``, ``NERTZ_SIGNAL__STOP_MODE``... (nested with ``__``).
"""

from __future__ import annotations

from typing import Self

from pydantic import model_validator

from nertz_common.settings import CommonSettings
from nertz_signal.core.config import SignalConfig


class SignalSettings(CommonSettings):
    """Settings of the signal service; ``signal`` holds every decision parameter (validated at start).

    Random entries (``signal.random_entries``) are refused: they are the evaluation's baseline.
    """

    signal: SignalConfig = SignalConfig()

    @model_validator(mode="after")
    def _no_random_entries(self) -> Self:
        if self.signal.random_entries.enabled:
            raise ValueError(
                "expected signal.random_entries.enabled false: random entries are the backtest's baseline "
                "(nertz backtest --walk-forward K), never traded by the signal service"
            )
        return self
