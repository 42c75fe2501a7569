"""Time a 100-set walk-forward sweep on the bundled 30 days of 1m bars (a script, not a test).

Usage: ``.venv/bin/python bench/bench_sweep.py [--runs 1] [--workers N] [--walk-forward 3] [--data DIR]``

A 10 × 10 grid of ``signal.entry_threshold`` (8.6 … 9.5, score units) × ``executor.cooldown_s`` (0 …
2,700 s) over the bars of every bundled symbol, merged in time order, each set one full backtest (signal,
rules validator, executor with the paper venue) in a worker of a Dask LocalCluster on 127.0.0.1 (one
single-threaded worker process per core by default). The wall time covers the cluster's start, sending
the records to the workers, the 100 backtests and the shutdown; loading the files is not included.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

from nertz_cli import config, sweep, tools

DATA = Path(__file__).resolve().parents[1] / "data" / "bybit_kline_1m"
THRESHOLDS = [8.6, 8.7, 8.8, 8.9, 9.0, 9.1, 9.2, 9.3, 9.4, 9.5]
COOLDOWNS_S = [0, 300, 600, 900, 1200, 1500, 1800, 2100, 2400, 2700]
REFERENCE = "≤ 2 min on 2 cores"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=DATA, help="directory of SYMBOL_1m.csv.xz files")
    p.add_argument("--runs", type=int, default=1, help="sweeps to time (the median is reported)")
    p.add_argument("--workers", type=int, default=os.cpu_count(), help="local Dask workers (default: the cores)")
    p.add_argument("--walk-forward", type=int, default=3, help="walk-forward folds K")
    args = p.parse_args()
    if args.runs < 1:
        p.error(f"expected --runs >= 1, was {args.runs}")
    files = sorted(args.data.glob("*_1m.csv*"))
    if not files:
        p.error(f"expected *_1m.csv[.xz] files in {args.data}, found none")
    inputs = tools.load_inputs(files)
    grid = {"signal.entry_threshold": THRESHOLDS, "executor.cooldown_s": COOLDOWNS_S}
    n_sets = len(THRESHOLDS) * len(COOLDOWNS_S)
    print(
        f"{len(inputs.records):,} records ({inputs.bars:,} bars, {', '.join(f.name for f in files)}); "
        f"{n_sets} parameter sets, walk-forward {args.walk_forward} folds, {args.workers} workers"
    )
    base = config.load()
    walls: list[float] = []
    result: sweep.SweepResult | None = None
    for i in range(args.runs):
        t0 = time.perf_counter()
        result = sweep.run(inputs.records, base, grid, folds=args.walk_forward, workers=args.workers)
        walls.append(time.perf_counter() - t0)
        cpu = sum(r.metrics.seconds for r in result.rows)
        print(
            f"run {i + 1}: {walls[-1]:.1f} s wall ({result.setup_seconds:.1f} s to start the cluster and send the "
            f"records), {cpu:.1f} s of backtests ({cpu / n_sets:.2f} s per set)"
        )
    if result is None:
        return
    best = result.rows[0]
    chained = result.chained_oos_return
    print(
        f"best out of sample: {sweep.format_params(best.params)} OOS {best.score:+.2%}; walk-forward selection chained "
        f"OOS {'-' if chained is None else f'{chained:+.2%}'}"
    )
    print(
        f"sweep of {n_sets} sets, {args.workers} workers: {statistics.median(walls):.1f} s wall "
        f"(median of {args.runs}); reference {REFERENCE}"
    )


if __name__ == "__main__":
    main()
