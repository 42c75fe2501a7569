"""Parameter sweeps of the backtest on Dask distributed, ranked by walk-forward out-of-sample results.

``nertz backtest FILES --grid signal.entry_threshold=9,9.5 --grid executor.cooldown_s=0,900
--walk-forward 3`` runs one backtest (:func:`nertz_cli.tools.backtest`, the services' own components)
per point of the grid's cartesian product, each in a Dask worker, and ranks the parameter sets.

Walk-forward (anchored, after R. Pardo, *The Evaluation and Optimization of Trading Strategies*, 2nd
ed. 2008): the event-time range of the records, from the first record to the last, is split into K + 1
equal consecutive windows ``w0..wK``; fold ``k`` (1..K) has the in-sample windows ``w0..w(k-1)`` and the
out-of-sample window ``wk``. Every parameter set is backtested **once** over all records (so the
indicators are warm at every window's start), and each closed trade (``PositionClosed``) is attributed to
the window holding its close time. Trades still open at the end of the data are not counted.

Per parameter set the figures are

- ``total``: every closed trade;
- ``in_sample``: the trades of the **union** of the folds' in-sample windows, ``w0..w(K-1)`` (not a
  mean per fold);
- ``out_of_sample``: the trades of the folds' out-of-sample windows, ``w1..wK`` (their sum);
- per window, and per fold the in-sample and out-of-sample returns.

A return is the P&L (USDT, net of fees) over the set's own starting equity ``executor.equity_usdt``, a
fraction; windows' returns therefore add up. A maximum drawdown is a fraction of the running peak of
equity, over the equity curve of the segment's trades starting from the account's equity at the
segment's start. Sets are ranked by out-of-sample return (without folds, by total return).

The walk-forward *selection* is the procedure an operator would follow: in each fold, pick the set with
the best in-sample return (ties: the first in grid order) and record its return in that fold's
out-of-sample window; the procedure's chained out-of-sample return is ``prod(1 + r_k) - 1``.

Workers need the ``nertz`` packages importable (a local cluster's are this interpreter's); the
records are sent to every worker once, and a worker returns only the small :class:`Metrics` of a set.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import time
from bisect import bisect_right
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from distributed import Client, Future, LocalCluster, as_completed
from rich.markup import escape
from rich.table import Table

from nertz_cli import tools
from nertz_cli.config import GROUPS, PipelineSettings, load
from nertz_cli.report import iso
from nertz_common import events as ev
from nertz_common.errors import ConfigurationError
from nertz_common.node.log import Record

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress, TaskID

__all__ = [
    "Figures",
    "Fold",
    "MarketData",
    "Metrics",
    "Pick",
    "Row",
    "SweepResult",
    "cluster",
    "evaluate",
    "evaluate_all",
    "expand",
    "format_params",
    "measure",
    "parse_grid",
    "print_table",
    "rank",
    "run",
    "select",
    "window_bounds",
]


# --- the grid ---------------------------------------------------------------------------------------


def _split_values(raw: str) -> list[str]:
    parts: list[str] = []
    depth, quoted, start = 0, False, 0
    for i, c in enumerate(raw):
        if quoted:
            if c == '"' and raw[i - 1] != "\\":
                quoted = False
        elif c == '"':
            quoted = True
        elif c in "[{":
            depth += 1
        elif c in "]}":
            depth -= 1
        elif c == "," and depth == 0:
            parts.append(raw[start:i])
            start = i + 1
    parts.append(raw[start:])
    return [p.strip() for p in parts]


def parse_grid(items: Sequence[str]) -> dict[str, list[Any]]:
    """Turn ``--grid`` items into the values to sweep, per setting.

    ``["signal.entry_threshold=6,7,8", "executor.cooldown_s=0,900"]`` gives
    ``{"signal.entry_threshold": [6, 7, 8], "executor.cooldown_s": [0, 900]}``. Values are comma
    separated (commas inside ``[...]``, ``{...}`` or ``"..."`` do not separate) and read as JSON when they
    parse (``8``, ``9.5``, ``true``), else as strings (``fixed``). Whether a value is valid for its
    setting is checked by :func:`expand`, which builds every parameter set's settings.

    Parameters
    ----------
    items : sequence of str
        ``<group>.<key>=<value>[,<value>...]`` with group one of ``signal``, ``validator``, ``executor``.

    Returns
    -------
    dict[str, list]
        Per dotted key, its values in the order given.

    Raises
    ------
    ConfigurationError
        Listing every bad item: no items, no ``=``, a key outside the groups, an empty value, a value
        given twice, or a key given twice.
    """
    if not items:
        raise ConfigurationError("expected at least one --grid item like 'signal.entry_threshold=8,9', was none")
    out: dict[str, list[Any]] = {}
    bad: list[str] = []
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        path = key.split(".")
        if not sep or len(path) < 2 or path[0] not in GROUPS or not all(path):
            groups = "/".join(GROUPS)
            bad.append(f"{item!r}: expected <group>.<key>=<value>[,<value>...] with group {groups}")
            continue
        if key in out:
            bad.append(f"{item!r}: {key} is given twice (give all its values in one item)")
            continue
        texts = _split_values(raw)
        if not all(texts):
            bad.append(f"{item!r}: expected non-empty comma-separated values, was {raw!r}")
            continue
        values: list[Any] = []
        for text in texts:
            try:
                value: Any = json.loads(text)
            except json.JSONDecodeError:
                value = text
            if value in values:
                bad.append(f"{item!r}: expected distinct values, {text} is given twice")
                break
            values.append(value)
        else:
            out[key] = values
    if bad:
        raise ConfigurationError(f"{len(bad)} bad --grid item(s): " + "; ".join(bad))
    return out


def format_params(params: dict[str, Any]) -> str:
    """Return a parameter set as ``key=value, ...`` (strings bare, other values as JSON)."""
    return ", ".join(f"{k}={v if isinstance(v, str) else json.dumps(v)}" for k, v in params.items())


def expand(base: PipelineSettings, grid: dict[str, list[Any]]) -> list[tuple[dict[str, Any], PipelineSettings]]:
    """Return every point of the grid's cartesian product with its settings (``base`` plus the point).

    Every parameter set is validated here, before any work is sent anywhere, the way ``--set`` values
    are (:func:`nertz_cli.config.load`), so a bad value or combination fails at once.

    Parameters
    ----------
    base : PipelineSettings
        The settings the grid varies (``--set`` overrides already applied).
    grid : dict[str, list]
        Per dotted key, its values (:func:`parse_grid`).

    Returns
    -------
    list of (dict, PipelineSettings)
        In grid order: the last key varies fastest.

    Raises
    ------
    ConfigurationError
        If the grid is empty, or listing every distinct error of the parameter sets that do not
        validate (with one such set and how many more share the error).
    """
    if not grid or not all(grid.values()):
        raise ConfigurationError(f"expected a grid with at least one value per key, was {grid!r}")
    decisions = base.decisions()
    keys = list(grid)
    out: list[tuple[dict[str, Any], PipelineSettings]] = []
    errors: dict[str, list[dict[str, Any]]] = {}
    for values in itertools.product(*(grid[k] for k in keys)):
        params = dict(zip(keys, values, strict=True))
        try:
            settings = load([f"{k}={json.dumps(v)}" for k, v in params.items()], decisions)
        except ConfigurationError as e:
            errors.setdefault(str(e), []).append(params)
            continue
        out.append((params, settings))
    if errors:
        n = sum(len(v) for v in errors.values())
        total = n + len(out)
        lines = [
            f"{{{format_params(sets[0])}}}"
            + (f" (and {len(sets) - 1} more sets)" if len(sets) > 1 else "")
            + f": {msg}"
            for msg, sets in errors.items()
        ]
        raise ConfigurationError(f"bad --grid: {n} of {total} parameter sets are invalid: " + "; ".join(lines))
    return out


# --- windows and figures (pure) ---------------------------------------------------------------------


def window_bounds(first_ns: int, last_ns: int, folds: int | None) -> list[int]:
    """Return the boundaries of the K + 1 equal consecutive walk-forward windows of ``[first_ns, last_ns]``.

    Window ``j`` is ``[b[j], b[j + 1])``, the last one closed at ``last_ns``. Without folds, one window.

    Parameters
    ----------
    first_ns, last_ns : int
        Event time of the first and last record, UNIX ns.
    folds : int or None
        K, the walk-forward folds (K + 1 windows), or None for a single window.

    Returns
    -------
    list[int]
        ``b[0] = first_ns, ..., b[K + 1] = last_ns``, UNIX ns (``b[j] = first + span * j // (K + 1)``).

    Raises
    ------
    ConfigurationError
        If ``folds`` is not None and below 1, or the time range is too short to split.
    """
    if folds is None:
        return [first_ns, last_ns]
    if isinstance(folds, bool) or not isinstance(folds, int) or folds < 1:
        raise ConfigurationError(f"expected --walk-forward K >= 1 folds, was {folds!r}")
    span = last_ns - first_ns
    n = folds + 1
    if span < n:
        raise ConfigurationError(
            f"expected a time range of at least {n} ns to split into {n} windows, was {span} ns "
            f"({iso(first_ns)} → {iso(last_ns)})"
        )
    return [first_ns + span * j // n for j in range(n + 1)]


@dataclass(frozen=True)
class Figures:
    """The closed trades of a segment (the whole run, the in-sample or out-of-sample part, a window).

    Attributes
    ----------
    pnl_usdt : float
        Realized P&L net of fees, USDT.
    return_fraction : float
        ``pnl_usdt / executor.equity_usdt`` (the set's starting equity), fraction.
    trades : int
        Positions closed in the segment.
    wins : int
        Of them, with ``pnl_usdt > 0``.
    max_drawdown : float
        Largest fall of equity from its running peak, fraction of that peak, over the segment's trades
        starting from the account's equity at the segment's start (0 without losses).
    fees_usdt : float
        The trades' fees (and funding), USDT (0 when the caller gave none).
    """

    pnl_usdt: float = 0.0
    return_fraction: float = 0.0
    trades: int = 0
    wins: int = 0
    max_drawdown: float = 0.0
    fees_usdt: float = 0.0

    @property
    def win_rate(self) -> float:
        """Winning trades / trades, fraction (0 without trades)."""
        return self.wins / self.trades if self.trades else 0.0

    @property
    def fees_share_of_gross(self) -> float | None:
        """``fees / |gross P&L|`` with ``gross = pnl + fees`` (the report's definition), fraction; None
        when the gross is 0."""
        gross = self.pnl_usdt + self.fees_usdt
        return self.fees_usdt / abs(gross) if gross else None

    def as_dict(self) -> dict[str, Any]:
        """Plain data for JSON."""
        return {
            "pnl_usdt": self.pnl_usdt, "return": self.return_fraction, "trades": self.trades, "wins": self.wins,
            "win_rate": self.win_rate, "max_drawdown": self.max_drawdown, "fees_usdt": self.fees_usdt,
            "fees_share_of_gross": self.fees_share_of_gross,
        }  # fmt: skip


def _figures(
    pnls: Sequence[float], equity_usdt: float, start_equity_usdt: float, fees: Sequence[float] = ()
) -> Figures:
    equity = top = start_equity_usdt
    max_dd = 0.0
    for p in pnls:
        equity += p
        top = max(top, equity)
        if top > 0:
            max_dd = max(max_dd, (top - equity) / top)
    pnl = math.fsum(pnls)
    wins = sum(1 for p in pnls if p > 0)
    return Figures(pnl, pnl / equity_usdt, len(pnls), wins, max_dd, math.fsum(fees))


@dataclass(frozen=True)
class Metrics:
    """What a worker sends back for one parameter set (small: no events).

    Attributes
    ----------
    total : Figures
        Every closed trade.
    windows : list[Figures]
        Per walk-forward window ``w0..wK`` (one window without folds).
    in_sample, out_of_sample : Figures or None
        Windows ``w0..w(K-1)`` and ``w1..wK``; None without folds.
    equity_usdt : float
        The set's starting equity, USDT.
    bars : int
        Closed bars fed.
    seconds : float
        Wall time of the backtest in the worker.
    """

    total: Figures
    windows: list[Figures]
    in_sample: Figures | None
    out_of_sample: Figures | None
    equity_usdt: float
    bars: int = 0
    seconds: float = 0.0

    @property
    def folds(self) -> int:
        """K (0 without walk-forward)."""
        return len(self.windows) - 1

    def fold_returns(self, fold: int) -> tuple[float, float]:
        """Return the in-sample (``w0..w(k-1)``) and out-of-sample (``wk``) returns of fold ``k``, fractions.

        Raises
        ------
        ValueError
            If ``fold`` is not in ``1..K``.
        """
        if not 1 <= fold <= self.folds:
            raise ValueError(f"expected a fold in 1..{self.folds}, was {fold}")
        is_pnl = math.fsum(w.pnl_usdt for w in self.windows[:fold])
        return is_pnl / self.equity_usdt, self.windows[fold].return_fraction


def measure(
    trades: Sequence[tuple[int, float]],
    equity_usdt: float,
    bounds: Sequence[int],
    *,
    bars: int = 0,
    seconds: float = 0.0,
    fees: Sequence[float] | None = None,
) -> Metrics:
    """Return the figures of a run's closed trades, in total, per window and in and out of sample.

    Parameters
    ----------
    trades : sequence of (int, float)
        ``(ts_event, trade_pnl_usdt)`` of every ``PositionClosed``, in log order: close time in UNIX
        ns, P&L net of fees in USDT.
    equity_usdt : float
        Starting equity, USDT (> 0).
    bounds : sequence of int
        Window boundaries from :func:`window_bounds`, UNIX ns; a trade belongs to the window holding its
        close time (before the first boundary: ``w0``; at or after the last: ``wK``).
    bars : int
        Closed bars of the run (recorded as is).
    seconds : float
        Wall time of the run (recorded as is).
    fees : sequence of float, optional
        Each trade's fees (and funding), USDT, in the order of ``trades`` (None: no fee figures).

    Returns
    -------
    Metrics

    Raises
    ------
    ValueError
        If ``equity_usdt`` is not > 0, there are fewer than two boundaries, or ``fees`` and ``trades``
        differ in length.
    """
    if not equity_usdt > 0:
        raise ValueError(f"expected equity_usdt > 0, was {equity_usdt}")
    if len(bounds) < 2:
        raise ValueError(f"expected at least 2 window boundaries, was {len(bounds)}")
    if fees is not None and len(fees) != len(trades):
        raise ValueError(f"expected a fee per trade, was {len(fees)} fees for {len(trades)} trades")
    n = len(bounds) - 1
    index = [bisect_right(bounds, ts, 1, n) - 1 for ts, _ in trades]
    pnls = [p for _, p in trades]
    cost = list(fees) if fees is not None else [0.0] * len(pnls)

    def segment(lo: int, hi: int) -> Figures:
        start = equity_usdt + math.fsum(p for p, j in zip(pnls, index, strict=True) if j < lo)
        inside = [i for i, j in enumerate(index) if lo <= j <= hi]
        return _figures([pnls[i] for i in inside], equity_usdt, start, [cost[i] for i in inside])

    windows = [segment(j, j) for j in range(n)]
    folds = n > 1
    return Metrics(
        total=_figures(pnls, equity_usdt, equity_usdt, cost),
        windows=windows,
        in_sample=segment(0, n - 2) if folds else None,
        out_of_sample=segment(1, n - 1) if folds else None,
        equity_usdt=equity_usdt,
        bars=bars,
        seconds=seconds,
    )


@dataclass(frozen=True)
class MarketData:
    """The records of a sweep, wrapped so that Dask scatters them as one object.

    ``Client.scatter`` sends a list element by element (a future per record, each serialized on its
    own: 13 s for the bundled 129,600 records on two workers); a plain object is pickled once (3.5 s).

    Attributes
    ----------
    records : sequence of Record
        In log order.
    """

    records: Sequence[Record]


def evaluate(data: MarketData | Sequence[Record], settings: PipelineSettings, bounds: Sequence[int]) -> Metrics:
    """Backtest one parameter set over every record and measure its closed trades (a Dask task).

    Parameters
    ----------
    data : MarketData or sequence of Record
        The market data, in log order (scattered to the workers once).
    settings : PipelineSettings
        The parameter set's settings.
    bounds : sequence of int
        Window boundaries from :func:`window_bounds`, UNIX ns.

    Returns
    -------
    Metrics

    Raises
    ------
    InvariantViolation
        Whatever the components raise.
    """
    records = data.records if isinstance(data, MarketData) else data
    run_ = tools.backtest(records, settings, keep=True)
    closed = [e for e in run_.events("executor") if isinstance(e, ev.PositionClosed)]
    return measure(
        [(e.ts_event, e.trade_pnl_usdt) for e in closed], settings.executor.equity_usdt, bounds, bars=run_.bars,
        seconds=run_.seconds, fees=[e.trade_fee_usdt for e in closed],
    )  # fmt: skip


# --- the result -------------------------------------------------------------------------------------


@dataclass
class Row:
    """One parameter set and its figures.

    Attributes
    ----------
    rank : int
        1 = best out-of-sample return (total return without folds).
    index : int
        Position in grid order (0-based).
    params : dict[str, Any]
        The swept settings, dotted key → value.
    config_hash : str
        :meth:`PipelineSettings.decisions_hash` of the set's full settings.
    metrics : Metrics
    """

    rank: int
    index: int
    params: dict[str, Any]
    config_hash: str
    metrics: Metrics

    @property
    def score(self) -> float:
        """What the sets are ranked by: the out-of-sample return, else the total return, fraction."""
        m = self.metrics
        return (m.out_of_sample or m.total).return_fraction

    def as_dict(self) -> dict[str, Any]:
        """Plain data for JSON."""
        m = self.metrics
        return {
            "rank": self.rank,
            "index": self.index,
            "params": self.params,
            "config_hash": self.config_hash,
            "total": m.total.as_dict(),
            "in_sample": m.in_sample.as_dict() if m.in_sample else None,
            "out_of_sample": m.out_of_sample.as_dict() if m.out_of_sample else None,
            "windows": [w.as_dict() for w in m.windows],
            "folds": [
                dict(zip(("fold", "in_sample_return", "out_of_sample_return"), (k, *m.fold_returns(k)), strict=True))
                for k in range(1, m.folds + 1)
            ],
            "equity_usdt": m.equity_usdt,
            "bars": m.bars,
            "seconds": m.seconds,
        }


@dataclass(frozen=True)
class Fold:
    """One walk-forward fold: in-sample ``[w0 start, w(k-1) end)``, out-of-sample ``wk`` (UNIX ns)."""

    fold: int
    in_sample_ns: tuple[int, int]
    out_of_sample_ns: tuple[int, int]

    def as_dict(self) -> dict[str, Any]:
        """Plain data for JSON."""
        (a, b), (c, d) = self.in_sample_ns, self.out_of_sample_ns
        return {
            "fold": self.fold, "in_sample": [iso(a), iso(b)], "out_of_sample": [iso(c), iso(d)],
            "in_sample_ns": [a, b], "out_of_sample_ns": [c, d],
        }  # fmt: skip


@dataclass(frozen=True)
class Pick:
    """The walk-forward selection in one fold: the best in-sample set and how it did out of sample.

    Attributes
    ----------
    fold : int
        k, 1..K.
    index : int
        The picked set's position in grid order.
    params : dict[str, Any]
    in_sample_return, out_of_sample_return : float
        Its returns in the fold's windows, fractions of its starting equity.
    """

    fold: int
    index: int
    params: dict[str, Any]
    in_sample_return: float
    out_of_sample_return: float

    def as_dict(self) -> dict[str, Any]:
        """Plain data for JSON."""
        return {
            "fold": self.fold, "index": self.index, "params": self.params,
            "in_sample_return": self.in_sample_return, "out_of_sample_return": self.out_of_sample_return,
        }  # fmt: skip


@dataclass
class SweepResult:
    """A sweep's ranked parameter sets and its walk-forward selection.

    Attributes
    ----------
    rows : list[Row]
        Ranked, best first.
    selection : list[Pick]
        Per fold, the set with the best in-sample return (empty without folds).
    folds : list[Fold]
        The folds' windows (empty without folds).
    grid : dict[str, list]
        The swept values.
    bounds : list[int]
        Window boundaries, UNIX ns (:func:`window_bounds`).
    seconds : float
        Wall time of the sweep (cluster start, scatter, every backtest, shutdown), s.
    setup_seconds : float
        Of it, starting or reaching the cluster and sending the records to every worker, s.
    workers : int
        Dask workers that took part.
    scheduler : str
        The scheduler's address.
    base_hash : str
        :meth:`PipelineSettings.decisions_hash` of the base settings.
    records : int
        Records of the market data.
    """

    rows: list[Row]
    selection: list[Pick]
    folds: list[Fold]
    grid: dict[str, list[Any]]
    bounds: list[int]
    seconds: float = 0.0
    setup_seconds: float = 0.0
    workers: int = 0
    scheduler: str = ""
    base_hash: str = ""
    records: int = 0

    @property
    def chained_oos_return(self) -> float | None:
        """The walk-forward selection's out-of-sample returns compounded, ``prod(1 + r_k) - 1``; None
        without folds."""
        if not self.selection:
            return None
        return math.prod(1.0 + p.out_of_sample_return for p in self.selection) - 1.0

    def as_dict(self) -> dict[str, Any]:
        """Plain data for JSON (``sweep.json``)."""
        walk = bool(self.folds)
        return {
            "grid": self.grid,
            "sets": len(self.rows),
            "records": self.records,
            "first": iso(self.bounds[0]),
            "last": iso(self.bounds[-1]),
            "base_config_hash": self.base_hash,
            "ranked_by": "out_of_sample.return" if walk else "total.return",
            "walk_forward": {
                "k": len(self.folds),
                "scheme": "anchored; K+1 equal windows of event time, trades attributed by close time",
                "in_sample": "union of the folds' in-sample windows w0..w(K-1)",
                "out_of_sample": "sum over the out-of-sample windows w1..wK",
                "windows": [
                    {"start": iso(a), "end": iso(b), "start_ns": a, "end_ns": b}
                    for a, b in itertools.pairwise(self.bounds)
                ],
                "folds": [f.as_dict() for f in self.folds],
            }
            if walk
            else None,
            "rows": [r.as_dict() for r in self.rows],
            "selection": {
                "picks": [p.as_dict() for p in self.selection],
                "chained_out_of_sample_return": self.chained_oos_return,
            }
            if walk
            else None,
            "seconds": self.seconds,
            "setup_seconds": self.setup_seconds,
            "workers": self.workers,
            "scheduler": self.scheduler,
        }


def rank(rows: list[Row]) -> list[Row]:
    """Sort by :attr:`Row.score` (best first; ties: better in-sample, then grid order) and number them."""
    rows = sorted(rows, key=lambda r: (-r.score, -(r.metrics.in_sample or r.metrics.total).return_fraction, r.index))
    for i, r in enumerate(rows, 1):
        r.rank = i
    return rows


def select(rows: Sequence[Row]) -> list[Pick]:
    """Return the walk-forward selection: per fold, the set with the best in-sample return (ties: the
    first in grid order) with its out-of-sample return in that fold."""
    if not rows:
        return []
    by_index = sorted(rows, key=lambda r: r.index)
    picks = []
    for k in range(1, by_index[0].metrics.folds + 1):
        best = max(by_index, key=lambda r: r.metrics.fold_returns(k)[0])
        is_ret, oos_ret = best.metrics.fold_returns(k)
        picks.append(Pick(k, best.index, best.params, is_ret, oos_ret))
    return picks


# --- running ----------------------------------------------------------------------------------------


@contextmanager
def _client(scheduler: str | None, workers: int | None) -> Iterator[Client]:
    if scheduler is not None:
        with Client(scheduler) as client:
            yield client
        return
    with (
        LocalCluster(
            n_workers=workers or os.cpu_count() or 1,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
        ) as cluster,  # fmt: skip
        Client(cluster) as client,
    ):
        yield client


@contextmanager
def cluster(
    records: Sequence[Record],
    scheduler: str | None = None,
    workers: int | None = None,
    progress: Progress | None = None,
    task: TaskID | None = None,
) -> Iterator[tuple[Client, Future]]:
    """A Dask client (``scheduler``'s, or a local cluster of ``workers`` on 127.0.0.1) with ``records``
    scattered to every worker once, as :class:`MarketData`.

    Yields
    ------
    (Client, Future)
        The client and the scattered market data, for :func:`evaluate_all`.
    """
    with _client(scheduler, workers) as client:
        if progress is not None and task is not None:
            n = len(client.nthreads())
            progress.update(task, description=f"sending {len(records):,} records to {n} workers")
        yield client, client.scatter(MarketData(records), broadcast=True, hash=False)


def evaluate_all(
    client: Client,
    data: Future,
    sets: Sequence[tuple[dict[str, Any], PipelineSettings]],
    bounds: Sequence[int],
    progress: Progress | None = None,
    task: TaskID | None = None,
) -> dict[int, Metrics]:
    """Backtest every parameter set on the cluster (one :func:`evaluate` task each) and return their
    :class:`Metrics` by index in ``sets``; ``progress`` advances ``task`` once per finished set.

    Raises
    ------
    Exception
        Whatever a backtest raised (the parameter set is added as a note); the other tasks are cancelled.
    """
    futures = [client.submit(evaluate, data, s, bounds, pure=False) for _, s in sets]
    index = {f.key: i for i, f in enumerate(futures)}
    results: dict[int, Metrics] = {}
    for fut in as_completed(futures):
        i = index[fut.key]
        try:
            results[i] = fut.result()
        except Exception as e:
            client.cancel(futures)
            e.add_note(f"in the backtest of parameter set {{{format_params(sets[i][0])}}}")
            raise
        if progress is not None and task is not None:
            progress.advance(task)
    return results


def run(
    records: Sequence[Record],
    base: PipelineSettings,
    grid: dict[str, list[Any]],
    *,
    folds: int | None = None,
    scheduler: str | None = None,
    workers: int | None = None,
    progress: Progress | None = None,
) -> SweepResult:
    """Backtest every point of ``grid`` over ``records`` on Dask and rank the sets.

    Every parameter set is validated before a cluster is started. The records are scattered to every
    worker once; each task runs one backtest (:func:`evaluate`) and returns its :class:`Metrics`.

    Parameters
    ----------
    records : sequence of Record
        The market data in log order (:func:`nertz_cli.tools.load_inputs`).
    base : PipelineSettings
        The settings the grid varies.
    grid : dict[str, list]
        Per dotted key, the values to sweep (:func:`parse_grid`).
    folds : int or None
        K walk-forward folds (K + 1 windows), or None to rank by the total return.
    scheduler : str or None
        A Dask scheduler's address (``tcp://host:8786``); None starts a local cluster on 127.0.0.1.
    workers : int or None
        Workers of the local cluster (one thread each; default: the machine's cores). Ignored with
        ``scheduler``.
    progress : rich.progress.Progress or None
        Advanced once per finished set.

    Returns
    -------
    SweepResult

    Raises
    ------
    ConfigurationError
        If a grid value or combination is invalid, ``folds`` is below 1, or ``workers`` is below 1.
    ValueError
        If there are no records.
    Exception
        Whatever a backtest raised (the parameter set is added as a note); the other tasks are cancelled.
    """
    if not records:
        raise ValueError("expected market data records, was none")
    if workers is not None and workers < 1:
        raise ConfigurationError(f"expected --workers >= 1, was {workers}")
    sets = expand(base, grid)
    bounds = window_bounds(records[0].event.ts_event, records[-1].event.ts_event, folds)
    task = progress.add_task("starting Dask", total=len(sets)) if progress is not None else None
    t0 = time.perf_counter()
    with cluster(records, scheduler, workers, progress, task) as (client, data):
        setup = time.perf_counter() - t0
        n_workers = len(client.nthreads())
        if progress is not None and task is not None:
            progress.update(task, description=f"backtesting {len(sets)} parameter sets on {n_workers} workers")
        results = evaluate_all(client, data, sets, bounds, progress, task)
        address = client.scheduler_info()["address"]
    seconds = time.perf_counter() - t0
    rows = rank([Row(0, i, p, s.decisions_hash(), results[i]) for i, (p, s) in enumerate(sets)])
    k = len(bounds) - 2
    fold_list = [Fold(j, (bounds[0], bounds[j]), (bounds[j], bounds[j + 1])) for j in range(1, k + 1)]
    return SweepResult(
        rows=rows,
        selection=select(rows) if k else [],
        folds=fold_list,
        grid=grid,
        bounds=bounds,
        seconds=seconds,
        setup_seconds=setup,
        workers=n_workers,
        scheduler=str(address),
        base_hash=base.decisions_hash(),
        records=len(records),
    )


# --- printing ---------------------------------------------------------------------------------------


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{x:+.2%}"


def print_table(result: SweepResult, console: Console) -> None:
    """Print the ranked sets, the walk-forward selection and the wall time."""
    walk = bool(result.folds)
    what = f"out-of-sample return (walk-forward, {len(result.folds)} folds, anchored)" if walk else "total return"
    t = Table(title=f"Nertz sweep: {len(result.rows)} parameter sets, ranked by {what}")
    pre = "OOS " if walk else ""
    cols = ["rank", "params", f"{pre}return"] + (["IS return"] if walk else [])
    cols += [f"{pre}trades", f"{pre}win rate", f"{pre}max DD", "total return"]
    for col in cols:
        left = col == "params"
        t.add_column(col, justify="left" if left else "right", overflow="fold" if left else "ellipsis")
    for r in result.rows:
        m = r.metrics
        seg = m.out_of_sample or m.total
        cells = [str(r.rank), escape(format_params(r.params)), _pct(seg.return_fraction)]
        if walk:
            cells.append(_pct(m.in_sample.return_fraction if m.in_sample else None))
        cells += [str(seg.trades), f"{seg.win_rate:.1%}", f"{seg.max_drawdown:.2%}", _pct(m.total.return_fraction)]
        t.add_row(*cells)
    console.print(t)
    if walk:
        s = Table(title="walk-forward selection: the best in-sample set of each fold, out of sample")
        for col in ("fold", "in sample", "out of sample", "picked", "IS return", "OOS return"):
            left = col in ("picked", "in sample", "out of sample")
            s.add_column(col, justify="left" if left else "right", overflow="fold" if left else "ellipsis")
        for p, f in zip(result.selection, result.folds, strict=True):
            (a, b), (c, d) = f.in_sample_ns, f.out_of_sample_ns
            s.add_row(
                str(p.fold), f"{iso(a)} → {iso(b)}", f"{iso(c)} → {iso(d)}", escape(format_params(p.params)),
                _pct(p.in_sample_return), _pct(p.out_of_sample_return),
            )  # fmt: skip
        console.print(s)
        console.print(f"walk-forward selection, chained out-of-sample return: {_pct(result.chained_oos_return)}")
    cpu = sum(r.metrics.seconds for r in result.rows)
    console.print(
        f"{len(result.rows)} parameter sets over {result.records:,} records in {result.seconds:.1f} s wall "
        f"on {result.workers} worker(s) ({result.setup_seconds:.1f} s to start and send the records, "
        f"{cpu:.1f} s of backtests)"
    )
