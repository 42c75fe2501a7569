"""The configuration fingerprint that snapshots are kept under."""

from __future__ import annotations

from nertz_common.settings import CommonSettings, KernelSettings


def test_fingerprint_ignores_where_a_service_runs_and_sees_what_it_decides():
    base = CommonSettings(NATS_URL="nats://a:4222", metrics_port=9102)
    moved = CommonSettings(
        NATS_URL="nats://b:4222", metrics_port=41234, metrics_addr="0.0.0.0", log_level="DEBUG",
        kernel=KernelSettings(fetch_batch=64),
    )  # fmt: skip
    assert moved.fingerprint() == base.fingerprint(), "a restart on another port must keep its snapshots"
    assert CommonSettings(symbols=["BTCUSDT"]).fingerprint() != base.fingerprint()
