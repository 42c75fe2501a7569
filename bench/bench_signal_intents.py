"""Count intents on the bundled 30 days of 1m bars and time the engine (a script, not a test).

Usage: ``.venv/bin/python bench/bench_signal_intents.py [--threshold 7 8 9] [--data DIR]``

Bars of all symbols are merged in time order (as market-ingest's replayer publishes them) and fed to one
:class:`SignalEngine`; there is no book, so EGM and PIO are the only factors (renormalised).
"""

from __future__ import annotations

import argparse
import time
from collections import Counter
from pathlib import Path

from nertz_common import events as ev
from nertz_ingest.replay import parse_files
from nertz_signal.core.config import SignalConfig
from nertz_signal.core.engine import SignalEngine

DATA = Path(__file__).resolve().parents[1] / "data" / "bybit_kline_1m"


def merged_bars(data: Path = DATA) -> list[ev.Bar]:
    """Return the bundled 1m bars of every symbol, merged in close-time order by market-ingest's replayer."""
    return [e for e in parse_files(sorted(data.glob("*_1m.csv*"))) if isinstance(e, ev.Bar)]


def run(bars: list[ev.Bar], cfg: SignalConfig) -> tuple[Counter[tuple[str, str]], Counter[str], float]:
    """Return intents by (symbol, side), vetoes by name, and the engine cost in µs per bar."""
    engine = SignalEngine(cfg)
    intents: Counter[tuple[str, str]] = Counter()
    vetoes: Counter[str] = Counter()
    t0 = time.perf_counter()
    for b in bars:
        for e in engine.on_bar(b):
            if isinstance(e, ev.IntentProposed):
                intents[(e.symbol, e.side)] += 1
            elif isinstance(e, ev.FactorSnapshot) and e.veto:
                vetoes[e.veto.split(":", 1)[0]] += 1
    return intents, vetoes, (time.perf_counter() - t0) / len(bars) * 1e6


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threshold", type=float, nargs="*", default=[SignalConfig().entry_threshold])
    p.add_argument("--data", type=Path, default=DATA)
    args = p.parse_args()
    bars = merged_bars(args.data)
    symbols = sorted({b.symbol for b in bars})
    print(f"{len(bars)} bars, symbols {symbols}")
    for thr in args.threshold:
        intents, vetoes, us = run(bars, SignalConfig(entry_threshold=thr))
        per = ", ".join(
            f"{s} {intents[(s, 'long')] + intents[(s, 'short')]} ({intents[(s, 'long')]}L/{intents[(s, 'short')]}S)"
            for s in symbols
        )
        print(f"threshold {thr:g}: {per}; vetoes {dict(vetoes)}; {us:.1f} µs/bar")


if __name__ == "__main__":
    main()
