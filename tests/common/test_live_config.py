"""live_config: ConfigChanged's dotted keys applied to a settings group, every bad key reported."""

from __future__ import annotations

import pytest

from nertz_common import live_config as lc
from nertz_executor.settings import ExecutorGroup
from nertz_signal.core.config import SignalConfig
from nertz_validator.settings import ValidatorGroup


def test_updated_applies_scalars_nested_keys_and_mapping_entries():
    base = SignalConfig()
    cfg = lc.updated(base, {"entry_threshold": 8.0, "weights.ild": 0.5, "entry_thresholds.egm+pio": 7.5})
    assert (cfg.entry_threshold, cfg.weights.ild, cfg.entry_thresholds) == (8.0, 0.5, {"egm+pio": 7.5})
    assert base.entry_threshold == 9.5  # the base is a value: unchanged


def test_updated_lists_every_bad_key_with_its_reason_and_applies_nothing():
    with pytest.raises(lc.ConfigRejected) as err:
        lc.updated(
            SignalConfig(),
            {"entry_treshold": 8.0, "ema_fast": 5, "weights": 1, "weights.ild.x": 1, "entry_thresholds.a.b": 1,
             "max_spread": [1]},
            label="signal.",
        )  # fmt: skip
    e = err.value.errors
    assert set(e) == {"signal.entry_treshold", "signal.ema_fast", "signal.weights", "signal.weights.ild.x",
                      "signal.entry_thresholds.a.b", "signal.max_spread"}  # fmt: skip
    assert "unknown setting" in e["signal.entry_treshold"] and "entry_threshold" in e["signal.entry_treshold"]
    assert "restart" in e["signal.ema_fast"]
    assert "group" in e["signal.weights"]
    assert "mapping" in e["signal.entry_thresholds.a.b"]
    assert "JSON scalar" in e["signal.max_spread"]


def test_updated_reports_values_the_group_refuses_by_key_and_cross_field_rules_by_section():
    with pytest.raises(lc.ConfigRejected) as err:
        lc.updated(SignalConfig(), {"entry_threshold": 11, "max_spread": -1}, label="signal.")
    assert set(err.value.errors) == {"signal.entry_threshold", "signal.max_spread"}
    with pytest.raises(lc.ConfigRejected) as err:
        lc.updated(SignalConfig(), {"sl_min": 0.04, "sl_max": 0.03}, label="signal.")
    assert list(err.value.errors) == ["signal"] and "sl_min <= sl_max" in err.value.errors["signal"]


def test_each_service_refuses_what_shapes_its_state_and_takes_its_limits():
    with pytest.raises(lc.ConfigRejected, match="restart"):
        ExecutorGroup().reconfigured({"venue": "bybit"})
    assert ExecutorGroup().reconfigured({"max_positions": 1, "cooldown_s": 60}).cooldown_ns == 60 * 10**9
    with pytest.raises(lc.ConfigRejected, match="restart"):
        lc.updated(ValidatorGroup(), {"qwen.model": "qwen-max"})
    assert lc.updated(ValidatorGroup(), {"rules.min_win_rate": 0.5}).rules.min_win_rate == 0.5


def test_section_and_flatten():
    changes = lc.flatten({"signal": {"weights": {"ild": 0.4}, "entry_threshold": 9}, "executor.max_positions": 2})
    assert changes == {"signal.weights.ild": 0.4, "signal.entry_threshold": 9, "executor.max_positions": 2}
    assert lc.section(changes, "signal") == {"weights.ild": 0.4, "entry_threshold": 9}
    assert lc.section(changes, "validator") == {}
