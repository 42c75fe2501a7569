"""The combined score's distribution per factor set, the entry thresholds it calibrates, and the stops.

Usage: ``.venv/bin/python bench/bench_score_distribution.py [--stops] [--data DIR]``

Prints (a script, not a test; docs/decisions.md D19 and D20 quote its figures):

1. **bars only** (the bundled 30 days of 1m klines, EGM and PIO): the distribution of ``|combined|`` and
   the share of bars at or above a few thresholds, the default ``entry_threshold`` among them;
2. **books** (the bundled 44 s WebSocket recording, 1,285 conflated book snapshots of four symbols):
   ILD, ROL and OGM per symbol, and the books-only score;
3. **bars and books** (all five factors): no bundled data has both at once, so the score is built from
   every pair (bar, book snapshot) of a symbol, i.e. as if the two were independent; the share of
   scores at or above each threshold, and the threshold that the same share of scores reaches as the
   bars-only default does (the calibrated ``entry_threshold_books``);
4. **entries under the defaults**: the signal engine on the bars alone, and on the same bars each
   preceded by a recorded book of its symbol (taken in turn, its prices scaled to the bar's close);
5. with ``--stops``: the share of bars whose stop sits on its floor (and on its cap) and the net R:R
   of the intents, with the stops before issue 10 (ATR14 of 1m bars, 0.3 % floor, TP = 3 × SL), now
   (ATR14 of 4 h bars), and with the ATR of 1 h or daily bars instead.
"""

from __future__ import annotations

import argparse
import statistics
from collections import Counter, defaultdict
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from nertz_common import events as ev
from nertz_ingest.replay import parse_files
from nertz_signal.core import factors, stops
from nertz_signal.core.config import SignalConfig
from nertz_signal.core.engine import SignalEngine
from nertz_signal.core.indicators import TIMEFRAMES_NS

DATA = Path(__file__).resolve().parents[1] / "data"
THRESHOLDS = (5.0, 5.5, 6.0, 6.3, 6.5, 7.0, 7.5, 8.0, 9.0, 9.5)
#: the stops before issue 10: ATR14 of the 1m bars themselves, a 0.3 % floor, TP = 3 × SL gross
BEFORE = {"stop_timeframe": "1", "stop_atr_min_bars": 14, "sl_min": 0.003, "risk_reward": 3.0, "min_risk_reward": 1}
STOPS: tuple[tuple[str, dict[str, object]], ...] = (
    ("before", BEFORE),
    ("now", {}),
    ("1 h bars instead", {"stop_timeframe": "60"}),
    ("daily bars instead", {"stop_timeframe": "D"}),
)


def klines(data: Path) -> list[ev.Bar]:
    """The bundled 1m bars of every symbol in log order (market-ingest's replayer)."""
    return [e for e in parse_files(sorted((data / "bybit_kline_1m").glob("*_1m.csv*"))) if isinstance(e, ev.Bar)]


def recorded_books(data: Path) -> dict[str, list[ev.BookSnapshot]]:
    """The recording's conflated book snapshots, per symbol, in log order."""
    out: dict[str, list[ev.BookSnapshot]] = defaultdict(list)
    for e in parse_files(sorted((data / "cryptofeed").glob("*.jsonl*"))):
        if isinstance(e, ev.BookSnapshot):
            out[e.symbol].append(e)
    return dict(out)


def tail_share(scores: NDArray[np.float64], t: float) -> float:
    """Share of ``scores`` with ``|score| >= t``."""
    return float(np.mean(np.abs(scores) >= t)) if len(scores) else 0.0


def pair_tail(bar_part: NDArray[np.float64], book_part: NDArray[np.float64], t: float) -> float:
    """Share of the pairs ``(a, b)`` with ``|a + b| >= t`` (exact, by sorting the bar parts)."""
    a = np.sort(bar_part)
    hi = len(a) - np.searchsorted(a, t - book_part, side="left")
    lo = np.searchsorted(a, -t - book_part, side="right")
    return float((hi + lo).sum()) / (len(a) * len(book_part))


def matching_threshold(share: float, tail: object, lo: float = 0.0, hi: float = 10.0) -> float:
    """The threshold ``t`` at which the decreasing ``tail(t)`` equals ``share`` (bisection, 1e-4)."""
    for _ in range(40):
        mid = (lo + hi) / 2
        if tail(mid) > share:  # type: ignore[operator]
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def book_factors(books: Sequence[ev.BookSnapshot], cfg: SignalConfig) -> NDArray[np.float64]:
    """``(ILD, ROL, OGM)`` of each snapshot, shape (n, 3); NaN where a factor is unavailable."""
    rows = []
    for b in books:
        bids, asks = factors.levels(b.bids), factors.levels(b.asks)
        vals = (
            factors.ild(bids, asks, cfg.ild_levels),
            factors.rol(bids, asks, cfg.rol_band),
            factors.ogm(bids, asks, cfg.ogm_max_spread_bps),
        )
        rows.append([np.nan if v is None else v for v in vals])
    return np.asarray(rows, dtype=np.float64).reshape(-1, 3)


def with_books(bars: Sequence[ev.Bar], books: dict[str, list[ev.BookSnapshot]]) -> Iterator[ev.Event]:
    """Each bar, preceded by the next recorded book of its symbol (in turn), scaled to the bar's close."""
    turn: Counter[str] = Counter()
    for bar in bars:
        recorded = books.get(bar.symbol)
        if recorded:
            b = recorded[turn[bar.symbol] % len(recorded)]
            turn[bar.symbol] += 1
            k = bar.close / ((b.bids[0][0] + b.asks[0][0]) / 2)
            yield ev.BookSnapshot(
                event_id=f"{b.event_id}:{bar.event_id}",
                ts_event=bar.ts_event - 1_000_000,
                ts_init=bar.ts_event - 1_000_000,
                symbol=bar.symbol,
                bids=[(p * k, q) for p, q in b.bids],
                asks=[(p * k, q) for p, q in b.asks],
                depth=b.depth,
                update_id=b.update_id,
            )
        yield bar


def run(events: Iterator[ev.Event] | Sequence[ev.Event], cfg: SignalConfig) -> tuple[list[ev.Event], SignalEngine]:
    """Feed ``events`` to a fresh engine; return everything it published."""
    engine = SignalEngine(cfg)
    handlers = {
        ev.Bar: engine.on_bar, ev.BookSnapshot: engine.on_book_snapshot,
    }  # fmt: skip
    out: list[ev.Event] = []
    for e in events:
        out.extend(handlers[type(e)](e))  # type: ignore[index, operator]
    return out, engine


def print_entries(label: str, out: list[ev.Event], symbols: list[str]) -> None:
    intents = Counter(e.symbol for e in out if isinstance(e, ev.IntentProposed))
    vetoes = Counter(e.veto.split(":", 1)[0] for e in out if isinstance(e, ev.FactorSnapshot) and e.veto)
    per = ", ".join(f"{s} {intents[s]}" for s in symbols)
    print(f"  {label}: {sum(intents.values())} intents ({per}); vetoes {dict(sorted(vetoes.items()))}")


def _bars(timeframe: str) -> str:
    return f"{timeframe}-minute bars" if timeframe.isdigit() else {"D": "daily bars", "W": "weekly bars"}[timeframe]


def print_stops(bars: list[ev.Bar], symbols: list[str]) -> None:
    print("\n5. stops: share of bars whose stop sits on its floor, and the intents' net R:R")
    for name, over in STOPS:
        cfg = SignalConfig.model_validate(over)
        tf_ns = TIMEFRAMES_NS[cfg.stop_timeframe]
        floor: Counter[str] = Counter()
        cap: Counter[str] = Counter()
        known: Counter[str] = Counter()
        sl_by: dict[str, list[float]] = defaultdict(list)
        out: list[ev.Event] = []
        engine = SignalEngine(cfg)
        for b in bars:
            got = engine.on_bar(b)
            out.extend(got)
            snap = got[-1]
            if not isinstance(snap, ev.FactorSnapshot) or snap.stop_atr is None:
                continue
            plan = stops.plan("long", b.close, snap.stop_atr, "normal", cfg, tf_ns)
            if plan is None:
                continue
            known[b.symbol] += 1
            sl_by[b.symbol].append(plan.sl_distance)
            floor[b.symbol] += plan.sl_distance <= cfg.sl_min
            cap[b.symbol] += plan.sl_distance >= cfg.sl_max
        print(
            f"  {name}: ATR{cfg.stop_atr_period} of {_bars(cfg.stop_timeframe)} x {cfg.sl_atr_multiple:g}, "
            f"bounds {cfg.sl_min:.1%}-{cfg.sl_max:.0%}, TP = {cfg.risk_reward:g} x SL, costs {cfg.costs:.3%}"
        )
        for s in symbols:
            n = known[s] or 1
            print(
                f"    {s}: {known[s]} bars with a stop; on the floor {floor[s] / n:.1%}, on the cap "
                f"{cap[s] / n:.1%}; median SL {statistics.median(sl_by[s] or [0.0]):.2%}"
            )
        rr = sorted(e.net_risk_reward for e in out if isinstance(e, ev.IntentProposed) and e.net_risk_reward)
        if rr:
            print(
                f"    {len(rr)} intents, net R:R min {rr[0]:.2f}, median {statistics.median(rr):.2f}, max {rr[-1]:.2f}"
            )


def main() -> None:
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--data", type=Path, default=DATA)
    p.add_argument("--stops", action="store_true", help="also measure the stops before and after issue 10")
    args = p.parse_args()
    cfg = SignalConfig()
    w = cfg.weights
    bars = klines(args.data)
    symbols = sorted({b.symbol for b in bars})
    books = recorded_books(args.data)

    # 1. bars only
    engine = SignalEngine(cfg)
    bar_scores: dict[str, list[tuple[float, float, float]]] = defaultdict(list)  # (egm, pio, combined)
    for b in bars:
        s = engine.score(b)
        egm, pio = s.factors["egm"], s.factors["pio"]
        if egm is not None and pio is not None:
            bar_scores[b.symbol].append((egm, pio, s.combined))
    alone = np.asarray([c for v in bar_scores.values() for _, _, c in v])
    share = tail_share(alone, cfg.entry_threshold)
    print(f"1. bars only (egm+pio), {len(alone)} closed bars of {', '.join(symbols)} (the bundled 30 days)")
    q = np.percentile(np.abs(alone), [50, 90, 99, 99.9])
    top = np.abs(alone).max()
    print(f"  |combined| median {q[0]:.2f}, p90 {q[1]:.2f}, p99 {q[2]:.2f}, p99.9 {q[3]:.2f}, max {top:.2f}")
    print("  share >= t: " + ", ".join(f"{t:g}: {tail_share(alone, t):.3%}" for t in THRESHOLDS))
    print(f"  the default entry_threshold {cfg.entry_threshold:g} keeps {share:.3%} of the bars")

    # 2. books
    print(f"\n2. books (ild, rol, ogm), the recording: {sum(len(v) for v in books.values())} snapshots")
    book_part: dict[str, NDArray[np.float64]] = {}
    for sym, snaps in sorted(books.items()):
        f = book_factors(snaps, cfg)
        ok = ~np.isnan(f).any(axis=1)
        f = f[ok]
        part = (w.ild * f[:, 0] + w.rol * f[:, 1] + w.ogm * f[:, 2]) * 10.0
        book_part[sym] = part
        only = part / (w.ild + w.rol + w.ogm)
        pct = {n: np.percentile(f[:, i], [5, 50, 95]) for i, n in enumerate(("ild", "rol", "ogm"))}
        print(
            f"  {sym}: {len(f)} snapshots; "
            + "; ".join(f"{n} p5/p50/p95 {v[0]:+.2f}/{v[1]:+.2f}/{v[2]:+.2f}" for n, v in pct.items())
            + f"; books-only combined {only.min():+.2f} .. {only.max():+.2f}"
        )

    # 3. bars and books: every (bar, book) pair of a symbol
    print("\n3. all five factors, every pair (bar, book snapshot) of a symbol (as if independent)")
    pairs = [
        (np.asarray([(w.egm * e + w.pio * p) * 10.0 for e, p, _ in bar_scores[s]]), book_part[s])
        for s in symbols
        if s in book_part
    ]
    total = sum(len(a) * len(b) for a, b in pairs)

    def tail(t: float) -> float:
        return sum(pair_tail(a, b, t) * len(a) * len(b) for a, b in pairs) / total

    for s, (a, b) in zip([s for s in symbols if s in book_part], pairs, strict=True):
        print(f"  {s}: max |combined| {max(abs(a.max() + b.max()), abs(a.min() + b.min())):.2f}; share >= t: "
              + ", ".join(f"{t:g}: {pair_tail(a, b, t):.3%}" for t in THRESHOLDS[:7]))  # fmt: skip
    print("  all: share >= t: " + ", ".join(f"{t:g}: {tail(t):.3%}" for t in THRESHOLDS[:7]))
    t_books = matching_threshold(share, tail)
    print(
        f"  the threshold with books that keeps the same {share:.3%}: {t_books:.2f} "
        f"(default entry_threshold_books {cfg.entry_threshold_books:g}: {tail(cfg.entry_threshold_books):.3%})"
    )

    # 4. entries under the defaults
    print("\n4. entries under the default configuration")
    out, _ = run(bars, cfg)
    print_entries("bars alone (the bundled CSVs)", out, symbols)
    out, _ = run(with_books(bars, books), cfg)
    print_entries("the same bars, each after a recorded book of its symbol", out, symbols)

    if args.stops:
        print_stops(bars, symbols)


if __name__ == "__main__":
    main()
