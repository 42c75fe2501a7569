"""Configuration: defaults, nested environment names, and validation listing every bad key."""

from __future__ import annotations

import subprocess
import sys

import pytest
from pydantic import ValidationError

from nertz_signal.core.config import SignalConfig
from nertz_signal.settings import SignalSettings


def test_config_defaults_are_the_design_values():
    c = SignalConfig()
    assert c.weights.as_dict() == {"egm": 0.2, "ild": 0.3, "rol": 0.3, "pio": 0.1, "ogm": 0.1}
    assert (c.ema_fast, c.ema_mid, c.ema_slow, c.atr_period) == (9, 21, 55, 14)
    assert (c.sl_min, c.sl_max, c.risk_reward, c.min_risk_reward) == (0.015, 0.05, 3.5, 3.0)
    assert (c.entry_threshold, c.entry_threshold_books, c.entry_thresholds) == (9.5, 6.4, {})
    assert (c.stop_timeframe, c.stop_atr_period, c.stop_atr_min_bars) == ("240", 14, 6)
    assert (c.taker_fee, c.slippage_bps, c.tp_percentage, c.sl_percentage) == (0.00055, 1.0, 4.0, 1.0)


def test_config_threshold_per_factor_set():
    c = SignalConfig(entry_thresholds={"egm+ild+rol+pio": 7.0})
    assert c.threshold_for(["egm", "pio"]) == 9.5
    assert c.threshold_for(["egm", "ild", "rol", "pio", "ogm"]) == 6.4
    assert c.threshold_for(["ild", "rol", "ogm"]) == 6.4
    assert c.threshold_for(["egm", "ild", "rol", "pio"]) == 7.0


def test_config_bad_factor_sets_and_timeframes_are_rejected_together():
    with pytest.raises(ValidationError) as e:
        SignalConfig(entry_thresholds={"pio+egm": 7.0, "egm+xyz": 7.0, "egm": 11}, stop_timeframe="M")
    text = str(e.value)
    assert "'pio+egm'" in text and "'egm+xyz'" in text and "threshold of 'egm' in (0, 10]" in text
    assert "expected a Bybit interval" in text and "'M'" in text
    assert SignalConfig(stop_timeframe=240).stop_timeframe == "240"  # type: ignore[arg-type]  # --set is JSON


def test_settings_nested_env_sets_signal_group(monkeypatch):
    monkeypatch.setenv("NERTZ_SIGNAL__ENTRY_THRESHOLD", "7.5")
    monkeypatch.setenv("NERTZ_SIGNAL__WEIGHTS__ILD", "0.5")
    monkeypatch.setenv("NERTZ_SIGNAL__STOP_MODE", "fixed")
    monkeypatch.setenv("NERTZ_SIGNAL__ENTRY_THRESHOLD_BOOKS", "6.8")
    monkeypatch.setenv("NERTZ_SIGNAL__ENTRY_THRESHOLDS", '{"egm+ild+rol+pio": 7.2}')
    monkeypatch.setenv("NERTZ_SIGNAL__STOP_TIMEFRAME", "D")
    s = SignalSettings()
    assert s.signal.entry_threshold == 7.5 and s.signal.weights.ild == 0.5 and s.signal.stop_mode == "fixed"
    assert s.signal.entry_threshold_books == 6.8 and s.signal.entry_thresholds == {"egm+ild+rol+pio": 7.2}
    assert s.signal.stop_timeframe == "D"


def test_config_unknown_key_is_rejected():
    with pytest.raises(ValidationError, match="extra"):
        SignalConfig(entry_treshold=5)  # type: ignore[call-arg]


def test_config_every_bad_field_listed_in_one_error():
    with pytest.raises(ValidationError) as e:
        SignalConfig(entry_threshold=11, risk_reward=2, max_leverage=0)
    assert {err["loc"][0] for err in e.value.errors()} == {"entry_threshold", "risk_reward", "max_leverage"}


def test_config_cross_field_errors_listed_together():
    with pytest.raises(ValidationError, match=r"ema_fast < ema_mid.*net R:R >= 3 in fixed mode"):
        SignalConfig(ema_fast=30, stop_mode="fixed", tp_percentage=1.0)


def test_config_all_zero_weights_rejected():
    with pytest.raises(ValidationError, match="at least one factor weight"):
        SignalConfig(weights={"egm": 0, "ild": 0, "rol": 0, "pio": 0, "ogm": 0})


def test_main_help_exits_zero():
    r = subprocess.run([sys.executable, "-m", "nertz_signal", "--help"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0 and "NERTZ_SIGNAL__ENTRY_THRESHOLD" in r.stdout
    for key in ("ENTRY_THRESHOLD_BOOKS", "ENTRY_THRESHOLDS", "STOP_TIMEFRAME", "MIN_RISK_REWARD", "TAKER_FEE"):
        assert f"NERTZ_SIGNAL__{key}" in r.stdout


def test_main_invalid_env_exits_two(monkeypatch):
    monkeypatch.setenv("NERTZ_SIGNAL__RISK_REWARD", "2")
    r = subprocess.run([sys.executable, "-m", "nertz_signal"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 2 and "risk_reward" in r.stderr
