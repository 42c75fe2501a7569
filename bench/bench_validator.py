"""The validator with Qwen: its own overhead per intent, and what a slow model does to the pipeline.

Usage: ``.venv/bin/python bench/bench_validator.py [--intents 2000] [--symbols 20] [--latency 1.5] [--runs 3]``

1. **Overhead per intent, the model's latency excluded**: the validator component judging intents with
   a model policy — the prompt rendered and hashed, the answer parsed against the verdict schema, the
   verdict built — with the answer handed back at once. Reference: ≤ 1 ms median.
   For comparison, the same through the real dashscope SDK to a fake DashScope answering at once on
   loopback (HTTP included, so not the validator's overhead alone).
2. **A slow model on JetStream**: the validator and the executor as in the services (in process, on
   an embedded NATS), the fake DashScope answering in ``--latency`` s. ``--symbols`` bars close together,
   each with an intent; meanwhile another symbol's open position meets its take-profit. Reported: each
   verdict's delay after its bar was published (reference: every one within 2 s at 1.5 s latency), and
   how long the executor took to close the other symbol's position while the verdicts were outstanding
   (reference: ≤ 100 ms).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import statistics
import tempfile
import time
from pathlib import Path

from nertz_common import bus, infra, runtime, subjects, topology
from nertz_common import events as ev
from nertz_common.ids import derive_id
from nertz_common.node.component import Node, Pos
from nertz_common.node.log import read_log
from nertz_common.settings import KernelSettings
from nertz_common.testing import factories as f
from nertz_common.testing.fake_dashscope import Answer, FakeDashScope, FakeRequest, default_reply
from nertz_executor import app as executor_app
from nertz_executor.settings import ExecutorGroup, ExecutorSettings
from nertz_validator import app as validator_app
from nertz_validator.adapters.qwen import QwenClient
from nertz_validator.core import prompt
from nertz_validator.core.component import Ask, ModelPolicy, Validator
from nertz_validator.settings import QwenSettings, ValidatorSettings

MINUTE = 60_000_000_000
ANSWER = '{"decision": "approve", "confidence": 0.8, "size_multiplier": 1.0, "reasons": ["ok"], "risk_flags": []}'


def awaited(intent: ev.IntentProposed) -> ev.VerdictAwaited:
    return ev.VerdictAwaited(
        event_id=derive_id("VerdictAwaited", intent.event_id), ts_event=intent.ts_event, ts_init=intent.ts_event,
        symbol=intent.symbol, correlation_id=intent.correlation_id, causation_id=intent.event_id, lock_state="FLAT",
    )  # fmt: skip


def overhead(n: int) -> list[float]:
    """Per intent, the component's time (ms) from VerdictAwaited to VerdictIssued, answer given at once."""
    node = Node(Validator(model=ModelPolicy()))
    out = []
    for i in range(n):
        intent = f.intent(f.bar(i, symbol=f"S{i % 50}USDT"))
        t0 = time.perf_counter_ns()
        node.feed(awaited(intent), Pos(2 * i + 1, 2 * i + 1))
        node.feed(intent, Pos(2 * i + 2, 2 * i + 1))
        [(call, _)] = node.asked
        node.asked = []
        assert isinstance(call, Ask)
        answer = ev.ModelCall(
            model=call.model, prompt_id=call.prompt_id, prompt_sha256=call.prompt_sha256, outcome="ok",
            raw_text=ANSWER, finish_reason="stop", latency_ms=0.0, attempts=1,
        )  # fmt: skip
        [(v, _)] = node.answer(call.key, answer)
        out.append((time.perf_counter_ns() - t0) / 1e6)
        assert isinstance(v, ev.VerdictIssued)
    return out


async def sdk_round_trip(n: int) -> list[float]:
    """Per call, the wall time (ms) through the real SDK to a fake answering at once (loopback HTTP)."""
    async with FakeDashScope() as fake:
        client = QwenClient(QwenSettings(), ["sk-bench"], base_url=fake.base_url)
        times = []
        for i in range(n):
            r = prompt.render("verdict.v1", {"symbol": "BTCUSDT", "i": i})
            call = Ask(key=str(i), role="verdict", symbol="BTCUSDT", model="qwen-plus", prompt_id=r.prompt_id,
                       prompt_sha256=r.sha256, messages=list(r.messages))  # fmt: skip
            t0 = time.perf_counter()
            await client(call)
            times.append((time.perf_counter() - t0) * 1000)
        await client.close()
    return times


# --- a slow model on JetStream ---------------------------------------------------------------------


async def slow_model(nats_url: str, symbols: int, latency_s: float) -> tuple[list[float], float]:
    """Return (each verdict's delay after its bar, s; the other symbol's TP close time, s)."""
    fast = "FASTUSDT"

    def responder(req: FakeRequest) -> object:
        slow = fast not in (req.messages[-1].get("content") or "")
        base = default_reply(req.model, req.messages, req.parameters)
        return Answer(ANSWER, delay_s=latency_s) if slow else base

    async with FakeDashScope() as fake:
        fake.responder = responder  # type: ignore[assignment]
        nc_js = await _js(nats_url)
        await topology.recreate(nc_js[1])
        pub = bus.Publisher(nc_js[1])
        vcfg = ValidatorSettings(NATS_URL=nats_url, DASHSCOPE_API_KEY="sk-bench", DASHSCOPE_HTTP_BASE_URL=fake.base_url,
                                 kernel=KernelSettings(snapshots=False))  # fmt: skip
        xcfg = ExecutorSettings(NATS_URL=nats_url, executor=ExecutorGroup(max_positions=symbols + 1),
                                kernel=KernelSettings(snapshots=False))  # fmt: skip
        async with runtime.runtime("llm-validator", vcfg) as vrt, runtime.runtime("executor", xcfg) as xrt:
            try:
                _, vrun, client = await validator_app.start(vrt, vcfg)
                _, xrun = await executor_app.start(xrt, xcfg)
                tasks = [asyncio.create_task(vrun.run()), asyncio.create_task(xrun.run())]
                # the other symbol opens a position first (its model answers at once)
                b0 = f.bar(0, symbol=fast, close=100.0)
                intent = f.intent(b0, side="long", sl=0.01, qty=1.0)
                for e in (b0, _factor(b0, intent.event_id), intent):
                    await pub.publish(e)
                await pub.publish(f.book(b0.ts_event + 1_000_000_000, symbol=fast, mid=100.0, spread=0.02))
                await _wait_for(nc_js[1], lambda es: any(isinstance(e, ev.LockEngaged) for e in es))
                # now the bars of the slow symbols close together, each proposing an entry
                t_bars = time.perf_counter()
                sent: dict[str, float] = {}
                for i in range(symbols):
                    b = f.bar(1, symbol=f"SLOW{i}USDT")
                    it = f.intent(b, qty=0.001)
                    for e in (b, _factor(b, it.event_id), it):
                        await pub.publish(e)
                    sent[it.correlation_id] = time.perf_counter()
                await asyncio.sleep(0.2)  # the verdicts are now outstanding
                tp = f.book(f.T0_NS + MINUTE + 30_000_000_000, symbol=fast, mid=intent.take_profit * 1.001, spread=0.02)
                t_tp = time.perf_counter()
                await pub.publish(tp)
                await _wait_for(nc_js[1], lambda es: any(isinstance(e, ev.PositionClosed) for e in es), poll=0.002)
                close_s = time.perf_counter() - t_tp
                got: dict[str, float] = {}
                while len(got) < symbols and time.perf_counter() - t_bars < 30:
                    for v in await _events(nc_js[1], "llm.verdict.>"):
                        if v.correlation_id in sent and v.correlation_id not in got:
                            got[v.correlation_id] = time.perf_counter() - sent[v.correlation_id]
                    await asyncio.sleep(0.005)
                vrt.stop.set()
                xrt.stop.set()
                await asyncio.wait_for(asyncio.gather(*tasks), 20)
                if client is not None:
                    await client.close()
            finally:
                for s in (signal.SIGTERM, signal.SIGINT):
                    with contextlib.suppress(Exception):
                        asyncio.get_running_loop().remove_signal_handler(s)
                await nc_js[0].close()
    return sorted(got.values()), close_s


def _factor(bar: ev.Bar, intent_id: str | None) -> ev.FactorSnapshot:
    return ev.FactorSnapshot(
        event_id=derive_id("FactorSnapshot", bar.event_id), ts_event=bar.ts_event, ts_init=bar.ts_event,
        symbol=bar.symbol, bar_id=bar.event_id, interval=bar.interval, close=bar.close, intent_id=intent_id,
    )  # fmt: skip


async def _js(url: str):  # type: ignore[no-untyped-def]
    import nats

    nc = await nats.connect(url)
    return nc, nc.jetstream(timeout=10)


async def _events(js, filt: str) -> list:  # type: ignore[no-untyped-def, type-arg]
    return [r.event for r in await read_log(js, filters=[filt])]


async def _wait_for(js, cond, poll: float = 0.01, timeout_s: float = 20) -> None:  # type: ignore[no-untyped-def]
    deadline = time.perf_counter() + timeout_s
    while time.perf_counter() < deadline:
        if cond(await _events(js, subjects.filter_of("exec"))):
            return
        await asyncio.sleep(poll)
    raise TimeoutError("the executor did not get there")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--intents", type=int, default=2000, help="intents for the overhead measure")
    p.add_argument("--symbols", type=int, default=20, help="bars closing together")
    p.add_argument("--latency", type=float, default=1.5, help="the fake model's answer time, s")
    p.add_argument("--runs", type=int, default=3, help="runs of the JetStream scenario (medians printed)")
    args = p.parse_args()
    os.environ.setdefault("NO_PROXY", "127.0.0.1,localhost")
    ms = overhead(args.intents)
    print(f"validator overhead per intent (component, answer at once): median {statistics.median(ms):.3f} ms, "
          f"p99 {sorted(ms)[int(0.99 * len(ms))]:.3f} ms over {len(ms):,}  [reference: <= 1 ms median]")  # fmt: skip
    rt = asyncio.run(sdk_round_trip(200))
    print(f"  with the dashscope SDK round trip to a fake answering at once: median {statistics.median(rt):.2f} ms")
    with tempfile.TemporaryDirectory() as tmp:
        server = infra.start_nats(Path(tmp) / "nats", infra.free_port(), Path(tmp) / "nats.log")
        try:
            worst, closes = [], []
            for _ in range(args.runs):
                delays, close_s = asyncio.run(slow_model(server.url, args.symbols, args.latency))
                assert len(delays) == args.symbols, f"only {len(delays)} verdicts"
                worst.append(max(delays))
                closes.append(close_s)
        finally:
            server.stop()
    print(f"{args.symbols} symbols, model answering in {args.latency:g} s: slowest verdict after its bar, median of "
          f"{args.runs} runs {statistics.median(worst):.2f} s  [reference: every verdict within 2 s]")  # fmt: skip
    print(f"another symbol's take-profit closed while they were outstanding in: median "
          f"{statistics.median(closes) * 1000:.0f} ms  [reference: <= 100 ms]")  # fmt: skip


if __name__ == "__main__":
    main()
