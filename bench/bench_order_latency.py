"""From a closed bar's arrival on the log to its order's HTTP request at the (fake) Bybit: p50 and p99.

    .venv/bin/python bench/bench_order_latency.py --rows 20000 --speed 30000

Starts an embedded NATS, the fake Bybit (trading side, 127.0.0.1) in this process, and signal, the
rules validator and the executor (``NERTZ_EXECUTOR__VENUE=bybit``, its adapter pointed at the fake) as
processes; replays the first ``--rows`` rows of the bundled 1m klines of BTCUSDT, ETHUSDT and SOLUSDT
at ``--speed`` (paced, so the figure is the pipeline's latency, not a backlog's). The bench watches
``md.bar`` on the bus: a bar's arrival is when the bus delivered it here, and each bar's close drives
the fake's price (fills, take-profits and stop-losses happen there). The fake records when each
``/v5/order/create`` reached it (same clock). The latency of an order is that time minus the arrival
of the bar whose intent it carries (order → intent → bar, from the log).

Reference (issue 8): p50 ≤ 2 ms, p99 ≤ 5 ms on loopback. Not a test: it prints figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import nats

from nertz_cli import demo
from nertz_common import events as ev
from nertz_common import infra
from nertz_common.testing.fake_bybit import FakeBybit, load_instruments

ROOT = Path(__file__).resolve().parents[1]
KEY, SECRET = "bench-key", "bench-secret"
#: the hops of one entry, each ending at the named event's arrival here (the last at the fake)
HOPS = ("factor", "intent", "awaited", "verdict", "order", "request")
HOP_MEDIANS: list[dict[str, float]] = []


def quantile(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, round(q * (len(s) - 1)))]


async def wait_started(stack: demo.Stack, marks: dict[str, str], timeout_s: float = 60.0) -> None:
    """Wait until each service's log shows its mark (its consumers bound; the executor reconciled)."""
    deadline = time.monotonic() + timeout_s
    for name, mark in marks.items():
        log = stack.data_dir / "logs" / f"{name}.log"
        while f'"{mark}"' not in (log.read_text() if log.exists() else ""):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{name} did not log {mark}; see {log}")
            await asyncio.sleep(0.1)


async def run(rows: int, speed: float, tmp: Path) -> list[float]:
    n = infra.start_nats(tmp / "nats", infra.free_port(), tmp / "nats.log")
    stack = demo.Stack(tmp, n.url, "", [n])
    try:
        await demo.apply_topology(n.url, fresh=True)
        fake = FakeBybit(instruments=load_instruments(ROOT / "data" / "bybit_instruments_linear.json"))
        await fake.start()
        trading = fake.enable_trading(api_key=KEY, api_secret=SECRET, balance_usdt=1_000_000.0)
        created: dict[str, int] = {}
        original = fake.rest_routes[("POST", "/v5/order/create")]

        async def timed_create(request: Any, q: dict[str, str]) -> Any:
            t = time.time_ns()
            body = await request.text()
            link = json.loads(body).get("orderLinkId", "") if body else ""
            created.setdefault(link, t)
            return await original(request, q)

        fake.rest_routes[("POST", "/v5/order/create")] = timed_create
        nc = await nats.connect(n.url)
        arrival: dict[str, int] = {}
        bar_of_intent: dict[str, str] = {}
        intent_of_order: dict[str, str] = {}

        async def on_bar(msg: Any) -> None:
            t = time.time_ns()
            bar = ev.decode(msg.data)
            if isinstance(bar, ev.Bar) and bar.closed:
                arrival[bar.event_id] = t
                trading.set_price(bar.symbol, bar.close, ts_ms=bar.ts_event // 1_000_000)

        seen: dict[tuple[str, str], int] = {}  # (hop, intent id) -> when the bus delivered it here

        async def on_signal(msg: Any) -> None:
            t = time.time_ns()
            e = ev.decode(msg.data)
            if isinstance(e, ev.IntentProposed):
                bar_of_intent[e.correlation_id] = e.causation_id
                seen[("intent", e.correlation_id)] = t
            elif isinstance(e, ev.FactorSnapshot) and e.intent_id:
                seen[("factor", e.intent_id)] = t

        async def on_exec(msg: Any) -> None:
            t = time.time_ns()
            e = ev.decode(msg.data)
            if isinstance(e, ev.OrderSubmitted) and not e.reduce_only:
                intent_of_order[e.order_id] = e.correlation_id
                seen[("order", e.correlation_id)] = t
            elif isinstance(e, ev.VerdictAwaited):
                seen[("awaited", e.correlation_id)] = t

        async def on_verdict(msg: Any) -> None:
            t = time.time_ns()
            e = ev.decode(msg.data)
            if isinstance(e, ev.VerdictIssued):
                seen[("verdict", e.correlation_id)] = t

        await nc.subscribe("md.bar.>", cb=on_bar)
        await nc.subscribe("sig.>", cb=on_signal)
        await nc.subscribe("exec.>", cb=on_exec)
        await nc.subscribe("llm.verdict.>", cb=on_verdict)
        env = {
            "NERTZ_EXECUTOR__VENUE": "bybit", "BYBIT_ENV": "testnet", "BYBIT_API_KEY": KEY,
            "BYBIT_API_SECRET": SECRET, "NERTZ_BYBIT__REST_URL": fake.base_url, "NERTZ_BYBIT__WS_URL": fake.ws_url,
        }  # fmt: skip
        for name in ("signal", "llm-validator"):
            demo.start_service(stack, name)
        demo.start_service(stack, "executor", **env)
        await wait_started(stack, {"signal": "component.started", "llm-validator": "component.started",
                                   "executor": "bybit.reconciled"})  # fmt: skip
        files = demo.slice_input(tmp / "input", rows)[0]
        proc = demo.start_replay(stack, files, str(speed), subprocess.DEVNULL, subprocess.DEVNULL)
        while proc.poll() is None:
            await asyncio.sleep(0.2)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and len(created) < len(intent_of_order):
            await asyncio.sleep(0.2)
        await asyncio.sleep(1.0)
        out = []
        hops: dict[str, list[float]] = {h: [] for h in HOPS}
        for link, t in created.items():
            iid = intent_of_order.get(link, "")
            bar = bar_of_intent.get(iid, "")
            if bar not in arrival:
                continue
            out.append((t - arrival[bar]) / 1e6)
            times = [arrival[bar], *(seen.get((h, iid), 0) for h in HOPS[:-1]), t]
            for h, a, b in zip(HOPS, times, times[1:], strict=False):
                if a and b:
                    hops[h].append((b - a) / 1e6)
        HOP_MEDIANS.append({h: statistics.median(v) for h, v in hops.items() if v})
        print(f"  {len(arrival)} closed bars, {len(intent_of_order)} entries, {len(created)} order requests")
        await nc.close()
        await fake.stop()
        return out
    finally:
        stack.stop()


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--rows", type=int, default=20_000, help="rows per symbol of the bundled 1m klines (default 20000)")
    p.add_argument("--speed", type=float, default=30_000.0, help="replay pace, x real time (default 30000)")
    p.add_argument("--runs", type=int, default=1, help="runs (figures are over all their orders)")
    args = p.parse_args()
    os.environ.setdefault("NO_PROXY", "127.0.0.1,localhost")
    lat: list[float] = []
    for i in range(args.runs):
        with tempfile.TemporaryDirectory(prefix="nertz-bench-latency-") as tmp:
            print(f"run {i + 1}/{args.runs}")
            lat += asyncio.run(run(args.rows, args.speed, Path(tmp)))
    if not lat:
        print("no order reached the fake: nothing to measure", file=sys.stderr)
        sys.exit(1)
    print(f"closed bar -> order request at the fake, {len(lat)} orders:")
    print(f"  p50 {statistics.median(lat):.2f} ms   (reference <= 2 ms)")
    print(f"  p99 {quantile(lat, 0.99):.2f} ms   (reference <= 5 ms)")
    print(f"  min {min(lat):.2f} ms, max {max(lat):.2f} ms")
    print("median time of each hop (ms), ending at the arrival of:")
    for h in HOPS:
        vals = [m[h] for m in HOP_MEDIANS if h in m]
        if vals:
            print(f"  {h:8s} {statistics.median(vals):8.2f}")


if __name__ == "__main__":
    main()
