"""The signal service's settings: the common ones plus the ``signal`` group.

Environment: ``NATS_URL``, ``NERTZ_METRICS_PORT``..., and ``NERTZ_SIGNAL__ENTRY_THRESHOLD``,
``NERTZ_SIGNAL__WEIGHTS__ILD``, ``NERTZ_SIGNAL__STOP_MODE``... (nested with ``__``).
"""

from __future__ import annotations

from nertz_common.settings import CommonSettings
from nertz_signal.core.config import SignalConfig


class SignalSettings(CommonSettings):
    """Settings of the signal service; ``signal`` holds every decision parameter (validated at start)."""

    signal: SignalConfig = SignalConfig()
