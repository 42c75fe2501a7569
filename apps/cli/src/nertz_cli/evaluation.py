"""The honest evaluation: the strategy beside buy-and-hold and random entries, walk-forward.

``nertz backtest FILES --walk-forward K`` (without ``--grid``) backtests the given settings once, and
``N`` random-entry baselines (``--random N``, 20 by default) with the same exits and sizing, and reports
each of them in sample, out of sample and per window, with buy-and-hold of the same windows.

- **Windows and folds** are the sweep's (:mod:`nertz_cli.sweep`): K + 1 equal consecutive windows of
  event time ``w0..wK``; *in sample* is ``w0..w(K-1)``, *out of sample* ``w1..wK``; every run covers
  all records once (indicators warm at every window's start) and a closed trade belongs to the window
  holding its close time. Nothing is fitted here: the settings are the ones given, so the
  out-of-sample figures are out of sample only if those settings were not chosen on these windows.
- **Random entries** (``signal.random_entries``, :class:`nertz_signal.core.config.RandomEntries`): at
  every closed bar of the trading interval an entry with probability ``rate``, long or short at even
  odds, drawn from a hash of the seed and the bar's id; the filters, the stops, the net R:R check, the
  validator, the risk guard, the Hard Lock and the paper venue are the strategy's. The rate is
  calibrated to the strategy's number of closed trades: first ``trades / eligible bars``, then
  corrected by the median trades of four calibration runs at that rate (seeds 1000..1003:
  ``rate × strategy trades / median trades``), at most three times and until they are within 10 %
  (or one trade), since entries drawn while a position is open, or vetoed, make no trade. The
  reported runs are seeds ``0..N-1``.
- **Buy-and-hold** of a segment is the mean over symbols of ``last close / first close - 1`` of the
  closed bars inside it (each symbol's equal share of equity held through the segment, no fees).
- **Beats random**: the share of the random runs whose return in the segment is below the strategy's.

Fees are shown as a share of gross P&L (``fees / |net + fees|``) for the strategy and the random runs.
docs/decisions.md D28.
"""

from __future__ import annotations

import bisect
import json
import statistics
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from rich.table import Table

from nertz_cli import sweep
from nertz_cli.config import PipelineSettings, load
from nertz_cli.report import iso
from nertz_common import events as ev
from nertz_common.errors import ConfigurationError
from nertz_common.node.log import Record

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress

RANDOM_RUNS = 20
"""Random-entry runs by default (``--random``)."""
CALIBRATION_SEEDS = range(1_000, 1_004)
"""Seeds of the calibration runs (not among the reported ``0..N-1``)."""
CALIBRATION_ROUNDS = 3
"""Corrections of the random entries' rate at most."""
CALIBRATION_TOLERANCE = 0.1
"""The calibration stops when the median trades are within this fraction of the strategy's (or 1 trade)."""


@dataclass(frozen=True)
class SegmentRow:
    """One segment (in sample, out of sample or a window) of the strategy and its baselines.

    Attributes
    ----------
    name : str
        ``"in sample"``, ``"out of sample"`` or ``"w0"``…
    windows : tuple of (int, int)
        The first and last window index it spans.
    span_ns : tuple of (int, int)
        ``[start, end)`` in UNIX ns.
    bars : int
        Closed bars inside it (all symbols).
    strategy : Figures
        The strategy's closed trades in it.
    buy_and_hold : float or None
        Mean over symbols of ``last / first close - 1``, fraction; None without two bars of a symbol.
    random : list of Figures
        Each random run's closed trades in it, seed order.
    """

    name: str
    windows: tuple[int, int]
    span_ns: tuple[int, int]
    bars: int
    strategy: sweep.Figures
    buy_and_hold: float | None
    random: list[sweep.Figures]

    @property
    def random_returns(self) -> list[float]:
        """The random runs' returns, fractions, sorted."""
        return sorted(f.return_fraction for f in self.random)

    def random_quantile(self, q: float) -> float | None:
        """The ``q`` quantile (0..1, linear interpolation) of the random returns, fraction; None without runs."""
        xs = self.random_returns
        if not xs:
            return None
        pos = q * (len(xs) - 1)
        lo = int(pos)
        hi = min(lo + 1, len(xs) - 1)
        return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)

    @property
    def beats_random(self) -> float | None:
        """Share of the random runs whose return is below the strategy's (ties count half), fraction."""
        xs = self.random_returns
        if not xs:
            return None
        r = self.strategy.return_fraction
        return (sum(1 for x in xs if x < r) + 0.5 * sum(1 for x in xs if x == r)) / len(xs)

    def as_dict(self) -> dict[str, Any]:
        """Plain data for JSON."""
        trades = [f.trades for f in self.random]
        shares = [s for f in self.random if (s := f.fees_share_of_gross) is not None]
        return {
            "segment": self.name,
            "windows": list(self.windows),
            "span": [iso(self.span_ns[0]), iso(self.span_ns[1])],
            "bars": self.bars,
            "strategy": self.strategy.as_dict(),
            "buy_and_hold_return": self.buy_and_hold,
            "random": {
                "runs": len(self.random),
                "median_return": self.random_quantile(0.5),
                "p10_return": self.random_quantile(0.1),
                "p90_return": self.random_quantile(0.9),
                "median_trades": statistics.median(trades) if trades else None,
                "median_fees_share_of_gross": statistics.median(shares) if shares else None,
                "returns": [f.return_fraction for f in self.random],
            },
            "beats_random": self.beats_random,
        }


@dataclass(frozen=True)
class Evaluation:
    """The strategy and its baselines over the walk-forward windows.

    Attributes
    ----------
    rows : list of SegmentRow
        In sample, out of sample, then each window.
    bounds : list of int
        The windows' boundaries, UNIX ns.
    settings_hash : str
        The strategy's decisions hash.
    rate : float
        The random entries' calibrated probability per eligible bar, fraction.
    eligible_bars : int
        Closed, not backfilled bars of the trading interval (where an entry can be drawn).
    seeds : int
        Random runs.
    seconds : float
        Wall time of the whole evaluation, s.
    """

    rows: list[SegmentRow]
    bounds: list[int]
    settings_hash: str
    rate: float
    eligible_bars: int
    seeds: int
    seconds: float

    def as_dict(self) -> dict[str, Any]:
        """Plain data for JSON (``evaluation.json``)."""
        return {
            "walk_forward": {
                "k": len(self.bounds) - 2,
                "windows": [[iso(a), iso(b)] for a, b in zip(self.bounds, self.bounds[1:], strict=False)],
                "in_sample": "w0..w(K-1)",
                "out_of_sample": "w1..wK",
            },
            "settings_hash": self.settings_hash,
            "random_entries": {
                "runs": self.seeds,
                "rate": self.rate,
                "eligible_bars": self.eligible_bars,
                "calibration": "trades / eligible bars, corrected by the median trades of seeds 1000..1003",
            },
            "segments": [r.as_dict() for r in self.rows],
            "seconds": self.seconds,
        }


def eligible_bars(records: Sequence[Record], settings: PipelineSettings) -> int:
    """Closed bars of the trading interval (``signal.timeframe``; every interval if None) that are not
    backfilled (``Bar.warmup``): where a random entry can be drawn."""
    tf = settings.signal.timeframe
    return sum(
        1
        for r in records
        if isinstance(e := r.event, ev.Bar) and e.closed and not e.warmup and (tf is None or e.interval == tf)
    )


def buy_and_hold(closes: dict[str, tuple[list[int], list[float]]], lo_ns: int, hi_ns: int, last: bool) -> float | None:
    """Mean over symbols of ``last close / first close - 1`` of the bars closed in ``[lo_ns, hi_ns)``
    (``hi_ns`` included when ``last``), fraction; None when no symbol has two bars there.

    ``closes`` maps a symbol to its closed bars' ``(ts_event ns, close USDT)`` as two sorted lists.
    """
    out = []
    for ts, px in closes.values():
        i = bisect.bisect_left(ts, lo_ns)
        j = (bisect.bisect_right if last else bisect.bisect_left)(ts, hi_ns) - 1
        if j > i and px[i] > 0:
            out.append(px[j] / px[i] - 1.0)
    return sum(out) / len(out) if out else None


def _closes(records: Sequence[Record]) -> dict[str, tuple[list[int], list[float]]]:
    series: dict[str, tuple[list[int], list[float]]] = defaultdict(lambda: ([], []))
    for r in records:
        e = r.event
        if isinstance(e, ev.Bar) and e.closed:
            ts, px = series[e.symbol]
            ts.append(e.ts_event)
            px.append(e.close)
    return dict(series)


def _seeds(base: PipelineSettings, rate: float, seeds: Iterable[int]) -> list[tuple[dict[str, Any], PipelineSettings]]:
    """The random-entry parameter sets of ``seeds`` at ``rate`` on top of ``base``."""
    decisions = base.decisions()
    out = []
    for seed in seeds:
        params = {"signal.random_entries.enabled": True, "signal.random_entries.rate": rate,
                  "signal.random_entries.seed": seed}  # fmt: skip
        out.append((params, load([f"{k}={json.dumps(v)}" for k, v in params.items()], decisions)))
    return out


def evaluate(
    records: Sequence[Record],
    settings: PipelineSettings,
    folds: int,
    *,
    seeds: int = RANDOM_RUNS,
    scheduler: str | None = None,
    workers: int | None = None,
    progress: Progress | None = None,
) -> Evaluation:
    """Backtest ``settings`` and ``seeds`` random-entry baselines over ``records``, walk-forward.

    Parameters
    ----------
    records : sequence of Record
        Market data in log order (:func:`nertz_cli.tools.load_inputs`).
    settings : PipelineSettings
        The strategy (``--set`` applied); its ``signal.random_entries`` must be off.
    folds : int
        K walk-forward folds (K + 1 windows), >= 1.
    seeds : int
        Random runs (>= 1), on Dask like a sweep (:func:`nertz_cli.sweep.run`).
    scheduler, workers, progress
        As for :func:`nertz_cli.sweep.run`.

    Returns
    -------
    Evaluation

    Raises
    ------
    ConfigurationError
        If ``folds`` or ``seeds`` is below 1, random entries are already on, or no bar can draw one.
    ValueError
        If there are no records.
    """
    if not records:
        raise ValueError("expected market data records, was none")
    if isinstance(seeds, bool) or seeds < 1:
        raise ConfigurationError(f"expected --random N >= 1 runs, was {seeds}")
    if settings.signal.random_entries.enabled:
        raise ConfigurationError("expected the strategy's settings, was signal.random_entries.enabled=true")
    t0 = time.perf_counter()
    bounds = sweep.window_bounds(records[0].event.ts_event, records[-1].event.ts_event, folds)
    n_bars = eligible_bars(records, settings)
    if n_bars == 0:
        raise ConfigurationError("expected closed, not backfilled bars of the trading interval, was none")
    total = 1 + CALIBRATION_ROUNDS * len(CALIBRATION_SEEDS) + seeds
    task = progress.add_task("starting Dask", total=total) if progress is not None else None

    def say(what: str) -> None:
        if progress is not None and task is not None:
            progress.update(task, description=what)

    with sweep.cluster(records, scheduler, workers, progress, task) as (client, data):
        say("backtesting the strategy")
        strategy = sweep.evaluate_all(client, data, [({}, settings)], bounds, progress, task)[0]
        target = max(strategy.total.trades, 1)
        rate = min(1.0, target / n_bars)
        for round_ in range(1, CALIBRATION_ROUNDS + 1):
            say(f"calibrating the random entries' rate ({round_}/{CALIBRATION_ROUNDS}): {rate:.3%}")
            trial = sweep.evaluate_all(client, data, _seeds(settings, rate, CALIBRATION_SEEDS), bounds, progress, task)
            made = statistics.median(m.total.trades for m in trial.values())
            if made > 0 and abs(made - target) <= max(1.0, CALIBRATION_TOLERANCE * target):
                break
            rate = min(1.0, rate * target / made) if made > 0 else min(1.0, rate * 4)
        say(f"backtesting {seeds} random-entry runs at {rate:.3%} of bars")
        found = sweep.evaluate_all(client, data, _seeds(settings, rate, range(seeds)), bounds, progress, task)
    runs = [found[i] for i in range(seeds)]
    closes = _closes(records)
    bar_ts = sorted(ts for ts_list, _ in closes.values() for ts in ts_list)
    k = len(bounds) - 2

    def row(name: str, lo: int, hi: int, pick: Any) -> SegmentRow:
        a, b = bounds[lo], bounds[hi + 1]
        last = hi + 1 == len(bounds) - 1
        n = (bisect.bisect_right if last else bisect.bisect_left)(bar_ts, b) - bisect.bisect_left(bar_ts, a)
        return SegmentRow(
            name, (lo, hi), (a, b), n, pick(strategy), buy_and_hold(closes, a, b, last), [pick(m) for m in runs]
        )

    rows = [
        row("in sample", 0, k - 1, lambda m: m.in_sample),
        row("out of sample", 1, k, lambda m: m.out_of_sample),
        *(row(f"w{j}", j, j, lambda m, j=j: m.windows[j]) for j in range(k + 1)),
    ]
    return Evaluation(rows, bounds, settings.decisions_hash(), rate, n_bars, seeds, time.perf_counter() - t0)


def _pct(x: float | None, signed: bool = True) -> str:
    return "-" if x is None else f"{x:+.2%}" if signed else f"{x:.0%}"


def print_table(result: Evaluation, console: Console) -> None:
    """Print the segments: the strategy, buy-and-hold and the random runs side by side."""
    k = len(result.bounds) - 2
    t = Table(
        title=f"walk-forward evaluation ({k} folds, anchored): the strategy beside buy-and-hold and "
        f"{result.seeds} random-entry runs at {result.rate:.3%} of {result.eligible_bars:,} bars"
    )
    cols = ("segment", "span (UTC)", "bars", "strategy", "trades", "fees/gross", "buy & hold", "random median",
            "random p10..p90", "random trades", "beats random")  # fmt: skip
    for c in cols:
        t.add_column(c, justify="left" if c in ("segment", "span (UTC)") else "right", no_wrap=True)
    for r in result.rows:
        d = r.as_dict()["random"]
        span = " → ".join(iso(ts)[5:16].replace("T", " ") for ts in r.span_ns)
        t.add_row(
            r.name, span, f"{r.bars:,}", _pct(r.strategy.return_fraction), str(r.strategy.trades),
            _pct(r.strategy.fees_share_of_gross, signed=False), _pct(r.buy_and_hold), _pct(d["median_return"]),
            f"{_pct(d['p10_return'])}..{_pct(d['p90_return'])}",
            "-" if d["median_trades"] is None else f"{d['median_trades']:g}", _pct(r.beats_random, signed=False),
        )  # fmt: skip
    console.print(t)
    console.print(
        "returns: net of fees over the starting equity; buy-and-hold: mean over symbols, no fees; "
        f"beats random: share of the random runs below the strategy; {result.seconds:.1f} s"
    )
    empty = [r.name for r in result.rows if r.bars == 0]
    if empty:
        console.print(
            f"[yellow]warning:[/] {', '.join(empty)} hold no bars: the windows split the inputs' time range "
            "equally, and these inputs have a gap (files of different periods?); evaluate one period at a time"
        )
