"""The event catalogue: every message on the ``NERTZ`` log.

Every event is a frozen msgspec ``Struct`` tagged with its class name (``"type"`` field), so one
decoder reads any payload. Conventions (ARCHITECTURE.md §2):

- ``event_id`` is deterministic (uuid5 of the event's inputs, see :mod:`nertz_common.ids`), never random;
  it is also the ``Nats-Msg-Id`` so a re-publish is dropped by the server.
- ``ts_event`` is when the fact happened and ``ts_init`` when the event object was made, both integer
  UNIX nanoseconds (UTC). A derived event's ``ts_init`` is the ``ts_event`` of the message being handled
  (the log is the clock), so replays reproduce it exactly.
- From ``IntentProposed`` on, ``correlation_id`` is the intent id and ``causation_id`` the id of the event
  that caused this one.
- Prices are in quote currency (USDT), quantities in base currency (e.g. BTC), fractions are plain
  fractions (0.01 = 1 %), never percent.
- Missing values are ``None``; NaN never travels on the log (JSON cannot carry it).

Schema evolution follows msgspec's rules: new fields get defaults, no type changes; golden payloads in
``tests/contract/`` must keep decoding.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from msgspec import Meta, Struct

# --- annotated scalar types (units live in the JSON schema) -------------------------------------

Nanos = Annotated[int, Meta(ge=0, description="UNIX time, nanoseconds, UTC")]
Price = Annotated[float, Meta(gt=0, description="price, quote currency (USDT)")]
Qty = Annotated[float, Meta(ge=0, description="quantity, base currency")]
Usdt = Annotated[float, Meta(description="amount, USDT")]
Fraction = Annotated[float, Meta(description="fraction (0.01 = 1 %)")]
Factor = Annotated[float, Meta(ge=-1.0, le=1.0, description="factor score in [-1, 1]")]
Score = Annotated[float, Meta(ge=-10.0, le=10.0, description="combined score in [-10, 10]")]
Unit = Annotated[float, Meta(ge=0.0, le=1.0, description="value in [0, 1]")]
Symbol = Annotated[str, Meta(pattern=r"^[A-Z0-9]{2,30}$", description="exchange symbol, e.g. BTCUSDT")]

PositionSide = Literal["long", "short"]
OrderSide = Literal["Buy", "Sell"]
Trend = Literal["up", "down", "flat"]
Decision = Literal["approve", "reject"]
LockState = Literal["FLAT", "ENTRY_PENDING", "LOCKED", "COOLDOWN"]
ExitReason = Literal[
    "take_profit", "stop_loss", "stale_exit", "manual", "trailing_stop", "liquidation", "reconciled", "news"
]
#: the volatility regime of a bar (ATR against its 30-day median, raised by the symbol's news)
Regime = Literal["normal", "digesting", "panic", "unknown"]


class Event(Struct, frozen=True, kw_only=True, tag_field="type", tag=True, gc=False):
    """Base of every event on the log.

    Attributes
    ----------
    event_id : str
        Deterministic id (uuid5), also the ``Nats-Msg-Id``.
    ts_event : int
        When the fact happened, UNIX ns.
    ts_init : int
        When this object was made, UNIX ns (for derived events: ``ts_event`` of the input).
    """

    event_id: str
    ts_event: Nanos
    ts_init: Nanos


class InstrumentEvent(Event, frozen=True, kw_only=True):
    """An event about one instrument: routed on ``<domain>.<kind>.<venue>.<market>.<symbol>``."""

    symbol: Symbol
    venue: str = "bybit"
    market: str = "linear"


class Correlated(InstrumentEvent, frozen=True, kw_only=True):
    """An instrument event on a decision path, from ``IntentProposed`` on.

    Attributes
    ----------
    correlation_id : str
        The intent id that started the decision path.
    causation_id : str
        The ``event_id`` of the event that caused this one.
    """

    correlation_id: str
    causation_id: str


# --- market data (md.*) -------------------------------------------------------------------------


class Bar(InstrumentEvent, frozen=True, kw_only=True):
    """An OHLCV bar (Bybit kline).

    ``ts_event`` is the close time (``open_time_ns + interval``) for a closed bar, and the exchange's
    update time for an open one. ``interval`` is Bybit's kline interval (``"1"`` = 1 minute,
    ``"60"``, ``"D"``...). ``volume`` is in base currency; ``turnover`` in USDT (None when the source
    lacks it, as the kline CSV does).

    ``warmup`` is True for a bar that came from a backfill (the live feed's REST klines at start-up and
    the closed bars it fills in after lost frames): it builds indicators and state, and never produces
    an intent. Its id is the same as the live or CSV bar's, so the first one on the log is kept.
    """

    interval: str
    open_time_ns: Nanos
    open: Price
    high: Price
    low: Price
    close: Price
    volume: Qty
    turnover: Usdt | None = None
    closed: bool = True
    warmup: bool = False


class BookSnapshot(InstrumentEvent, frozen=True, kw_only=True):
    """Top-N order book levels, conflated (at most a few per second per symbol).

    ``bids`` are ``(price, qty)`` pairs sorted by price descending, ``asks`` ascending; never crossed.
    ``update_id`` is Bybit's ``u`` and ``seq`` its cross sequence.
    """

    bids: list[tuple[float, float]]
    asks: list[tuple[float, float]]
    depth: int
    update_id: int
    seq: int = 0


class Trade(Struct, frozen=True, kw_only=True, gc=False):
    """One public trade. ``side`` is the taker's side."""

    ts_event: Nanos
    price: Price
    qty: Qty
    side: OrderSide
    trade_id: str


class TradeBatch(InstrumentEvent, frozen=True, kw_only=True):
    """The public trades of one exchange message, in match order."""

    trades: list[Trade]


class Ticker(InstrumentEvent, frozen=True, kw_only=True):
    """The merged ticker state (Bybit sends snapshot + partial deltas; this is the full state).

    ``funding_rate`` is a fraction per funding interval (``funding_interval_h`` hours).
    """

    last_price: Price | None = None
    mark_price: Price | None = None
    index_price: Price | None = None
    bid1_price: Price | None = None
    ask1_price: Price | None = None
    funding_rate: Fraction | None = None
    funding_interval_h: int | None = None
    next_funding_time_ns: Nanos | None = None
    open_interest: Qty | None = None
    turnover_24h: Usdt | None = None
    volume_24h: Qty | None = None


class InstrumentSpec(InstrumentEvent, frozen=True, kw_only=True):
    """Trading rules of an instrument (Bybit instruments-info).

    ``tick_size`` (``priceFilter.tickSize``, USDT) is the price grid of take-profit and stop-loss;
    ``qty_step`` (``lotSizeFilter.qtyStep``) the quantity grid; an order below ``min_order_qty``
    (``minOrderQty``) or whose notional is below ``min_notional_usdt`` (``minNotionalValue``, USDT) is
    refused by Bybit; a market order may not exceed ``max_market_qty`` (``maxMktOrderQty``). Quantities in
    base currency. None = not reported.
    """

    tick_size: Price
    qty_step: Qty
    min_order_qty: Qty
    max_leverage: float | None = None
    min_notional_usdt: Usdt | None = None
    max_market_qty: Qty | None = None


class FeedGap(InstrumentEvent, frozen=True, kw_only=True):
    """The feed for ``symbol`` broke (``u`` gap, crossed book...); data is untrusted until resync."""

    reason: str
    topic: str = ""


class FeedResynced(InstrumentEvent, frozen=True, kw_only=True):
    """A fresh snapshot arrived after a gap: data for ``symbol`` is trusted again."""

    topic: str = ""
    update_id: int = 0


class FeedStale(InstrumentEvent, frozen=True, kw_only=True):
    """No update for ``symbol`` for ``stale_s`` seconds."""

    topic: str = ""
    stale_s: Annotated[float, Meta(ge=0, description="seconds")]


# --- signal (sig.*) -----------------------------------------------------------------------------

FactorName = Literal["egm", "ild", "rol", "pio", "ogm"]


class FactorSnapshot(InstrumentEvent, frozen=True, kw_only=True):
    """The factor scores of one closed bar; exactly one per closed ``Bar`` the signal service reads.

    Factors are None when unavailable (warm-up, no book); ``used`` names those that entered
    ``combined`` (weights renormalised over them). ``intent_id`` is set when this bar proposed an
    intent, ``veto`` says why a candidate intent was vetoed (``warmup: ...`` for a backfilled bar).
    ``atr`` is the bar series' own ATR14 (the regime's), ``stop_atr`` the ATR the volatility
    stop is set from (ATR14 of the configured timeframe's bars, 4 h by default; None while warming up).
    ``regime`` is DIGESTING when the ATR is above 1.3× its 30-day median and PANIC above 2.5×, or when the
    symbol's decayed news impact reaches the signal's news thresholds (the more severe of the two).
    """

    bar_id: str
    interval: str
    close: Price
    egm: Factor | None = None
    ild: Factor | None = None
    rol: Factor | None = None
    pio: Factor | None = None
    ogm: Factor | None = None
    combined: Score = 0.0
    used: list[str] = []
    ema_fast: float | None = None
    ema_mid: float | None = None
    ema_slow: float | None = None
    trend: Trend = "flat"
    atr: Annotated[float, Meta(ge=0, description="ATR14, USDT")] | None = None
    regime: Regime = "unknown"
    intent_id: str | None = None
    veto: str | None = None
    stop_atr: Annotated[float, Meta(ge=0, description="the stop's ATR, USDT")] | None = None


class WeightsAdapted(InstrumentEvent, frozen=True, kw_only=True):
    """The decay tracker moved the combined score's weights of one bar series (``signal.decay``).

    Published at the closed bar whose scoring moved them (``bar_id``), before its ``FactorSnapshot``;
    the new weights apply from that bar's score on. A function of the bars in log order, so a replay
    derives the same weights.

    Attributes
    ----------
    weights : dict of str to float
        The weights in force by factor name (configured weight × multiplier; 0 = retired).
    multipliers : dict of str to float
        ``((accuracy - 0.5) / (reference - 0.5))²`` capped, 1 before enough calls, 0 while retired.
    accuracy : dict of str to float or None
        Share of right directional calls in the rolling window (None: too few calls yet).
    calls : dict of str to int
        Scored calls in the window.
    retired : list of str
        Factors retired (below ``retire_below`` until back at ``restore_at``).
    reason : str
        What changed: ``retired pio (accuracy 0.40 over 200 calls)``, ``restored ...``, ``weights moved``.
    """

    bar_id: str
    interval: str
    weights: dict[str, float]
    multipliers: dict[str, float]
    accuracy: dict[str, float | None]
    calls: dict[str, int]
    retired: list[str] = []
    reason: str = ""


class IntentProposed(Correlated, frozen=True, kw_only=True):
    """A proposed trade: market entry with exchange-native take-profit and stop-loss.

    ``event_id == correlation_id`` (the intent id); ``causation_id`` is the closed bar's id.
    ``qty`` is base currency; ``sl_distance`` and ``tp_distance`` are fractions of ``entry_price``.
    ``factors`` are the scores the combined score used (``{"egm": 0.41, ...}``, each in [-1, 1]) and
    ``atr`` the bar series' ATR (price units), so the validator sees the evidence, not only the verdict.
    ``stop_atr`` (USDT) is the ATR the stop-loss was set from (None in fixed mode before it is warm),
    and ``net_risk_reward`` the reward-to-risk after the round trip's fees and expected slippage,
    ``(tp_distance − costs) / (sl_distance + costs)`` (None on intents older than the field).
    """

    side: PositionSide
    entry_price: Price
    take_profit: Price
    stop_loss: Price
    qty: Qty
    notional_usdt: Usdt
    leverage: Annotated[float, Meta(ge=1)]
    sl_distance: Fraction
    tp_distance: Fraction
    combined: Score
    trend: Trend
    regime: Regime = "normal"
    reasons: list[str] = []
    factors: dict[str, float] = {}
    atr: float | None = None
    stop_atr: float | None = None
    net_risk_reward: float | None = None


# --- validator (llm.*) --------------------------------------------------------------------------


class ModelCall(Struct, frozen=True, kw_only=True, gc=False):
    """One call to a model, as the model (or the transport) answered it: an external fact, recorded
    verbatim so a replay serves it back instead of asking again.

    Attributes
    ----------
    role : str
        What the call was for: ``verdict`` (a single model's verdict), ``quant``/``strategist``/``judge``
        (the council's opinions and decision), ``breaker`` (the circuit breaker's tool call).
    model : str
        The model id asked (pinned, e.g. ``qwen-plus-2025-09-11``).
    prompt_id : str
        The prompt template's id and version (``verdict.v1``).
    prompt_sha256 : str
        sha256 (hex) of the rendered messages, canonical JSON: what exactly was asked.
    outcome : str
        ``ok`` when the model answered (its text may still fail validation), else the failure:
        ``timeout``, ``http_429``, ``http_401``, ``http_400``, ``http_5xx``, ``connection``,
        ``no_key``, ``budget``.
    raw_text : str or None
        The answer's content (JSON mode) or its tool calls as JSON, verbatim.
    finish_reason : str or None
        ``stop``, ``length``, ``tool_calls``.
    status_code : int or None
        HTTP status of the last attempt.
    error_code, error_message : str or None
        DashScope's ``code``/``message`` of a refused call (``Throttling.RateQuota``).
    request_id : str or None
        DashScope's request id of the last attempt.
    latency_ms : float
        Wall time from the first attempt to the answer, ms (every retry included).
    attempts : int
        Attempts made (retries within the intent's time budget).
    tokens_in, tokens_out : int
        Token usage reported by the model.
    cost_usd : float
        ``tokens_in / 1000 × input price + tokens_out / 1000 × output price`` from the configured
        price table (USD per 1k tokens).
    key_index : int or None
        Which key of the pool answered (its position, never the key).
    """

    role: str = "verdict"
    model: str
    prompt_id: str
    prompt_sha256: str
    outcome: str
    raw_text: str | None = None
    finish_reason: str | None = None
    status_code: int | None = None
    error_code: str | None = None
    error_message: str | None = None
    request_id: str | None = None
    latency_ms: float = 0.0
    attempts: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: float = 0.0
    key_index: int | None = None


class VerdictIssued(Correlated, frozen=True, kw_only=True):
    """The validator's approve/reject of one intent.

    ``policy`` names who decided (``rules``, ``qwen``, ``council``, ``skipped``, ``override``). A model
    verdict records every call it made in ``calls`` (what the model told us, verbatim: a replay serves
    these back); ``model``, ``prompt_hash``, ``raw_text``, ``latency_ms`` and the token counts repeat
    the deciding call's for the projections. ``overrides`` names the risk overrides that shaped it.
    """

    decision: Decision
    confidence: Unit
    size_multiplier: Unit
    policy: str
    reasons: list[str] = []
    risk_flags: list[str] = []
    model: str | None = None
    prompt_hash: str | None = None
    raw_text: str | None = None
    latency_ms: float | None = None
    tokens_in: int | None = None
    tokens_out: int | None = None
    prompt_id: str | None = None
    request_id: str | None = None
    cost_usd: float | None = None
    failure: str | None = None
    calls: list[ModelCall] = []
    overrides: list[str] = []


class ShadowVerdictIssued(Correlated, frozen=True, kw_only=True):
    """What a shadow validator would have decided (``llm.shadow.<shadow>``); nothing executes it.

    Same content as :class:`VerdictIssued`, with the shadow's name; ``correlation_id`` joins it to the
    live verdict of the same intent.
    """

    shadow: str
    decision: Decision
    confidence: Unit
    size_multiplier: Unit
    policy: str
    reasons: list[str] = []
    risk_flags: list[str] = []
    model: str | None = None
    prompt_id: str | None = None
    prompt_hash: str | None = None
    failure: str | None = None
    calls: list[ModelCall] = []


OverrideKind = Literal["position_size", "entry_threshold", "disable_side", "disable_symbol"]


class RiskOverride(Struct, frozen=True, kw_only=True, gc=False):
    """One bounded, expiring adjustment of how a symbol is traded.

    Attributes
    ----------
    override_id : str
        Derived from the review and the action.
    kind : {"position_size", "entry_threshold", "disable_side", "disable_symbol"}
    symbol : str
    value : float or None
        Size multiplier in [0.1, 1] (``position_size``) or the minimum |combined| score in [0, 10]
        (``entry_threshold``).
    side : {"long", "short"} or None
        The side disabled (``disable_side``).
    until_ns : int
        Expiry, UNIX ns (event time of the review + the override's duration).
    reason : str
    """

    override_id: str
    kind: OverrideKind
    symbol: str
    value: float | None = None
    side: PositionSide | None = None
    until_ns: int
    reason: str = ""


class RiskOverrideIssued(Correlated, frozen=True, kw_only=True):
    """The circuit breaker reviewed a symbol's performance (``llm.override``).

    ``trigger`` says which limit was breached; ``overrides`` are what it decided (empty for
    ``no_action``), applied by the validator to every later verdict of the symbol until they expire;
    ``refused`` lists tool calls outside the palette or its bounds, with the reason. ``causation_id``
    is the ``PositionClosed`` that triggered the review (``correlation_id`` its intent). A model review
    records its call.
    """

    trigger: str
    policy: str
    overrides: list[RiskOverride] = []
    refused: list[str] = []
    note: str = ""
    call: ModelCall | None = None


NewsImpact = Annotated[float, Meta(ge=-2.0, le=2.0, description="news impact, -2 (bearish) .. +2 (bullish)")]


class NewsItem(Struct, frozen=True, kw_only=True, gc=False):
    """One key event of a news assessment, as the model dated, titled and rated it.

    Attributes
    ----------
    date : str
        The date (or date and time) as the model gave it, ISO 8601 (``2025-06-01``).
    ts_ns : int
        The time it stands for, UNIX ns: a date alone is the end of that day (UTC), the latest it may
        have happened; never later than the assessment's ``ts_event``.
    title : str
    impact : float
        Its impact on the coin's price, -2 (strongly bearish) .. +2 (strongly bullish).
    critical : bool
        An event that can move the price by 10 % or more, or stop trading (a hack, a delisting, a ban).
    """

    date: str
    ts_ns: Nanos
    title: str
    impact: NewsImpact
    critical: bool = False


class NewsAssessed(InstrumentEvent, frozen=True, kw_only=True):
    """The news analyst's assessment of one symbol's news (``llm.news.<venue>.<market>.<symbol>``).

    Qwen with web search was asked for the news of the last ``window_days`` days up to ``ts_event`` (the
    closed bar of a schedule slot, or an operator's ``NewsRequested``). ``call`` is what the model
    answered, verbatim (a replay serves it back); ``impact``, ``key_events`` and ``summary`` are what the
    answer says. An answer that says nothing usable has ``failure`` set (``invalid_json``, ``schema``,
    ``timeout``, ``http_429``...; ``failure_detail`` in words) and no content: its readers do nothing
    with it. Readers (the signal's entry veto and regime, the executor's news protection) take a
    symbol's latest assessment without a failure as its news (:mod:`nertz_common.news`).

    Attributes
    ----------
    trigger : {"schedule", "request"}
    slot_ns : int or None
        ``schedule``: the start of the schedule slot, UNIX ns.
    request_id : str or None
        ``request``: the ``NewsRequested``'s event id.
    window_days : int
        Days of news asked for.
    impact : float
        The news as a whole, -2 .. +2.
    key_events : list of NewsItem
        Newest first, as the model listed them.
    summary : str
    failure : str or None
    failure_detail : str
    call : ModelCall or None
    """

    trigger: Literal["schedule", "request"]
    slot_ns: Nanos | None = None
    request_id: str | None = None
    window_days: Annotated[int, Meta(ge=1)] = 7
    impact: NewsImpact = 0.0
    key_events: list[NewsItem] = []
    summary: str = ""
    failure: str | None = None
    failure_detail: str = ""
    call: ModelCall | None = None


# --- executor (exec.*) --------------------------------------------------------------------------


class VerdictAwaited(Correlated, frozen=True, kw_only=True):
    """The executor reached the intent's bar in log order and waits for its verdict.

    Everything the executor published before this event is in the log before it, so the validator
    folds its memory up to here and decides deterministically (docs/decisions.md, "rendezvous").
    """

    lock_state: LockState


class SignalSuppressed(Correlated, frozen=True, kw_only=True):
    """A verdict that did not reach the venue, and why (the "why didn't it trade" ledger)."""

    reason: str
    lock_state: LockState
    decision: Decision


class RiskDenied(Correlated, frozen=True, kw_only=True):
    """An approved verdict refused by a risk rule (``rule`` names it)."""

    rule: str
    reason: str


class OrderSubmitted(Correlated, frozen=True, kw_only=True):
    """An order sent to the venue. ``order_id`` is Bybit's ``orderLinkId`` (derived from the intent).

    Entries carry exchange-native ``take_profit``/``stop_loss`` (``tpslMode=Full``), rounded to the
    instrument's tick size and ``qty`` to its quantity step, and the ``leverage`` the risk guard chose
    (adaptive leverage; set at the venue before the entry). None on exits and on older entries.

    ``exit_reason`` is ``take_profit`` on the scaled plan's TP1 (a reduce-only ``Limit`` order at
    ``price``, USDT, for part of the position), None on every other order. ``price`` is the limit price
    of a ``Limit`` order, None for ``Market``.
    """

    order_id: str
    side: OrderSide
    order_type: Literal["Market", "Limit"] = "Market"
    qty: Qty
    price_ref: Price
    take_profit: Price | None = None
    stop_loss: Price | None = None
    reduce_only: bool = False
    venue_name: str = "paper"
    leverage: Annotated[float, Meta(ge=1, description="account leverage for the entry (x)")] | None = None
    price: Price | None = None
    exit_reason: ExitReason | None = None


class OrderRejected(Correlated, frozen=True, kw_only=True):
    """The venue refused an order. ``reduce_only`` tells an exit order from an entry."""

    order_id: str
    reason: str
    reduce_only: bool = False


class PositionOpened(Correlated, frozen=True, kw_only=True):
    """The entry filled: a position with exchange-native TP/SL is open."""

    position_id: str
    side: PositionSide
    qty: Qty
    entry_price: Price
    take_profit: Price
    stop_loss: Price
    fee_usdt: Usdt


class LockEngaged(Correlated, frozen=True, kw_only=True):
    """The Hard Lock for ``symbol`` is engaged: every new verdict is suppressed until released."""

    reason: str


class PositionClosed(Correlated, frozen=True, kw_only=True):
    """The position resolved: what was left of it (``qty``) closed at ``exit_price``.

    ``realized_pnl_usdt`` (USDT) is that quantity's, net of its fees ``fee_usdt`` (its share of the
    entry fee, the exit fee and the funding paid); ``return_fraction`` is ``realized_pnl_usdt / (entry
    × qty)``. A position part of which closed earlier (:class:`PositionReduced`, e.g. the scaled plan's
    TP1) says so in ``reduced_qty`` (base currency), ``reduced_pnl_usdt`` and ``reduced_fee_usdt``
    (USDT); the round trip as a whole is ``trade_qty``, ``trade_pnl_usdt``, ``trade_fee_usdt`` and
    ``trade_return_fraction``.
    """

    position_id: str
    side: PositionSide
    qty: Qty
    entry_price: Price
    exit_price: Price
    exit_reason: ExitReason
    realized_pnl_usdt: Usdt
    fee_usdt: Usdt
    return_fraction: Fraction
    holding_ns: Nanos
    reduced_qty: Qty = 0.0
    reduced_pnl_usdt: Usdt = 0.0
    reduced_fee_usdt: Usdt = 0.0

    @property
    def trade_qty(self) -> float:
        """The round trip's quantity (what opened), base currency: ``qty + reduced_qty``."""
        return self.qty + self.reduced_qty

    @property
    def trade_pnl_usdt(self) -> float:
        """The round trip's realized P&L net of every fee, USDT: ``realized_pnl_usdt + reduced_pnl_usdt``."""
        return self.realized_pnl_usdt + self.reduced_pnl_usdt

    @property
    def trade_fee_usdt(self) -> float:
        """The round trip's fees (and funding), USDT: ``fee_usdt + reduced_fee_usdt``."""
        return self.fee_usdt + self.reduced_fee_usdt

    @property
    def trade_return_fraction(self) -> float:
        """The round trip's return, fraction: ``trade_pnl_usdt / (entry_price × trade_qty)``."""
        notional = self.entry_price * self.trade_qty
        return self.trade_pnl_usdt / notional if notional > 0 else 0.0


class PositionReduced(Correlated, frozen=True, kw_only=True):
    """Part of the open position closed; the rest stays open and the Hard Lock stays engaged.

    The scaled exit plan's TP1 (a reduce-only ``Limit`` order for ``tp1_fraction`` of the position)
    is the one source today. ``qty_closed`` closed at ``exit_price``; ``qty_left`` is still open (base
    currency). ``realized_pnl_usdt`` is ``sign × (exit_price − entry_price) × qty_closed − fee_usdt``,
    USDT, with ``fee_usdt`` this exit's fee plus ``qty_closed``'s share of the entry fee (funding is
    charged at the close). ``order_id`` is the reducing order's.
    """

    position_id: str
    side: PositionSide
    qty_closed: Qty
    qty_left: Qty
    entry_price: Price
    exit_price: Price
    realized_pnl_usdt: Usdt
    fee_usdt: Usdt
    exit_reason: ExitReason = "take_profit"
    order_id: str = ""


StopPhase = Literal["entry", "breakeven", "trail"]


class StopMoved(Correlated, frozen=True, kw_only=True):
    """The open position's exchange-native exits moved (management of the position, not an entry).

    Every price field is what is in force *after* the move, USDT: ``stop_loss``, ``take_profit``
    (None when the position has none), and a trailing stop's ``trailing_distance`` behind the best
    price since it started (Bybit ``trailingStop``) and ``active_price`` from which it follows (Bybit
    ``activePrice``), None without one. ``phase`` says what moved: ``entry`` (the scaled plan's TP2 set
    at ``tp2_r`` R of the filled entry), ``breakeven`` (the stop to entry plus fees once the return
    reached the trigger) or ``trail`` (a trailing stop after TP1 filled). A stop only ever moves in the
    position's favour. On a real venue it is ``/v5/position/trading-stop``, never a replaced order.
    """

    position_id: str
    stop_loss: Price
    take_profit: Price | None = None
    trailing_distance: Price | None = None
    active_price: Price | None = None
    phase: StopPhase = "breakeven"
    reason: str = ""
    venue_name: str = "paper"


class EntryExpired(Correlated, frozen=True, kw_only=True):
    """An entry order was not filled in time; the symbol returns to FLAT."""

    order_id: str
    reason: str


class LockReleased(Correlated, frozen=True, kw_only=True):
    """The cooldown elapsed: the symbol is FLAT and new verdicts may trade again."""

    reason: str


class VenueMismatch(Correlated, frozen=True, kw_only=True):
    """Reconciliation found what the log does not explain, and what the executor did about it.

    ``action`` is ``adopted`` (a position opened outside Nertz is locked and managed like its own),
    ``halted`` (new entries on the symbol stop until an operator's ``TradingStarted`` for it) or
    ``closed`` (a position the venue no longer holds is closed on the log: a ``PositionClosed`` with
    exit reason ``reconciled`` follows).
    """

    action: Literal["adopted", "halted", "closed"]
    reason: str
    venue_name: str = "bybit"


# --- venue (venue.*) ----------------------------------------------------------------------------


class OrderFilled(Correlated, frozen=True, kw_only=True):
    """A fill reported by the venue (Bybit private stream, or the paper venue).

    ``exit_reason`` says what triggered an exit fill (the exchange-native take-profit or stop-loss, or
    the executor's own market exit); None for an entry.
    """

    order_id: str
    fill_id: str
    side: OrderSide
    qty: Qty
    price: Price
    fee_usdt: Usdt
    liquidity: Literal["taker", "maker"] = "taker"
    reduce_only: bool = False
    venue_name: str = "paper"
    exit_reason: ExitReason | None = None
    venue_order_id: str | None = None
    leaves_qty: Qty = 0.0


class OrderAccepted(Correlated, frozen=True, kw_only=True):
    """A real venue took an order (Bybit answered ``order/create`` with its ``orderId``, or the order
    was found by its ``orderLinkId`` after a retried or timed-out submit)."""

    order_id: str
    venue_order_id: str
    reduce_only: bool = False
    venue_name: str = "bybit"


class OrderRefused(Correlated, frozen=True, kw_only=True):
    """A real venue refused an order, with its own code and message (e.g. Bybit retCode 110007
    "ab not enough for new order"); the executor answers with ``OrderRejected``."""

    order_id: str
    ret_code: int
    ret_msg: str
    reduce_only: bool = False
    venue_name: str = "bybit"


class OrderCanceled(Correlated, frozen=True, kw_only=True):
    """A working order ended without filling completely (``filled_qty`` of it did fill, base currency)."""

    order_id: str
    venue_order_id: str | None = None
    reason: str
    filled_qty: Qty = 0.0
    reduce_only: bool = False
    venue_name: str = "bybit"


class PositionSnapshot(InstrumentEvent, frozen=True, kw_only=True):
    """A position as the venue reports it.

    ``source`` is ``stream`` for the private stream's pushes (their order against fills is not
    guaranteed, so the executor only records them) and ``reconcile`` for the adapter's REST look-up after
    it published every execution the log lacked (the executor compares those with its lock).
    ``side`` and ``entry_price`` are None and ``qty`` 0 for no position. Prices USDT, quantity base currency.
    """

    venue_name: str = "bybit"
    source: Literal["stream", "reconcile"] = "stream"
    side: PositionSide | None = None
    qty: Qty = 0.0
    entry_price: Price | None = None
    mark_price: Price | None = None
    take_profit: Price | None = None
    stop_loss: Price | None = None
    trailing_stop: Price | None = None
    leverage: float | None = None
    unrealized_pnl_usdt: Usdt = 0.0


class WalletSnapshot(Event, frozen=True, kw_only=True):
    """The account as the venue reports it (Bybit ``wallet``: the unified account's USDT), USDT."""

    venue_name: str = "bybit"
    equity_usdt: Usdt
    wallet_balance_usdt: Usdt
    available_usdt: Usdt | None = None
    unrealized_pnl_usdt: Usdt = 0.0


class FundingSettled(Correlated, frozen=True, kw_only=True):
    """A funding payment on an open position (Bybit execution ``execType=Funding``).

    ``fee_usdt`` > 0 is paid by the account, < 0 received; ``rate`` is the funding rate (fraction).
    """

    fill_id: str
    fee_usdt: Usdt
    rate: Fraction | None = None
    position_value_usdt: Usdt | None = None
    venue_name: str = "bybit"


# --- system (sys.*) -----------------------------------------------------------------------------


class SystemEvent(Event, frozen=True, kw_only=True):
    """A service-wide event, routed on ``sys.<kind>.<scope>``."""

    scope: str = "all"


class TradingStarted(SystemEvent, frozen=True, kw_only=True):
    """An operator allowed new entries."""

    actor: str = "api"


class TradingStopped(SystemEvent, frozen=True, kw_only=True):
    """An operator halted new entries (open positions keep their exchange TP/SL)."""

    actor: str = "api"
    reason: str = ""


class DeadLettered(SystemEvent, frozen=True, kw_only=True):
    """A message a service could not use, with the reason and the raw bytes (UTF-8, replaced)."""

    service: str
    reason: str
    subject: str = ""
    stream_seq: int | None = None
    raw: str = ""


#: a setting's value on the log: JSON scalars only (nested settings are flattened into dotted keys)
ConfigValue = str | int | float | bool


class ConfigChanged(SystemEvent, frozen=True, kw_only=True):
    """An operator changed settings while running; every service applies its keys where this sits in the log.

    Attributes
    ----------
    changes : dict of str to str, int, float or bool
        New values by dotted key, the owning service first: ``{"signal.entry_threshold": 9.0,
        "signal.weights.ild": 0.35, "executor.max_open_positions": 2}``. Validated by the api against
        every service's settings before it is published (all keys, or nothing).
    actor, reason : str
        Who asked (``api``) and why (free text, shown in the ledger).
    """

    changes: dict[str, ConfigValue]
    actor: str = "api"
    reason: str = ""


class ManualTradeRequested(SystemEvent, frozen=True, kw_only=True):
    """An operator asked for a trade on one symbol (``scope`` = the symbol).

    The signal evaluates the symbol on its latest closed bar and proposes an intent (``side`` forced,
    or the combined score's direction when None); the intent then goes through the validator, the risk
    guard and the Hard Lock like any other.
    """

    side: OrderSide | None = None
    actor: str = "api"
    reason: str = ""


class NewsRequested(SystemEvent, frozen=True, kw_only=True):
    """An operator asked for one symbol's news now (``scope`` = the symbol): the news analyst asks Qwen
    at this position of the log, as it does on its schedule, and publishes ``NewsAssessed``."""

    actor: str = "api"
    reason: str = ""


class NotificationPosted(SystemEvent, frozen=True, kw_only=True):
    """The notifier posted a message about a log event (``scope`` = the channel, ``telegram``).

    What the outside party answered (its message id) is recorded, so a restarted notifier knows what it
    already posted (idempotent by ``source_event_id``) and threads exits as replies to their entry
    (``correlation_id``: the trade's intent id, when the source event has one).
    """

    source_event_id: str
    kind: str
    chat_id: str
    message_id: int
    reply_to_message_id: int | None = None
    correlation_id: str | None = None


UniverseSource = Literal["tickers", "qwen"]


class UniverseCandidate(Struct, frozen=True, kw_only=True, gc=False):
    """One symbol the coin hunter considered: Bybit's figures and why it is in or out of the universe.

    The figures are what Bybit answered (``/v5/market/tickers`` and ``/v5/market/instruments-info``,
    category ``linear``); they are the record a replay decides again from.

    Attributes
    ----------
    symbol : str
        Bybit linear symbol.
    turnover_24h : float, optional
        24 h turnover, USDT (``turnover24h``); None when Bybit gave none.
    bid1_price, ask1_price : float, optional
        Best bid and ask, USDT; None when Bybit gave none.
    spread : float, optional
        ``(ask − bid) / mid``, a fraction (0.002 = 0.2 %); None without a valid bid and ask.
    status, contract_type, quote_coin : str
        instruments-info ``status`` (``Trading``), ``contractType`` (``LinearPerpetual``) and
        ``quoteCoin`` (``USDT``); empty when Bybit does not list the symbol.
    rank : int, optional
        1-based rank among the symbols passing every filter (the model's suggestions first, then by
        turnover); None for the others.
    selected : bool
        In the new universe.
    pinned : bool
        Kept whatever its figures (``NERTZ_UNIVERSE__PIN_SYMBOLS``), if Bybit trades it.
    reason : str
        Why it is in or out, e.g. ``"rank 2: turnover 812.4M >= 10M, spread 0.002 % <= 0.2 %"``,
        ``"turnover 4.1M < 10M"``, ``"rank 7 > max 5"``.
    source : {"tickers", "qwen"}
        Where the candidate came from (``qwen``: a model's suggestion, validated by the same filters).
    """

    symbol: Symbol
    turnover_24h: Usdt | None = None
    bid1_price: Price | None = None
    ask1_price: Price | None = None
    spread: Fraction | None = None
    status: str = ""
    contract_type: str = ""
    quote_coin: str = ""
    rank: Annotated[int, Meta(ge=1)] | None = None
    selected: bool = False
    pinned: bool = False
    reason: str = ""
    source: UniverseSource = "tickers"


class UniverseChanged(SystemEvent, frozen=True, kw_only=True):
    """The coin hunter changed the set of symbols market-ingest serves (``sys.universe.all``).

    Published only when the set changes, before the first market data of an added symbol and after
    the last of a removed one. ``ts_event`` (= ``ts_init``) is Bybit's time of the tickers answer, UNIX
    ns. The rules and every candidate that could matter (each symbol passing the filters, each symbol
    of the previous universe, each pinned one) are recorded, so the choice is a function of this event
    and the previous universe alone: a replay decides it again.

    Attributes
    ----------
    symbols : list of str
        The new universe, ranked by 24 h turnover (highest first).
    added, removed : list of str
        Symbols new to it (in ``symbols`` order) and gone from it (alphabetical).
    candidates : list of UniverseCandidate
        The candidates recorded, ranked ones first (by rank), then the others by symbol.
    min_turnover_usdt : float
        The 24 h turnover filter, USDT (a candidate needs at least this).
    max_spread : float
        The spread filter, a fraction of mid (a candidate needs at most this).
    max_symbols : int
        The cap on the universe (pinned symbols always count in, even beyond it).
    source : {"tickers", "qwen"}
        What proposed the candidates: ``qwen`` when the model's suggestions were asked for.
    call : ModelCall, optional
        The model's suggestion call, verbatim (``NERTZ_UNIVERSE__QWEN``): a replay reads the suggestions
        from it again (``nertz_ingest.core.universe.suggestions_of``).
    """

    symbols: list[Symbol]
    added: list[Symbol] = []
    removed: list[Symbol] = []
    candidates: list[UniverseCandidate] = []
    min_turnover_usdt: Annotated[float, Meta(ge=0, description="24 h turnover filter, USDT")]
    max_spread: Annotated[float, Meta(ge=0, description="spread filter, fraction of mid")]
    max_symbols: Annotated[int, Meta(ge=1)]
    source: UniverseSource = "tickers"
    call: ModelCall | None = None


MarketEvent = Bar | BookSnapshot | TradeBatch | Ticker | InstrumentSpec | FeedGap | FeedResynced | FeedStale
SignalEvent = FactorSnapshot | IntentProposed | WeightsAdapted
LlmEvent = VerdictIssued | ShadowVerdictIssued | RiskOverrideIssued | NewsAssessed
ExecEvent = (
    VerdictAwaited
    | SignalSuppressed
    | RiskDenied
    | OrderSubmitted
    | OrderRejected
    | PositionOpened
    | LockEngaged
    | PositionClosed
    | EntryExpired
    | LockReleased
    | VenueMismatch
    | PositionReduced
    | StopMoved
)
VenueEvent = (
    OrderFilled | OrderAccepted | OrderRefused | OrderCanceled | PositionSnapshot | WalletSnapshot | FundingSettled
)
SysEvent = (
    TradingStarted
    | TradingStopped
    | DeadLettered
    | ConfigChanged
    | ManualTradeRequested
    | NotificationPosted
    | UniverseChanged
    | NewsRequested
)
AnyEvent = MarketEvent | SignalEvent | LlmEvent | ExecEvent | VenueEvent | SysEvent

ALL_EVENT_TYPES: tuple[type[Event], ...] = (
    Bar, BookSnapshot, TradeBatch, Ticker, InstrumentSpec, FeedGap, FeedResynced, FeedStale,
    FactorSnapshot, IntentProposed, VerdictIssued, ShadowVerdictIssued, RiskOverrideIssued,
    VerdictAwaited, SignalSuppressed, RiskDenied, OrderSubmitted, OrderRejected, PositionOpened,
    LockEngaged, PositionClosed, EntryExpired, LockReleased, VenueMismatch, OrderFilled,
    OrderAccepted, OrderRefused, OrderCanceled, PositionSnapshot, WalletSnapshot, FundingSettled,
    TradingStarted, TradingStopped, DeadLettered, PositionReduced, StopMoved, ConfigChanged,
    ManualTradeRequested, NotificationPosted, WeightsAdapted, UniverseChanged, NewsAssessed, NewsRequested,
)  # fmt: skip

_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(AnyEvent)


def encode(event: Event) -> bytes:
    """Encode an event as JSON bytes (the bus payload)."""
    return _encoder.encode(event)


def decode(data: bytes) -> AnyEvent:
    """Decode a bus payload into its typed event.

    Raises
    ------
    msgspec.DecodeError
        If ``data`` is not JSON, has an unknown ``type`` tag, or violates a field's type or range.
    """
    return _decoder.decode(data)
