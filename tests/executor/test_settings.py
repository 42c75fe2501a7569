"""Settings from the environment and the command line."""

from __future__ import annotations

import subprocess
import sys

import pytest
from pydantic import ValidationError

from nertz_executor.core.config import MINUTE_NS, SECOND_NS, ExecutorConfig
from nertz_executor.settings import ExecutorGroup, ExecutorSettings


def test_settings_defaults_give_the_documented_config():
    cfg = ExecutorSettings().executor.to_config()
    assert cfg == ExecutorConfig()
    assert (cfg.cooldown_ns, cfg.entry_timeout_ns, cfg.max_positions) == (15 * MINUTE_NS, 5 * MINUTE_NS, 3)
    assert (cfg.taker_fee, cfg.slippage_bps, cfg.daily_loss_limit, cfg.equity_usdt) == (0.00055, 1.0, 0.05, 10_000.0)
    assert (cfg.max_risk_per_trade, cfg.max_leverage, cfg.max_positions_per_group) == (0.015, 10.0, 1)
    assert cfg.group_of("BTCUSDT") == "btc" and cfg.group_of("SOLUSDT") == cfg.group_of("ETHUSDT") == "layer1"
    assert cfg.group_of("DOGEUSDT") == "memecoins" and cfg.group_of("XRPUSDT") == "XRPUSDT"


def test_settings_correlation_groups_and_tiers_from_env_as_json(monkeypatch):
    monkeypatch.setenv("NERTZ_EXECUTOR__CORRELATION_GROUPS", '{"majors": ["BTCUSDT", "ETHUSDT"]}')
    monkeypatch.setenv("NERTZ_EXECUTOR__MAX_POSITIONS_PER_GROUP", "2")
    monkeypatch.setenv("NERTZ_EXECUTOR__DRAWDOWN_TIERS", "[[0.1, 0.8], [0.2, 0.4]]")
    monkeypatch.setenv("NERTZ_EXECUTOR__DRAWDOWN_WINDOW_DAYS", "7")
    cfg = ExecutorSettings().executor.to_config()
    assert cfg.correlation_groups == {"majors": ("BTCUSDT", "ETHUSDT")} and cfg.max_positions_per_group == 2
    assert cfg.group_of("ETHUSDT") == "majors" and cfg.group_of("SOLUSDT") == "SOLUSDT"
    assert cfg.drawdown_tiers == ((0.1, 0.8), (0.2, 0.4)) and cfg.drawdown_window_ns == 7 * 86_400 * SECOND_NS


@pytest.mark.parametrize(
    ("key", "value", "why"),
    [
        ("NERTZ_EXECUTOR__CORRELATION_GROUPS", '{"a": ["BTCUSDT"], "b": ["BTCUSDT"]}', "one correlation group"),
        ("NERTZ_EXECUTOR__DRAWDOWN_TIERS", "[[0.1, 0.8], [0.05, 0.4]]", "drawdown_tiers"),
        ("NERTZ_EXECUTOR__VOL_FACTOR_MIN", "2", "vol_factor_min <= vol_factor_max"),
        ("NERTZ_EXECUTOR__PERFORMANCE_MIN_TRADES", "30", "performance_window >= performance_min_trades"),
    ],
)
def test_settings_inconsistent_risk_values_are_rejected_naming_the_rule(monkeypatch, key, value, why):
    monkeypatch.setenv(key, value)
    with pytest.raises(ValidationError, match=why):
        ExecutorSettings()


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
    listed = " ".join(out.stdout.split())
    missing = [k.upper() for k in ExecutorGroup.model_fields if k.upper() not in listed]
    assert not missing, f"keys missing from the --help epilog: {missing}"
