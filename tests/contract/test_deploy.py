"""The compose file, the Dockerfile and the code agree (no Docker engine needed to check that)."""

from __future__ import annotations

import importlib.util
import json
import re
import urllib.request
from pathlib import Path

import yaml
from prometheus_client import CollectorRegistry, Counter, generate_latest

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


def test_prometheus_labels_every_target_with_its_compose_service():
    prom = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())
    [job] = [j for j in prom["scrape_configs"] if j["job_name"] == "nertz"]
    services = _compose()["services"]
    for sc in job["static_configs"]:  # the dashboards group by `service`
        for target in sc["targets"]:
            host = target.split(":")[0]
            assert host in services and sc["labels"]["service"] == host, target


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


# --- Grafana and Prometheus -------------------------------------------------------------------------

GRAFANA = ROOT / "deploy" / "grafana"


def _dashboards() -> dict[str, dict]:
    return {p.name: json.loads(p.read_text()) for p in sorted((GRAFANA / "dashboards").glob("*.json"))}


def _targets(board: dict) -> list[tuple[dict, dict]]:
    return [(panel, t) for panel in board["panels"] for t in panel.get("targets", [])]


def _known_metric_names() -> set[str]:
    """Every metric name the services declare (each metrics class built into a registry of its own)."""
    from nertz_api.projector import ProjectorMetrics
    from nertz_api.web import HttpMetrics
    from nertz_common.node.nats_runner import KernelMetrics
    from nertz_executor.adapters.metrics import ExecutorMetrics
    from nertz_ingest.metrics import IngestMetrics
    from nertz_signal.metrics import SignalMetrics
    from nertz_validator.adapters.qwen import LlmMetrics
    from nertz_validator.app import ValidatorMetrics

    registry = CollectorRegistry()
    for service in ("market-ingest", "signal", "llm-validator", "executor", "api"):
        metrics.BusMetrics(service, registry)
        KernelMetrics(service, registry)
    for cls in (SignalMetrics, IngestMetrics, ExecutorMetrics, ValidatorMetrics, LlmMetrics, ProjectorMetrics,
                HttpMetrics):  # fmt: skip
        cls(registry)
    names = set()
    for line in generate_latest(registry).decode().splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split()
            names |= {f"{name}_bucket", f"{name}_count", f"{name}_sum"} if kind == "histogram" else {name}
    return names


def test_grafana_datasources_are_prometheus_and_the_api_projections():
    cfg = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "nertz.yml").read_text())
    by_uid = {d["uid"]: d for d in cfg["datasources"]}
    assert by_uid["nertz-prometheus"]["type"] == "prometheus"
    assert by_uid["nertz-prometheus"]["url"] == "http://prometheus:9090"
    pg = by_uid["nertz-postgres"]
    assert pg["type"] == "grafana-postgresql-datasource"
    # the database the api projects into, as compose gives it
    api_db = _compose()["x-nertz"]["environment"]["DATABASE_URL"]
    host, database = api_db.split("@", 1)[1].split("/")
    assert (
        pg["url"] == host
        and pg["jsonData"]["database"] == database
        and api_db.startswith(f"postgresql://{pg['user']}:")
    )
    assert pg["secureJsonData"]["password"] == "$POSTGRES_PASSWORD"  # from the environment, never in the file


def test_compose_grafana_mounts_the_provisioning_and_the_dashboards():
    services = _compose()["services"]
    grafana = services["grafana"]
    mounts = dict(v.rsplit(":", 1)[0].split(":", 1) for v in grafana["volumes"] if v.startswith("./"))
    assert mounts == {"./deploy/grafana/provisioning": "/etc/grafana/provisioning",
                      "./deploy/grafana/dashboards": "/var/lib/grafana/dashboards"}  # fmt: skip
    for src in mounts:
        assert (ROOT / src).is_dir(), src
    provider = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "nertz.yml").read_text())
    assert [p["options"]["path"] for p in provider["providers"]] == ["/var/lib/grafana/dashboards"]
    home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home.removeprefix("/var/lib/grafana/dashboards/") in _dashboards()
    assert "POSTGRES_PASSWORD" in grafana["environment"]
    assert {"prometheus", "postgres"} <= set(grafana["depends_on"])
    assert "prometheus" in services


def test_dashboards_are_the_four_with_unique_uids_and_panel_ids():
    boards = _dashboards()
    assert set(boards) == {"overview.json", "pipeline.json", "decisions.json", "llm.json"}
    assert len({b["uid"] for b in boards.values()}) == 4
    for name, b in boards.items():
        ids = [p["id"] for p in b["panels"]]
        assert len(ids) == len(set(ids)), f"{name}: duplicate panel ids"
        titles = [p["title"] for p in b["panels"] if p["type"] != "row"]
        assert len(titles) == len(set(titles)), f"{name}: duplicate panel titles"
        for p in b["panels"]:
            g = p["gridPos"]
            assert g["x"] + g["w"] <= 24, f"{name} / {p['title']}: wider than the grid"
            if p["type"] != "row":
                assert p.get("targets"), f"{name} / {p['title']}: no query"


def test_dashboard_targets_use_the_provisioned_datasources():
    cfg = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "nertz.yml").read_text())
    types = {d["uid"]: d["type"] for d in cfg["datasources"]}
    for name, b in _dashboards().items():
        for panel, t in _targets(b):
            ds = t["datasource"]
            assert types.get(ds["uid"]) == ds["type"], f"{name} / {panel['title']}: datasource {ds}"
            assert ("expr" in t) == (ds["type"] == "prometheus"), f"{name} / {panel['title']}"
            assert ("rawSql" in t) == (ds["type"] == "grafana-postgresql-datasource"), f"{name} / {panel['title']}"


def test_dashboard_metric_names_are_declared_by_the_services():
    known = _known_metric_names()
    names = re.compile(r"\b(nertz_[a-z0-9_]+)\b")
    matchers = re.compile(r'__name__=~"([^"]+)"')
    for name, b in _dashboards().items():
        for panel, t in _targets(b):
            if "expr" not in t:
                continue
            expr = t["expr"]
            for m in names.findall(matchers.sub("", expr)):
                assert m in known, f"{name} / {panel['title']}: no service declares {m}"
            for rx in matchers.findall(expr):
                assert any(re.fullmatch(rx, k) for k in known), f"{name} / {panel['title']}: {rx} matches nothing"
