"""The original NertzMetalEngine .env names: each one translated to its one meaning, conflicts and bad
values refused with the name to fix (the services exit 2)."""

from __future__ import annotations

import pytest

from nertz_common.settings import LEGACY_NAMES, legacy_environ, load
from nertz_executor.settings import ExecutorSettings
from nertz_ingest.settings import IngestSettings
from nertz_signal.settings import SignalSettings
from nertz_validator.settings import ValidatorSettings

LEGACY = {
    "SYMBOL": "btcusdt, ETHUSDT",
    "TIMEFRAME": "1h",
    "CAPITAL_USDT": "2500",
    "RISK_FACTOR": "0.005",
    "TP_PERCENTAGE": "0.04",
    "SL_PERCENTAGE": "0.01",
    "EGM_BUY_THRESHOLD": "9.2",
    "EGM_SELL_THRESHOLD": "-9.2",
    "BYBIT_ENV": "live",
}


@pytest.fixture
def legacy_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for k, v in LEGACY.items():
        monkeypatch.setenv(k, v)


def test_every_documented_name_is_translated():
    add, errors = legacy_environ(LEGACY)
    assert errors == [] and set(LEGACY) <= set(LEGACY_NAMES)
    assert add["NERTZ_SYMBOLS"] == '["BTCUSDT", "ETHUSDT"]'
    assert (add["NERTZ_SIGNAL__TIMEFRAME"], add["NERTZ_INGEST__LIVE__INTERVALS"]) == ("60", '["1", "60"]')
    assert add["NERTZ_SIGNAL__TP_PERCENTAGE"] == "4.0" and add["NERTZ_SIGNAL__STOP_MODE"] == "fixed"
    assert add["BYBIT_ENV"] == "mainnet"


def test_each_service_reads_the_original_names(legacy_env):
    sig, ex, val, ing = load(SignalSettings), load(ExecutorSettings), load(ValidatorSettings), load(IngestSettings)
    assert sig.symbols == ex.symbols == ["BTCUSDT", "ETHUSDT"]
    s = sig.signal
    assert (s.timeframe, s.equity_usdt, s.risk_per_trade, s.entry_threshold) == ("60", 2500.0, 0.005, 9.2)
    assert (s.stop_mode, s.tp_percentage, s.sl_percentage) == ("fixed", 4.0, 1.0)
    assert ex.executor.equity_usdt == val.validator.rules.equity_usdt == val.validator.breaker.equity_usdt == 2500.0
    assert ex.bybit_env == "mainnet" and ing.ingest.live.intervals == ("1", "60")


def test_the_nested_name_set_to_the_same_value_is_no_conflict_and_another_value_is(monkeypatch, legacy_env, capsys):
    monkeypatch.setenv("NERTZ_SIGNAL__EQUITY_USDT", "2500.0")
    assert load(SignalSettings).signal.equity_usdt == 2500.0
    monkeypatch.setenv("NERTZ_SIGNAL__EQUITY_USDT", "9000")
    with pytest.raises(SystemExit) as e:
        load(SignalSettings)
    assert e.value.code == 2
    assert "CAPITAL_USDT asks NERTZ_SIGNAL__EQUITY_USDT=2500.0" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("name", "value", "says"),
    [
        ("TP_PERCENTAGE", "2", "fraction"),
        ("TIMEFRAME", "7m", "expected one of 1m"),
        ("EGM_SELL_THRESHOLD", "-8", "symmetric"),
        ("CAPITAL_USDT", "lots", "expected a number"),
    ],
)
def test_a_bad_value_exits_2_naming_it(monkeypatch, legacy_env, capsys, name, value, says):
    monkeypatch.setenv(name, value)
    with pytest.raises(SystemExit) as e:
        load(SignalSettings)
    err = capsys.readouterr().err
    assert e.value.code == 2 and name in err and says in err


def test_nertz_symbols_takes_a_comma_separated_list(monkeypatch):
    monkeypatch.setenv("NERTZ_SYMBOLS", "BTCUSDT,ethusdt")
    assert load(SignalSettings).symbols == ["BTCUSDT", "ETHUSDT"]
    monkeypatch.setenv("NERTZ_SYMBOLS", '["SOLUSDT"]')
    assert load(SignalSettings).symbols == ["SOLUSDT"]
    monkeypatch.setenv("NERTZ_SYMBOLS", "BTC-USDT")
    with pytest.raises(SystemExit):
        load(SignalSettings)


def test_a_configuration_error_never_prints_a_secret(monkeypatch, capsys):
    """A model-level rule's error input is the whole environment given to it: not printed."""
    monkeypatch.setenv("NERTZ_EXECUTOR__VENUE", "bybit")  # needs a key and a secret: the secret is missing
    monkeypatch.setenv("BYBIT_API_KEY", "sentinel-key-123")
    monkeypatch.delenv("BYBIT_API_SECRET", raising=False)
    with pytest.raises(SystemExit) as e:
        load(ExecutorSettings)
    err = capsys.readouterr().err
    assert e.value.code == 2 and "BYBIT_API_SECRET" in err and "sentinel-key-123" not in err
    monkeypatch.setenv("NERTZ_EXECUTOR__VENUE", "paper")
    monkeypatch.setenv("NERTZ_EXECUTOR__MAX_POSITIONS", "0")
    with pytest.raises(SystemExit):
        load(ExecutorSettings)
    assert "executor.max_positions" in (err := capsys.readouterr().err) and "(was '0')" in err  # plain values stay
