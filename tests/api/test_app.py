"""The composition root: settings, the command line, and the service as a process (SIGTERM included)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from pydantic import ValidationError

from nertz_api.settings import ApiSettings
from nertz_common import bus, infra
from nertz_common.testing import factories as f


def test_settings_nested_api_group_is_read_from_env(monkeypatch):
    monkeypatch.setenv("NERTZ_API__PORT", "9123")
    monkeypatch.setenv("NERTZ_API__TOKEN", "t0ken")
    monkeypatch.setenv("DATABASE_URL", "postgresql://u:pw@db/nertz")
    monkeypatch.setenv("NERTZ_API__MAX_BODY_BYTES", "4096")
    s = ApiSettings()
    assert s.api.max_body_bytes == 4096
    assert s.api.port == 9123 and s.api.token is not None and s.api.token.get_secret_value() == "t0ken"
    assert "t0ken" not in repr(s) and "pw" not in repr(s)
    assert s.api.host == "127.0.0.1" and s.api.batch == 1000


def test_settings_unknown_api_key_raises(monkeypatch):
    monkeypatch.setenv("NERTZ_API__PROT", "1")
    with pytest.raises(ValidationError, match="prot"):
        ApiSettings()


def test_main_help_exits_zero():
    r = subprocess.run([sys.executable, "-m", "nertz_api", "--help"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0 and "NERTZ_API__TOKEN" in r.stdout


def test_main_bad_setting_exits_2():
    env = {**os.environ, "NERTZ_API__PORT": "not-a-port"}
    r = subprocess.run([sys.executable, "-m", "nertz_api"], capture_output=True, text=True, timeout=30, env=env)
    assert r.returncode == 2 and "configuration error" in r.stderr and "port" in r.stderr


@pytest.mark.integration
async def test_service_process_projects_serves_and_stops_on_sigterm(js_fresh, nats_url, fresh_db, tmp_path: Path):
    port = infra.free_port()
    env = {
        **os.environ, "NATS_URL": nats_url, "DATABASE_URL": fresh_db, "NERTZ_API__PORT": str(port),
        "NERTZ_METRICS_PORT": str(port),  # as the demo sets it: the API serves /metrics itself
    }  # fmt: skip
    log = (tmp_path / "api.log").open("wb")
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "nertz_api", env=env, stdout=log, stderr=log)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=2) as c:
            async with asyncio.timeout(30):
                while True:
                    assert proc.returncode is None, (tmp_path / "api.log").read_text()
                    try:
                        if (await c.get("/health")).status_code == 200:
                            break
                    except httpx.TransportError:
                        pass
                    await asyncio.sleep(0.1)
            await bus.Publisher(js_fresh).publish_many([f.bar(i) for i in range(10)])
            async with asyncio.timeout(20):
                while True:
                    btc = (await c.get("/status")).json()["symbols"]["BTCUSDT"]
                    if btc["last_bar_open_time_ns"] == f.T0_NS + 9 * f.MINUTE_NS:
                        break
                    await asyncio.sleep(0.1)
            assert (await c.get("/status")).json()["projector"]["stream_seq"] == 10
            metrics = (await c.get("/metrics")).text
            assert 'nertz_api_projector_events_total{type="Bar"} 10.0' in metrics
            assert "nertz_api_events_in_total" in metrics  # the runtime's bus metrics share the registry
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 15) == 0, (tmp_path / "api.log").read_text()
        assert b"service.stopped" in (tmp_path / "api.log").read_bytes()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        log.close()
