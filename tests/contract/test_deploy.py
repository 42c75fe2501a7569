"""The compose file, the Dockerfile and the code agree (no Docker engine needed to check that)."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import urllib.request
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
import yaml
from prometheus_client import CollectorRegistry, Counter, generate_latest
from typer.testing import CliRunner

from nertz_cli.main import app as cli_app
from nertz_common import infra, metrics
from nertz_common.settings import CommonSettings
from nertz_ingest.app import build_parser

ROOT = Path(__file__).resolve().parents[2]
GRAFANA_READER = ROOT / "deploy" / "postgres" / "initdb" / "10-grafana-reader.sql"


def _compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_compose_every_python_command_runs_an_installed_module():
    for name, svc in _compose()["services"].items():
        cmd = svc.get("command") or []
        if cmd[:2] == ["python", "-m"]:
            assert importlib.util.find_spec(cmd[2]) is not None, f"{name}: no module {cmd[2]}"


def test_compose_runs_the_five_services_the_notifier_and_the_topology_step():
    services = _compose()["services"]
    modules = {s["command"][2] for s in services.values() if (s.get("command") or [])[:2] == ["python", "-m"]}
    assert modules == {"nertz_ingest", "nertz_signal", "nertz_validator", "nertz_executor", "nertz_api",
                       "nertz_notifier"}  # fmt: skip
    cmd = services["topology"]["command"]
    assert cmd[:3] == ["nertz", "streams", "apply"]
    # `--replicas ${NERTZ_STREAM_REPLICAS:-1}`: R1 on the single node, R3 with the cluster profile
    assert cmd[3:] == ["--replicas", "${NERTZ_STREAM_REPLICAS:-1}"]
    result = CliRunner().invoke(cli_app, ["streams", "apply", "--help"])
    assert result.exit_code == 0 and "--replicas" in result.output


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
    for name in ("signal", "llm-validator", "executor", "market-ingest", "notifier"):
        port = services[name]["environment"]["NERTZ_METRICS_PORT"]
        assert f"{name}:{port}" in targets
    assert "api:8081" in targets
    for name, svc in services.items():  # every NATS exporter, the single node's and the cluster's
        if svc.get("image", "").startswith("natsio/prometheus-nats-exporter"):
            assert f"{name}:7777" in targets, name


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
    from nertz_notifier.metrics import NotifierMetrics
    from nertz_signal.metrics import SignalMetrics
    from nertz_validator.adapters.qwen import LlmMetrics
    from nertz_validator.app import ValidatorMetrics

    registry = CollectorRegistry()
    for service in ("market-ingest", "signal", "llm-validator", "executor", "api", "notifier"):
        metrics.BusMetrics(service, registry)
        KernelMetrics(service, registry)
    for cls in (SignalMetrics, IngestMetrics, ExecutorMetrics, ValidatorMetrics, LlmMetrics, ProjectorMetrics,
                HttpMetrics, NotifierMetrics):  # fmt: skip
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
    assert pg["url"] == host and pg["jsonData"]["database"] == database
    # as the read-only role of the postgres container's init script, never as the api's owner role
    assert pg["user"] == "nertz_grafana" and not api_db.startswith(f"postgresql://{pg['user']}:")
    assert "\\set reader nertz_grafana" in GRAFANA_READER.read_text()
    assert pg["secureJsonData"]["password"] == "$GRAFANA_DB_PASSWORD"  # from the environment, never in the file


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
    assert "GRAFANA_DB_PASSWORD" in grafana["environment"] and "POSTGRES_PASSWORD" not in grafana["environment"]
    assert {"prometheus", "postgres"} <= set(grafana["depends_on"])
    postgres = services["postgres"]
    assert "./deploy/postgres/initdb:/docker-entrypoint-initdb.d:ro" in postgres["volumes"]
    assert "GRAFANA_DB_PASSWORD" in postgres["environment"]  # read by the init script
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


# --- production shape: health checks, restarts, secrets, the cluster profile -----------------------

#: services that run once and exit (no restart, nothing to watch afterwards)
ONE_SHOT = {"topology", "market-ingest-replay"}
#: images without a shell or an HTTP client to probe with (Prometheus's `up` watches them instead)
UNPROBED_IMAGES = ("natsio/prometheus-nats-exporter",)
_VAR = re.compile(r"\$\{(\w+)(:?[-?+])?([^}]*)\}")


def _compose_vars() -> dict[str, str]:
    """Every variable the compose file interpolates, with its operator (``:-``, ``:?``, or ``""``)."""
    return {m[1]: m[2] or "" for m in _VAR.finditer((ROOT / "docker-compose.yml").read_text())}


def _env_example() -> dict[str, bool]:
    """The variables .env.example lists: name -> set (True) or only commented out (False)."""
    listed: dict[str, bool] = {}
    for line in (ROOT / ".env.example").read_text().splitlines():
        if m := re.fullmatch(r"(#\s*)?([A-Z][A-Z0-9_]*)=.*", line.strip()):
            listed[m[2]] = listed.get(m[2], False) or not m[1]
    return listed


def test_compose_every_long_running_service_has_a_health_check_and_restarts():
    for name, svc in _compose()["services"].items():
        if name in ONE_SHOT:
            assert svc.get("restart") == "no", f"{name} runs once: it must not be restarted"
            continue
        assert svc.get("restart") == "unless-stopped", f"{name}: restart {svc.get('restart')!r}"
        if not svc.get("image", "").startswith(UNPROBED_IMAGES):
            test = (svc.get("healthcheck") or {}).get("test")
            assert test and test[0] in ("CMD", "CMD-SHELL"), f"{name}: no health check"


def test_compose_health_check_of_a_service_passes_while_its_metrics_answer_and_fails_without():
    services = _compose()["services"]
    test = services["signal"]["healthcheck"]["test"]
    assert test[:2] == ["CMD", "python"] and all(
        services[s]["healthcheck"]["test"] == test for s in ("llm-validator", "executor", "market-ingest", "notifier")
    )
    registry = CollectorRegistry()
    server = metrics.serve(infra.free_port(), registry)
    assert server is not None
    try:
        port = server.server_address[1]
        env = {**os.environ, "NERTZ_METRICS_PORT": str(port)}
        assert subprocess.run([sys.executable, *test[2:]], env=env, timeout=10, check=False).returncode == 0
    finally:
        server.shutdown()
        server.server_close()
    env = {**os.environ, "NERTZ_METRICS_PORT": str(port)}  # nothing listens there now
    assert subprocess.run([sys.executable, *test[2:]], env=env, timeout=10, capture_output=True).returncode != 0
    api = services["api"]["healthcheck"]["test"]
    assert "http://127.0.0.1:8081/health" in api[-1] and services["api"]["environment"]["NERTZ_API__PORT"] == "8081"


def test_compose_secrets_come_from_env_only_without_defaults():
    text = (ROOT / "docker-compose.yml").read_text()
    for name, op in _compose_vars().items():
        if re.search(r"PASSWORD|TOKEN|SECRET|KEY", name):
            assert op == ":?", f"${{{name}}} must be required (:?), never defaulted ({op!r})"
    assert "change-me" not in text
    for name, svc in _compose()["services"].items():  # no literal secret in any environment block
        for key, value in (svc.get("environment") or {}).items():
            if re.search(r"PASSWORD|TOKEN|SECRET", key):
                assert str(value).startswith("${"), f"{name}: {key} is set in the compose file"


def test_env_example_lists_every_variable_compose_needs():
    listed = _env_example()
    for name, op in _compose_vars().items():
        assert name in listed, f".env.example does not list {name}"
        if op == ":?":
            assert listed[name], f"{name} is required by compose: .env.example must set it"
    for name in ("NERTZ_NOTIFIER__BOT_TOKEN", "NERTZ_NOTIFIER__CHAT_ID", "NERTZ_API__TOKEN"):
        assert name in listed, f".env.example does not list {name}"


def _nats_conf(name: str) -> str:
    return (ROOT / "deploy" / "nats" / name).read_text()


def test_compose_cluster_profile_runs_three_routed_nodes_with_jetstream():
    services = _compose()["services"]
    nodes = [f"nats-{i}" for i in (1, 2, 3)]
    names = set()
    for i, node in enumerate(nodes, 1):
        svc = services[node]
        assert svc["profiles"] == ["cluster"] and svc["image"] == services["nats"]["image"]
        assert f"./deploy/nats/cluster-{i}.conf:/etc/nats/nats.conf:ro" in svc["volumes"]
        assert any(v.startswith(f"{node}-data:") for v in svc["volumes"]), f"{node}: no volume of its own"
        assert "/healthz" in " ".join(svc["healthcheck"]["test"]) and "js-enabled-only" not in str(svc["healthcheck"])
        conf = _nats_conf(f"cluster-{i}.conf")
        names.add(re.search(r"^server_name: (\S+)$", conf, re.M)[1])  # type: ignore[index]
        assert re.search(r"^jetstream \{", conf, re.M) and "name: nertz" in conf
        assert sorted(re.findall(r"nats-route://([\w-]+):6222", conf)) == nodes, f"cluster-{i}.conf routes"
    assert len(names) == 3, f"expected three server names, was {names}"
    # the services, pointed at all three nodes, and the R3 topology, per the cluster block of .env.example
    example = (ROOT / ".env.example").read_text()
    assert "# NATS_URL=" + ",".join(f"nats://{n}:4222" for n in nodes) in example
    assert "# NERTZ_STREAM_REPLICAS=3" in example and "# NATS_SINGLE=0" in example
    assert services["nats"]["scale"] == "${NATS_SINGLE:-1}"
    deps = services["topology"]["depends_on"]
    assert {n: deps[n] for n in ["nats", *nodes]} == {
        n: {"condition": "service_healthy", "required": False} for n in ["nats", *nodes]
    }


def test_bus_connect_takes_every_node_of_a_cluster():
    from nertz_common import bus

    url = "nats://nats-1:4222,nats://nats-2:4222 , nats://nats-3:4222"
    assert bus.servers(url) == ["nats://nats-1:4222", "nats://nats-2:4222", "nats://nats-3:4222"]
    assert bus.servers("nats://127.0.0.1:4222") == ["nats://127.0.0.1:4222"]
    with pytest.raises(ValueError, match="expected one NATS URL"):
        bus.servers(" , ")


def _compose_cli() -> list[str] | None:
    """``docker compose`` (v2) if it answers, else a standalone v2 ``docker-compose``, else None."""
    for cmd in (["docker", "compose"], ["docker-compose"]):
        if shutil.which(cmd[0]) is None:
            continue
        done = subprocess.run([*cmd, "version"], capture_output=True, text=True, timeout=30, check=False)
        if done.returncode == 0 and re.search(r"v2\.", done.stdout):
            return cmd
    return None


@pytest.mark.parametrize("profile", [None, "cluster"])
def test_compose_config_validates_with_the_compose_cli(tmp_path, profile):
    cli = _compose_cli()
    if cli is None:
        pytest.skip("no compose CLI: `docker compose version` (v2) does not work here")
    for item in ("docker-compose.yml", "Dockerfile", "deploy", "data"):
        (tmp_path / item).symlink_to(ROOT / item)
    env = [line for line in (ROOT / ".env.example").read_text().splitlines() if line.strip()]
    if profile == "cluster":  # the cluster block of .env.example, uncommented
        env = [re.sub(r"^# ((COMPOSE_PROFILES|NATS_URL|NERTZ_STREAM_REPLICAS|NATS_SINGLE)=)", r"\1", x) for x in env]
    (tmp_path / ".env").write_text("\n".join(env) + "\n")
    clean = {k: v for k, v in os.environ.items() if not re.match(r"(COMPOSE_|NATS_|NERTZ_|POSTGRES_|GRAFANA_)", k)}
    done = subprocess.run(
        [*cli, "--project-directory", str(tmp_path), "config", "--format", "json"],
        capture_output=True, text=True, timeout=60, check=False, env=clean, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    model = json.loads(done.stdout)["services"]
    if profile == "cluster":
        assert {"nats-1", "nats-2", "nats-3"} <= set(model)
        assert model["nats"].get("scale") == 0
        assert model["signal"]["environment"]["NATS_URL"].count("nats://nats-") == 3
        assert model["topology"]["command"][-2:] == ["--replicas", "3"]
    else:
        assert "nats-1" not in model and model["topology"]["command"][-2:] == ["--replicas", "1"]
        assert model["signal"]["environment"]["NATS_URL"] == "nats://nats:4222"
    assert "change-me" in model["postgres"]["environment"]["POSTGRES_PASSWORD"]  # from .env, nowhere else


# --- Grafana's read-only role (against the test Postgres) -------------------------------------------


def _psql() -> str | None:
    bundled = Path(sys.executable).parent.parent / "lib"  # pgserver ships one beside its server
    for candidate in (*bundled.glob("python3*/site-packages/pgserver/pginstall/bin/psql"), shutil.which("psql")):
        if candidate and Path(candidate).exists():
            return str(candidate)
    return None


@pytest.mark.integration
async def test_grafana_role_reads_every_projection_and_writes_nothing(fresh_db):
    import asyncpg

    from nertz_api.migrate import migrate

    psql = _psql()
    if psql is None:
        pytest.skip("no psql (pgserver ships one; or apt-get install postgresql-client)")
    role, password = f"nertz_grafana_t{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    owner = await asyncpg.connect(fresh_db)
    try:
        await owner.execute("CREATE TABLE before_the_role (x int)")  # a table that exists already
        cmd = [psql, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-v", f"reader={role}", "-d", fresh_db]
        env = {**os.environ, "GRAFANA_DB_PASSWORD": password}
        done = await asyncio.to_thread(
            subprocess.run, [*cmd, "-f", str(GRAFANA_READER)], env=env, capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, done.stderr
        await migrate(owner)  # the api's tables, created after the role: the default privileges cover them
        await owner.execute("INSERT INTO symbols VALUES ('BTCUSDT', 'bybit', 'linear', 0, 1)")
        parts = urlsplit(fresh_db)
        host = parts.hostname or "" if parts.port is None else f"{parts.hostname}:{parts.port}"
        reader = await asyncpg.connect(urlunsplit(parts._replace(netloc=f"{role}:{password}@{host}")))
        try:
            assert await reader.fetchval("SELECT current_user") == role
            assert await reader.fetchval("SELECT count(*) FROM symbols") == 1
            assert await reader.fetchval("SELECT count(*) FROM before_the_role") == 0
            tables = await owner.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
            for t in tables:
                await reader.fetchval(f'SELECT count(*) FROM "{t["tablename"]}"')  # every one readable
            for sql in (
                "INSERT INTO symbols VALUES ('ETHUSDT', 'bybit', 'linear', 0, 2)",
                "UPDATE symbols SET symbol = 'X'",
                "DELETE FROM symbols",
                "TRUNCATE symbols",
                "CREATE TABLE mine (x int)",
                "SET default_transaction_read_only = off; DELETE FROM symbols",
            ):
                with pytest.raises((asyncpg.InsufficientPrivilegeError, asyncpg.ReadOnlySQLTransactionError)):
                    await reader.execute(sql)
        finally:
            await reader.close()
        assert await owner.fetchval("SELECT count(*) FROM symbols") == 1
    finally:
        await owner.execute(f'DROP OWNED BY "{role}"')
        await owner.execute(f'DROP ROLE IF EXISTS "{role}"')
        await owner.close()
