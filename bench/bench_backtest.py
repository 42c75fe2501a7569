"""Backtest speed: the full decision pipeline in one process (signal + rules validator + Hard Lock + paper
venue) on the bundled 30 days × 3 symbols, and on 10× as many bars (linearity). A script, not a test.

Usage: ``.venv/bin/python bench/bench_backtest.py [--runs 3] [--scale 10]``

The figure is closed bars per second of the components' run (loading and parsing the files is timed
apart). The 10× input is the bundled bars repeated back to back, each copy shifted by the data's span.
Reference figures (the issue): ≥ 100,000 bars/s, 10× the bars in ≤ 11× the time; NautilusTrader's
engine runs an EMA-cross strategy with orders at 8–19k bars/s on these machines, its no-order floor ~59k.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import msgspec

from nertz_cli import config, tools
from nertz_common import events as ev
from nertz_common.ids import derive_id
from nertz_common.node.log import Record, records_of

ROOT = Path(__file__).resolve().parents[1]
FILES = sorted((ROOT / "data" / "bybit_kline_1m").glob("*_1m.csv.xz"))


def scaled(records: list[Record], k: int) -> list[Record]:
    """Return ``records`` repeated ``k`` times back to back in time (each copy shifted by the span)."""
    bars = [r.event for r in records if isinstance(r.event, ev.Bar)]
    span = bars[-1].ts_event - bars[0].open_time_ns + 60_000_000_000
    out: list[ev.Event] = []
    for i in range(k):
        d = i * span
        for b in bars:
            out.append(
                msgspec.structs.replace(
                    b,
                    event_id=derive_id("Bar", b.symbol, b.interval, b.open_time_ns + d, True),
                    open_time_ns=b.open_time_ns + d,
                    ts_event=b.ts_event + d,
                    ts_init=b.ts_init + d,
                )
            )
    return records_of(out)


def measure(records: list[Record], runs: int, keep: bool = True) -> list[float]:
    """Return the seconds of ``runs`` backtests of ``records``."""
    settings = config.load()
    return [tools.backtest(records, settings, keep=keep).seconds for _ in range(runs)]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=3, help="runs per measurement (the median is printed)")
    p.add_argument("--scale", type=int, default=10, help="the linearity run's multiple of the bundled bars")
    args = p.parse_args()
    t0 = time.perf_counter()
    inputs = tools.load_inputs(FILES)
    load_s = time.perf_counter() - t0
    bars = inputs.bars
    print(f"loaded {bars:,} bars from {len(FILES)} files in {load_s:.2f} s ({bars / load_s:,.0f} bars/s parsing)")
    secs = measure(inputs.records, args.runs)
    med = statistics.median(secs)
    run = tools.backtest(inputs.records, config.load())
    trades = sum(isinstance(e, ev.PositionClosed) for e in run.outputs["executor"])
    print(
        f"backtest, 30 days × {len(FILES)} symbols: median {med:.3f} s = {bars / med:,.0f} bars/s "
        f"(min {min(secs):.3f}, max {max(secs):.3f}; {trades} round trips)  [reference: >= 100,000 bars/s; "
        f"NautilusTrader EMA-cross with orders 8-19k bars/s, no-order floor ~59k bars/s]"
    )
    big = scaled(inputs.records, args.scale)
    big_secs = measure(big, max(1, args.runs // 2), keep=False)
    big_med = statistics.median(big_secs)
    small = statistics.median(measure(inputs.records, max(1, args.runs // 2), keep=False))
    print(
        f"{args.scale}x the bars ({len(big):,}): median {big_med:.2f} s = {len(big) / big_med:,.0f} bars/s; "
        f"{big_med / small:.2f}x the time of 1x without outputs kept ({small:.3f} s)  "
        f"[reference: <= {args.scale * 1.1:.0f}x]"
    )


if __name__ == "__main__":
    main()
