"""Multi-timeframe confirmation: a candidate must agree with the trends of longer timeframes.

After the six-agent seed's multi-timeframe analysis (1 h 30 %, 4 h 50 %, 1 d 20 %, the daily with a
veto on disagreement). Per bar series (symbol, interval), the series' closed bars are grouped into
each confirmation timeframe's bars by open time, aligned as Bybit aligns its candles (UTC midnight for
``"D"``); a timeframe bar is finished by the bar that closes at its end (or, after a gap, by the first
bar of a later one). Each timeframe keeps two EMAs of its finished bars' closes; its direction is

- ``up`` when ``EMA(fast) > EMA(slow)``, ``down`` when ``<``, ``flat`` when equal;
- ``unknown`` until ``slow`` timeframe bars were finished (only finished bars count: no bar is read
  before it closed, so a backtest has no look-ahead).

A long (short) candidate is confirmed when

1. the veto timeframe (``"D"``), if its direction is known, is not ``down`` (``up``): else vetoed
   ``mtf_veto``;
2. the timeframes whose direction is known carry at least ``min_agreement`` of their summed weight in
   the candidate's direction: else vetoed ``mtf_unconfirmed``; with no timeframe known yet, vetoed
   ``mtf_unavailable``.

The series' own bars build every timeframe (the 1 m feed makes its 1 h, 4 h and 1 d bars), so ingest
needs no other interval and a replay of the same bars derives the same directions. A timeframe no
longer than the series' bars sees each bar as one of its own. docs/decisions.md D27.
"""

from __future__ import annotations

from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from nertz_signal.core.indicators import TIMEFRAME_OFFSETS_NS, TIMEFRAMES_NS, Ema

Direction = Literal["up", "down", "flat", "unknown"]
MTF_VETO = "mtf_veto"
MTF_UNCONFIRMED = "mtf_unconfirmed"
MTF_UNAVAILABLE = "mtf_unavailable"

#: one timeframe's state: (open bucket, its last close, fast EMA state, slow EMA state, finished bars)
TrendState = tuple[int | None, float, tuple[float | None, int], tuple[float | None, int], int]


def _interval(v: object) -> object:
    return str(v) if isinstance(v, int) and not isinstance(v, bool) else v


class ConfirmConfig(BaseModel):
    """Multi-timeframe confirmation settings (``NERTZ_SIGNAL__CONFIRM__...``). Off by default.

    Attributes
    ----------
    enabled : bool
        Require the confirmation of every candidate of a closed bar (manual trades skip it, as they
        skip the trend).
    weights : dict of str to float
        Bybit interval → its weight (``{"60": 0.3, "240": 0.5, "D": 0.2}``: 1 h 30 %, 4 h 50 %, 1 d 20 %).
    veto_timeframe : str, optional
        The timeframe whose known opposite direction vetoes (``"D"``); one of ``weights``' keys, or None.
    ema_fast, ema_slow : int
        EMA periods in bars of each timeframe (9, 21); a timeframe's direction is known once ``ema_slow``
        of its bars were finished (21 days for ``"D"``, 84 h for ``"240"``).
    min_agreement : float
        Share of the known timeframes' weight that must point the candidate's way (0.5), fraction.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    enabled: bool = False
    weights: dict[str, float] = Field(default_factory=lambda: {"60": 0.3, "240": 0.5, "D": 0.2})
    veto_timeframe: str | None = "D"
    ema_fast: int = Field(default=9, ge=1, le=1_000)
    ema_slow: int = Field(default=21, ge=2, le=1_000)
    min_agreement: float = Field(default=0.5, gt=0, le=1)

    @field_validator("weights", mode="before")
    @classmethod
    def _weights_keys(cls, v: object) -> object:
        return {_interval(k): w for k, w in v.items()} if isinstance(v, dict) else v

    @field_validator("veto_timeframe", mode="before")
    @classmethod
    def _veto_key(cls, v: object) -> object:
        return _interval(v)

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        errors = []
        if not self.weights:
            errors.append("expected at least one confirmation timeframe in weights, was none")
        for tf, w in self.weights.items():
            if tf not in TIMEFRAMES_NS:
                errors.append(f"expected weights keyed by Bybit intervals in {list(TIMEFRAMES_NS)}, was {tf!r}")
            if not w > 0:
                errors.append(f"expected the weight of {tf!r} > 0, was {w}")
        if self.veto_timeframe is not None and self.veto_timeframe not in self.weights:
            errors.append(
                f"expected veto_timeframe among the weights' timeframes {list(self.weights)} or null, was "
                f"{self.veto_timeframe!r}"
            )
        if not self.ema_fast < self.ema_slow:
            errors.append(f"expected ema_fast < ema_slow, was {self.ema_fast}, {self.ema_slow}")
        if errors:
            raise ValueError("; ".join(errors))
        return self


class TimeframeTrend:
    """The fast/slow EMA direction of one timeframe's bars, aggregated from a series' closed bars.

    Parameters
    ----------
    timeframe_ns : int
        Length of the timeframe's bars, ns (> 0).
    fast, slow : int
        EMA periods in timeframe bars (``1 <= fast < slow``).
    offset_ns : int
        Open time of a timeframe bar modulo its length, ns (0; 4 days for Bybit's weekly candles).

    Raises
    ------
    ValueError
        If ``timeframe_ns <= 0`` or the periods are not ``1 <= fast < slow``.
    """

    __slots__ = ("_bucket", "_close", "count", "fast", "offset_ns", "slow", "timeframe_ns")

    def __init__(self, timeframe_ns: int, fast: int = 9, slow: int = 21, offset_ns: int = 0) -> None:
        if timeframe_ns <= 0:
            raise ValueError(f"expected timeframe_ns > 0, was {timeframe_ns}")
        if not 1 <= fast < slow:
            raise ValueError(f"expected 1 <= fast < slow, was {fast}, {slow}")
        self.timeframe_ns, self.offset_ns = timeframe_ns, offset_ns
        self.fast, self.slow = Ema(fast), Ema(slow)
        self._bucket: int | None = None  # the open timeframe bar, None between two
        self._close = 0.0
        self.count = 0  # finished timeframe bars

    def update(self, open_ns: int, close_ns: int, close: float) -> None:
        """Add one closed bar of the series (times UNIX ns, close in USDT)."""
        tf = self.timeframe_ns
        bucket = (open_ns - self.offset_ns) // tf
        if bucket != self._bucket and self._bucket is not None:
            self._finish()  # its last bars are missing (a gap): it ends here
        self._bucket = bucket
        self._close = close
        if close_ns >= (bucket + 1) * tf + self.offset_ns:
            self._finish()

    def _finish(self) -> None:
        self.fast.update(self._close)
        self.slow.update(self._close)
        self.count += 1
        self._bucket = None

    @property
    def direction(self) -> Direction:
        """``up``/``down``/``flat`` by the EMAs of the finished bars; ``unknown`` until ``slow`` of them."""
        if self.count < self.slow.period:
            return "unknown"
        f, s = self.fast.value, self.slow.value
        assert f is not None and s is not None
        return "up" if f > s else "down" if f < s else "flat"

    def state(self) -> TrendState:
        """Return everything an update depends on."""
        return self._bucket, self._close, self.fast.state(), self.slow.state(), self.count

    def restore(self, state: TrendState) -> None:
        """Put back a :meth:`state`."""
        self._bucket, self._close, fast, slow, self.count = state
        self.fast.restore(fast)
        self.slow.restore(slow)


class Confirmation:
    """Every confirmation timeframe of one bar series, and the check of a candidate against them.

    Parameters
    ----------
    cfg : ConfirmConfig
        Validated settings (``enabled`` is the engine's business: this object always confirms).
    """

    __slots__ = ("cfg", "trends")

    def __init__(self, cfg: ConfirmConfig) -> None:
        self.cfg = cfg
        self.trends = {
            tf: TimeframeTrend(TIMEFRAMES_NS[tf], cfg.ema_fast, cfg.ema_slow, TIMEFRAME_OFFSETS_NS.get(tf, 0))
            for tf in cfg.weights
        }

    def update(self, open_ns: int, close_ns: int, close: float) -> None:
        """Add one closed bar of the series to every timeframe (times UNIX ns, close in USDT)."""
        for t in self.trends.values():
            t.update(open_ns, close_ns, close)

    def directions(self) -> dict[str, Direction]:
        """Return ``{timeframe: direction}`` in the configured order."""
        return {tf: t.direction for tf, t in self.trends.items()}

    def agreement(self, side: Literal["long", "short"]) -> float | None:
        """Share of the known timeframes' weight pointing ``side``'s way, fraction; None with none known."""
        want = "up" if side == "long" else "down"
        known = with_side = 0.0
        for tf, d in self.directions().items():
            if d != "unknown":
                w = self.cfg.weights[tf]
                known += w
                with_side += w if d == want else 0.0
        return with_side / known if known > 0 else None

    def veto(self, side: Literal["long", "short"]) -> str | None:
        """Return why ``side`` is not confirmed (``mtf_veto``, ``mtf_unavailable`` or ``mtf_unconfirmed``
        with the directions), or None when it is."""
        cfg = self.cfg
        dirs = self.directions()
        against = "down" if side == "long" else "up"
        vt = cfg.veto_timeframe
        if vt is not None and dirs[vt] == against:
            return (
                f"{MTF_VETO}: the {vt} trend is {against} against a {side} (ema{cfg.ema_fast} "
                f"{'<' if against == 'down' else '>'} ema{cfg.ema_slow} of {vt} bars)"
            )
        share = self.agreement(side)
        if share is None:
            counts = ", ".join(f"{tf} {t.count}" for tf, t in self.trends.items())
            return f"{MTF_UNAVAILABLE}: expected {cfg.ema_slow} finished bars of a confirmation timeframe, was {counts}"
        if share < cfg.min_agreement:
            return (
                f"{MTF_UNCONFIRMED}: expected >= {cfg.min_agreement:.0%} of the known timeframes' weight with the "
                f"{side}, was {share:.0%} ({self.describe()})"
            )
        return None

    def describe(self) -> str:
        """``"60 up 0.3, 240 down 0.5, D unknown 0.2"``: each timeframe's direction and weight."""
        return ", ".join(f"{tf} {d} {self.cfg.weights[tf]:g}" for tf, d in self.directions().items())

    def state(self) -> list[TrendState]:
        """Return every timeframe's state, in the configured order."""
        return [t.state() for t in self.trends.values()]

    def restore(self, state: list[TrendState]) -> None:
        """Put back a :meth:`state` (of the same settings)."""
        for t, s in zip(self.trends.values(), state, strict=True):
            t.restore(s)
