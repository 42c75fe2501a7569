"""The compose file, the Dockerfile and the code agree (no Docker engine needed to check that)."""

from __future__ import annotations

import importlib.util
import re
import urllib.request
from pathlib import Path

import yaml
from prometheus_client import CollectorRegistry, Counter

from nertz_common import infra, metrics
from nertz_common.settings import CommonSettings
from nertz_ingest.app import build_parser

ROOT = Path(__file__).resolve().parents[2]


def _compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_compose_every_python_command_runs_an_installed_module():
    for name, svc in _compose()["services"].items():
        cmd = svc.get("command") or []
        if cmd[:2] == ["python", "-m"]:
            assert importlib.util.find_spec(cmd[2]) is not None, f"{name}: no module {cmd[2]}"


def test_compose_runs_the_five_services_and_the_topology_step():
    services = _compose()["services"]
    modules = {s["command"][2] for s in services.values() if (s.get("command") or [])[:2] == ["python", "-m"]}
    assert modules == {"nertz_ingest", "nertz_signal", "nertz_validator", "nertz_executor", "nertz_api"}
    assert services["topology"]["command"] == ["nertz", "streams", "apply"]


def test_compose_market_ingest_runs_live_and_the_replay_profile_has_its_files():
    services = _compose()["services"]
    assert services["market-ingest"]["command"][2:4] == ["nertz_ingest", "live"]
    cmd = services["market-ingest-replay"]["command"]
    assert cmd[2:4] == ["nertz_ingest", "replay"]
    parser = build_parser()
    for name in ("market-ingest", "market-ingest-replay"):  # the arguments parse as the service reads them
        args = parser.parse_args(services[name]["command"][3:])
        assert args.command == services[name]["command"][3]
    for arg in cmd:
        if arg.startswith("data/"):
            assert (ROOT / arg).exists(), arg


def test_dockerfile_copies_every_workspace_member():
    text = (ROOT / "Dockerfile").read_text()
    members = [p.parent.relative_to(ROOT).as_posix() for p in ROOT.glob("*/*/pyproject.toml")]
    for m in members:
        assert re.search(rf"COPY {re.escape(m)}/pyproject.toml", text), f"Dockerfile misses {m}"


def test_prometheus_scrapes_every_service_metrics_port():
    prom = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())
    targets = {t for job in prom["scrape_configs"] for sc in job["static_configs"] for t in sc["targets"]}
    services = _compose()["services"]
    for name in ("signal", "llm-validator", "executor", "market-ingest"):
        port = services[name]["environment"]["NERTZ_METRICS_PORT"]
        assert f"{name}:{port}" in targets
    assert "api:8081" in targets


def test_compose_nats_is_new_enough_for_the_kernels_consumer_reset():
    image = _compose()["services"]["nats"]["image"]
    m = re.fullmatch(r"nats:(\d+)\.(\d+)(\.\d+)?(-alpine)?", image)
    assert m is not None, image
    assert (int(m[1]), int(m[2])) >= (2, 14), f"expected nats-server >= 2.14 (ADR-60 consumer reset), was {image}"


def test_compose_metrics_listen_on_every_interface_so_prometheus_can_scrape():
    services = _compose()["services"]
    for name, svc in services.items():
        env = svc.get("environment") or {}
        if "NERTZ_METRICS_PORT" in env:  # loopback is the default: in a container it must be set to 0.0.0.0
            assert env.get("NERTZ_METRICS_ADDR") == "0.0.0.0", f"{name}: /metrics would be unreachable"
            assert CommonSettings(**{"metrics_addr": env["NERTZ_METRICS_ADDR"]}).metrics_addr == "0.0.0.0"


def test_metrics_addr_is_loopback_unless_configured(monkeypatch):
    monkeypatch.delenv("NERTZ_METRICS_ADDR", raising=False)
    assert CommonSettings().metrics_addr == "127.0.0.1"
    monkeypatch.setenv("NERTZ_METRICS_ADDR", "0.0.0.0")
    assert CommonSettings().metrics_addr == "0.0.0.0"


def test_metrics_serve_binds_loopback_by_default_and_serves():
    registry = CollectorRegistry()
    Counter("nertz_test_probes_total", "probes", registry=registry).inc()
    assert metrics.serve(0, registry) is None  # port 0: nothing served
    server = metrics.serve(infra.free_port(), registry)
    assert server is not None
    try:
        host, port = server.server_address[:2]
        assert host == "127.0.0.1"
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            assert b"nertz_test_probes_total 1.0" in r.read()
    finally:
        server.shutdown()
        server.server_close()
