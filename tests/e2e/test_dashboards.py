"""The Grafana dashboards of ``deploy/grafana/dashboards/`` hold against a real run.

The five services and the notifier run as processes on a slice of the bundled data (the validator
asking Qwen — a fake DashScope on 127.0.0.1 — with a shadow validator beside it; the notifier posting
to a fake Telegram on 127.0.0.1), an operator changes a threshold and asks for a trade through the
api mid-run, and a real Prometheus (Debian's
``prometheus`` package) scrapes every one of them once a second, with the scrape configuration of
``deploy/prometheus/prometheus.yml`` pointed at the processes. Then:

- every PromQL expression of every panel is evaluated through Prometheus' HTTP API and parses;
- every panel returns data, except those listed in :data:`EXPECTED_EMPTY` with the reason;
- every SQL panel query runs against the projected Postgres, with Grafana's macros substituted as
  Grafana would expand them for a time range covering the whole run.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import lzma
import math
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
import yaml

from nertz_cli import demo
from nertz_common import infra, topology
from nertz_common.testing.fake_dashscope import MALFORMED_JSON, FakeDashScope, Fault
from nertz_common.testing.fake_telegram import FakeTelegram
from nertz_common.testing.plugin import with_database

pytestmark = [pytest.mark.e2e, pytest.mark.integration, pytest.mark.timeout(300)]

ROOT = Path(__file__).resolve().parents[2]
DASHBOARDS = ROOT / "deploy" / "grafana" / "dashboards"
PROMETHEUS_YML = ROOT / "deploy" / "prometheus" / "prometheus.yml"
ROWS = 4500  # bars per symbol: warm-up (the 4 h ATR of the stops needs ~28 h), then intents spread over ~47 h
SHADOW = "max"
RECORDING_SPEED = "5"
SHADOW_SERVICE = topology.shadow_name(SHADOW)
#: compose service name -> (python module, arguments); market-ingest runs as the replay
MODULES = {
    "api": "nertz_api",
    "signal": "nertz_signal",
    "llm-validator": "nertz_validator",
    "executor": "nertz_executor",
    "notifier": "nertz_notifier",
    SHADOW_SERVICE: "nertz_validator",
}
ADMIN_TOKEN = "dash-admin"
BOT_TOKEN = "123:dash"
HOW_TO_GET_PROMETHEUS = (
    "the dashboard test needs a `prometheus` binary on PATH: `apt-get install prometheus` on Debian or Ubuntu "
    "(.ci/run installs it), or the release tarball of prometheus.io/download unpacked onto PATH"
)

#: panels a clean replay leaves empty, and why (every other panel must return data)
EXPECTED_EMPTY: dict[tuple[str, str], str] = {
    ("Nertz · Overview", "Open positions (projected)"): "every position of the slice is closed when it ends",
    ("Nertz · Overview", "Venue calls by method and outcome"): "the run trades on the paper venue",
    ("Nertz · Overview", "Venue mismatches by action"): "the run trades on the paper venue",
    ("Nertz · Decisions", "Factor weights (decay tracker)"): "the decay tracker is off by default",
    ("Nertz · Decisions", "Factor accuracy (decay tracker)"): "the decay tracker is off by default",
    ("Nertz · Pipeline", "Dead letters by reason"): "a clean replay dead-letters nothing",
    ("Nertz · Pipeline", "Dead letters (projected)"): "a clean replay dead-letters nothing",
    ("Nertz · Pipeline", "Ingest rejects by reason"): "the bundled data has no bad row",
    ("Nertz · Pipeline", "Naks and publish retries"): "no handler failed and every publish was acknowledged",
    ("Nertz · Pipeline", "Feeds found stale per symbol"): "FeedStale comes from the live feed only",
    ("Nertz · Pipeline", "Seconds since the last update per symbol"): "a live-feed gauge; the replay exits",
    ("Nertz · Pipeline", "Resubscribes and reconnects"): "live feed only",
    ("Nertz · Pipeline", "Publish-to-ack latency"): "nertz_<service>_publish_seconds is declared, never observed",
    (
        "Nertz · Decisions",
        "Filter vetoes",
    ): "no candidate intent of the slice met a filter (its bars have no book or funding)",
}


@dataclass(frozen=True)
class Query:
    """One target of one panel."""

    dashboard: str
    panel: str
    ref: str
    kind: str  # "promql" or "sql"
    text: str
    fmt: str = "table"

    @property
    def key(self) -> tuple[str, str]:
        return (self.dashboard, self.panel)

    def __str__(self) -> str:
        return f"{self.dashboard} / {self.panel} [{self.ref}]"


def _queries() -> list[Query]:
    out = []
    for path in sorted(DASHBOARDS.glob("*.json")):
        board = json.loads(path.read_text())
        for panel in board["panels"]:
            for t in panel.get("targets", []):
                if "expr" in t:
                    out.append(Query(board["title"], panel["title"], t["refId"], "promql", t["expr"]))
                elif "rawSql" in t:
                    out.append(Query(board["title"], panel["title"], t["refId"], "sql", t["rawSql"], t["format"]))
    return out


def _variables() -> dict[str, str]:
    """The dashboards' text variables with their default values (``$threshold`` -> ``9.5``)."""
    out = {}
    for path in DASHBOARDS.glob("*.json"):
        for v in json.loads(path.read_text())["templating"]["list"]:
            out[v["name"]] = v["query"]
    return out


def _promql(expr: str, window_s: int) -> str:
    """Expand Grafana's interval variables: one window covering the whole run."""
    return expr.replace("$__rate_interval", f"{window_s}s").replace("$__range", f"{window_s}s")


def _sql(sql: str, variables: dict[str, str]) -> str:
    """Expand the Grafana macros the SQL panels use, as Grafana's Postgres datasource does, for a time
    range that holds the whole run (the bundled data are from the past) and a 1 h interval."""
    sql = re.sub(r"\$__timeFilter\(([^)]+)\)",
                 r"\1 BETWEEN '2000-01-01T00:00:00Z'::timestamptz AND now()", sql)  # fmt: skip
    sql = re.sub(r"\$__timeGroupAlias\(([^,]+),\s*\$__interval\)",
                 r'to_timestamp(floor(extract(epoch FROM \1) / 3600) * 3600) AS "time"', sql)  # fmt: skip
    for name, value in variables.items():
        sql = re.sub(rf"\${name}\b", value, sql)
    assert "$" not in sql, f"a Grafana macro or variable the test does not expand: {sql}"
    return sql


# --- the run ---------------------------------------------------------------------------------------


@dataclass
class Run:
    """What the run left for the checks."""

    prometheus_url: str
    database_url: str
    window_s: int
    at: float  # evaluation time, UNIX s
    results: dict[Query, Any] = field(default_factory=dict)


def _slice(d: Path) -> list[list[Path]]:
    """The first ``ROWS`` bars of each bundled CSV, then the recording with a gap in one book."""
    csvs, _ = demo.slice_input(d, ROWS)
    return [csvs, [_recording_with_a_gap(d / "recording.jsonl")]]


def _recording_with_a_gap(out: Path, topic: str = "orderbook.200.BTCUSDT") -> Path:
    """The bundled recording with the 50th delta of ``topic`` lost (a FeedGap) and a fresh snapshot after
    the 100th (a FeedResynced): the book continues from the 100th delta's state as Bybit would send it."""
    with lzma.open(demo.RECORDING, "rt") as f:
        lines = f.read().splitlines()
    out_lines, deltas, snapshot = [], 0, None
    for line in lines:
        rec = json.loads(line)
        msg = json.loads(rec["data"]) if rec.get("t") == "recv" else {}
        if msg.get("topic") != topic:
            out_lines.append(line)
            continue
        if msg["type"] == "snapshot":
            snapshot = msg
        else:
            deltas += 1
            if deltas == 50:
                continue  # lost on the wire
        out_lines.append(line)
        if deltas == 100 and msg["type"] == "delta":
            assert snapshot is not None
            fresh = {**snapshot, "ts": msg["ts"], "data": {**snapshot["data"], "u": msg["data"]["u"],
                                                            "seq": msg["data"]["seq"]}}  # fmt: skip
            out_lines.append(json.dumps({**rec, "data": json.dumps(fresh, separators=(",", ":"))}))
    assert deltas > 100, f"expected more than 100 deltas of {topic} in the recording, was {deltas}"
    out.write_text("\n".join(out_lines) + "\n")
    return out


def _prometheus_config(ports: dict[str, int]) -> dict[str, Any]:
    """``deploy/prometheus/prometheus.yml`` with each service's target on 127.0.0.1, scraped every second."""
    deployed = yaml.safe_load(PROMETHEUS_YML.read_text())
    [job] = [j for j in deployed["scrape_configs"] if j["job_name"] == "nertz"]
    static = []
    for sc in job["static_configs"]:
        for target in sc["targets"]:
            host = target.split(":")[0]
            assert sc["labels"]["service"] == host, f"expected the service label of {target} to be {host}"
            static.append({"targets": [f"127.0.0.1:{ports[host]}"], "labels": sc["labels"]})
    static.append({"targets": [f"127.0.0.1:{ports[SHADOW_SERVICE]}"], "labels": {"service": SHADOW_SERVICE}})
    return {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s", "scrape_timeout": "900ms"},
        "scrape_configs": [{"job_name": "nertz", "static_configs": static}],
    }


def _poll(what: str, fn: Any, timeout_s: float, interval_s: float = 0.2) -> Any:
    """Call ``fn`` until it returns a truthy value; fail with ``what`` at the deadline."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError, OSError):
            if value := fn():
                return value
        time.sleep(interval_s)
    raise AssertionError(f"expected {what} within {timeout_s:g} s")


@contextlib.contextmanager
def _prometheus(binary: str, d: Path, ports: dict[str, int]) -> Iterator[str]:
    d.mkdir(parents=True, exist_ok=True)
    cfg = d / "prometheus.yml"
    cfg.write_text(yaml.safe_dump(_prometheus_config(ports)))
    port = infra.free_port()
    log = open(d / "prometheus.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [binary, f"--config.file={cfg}", f"--storage.tsdb.path={d / 'tsdb'}", f"--web.listen-address=127.0.0.1:{port}",
         "--storage.tsdb.retention.time=1h", "--log.level=warn"],
        stdout=log, stderr=log,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        _poll("Prometheus to be ready", lambda: proc.poll() is None and httpx.get(f"{url}/-/ready").status_code == 200,
              30)  # fmt: skip
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def _start(stack: demo.Stack, name: str, port: int, *args: str, **env: str) -> None:
    """Start one service as its own process with its /metrics on ``port`` (the api: its HTTP port)."""
    extra = {"NERTZ_API__PORT": str(port)} if name == "api" else {}
    wiring = {"NATS_URL": stack.nats_url, "DATABASE_URL": stack.database_url, "NERTZ_METRICS_PORT": str(port)}
    environ = {**os.environ, **stack.env, **extra, **env, **wiring, "PYTHONUNBUFFERED": "1"}
    log = open(stack.data_dir / "logs" / f"{name}.log", "ab")  # noqa: SIM115 - lives as long as the process
    stack.procs[name] = subprocess.Popen([sys.executable, "-m", MODULES[name], *args], env=environ, stdout=log,
                                         stderr=log)  # fmt: skip


def _replay(stack: demo.Stack, files: list[Path], port: int, speed: str) -> None:
    environ = {**os.environ, **stack.env, "NATS_URL": stack.nats_url, "NERTZ_METRICS_PORT": str(port),
               "NERTZ_LOG_LEVEL": "WARNING"}  # fmt: skip
    cmd = [sys.executable, "-m", "nertz_ingest", "replay", "--speed", speed, *map(str, files)]
    rc = subprocess.run(cmd, env=environ, stdout=subprocess.DEVNULL, check=False).returncode
    assert rc == 0, f"expected the market-ingest replay to exit 0, was {rc}"


def _instant(url: str, expr: str, at: float) -> dict[str, Any]:
    r = httpx.get(f"{url}/api/v1/query", params={"query": expr, "time": f"{at:.3f}"}, timeout=10)
    return r.json()  # type: ignore[no-any-return]


async def _run_sql(url: str, queries: list[Query]) -> dict[Query, Any]:
    variables = _variables()
    conn = await asyncpg.connect(url)
    out: dict[Query, Any] = {}
    try:
        for q in queries:
            try:
                out[q] = await conn.fetch(_sql(q.text, variables), timeout=30)
            except (asyncpg.PostgresError, AssertionError) as e:
                out[q] = e
    finally:
        await conn.close()
    return out


async def _create_db(database_url: str, name: str) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


@pytest.fixture(scope="module")
def run(nats_url: str, database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Run:
    """One end-to-end run scraped by Prometheus; every dashboard query evaluated at its end."""
    binary = shutil.which("prometheus")
    if binary is None:
        if os.environ.get("CI"):
            pytest.fail(f"CI is set and no prometheus was installed: {HOW_TO_GET_PROMETHEUS}")
        pytest.skip(HOW_TO_GET_PROMETHEUS)
    d = tmp_path_factory.mktemp("dash")
    files = _slice(d)
    name = f"dash_{int(time.time() * 1000)}"
    asyncio.run(_create_db(database_url, name))
    db = with_database(database_url, name)
    asyncio.run(demo.apply_topology(nats_url, fresh=True))
    ports = {s: infra.free_port() for s in (*MODULES, "market-ingest")}
    with contextlib.ExitStack() as stop:
        prom = stop.enter_context(_prometheus(binary, d / "prometheus", ports))
        fake = stop.enter_context(FakeDashScope(latency_s=0.01).in_thread())
        fake.script(MALFORMED_JSON, Fault("400"), model="qwen-plus")  # two fail-closed rejects for the panels
        telegram = stop.enter_context(FakeTelegram(BOT_TOKEN).in_thread()).base_url
        stack = demo.Stack(d / "stack", nats_url, db, env={
            "DASHSCOPE_API_KEY": "sk-dash", "DASHSCOPE_HTTP_BASE_URL": fake.base_url, "NO_PROXY": "127.0.0.1,localhost",
            "NERTZ_API__TOKEN": ADMIN_TOKEN, "NERTZ_NOTIFIER__BOT_TOKEN": BOT_TOKEN, "NERTZ_NOTIFIER__CHAT_ID": "42",
            "NERTZ_NOTIFIER__API_URL": telegram, "NERTZ_NOTIFIER__MAX_AGE_S": "0",
        })  # fmt: skip
        (stack.data_dir / "logs").mkdir(parents=True)
        stop.callback(stack.stop_services)
        t0 = time.time()
        for service in ("api", "signal", "llm-validator", "executor", "notifier"):
            _start(stack, service, ports[service])
        _start(
            stack, SHADOW_SERVICE, ports[SHADOW_SERVICE], "--shadow", SHADOW, NERTZ_VALIDATOR__QWEN__MODEL="qwen-max"
        )
        stack.api_port = ports["api"]
        _poll("the API to answer /health", lambda: httpx.get(f"{stack.api_url}/health").status_code == 200, 60)
        running = len(stack.procs)

        # Prometheus watches the run from its start: a counter first scraped with its increments already
        # in it shows no rate() (the services answer their first intents within a second or two)
        def all_up() -> bool:
            res = _instant(prom, "count(up == 1)", time.time())["data"]["result"]
            return bool(res) and int(float(res[0]["value"][1])) >= running

        _poll("Prometheus to scrape every service once", all_up, 30)
        csvs, recording = files
        _replay(stack, csvs, ports["market-ingest"], "max")
        auth = {"Authorization": f"Bearer {ADMIN_TOKEN}"}  # an operator, mid-run: both land in the ledger
        for path, body in (("/config/update_thresholds", {"entry_threshold": 9.4}),
                           ("/execute_trade/BTCUSDT", {"side": "Buy", "reason": "dashboard test"})):  # fmt: skip
            r = httpx.post(f"{stack.api_url}{path}", headers=auth, json=body, timeout=10)
            assert r.status_code == 202, r.text
        # the recording's 44 s at 5x: Prometheus scrapes market-ingest several times after the gap and
        # the resync (the replay exits when done, and a counter needs two samples to show an increase)
        _replay(stack, recording, ports["market-ingest"], RECORDING_SPEED)
        demo.wait_caught_up(stack, timeout_s=120)
        settled = time.time()

        # every long-running target scraped after the pipeline settled: its gauges are final
        def scraped() -> bool:
            body = _instant(prom, 'min(timestamp(up{service!="market-ingest"}))', time.time())
            res = body["data"]["result"]
            return bool(res) and float(res[0]["value"][1]) > settled

        _poll("every service scraped after the run settled", scraped, 15)
        at = time.time()
        result = Run(prom, db, window_s=math.ceil(at - t0) + 5, at=at)
        for q in _queries():
            if q.kind == "promql":
                result.results[q] = _instant(prom, _promql(q.text, result.window_s), at)
        result.results.update(asyncio.run(_run_sql(db, [q for q in _queries() if q.kind == "sql"])))
    _report(result)
    return result


def _has_data(q: Query, res: Any) -> bool:
    if q.kind == "sql":
        return isinstance(res, list) and len(res) > 0
    if res.get("status") != "success":
        return False
    return any(math.isfinite(float(s["value"][1])) for s in res["data"]["result"])


def _report(run: Run) -> None:
    """Print which panels returned data (``pytest -s`` shows it)."""
    panels: dict[tuple[str, str], bool] = {}
    for q, res in run.results.items():
        panels[q.key] = panels.get(q.key, False) or _has_data(q, res)
    for (board, title), ok in sorted(panels.items()):
        print(f"{'data ' if ok else 'EMPTY'} {board} / {title}")
    for q, res in run.results.items():
        if q.panel == "Why didn't it trade: totals by reason" and isinstance(res, list):
            print("why didn't it trade:", ", ".join(f"{r['stage']} {r['reason']} {r['n']}" for r in res))


# --- the checks ------------------------------------------------------------------------------------


def test_dashboards_have_promql_and_sql_panels():
    queries = _queries()
    assert {q.dashboard for q in queries} == {
        "Nertz · Overview",
        "Nertz · Pipeline",
        "Nertz · Decisions",
        "Nertz · LLM",
    }
    assert sum(q.kind == "promql" for q in queries) > 30 and sum(q.kind == "sql" for q in queries) > 10
    panels = {q.key for q in queries}
    assert set(EXPECTED_EMPTY) <= panels, f"EXPECTED_EMPTY names no panel: {set(EXPECTED_EMPTY) - panels}"


def test_every_promql_expression_parses_in_prometheus(run: Run):
    bad = {str(q): res.get("error") for q, res in run.results.items() if q.kind == "promql"
           and res.get("status") != "success"}  # fmt: skip
    assert not bad, f"Prometheus refused these expressions: {bad}"


def test_every_prometheus_panel_returns_data_unless_expected_empty(run: Run):
    panels: dict[tuple[str, str], bool] = {}
    for q, res in run.results.items():
        if q.kind == "promql":
            panels[q.key] = panels.get(q.key, False) or _has_data(q, res)
    empty = sorted(k for k, ok in panels.items() if not ok and k not in EXPECTED_EMPTY)
    assert not empty, f"these panels returned no data from the run: {empty}"


def test_the_lost_book_delta_is_a_gap_and_a_resync_on_the_log(run: Run):
    async def kinds() -> set[str]:
        conn = await asyncpg.connect(run.database_url)
        try:
            rows = await conn.fetch("SELECT DISTINCT kind FROM feed_status WHERE symbol = 'BTCUSDT'")
            return {r["kind"] for r in rows}
        finally:
            await conn.close()

    assert asyncio.run(kinds()) >= {"gap", "resynced"}


def test_every_sql_panel_runs_against_the_projections(run: Run):
    errors = {str(q): str(res) for q, res in run.results.items() if q.kind == "sql" and isinstance(res, Exception)}
    assert not errors, f"these SQL panels failed against the projected Postgres: {errors}"
    empty = sorted(str(q) for q, res in run.results.items() if q.kind == "sql" and not res
                   and q.key not in EXPECTED_EMPTY)  # fmt: skip
    assert not empty, f"these SQL panels returned no rows from the run: {empty}"


def test_sql_time_series_panels_return_a_time_column(run: Run):
    for q, res in run.results.items():
        if q.kind == "sql" and q.fmt == "time_series" and res:
            columns = set(res[0].keys())
            assert columns >= {"time", "metric"}, f"{q}: columns {sorted(columns)}"


def test_decisions_ledger_names_the_reasons_the_run_produced(run: Run):
    [totals] = [res for q, res in run.results.items() if q.panel == "Why didn't it trade: totals by reason"]
    reasons = {(r["stage"], r["reason"]) for r in totals}
    assert ("bar", "below threshold") in reasons, reasons
    assert {"validator fail-closed", "hard lock"} <= {r for stage, r in reasons if stage == "intent"}, reasons
