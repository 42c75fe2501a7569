from __future__ import annotations

import pytest

from nertz_common import subjects
from nertz_common.testing import factories as f


def test_for_event_bar_builds_five_tokens():
    assert subjects.for_event(f.bar(0, symbol="ETHUSDT")) == "md.bar.bybit.linear.ETHUSDT"


def test_parse_roundtrips_instrument_and_service_subjects():
    s = subjects.parse("exec.lock.bybit.linear.BTCUSDT")
    assert (s.domain, s.kind, s.symbol) == ("exec", "lock", "BTCUSDT")
    assert subjects.parse(subjects.dead_letter("signal")).scope == "signal"


@pytest.mark.parametrize("bad", ["", "a.b", "BTC.USDT", "x>"])
def test_instrument_bad_token_raises(bad):
    with pytest.raises(ValueError):
        subjects.instrument("md", "bar", "bybit", "linear", bad)


def test_parse_unknown_domain_raises():
    with pytest.raises(ValueError, match="expected a subject"):
        subjects.parse("foo.bar.baz")
