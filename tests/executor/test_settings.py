"""Settings from the environment and the command line."""

from __future__ import annotations

import subprocess
import sys

import pytest
from pydantic import ValidationError

from nertz_executor.core.config import MINUTE_NS, SECOND_NS, ExecutorConfig
from nertz_executor.settings import ExecutorSettings


def test_settings_defaults_give_the_documented_config():
    cfg = ExecutorSettings().executor.to_config()
    assert cfg == ExecutorConfig()
    assert (cfg.cooldown_ns, cfg.entry_timeout_ns, cfg.max_positions) == (15 * MINUTE_NS, 5 * MINUTE_NS, 3)
    assert (cfg.taker_fee, cfg.slippage_bps, cfg.daily_loss_limit, cfg.equity_usdt) == (0.00055, 1.0, 0.05, 10_000.0)


def test_settings_nested_env_overrides_the_group(monkeypatch):
    monkeypatch.setenv("NERTZ_EXECUTOR__COOLDOWN_S", "60")
    monkeypatch.setenv("NERTZ_EXECUTOR__MAX_POSITIONS", "5")
    monkeypatch.setenv("NERTZ_EXECUTOR__EQUITY_USDT", "2500")
    monkeypatch.setenv("NERTZ_EXECUTOR__TAKER_FEE", "0.0002")
    cfg = ExecutorSettings().executor.to_config()
    assert (cfg.cooldown_ns, cfg.max_positions, cfg.equity_usdt, cfg.taker_fee) == (60 * SECOND_NS, 5, 2500.0, 0.0002)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("NERTZ_EXECUTOR__MAX_POSITIONS", "0"),
        ("NERTZ_EXECUTOR__NO_SUCH_KEY", "1"),
        ("NERTZ_EXECUTOR__MIN_HOLD_S", "-1"),
        ("NERTZ_EXECUTOR__MAX_HOLD_S", "0"),
    ],
)
def test_settings_bad_value_or_unknown_key_is_rejected(monkeypatch, key, value):
    monkeypatch.setenv(key, value)
    with pytest.raises(ValidationError):
        ExecutorSettings()


def test_config_out_of_range_raises_value_error():
    with pytest.raises(ValueError, match="max_positions >= 1"):
        ExecutorConfig(max_positions=0)


def test_main_help_exits_zero():
    out = subprocess.run([sys.executable, "-m", "nertz_executor", "--help"], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0 and "Hard Lock" in out.stdout and "NERTZ_EXECUTOR__" in out.stdout
