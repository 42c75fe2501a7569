"""Benchmark market-ingest (not a test; prints figures, each the median of >= 3 runs).

(a) Order book core: the 413 BTCUSDT ``orderbook.200`` deltas of the bundled recording (16.4 price levels
    each) applied in a loop (each loop starts from the recorded snapshot), with top-50 extraction and
    ``BookSnapshot`` construction (id included) at the recording's conflation rate (100 ms of exchange
    time: 78 % of the deltas publish); at orderbook.50's 20 ms pushes (20 % publish); with no snapshots;
    and through the whole frame parser (msgspec decode + checks + book + snapshots). Both units are
    printed: delta frames/s and price-level updates/s (= frames/s x 16.4).
(b) Replay: the whole bundled data (3 x 30-day 1m CSV + the linear recording: 131,820 events) parsed and
    published into JetStream at ``--speed max``, on an embedded nats-server in a temporary folder (fresh
    stream per run); also parsing alone.
(c) Recorder: the event loop's cost of ``RecordingWriter.write`` per frame, and the background
    writer's throughput (xz preset 1), on the recording's 2,546 frames.

The machine has 2 vCPUs shared by the client, nats-server and anything else running; figures vary by
+-30 % between runs, hence medians.

Usage: ``.venv/bin/python bench/bench_ingest.py [--runs 3] [--loops 300] [--skip-replay]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import nats
import nats.js.errors

from nertz_common import bus, infra, topology
from nertz_ingest.adapters.recorder import RecordingWriter
from nertz_ingest.adapters.recording import RawFrame, SourceFile
from nertz_ingest.core.book import OrderBook
from nertz_ingest.core.bybit import BybitParser
from nertz_ingest.replay import parse_files, replay_files

DATA = Path(__file__).resolve().parents[1] / "data"
RECORDING = DATA / "cryptofeed" / "BYBIT.linear.jsonl.xz"
CSVS = sorted((DATA / "bybit_kline_1m").glob("*_1m.csv.xz"))
TOPIC = "orderbook.200.BTCUSDT"


def _median(runs: int, once: Callable[[], float]) -> tuple[float, list[float]]:
    values = [once() for _ in range(runs)]
    return statistics.median(values), values


def _runs(values: list[float]) -> str:
    return ", ".join(f"{v:,.0f}" for v in values)


def bench_book(runs: int, loops: int) -> None:
    frames = [f for f in SourceFile(RECORDING).records() if isinstance(f, RawFrame) and TOPIC in f.raw[:40]]
    decoded = []
    for f in frames:
        m = json.loads(f.raw)
        d = m["data"]
        bids = [(float(p), float(q)) for p, q in d["b"]]
        asks = [(float(p), float(q)) for p, q in d["a"]]
        decoded.append((m["type"], bids, asks, d["u"], d["seq"], m["ts"] * 1_000_000, f.recv_ns))
    snap, deltas = decoded[0], decoded[1:]
    assert snap[0] == "snapshot" and all(x[0] == "delta" for x in deltas)
    levels_per_delta = sum(len(x[1]) + len(x[2]) for x in deltas) / len(deltas)

    def run(min_interval_ns: int, time_scale: int = 1) -> tuple[float, int]:
        published = 0
        ts0 = snap[5]
        scaled = [(b, a, u, seq, ts0 + (ts - ts0) // time_scale, recv) for _, b, a, u, seq, ts, recv in deltas]
        t0 = time.perf_counter()
        for _ in range(loops):
            book = OrderBook("BTCUSDT", 200, top_n=50, min_interval_ns=min_interval_ns)
            book.on_snapshot(*snap[1:])
            on_delta = book.on_delta
            for b, a, u, seq, ts, recv in scaled:
                published += len(on_delta(b, a, u, seq, ts, recv))
        return time.perf_counter() - t0, published

    variants = (
        ("top-50 BookSnapshot every 100 ms (recorded 100 ms pushes)", 100_000_000, 1),
        ("top-50 BookSnapshot every 100 ms (times / 5: orderbook.50's 20 ms pushes)", 100_000_000, 5),
        ("apply only, no snapshots", 10**18, 1),
    )
    for label, interval, scale in variants:
        pub_share = run(interval, scale)[1] / (loops * len(deltas))  # warm-up; the share of deltas that publish
        med, values = _median(runs, lambda i=interval, s=scale: (loops * len(deltas)) / run(i, s)[0])
        print(
            f"(a) book core, {label}: {med:,.0f} delta frames/s = {med * levels_per_delta:,.0f} level updates/s "
            f"(frames/s of {runs} runs: {_runs(values)}; {len(deltas)} deltas x {loops} loops, "
            f"{levels_per_delta:.1f} levels/delta, {pub_share:.0%} of deltas publish)"
        )

    def parser_run() -> float:
        t0 = time.perf_counter()
        for _ in range(loops):
            p = BybitParser()
            for f in frames:
                p.feed(f.raw, f.recv_ns)
        return loops * len(frames) / (time.perf_counter() - t0)

    parser_run()
    med, values = _median(runs, parser_run)
    print(
        f"(a) frame parser on {TOPIC} (msgspec decode + checks + book + top-50 snapshots every 100 ms): "
        f"{med:,.0f} frames/s = {med * levels_per_delta:,.0f} level updates/s (frames/s of {runs} runs: "
        f"{_runs(values)})"
    )


async def _replay_once(url: str, paths: list[Path]) -> tuple[float, int, float]:
    nc = await nats.connect(url)
    js = nc.jetstream()
    with contextlib.suppress(nats.js.errors.NotFoundError):
        await js.delete_stream("NERTZ")
    await topology.apply(js)
    stats = await replay_files(bus.Publisher(js), paths, None)
    await nc.close()
    return stats.events_per_s, stats.published, stats.wall_s


def bench_replay(runs: int) -> None:
    paths = [*CSVS, RECORDING]

    def parse_once() -> float:
        t0 = time.perf_counter()
        n = sum(1 for _ in parse_files(paths))
        return n / (time.perf_counter() - t0)

    med, values = _median(runs, parse_once)
    print(f"(b) parse only (no bus), {len(paths)} files: {med:,.0f} events/s (of {runs} runs: {_runs(values)})")
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp:
        srv = infra.start_nats(Path(tmp) / "nats")
        try:
            results = [asyncio.run(_replay_once(srv.url, paths)) for _ in range(runs)]
        finally:
            srv.stop()
    rates = [r[0] for r in results]
    print(
        f"(b) replay --speed max into JetStream (embedded nats-server, file storage, every ack checked): "
        f"{statistics.median(rates):,.0f} events/s (of {runs} runs: {_runs(rates)}; "
        f"{results[0][1]:,} events, median wall {statistics.median(r[2] for r in results):.2f} s)"
    )


def bench_recorder(runs: int) -> None:
    frames = [f for f in SourceFile(RECORDING).records() if isinstance(f, RawFrame)]
    size = sum(len(f.raw) for f in frames)

    def once() -> tuple[float, float]:
        with tempfile.TemporaryDirectory(prefix="bench-recorder-") as tmp:
            w = RecordingWriter(Path(tmp) / "r.jsonl.xz", flush_bytes=1 << 30, flush_interval_ns=10**18)
            t0 = time.perf_counter()
            for _ in range(20):
                for f in frames:
                    w.write(f.raw, f.recv_ns)
            loop_s = time.perf_counter() - t0
            t1 = time.perf_counter()
            w.close()  # compresses the whole buffer on the writer thread
            return loop_s / (20 * len(frames)) * 1e6, 20 * size / (time.perf_counter() - t1) / 1e6

    results = [once() for _ in range(runs)]
    print(
        f"(c) recorder: write() costs the event loop {statistics.median(r[0] for r in results):.2f} µs/frame; "
        f"the writer thread compresses (xz preset 1) and writes "
        f"{statistics.median(r[1] for r in results):.1f} MB/s of frames (median of {runs} runs)"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=3, help="runs per figure (the median is printed; >= 3)")
    ap.add_argument("--loops", type=int, default=300, help="passes over the BTCUSDT deltas per book run")
    ap.add_argument("--skip-replay", action="store_true", help="only the order book and recorder figures")
    args = ap.parse_args()
    runs = max(3, args.runs)
    bench_book(runs, args.loops)
    bench_recorder(runs)
    if not args.skip_replay:
        bench_replay(runs)


if __name__ == "__main__":
    main()
