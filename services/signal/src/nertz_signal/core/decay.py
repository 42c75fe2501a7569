"""The signal decay tracker: each factor's directional calls scored against the price ``h`` bars later.

After AlphaStrike's decay tracker (the seed): a factor that stops predicting the next moves should stop
weighing in the combined score, and come back when it predicts again. Per bar series (symbol,
interval), at every closed bar:

1. every call made ``horizon_bars`` bars ago is scored: right when the close moved in the direction of
   the call (``sign(close_now - close_then) == sign(factor_then)``); a flat close scores nothing;
2. each factor's accuracy is the share of right calls among its last ``window`` scored calls;
3. its weight is ``base × multiplier`` with ``multiplier = ((accuracy - 0.5) / (reference - 0.5))²``,
   i.e. proportional to ``(2 × (accuracy - 0.5))²`` and scaled so that a factor right ``reference``
   (55 %) of the time keeps its configured weight; capped at ``max_multiplier``; a factor with fewer
   than ``min_calls`` scored calls keeps its configured weight (multiplier 1);
4. a factor whose accuracy falls below ``retire_below`` (48 %) is **retired** (weight 0) until it is back
   at ``restore_at`` (50 %) or more;
5. then the factors of this bar make their calls (a factor whose ``|value| < min_call`` makes none).

Everything is a function of the bars in log order (no clock), so a replay derives the same weights;
the engine publishes them as ``WeightsAdapted`` whenever a factor is retired or restored or a weight
moved by more than ``publish_change`` (relative) since the last publication.
"""

from __future__ import annotations

from collections import deque
from typing import NamedTuple

from pydantic import BaseModel, ConfigDict, Field, model_validator

from nertz_signal.core.factors import FACTOR_NAMES

_N = len(FACTOR_NAMES)


class DecayConfig(BaseModel):
    """The decay tracker's settings (``NERTZ_SIGNAL__DECAY__...``). Off by default.

    Attributes
    ----------
    enabled : bool
        Adapt the weights (False: the configured weights, always).
    horizon_bars : int
        ``h``: a call is scored against the close this many closed bars later (15).
    window : int
        Scored calls per factor in its rolling accuracy (200).
    min_calls : int
        Scored calls before the accuracy moves the weight (50).
    reference : float
        The accuracy at which a factor keeps its configured weight (0.55).
    retire_below, restore_at : float
        Retire a factor below this accuracy (0.48); restore it at this one or more (0.50).
    max_multiplier : float
        Cap of the weight multiplier (3).
    min_call : float
        A factor value closer to 0 than this makes no call (0.05, factor units).
    publish_change : float
        Publish ``WeightsAdapted`` when a weight moved by more than this fraction of itself (0.1).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    enabled: bool = False
    horizon_bars: int = Field(default=15, ge=1, le=10_000)
    window: int = Field(default=200, ge=2, le=100_000)
    min_calls: int = Field(default=50, ge=1)
    reference: float = Field(default=0.55, gt=0.5, lt=1)
    retire_below: float = Field(default=0.48, ge=0, le=1)
    restore_at: float = Field(default=0.50, ge=0, le=1)
    max_multiplier: float = Field(default=3.0, ge=1)
    min_call: float = Field(default=0.05, ge=0, lt=1)
    publish_change: float = Field(default=0.1, gt=0)

    @model_validator(mode="after")
    def _consistent(self) -> DecayConfig:
        if self.retire_below > self.restore_at:
            raise ValueError(f"expected retire_below <= restore_at, was {self.retire_below} > {self.restore_at}")
        if self.min_calls > self.window:
            raise ValueError(f"expected min_calls <= window, was {self.min_calls} > {self.window}")
        return self


class Change(NamedTuple):
    """What one bar changed: factors retired and restored (names), and whether to publish."""

    retired: tuple[str, ...]
    restored: tuple[str, ...]
    publish: bool


class DecayTracker:
    """One bar series' calls, accuracies and adapted weights (see the module docstring).

    Parameters
    ----------
    cfg : DecayConfig
    """

    __slots__ = ("_hits", "_right", "bars", "cfg", "multipliers", "pending", "published", "retired")

    def __init__(self, cfg: DecayConfig) -> None:
        self.cfg = cfg
        self.bars = 0
        #: calls not scored yet: (bar index due, close then, signs per factor: +1, -1 or 0)
        self.pending: deque[tuple[int, float, tuple[int, ...]]] = deque()
        self._hits: list[deque[bool]] = [deque(maxlen=cfg.window) for _ in range(_N)]
        self._right = [0] * _N
        self.retired = [False] * _N
        self.multipliers: list[float] = [1.0] * _N
        #: the multipliers last published (None before the first publication)
        self.published: list[float] | None = None

    def accuracy(self, i: int) -> float | None:
        """Factor ``i``'s share of right calls in its window; None before ``min_calls`` scored calls."""
        n = len(self._hits[i])
        return self._right[i] / n if n >= self.cfg.min_calls else None

    def calls(self, i: int) -> int:
        """Scored calls of factor ``i`` in its window."""
        return len(self._hits[i])

    def step(self, close: float, values: tuple[float | None, ...]) -> Change:
        """Score the calls due at this closed bar, adapt the multipliers, then record this bar's calls.

        Parameters
        ----------
        close : float
            The bar's close, USDT.
        values : tuple of 5 float or None
            The factors of this bar in ``FACTOR_NAMES`` order (None: unavailable, no call).
        """
        cfg = self.cfg
        index = self.bars
        self.bars += 1
        pending = self.pending
        while pending and pending[0][0] <= index:
            _, then, signs = pending.popleft()
            move = 1 if close > then else -1 if close < then else 0
            if move == 0:
                continue
            for i, s in enumerate(signs):
                if s:
                    self._score(i, s == move)
        retired, restored = [], []
        for i in range(_N):
            acc = self.accuracy(i)
            if acc is None:
                self.multipliers[i] = 1.0
                continue
            if not self.retired[i] and acc < cfg.retire_below:
                self.retired[i] = True
                retired.append(FACTOR_NAMES[i])
            elif self.retired[i] and acc >= cfg.restore_at:
                self.retired[i] = False
                restored.append(FACTOR_NAMES[i])
            self.multipliers[i] = self._multiplier(i)
        m0 = cfg.min_call
        signs = tuple(0 if v is None or -m0 < v < m0 else (1 if v > 0 else -1) for v in values)
        if any(signs):
            pending.append((index + cfg.horizon_bars, close, signs))
        publish = bool(retired or restored) or self._moved()
        if publish:
            self.published = list(self.multipliers)
        return Change(tuple(retired), tuple(restored), publish)

    def _multiplier(self, i: int) -> float:
        acc = self.accuracy(i)
        if acc is None:
            return 1.0
        if self.retired[i]:
            return 0.0
        m = ((acc - 0.5) / (self.cfg.reference - 0.5)) ** 2
        return m if m < self.cfg.max_multiplier else self.cfg.max_multiplier

    def _score(self, i: int, right: bool) -> None:
        hits = self._hits[i]
        if len(hits) == hits.maxlen and hits[0]:
            self._right[i] -= 1
        hits.append(right)
        if right:
            self._right[i] += 1

    def _moved(self) -> bool:
        last = self.published
        if last is None:
            return any(m != 1.0 for m in self.multipliers)
        tol = self.cfg.publish_change
        return any(abs(m - p) > tol * max(p, 1e-9) for m, p in zip(self.multipliers, last, strict=True))

    def weights(self, base: tuple[float, ...]) -> tuple[float, ...]:
        """The adapted weights: ``base`` (``FACTOR_NAMES`` order) times the multipliers."""
        return tuple(b * m for b, m in zip(base, self.multipliers, strict=True))

    # --- state ------------------------------------------------------------------------------------

    def state(self) -> tuple[int, list[tuple[int, float, list[int]]], list[list[bool]], list[bool], list[float] | None]:
        """The tracker as plain values (a snapshot's part)."""
        return (
            self.bars,
            [(due, c, list(s)) for due, c, s in self.pending],
            [list(h) for h in self._hits],
            list(self.retired),
            None if self.published is None else list(self.published),
        )

    def restore(
        self, st: tuple[int, list[tuple[int, float, list[int]]], list[list[bool]], list[bool], list[float] | None]
    ) -> None:
        """Put back a :meth:`state` (the multipliers follow from the hits and the retired flags)."""
        bars, pending, hits, retired, published = st
        self.bars = bars
        self.pending = deque((due, c, tuple(s)) for due, c, s in pending)
        self._hits = [deque(h, maxlen=self.cfg.window) for h in hits]
        self._right = [sum(h) for h in self._hits]
        self.retired = list(retired)
        self.published = None if published is None else list(published)
        self.multipliers = [self._multiplier(i) for i in range(_N)]
