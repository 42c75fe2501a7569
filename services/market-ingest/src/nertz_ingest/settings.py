"""Typed settings of market-ingest (environment ``NERTZ_``, nested with ``__``).

Example: ``NERTZ_INGEST__BOOK_DEPTH=20 NERTZ_INGEST__BOOK_MIN_INTERVAL_MS=200``; the live feed:
``BYBIT_ENV=testnet NERTZ_INGEST__LIVE__DEPTH=200 NERTZ_INGEST__LIVE__INTERVALS='["1","5"]'``.
"""

from __future__ import annotations

from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from nertz_common.settings import CommonSettings

#: Bybit kline intervals the live feed may subscribe (fixed-length ones)
LIVE_INTERVALS = ("1", "3", "5", "15", "30", "60", "120", "240", "360", "720", "D", "W")


class LiveConfig(BaseModel):
    """The live Bybit feed (``python -m nertz_ingest live``); environment ``NERTZ_INGEST__LIVE__*``.

    Attributes
    ----------
    depth : {50, 200}
        Order book topic ``orderbook.<depth>.<symbol>`` (Bybit pushes 50 every 20 ms, 200 every 100 ms).
    intervals : list of str
        Kline intervals subscribed and backfilled (``"1"`` is always included).
    ws_url, rest_url : str, optional
        Override Bybit's hosts (e.g. ``ws://127.0.0.1:18080`` / ``http://127.0.0.1:18080`` for the fake
        server); None = the hosts of ``BYBIT_ENV``.
    backfill_bars : int
        Closed bars fetched per symbol and interval at start-up, for the signal warm-up: 43,200 1m bars =
        30 days (EMA 55 and the 30-day ATR median of the PANIC regime; 44 pages per symbol). Bars the
        log already has are not published again. 0 = no backfill.
    stale_s : float
        No frame of a symbol's order book for this long → ``FeedStale`` and a resubscribe; still nothing
        after as long again → a new connection.
    resync_timeout_s : float
        A resubscribed book without a fresh snapshot after this long is resubscribed again (twice), then
        the connection is rebuilt.
    rest_timeout_s, rest_attempts : float, int
        Timeout of one REST request, s; tries per call.
    rate_limit_max_wait_s : float
        Longest wait for a REST rate-limit reset (retCode 10006), s.
    reconnect_initial_s, reconnect_max_s : float
        Exponential backoff with jitter between new connections once pybit gave up, s.
    ws_retries : int
        pybit's ``retries`` per reconnect before it gives up (0 = forever). pybit 5.17.0 raises after
        its last attempt even when it connected: N allows N - 1 real attempts, and 1 is refused.
    ping_interval_s, ping_timeout_s : int
        WebSocket ping period and pong timeout, s.
    queue_max : int
        Frames held between pybit's thread and the parser; beyond it frames are dropped (counted) and
        every book is resynced.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    depth: int = 50
    intervals: tuple[str, ...] = ("1",)
    ws_url: str | None = None
    rest_url: str | None = None
    backfill_bars: int = Field(default=43_200, ge=0, le=100_000)
    stale_s: float = Field(default=10.0, gt=0, le=3600)
    resync_timeout_s: float = Field(default=10.0, gt=0, le=3600)
    rest_timeout_s: float = Field(default=10.0, gt=0, le=300)
    rest_attempts: int = Field(default=5, ge=1, le=100)
    rate_limit_max_wait_s: float = Field(default=30.0, ge=0, le=3600)
    reconnect_initial_s: float = Field(default=0.5, gt=0, le=60)
    reconnect_max_s: float = Field(default=30.0, gt=0, le=3600)
    ws_retries: int = Field(default=10, ge=0, le=1000)
    ping_interval_s: int = Field(default=20, ge=2, le=600)
    ping_timeout_s: int = Field(default=10, ge=1, le=600)
    queue_max: int = Field(default=100_000, ge=100)

    @field_validator("intervals", mode="before")
    @classmethod
    def _intervals(cls, value: object) -> object:
        if isinstance(value, str):
            value = [v for v in value.replace(" ", "").split(",") if v]
        return value

    @field_validator("intervals")
    @classmethod
    def _check_intervals(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        bad = [v for v in value if v not in LIVE_INTERVALS]
        if bad:
            raise ValueError(f"expected kline intervals among {list(LIVE_INTERVALS)}, was {bad}")
        ordered = ["1", *(v for v in value if v != "1")]
        return tuple(dict.fromkeys(ordered))

    @field_validator("depth")
    @classmethod
    def _check_depth(cls, value: int) -> int:
        if value not in (50, 200):
            raise ValueError(f"expected an order book depth of 50 or 200, was {value}")
        return value

    @field_validator("ws_retries")
    @classmethod
    def _check_retries(cls, value: int) -> int:
        if value == 1:
            raise ValueError("expected 0 (forever) or >= 2: with retries=1 pybit 5.17.0 never keeps a connection")
        return value

    @field_validator("ws_url", "rest_url")
    @classmethod
    def _check_url(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        if not value.startswith(("ws://", "wss://", "http://", "https://")):
            raise ValueError(f"expected a ws(s):// or http(s):// URL, was {value!r}")
        return value.rstrip("/")


class IngestConfig(BaseModel):
    """What market-ingest does with the frames it reads.

    Attributes
    ----------
    book_depth : int
        Levels per side in each published ``BookSnapshot`` (top N).
    book_min_interval_ms : int
        Minimum exchange time between two ``BookSnapshot`` of one book, ms (100 ms = at most 10/s).
    publish_window : int
        Events per pipelined publish window (acks are checked per window).
    log_rejections : int
        Rejections logged at WARNING per reason; later ones are logged at DEBUG (all are counted).
    live : LiveConfig
        The live Bybit feed (``NERTZ_INGEST__LIVE__*``).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    book_depth: int = Field(default=50, ge=1, le=1000, description="levels per side in BookSnapshot")
    book_min_interval_ms: int = Field(default=100, ge=0, le=60_000, description="ms of exchange time between snapshots")
    publish_window: int = Field(default=1000, ge=1, le=10_000, description="events per pipelined publish window")
    log_rejections: int = Field(default=20, ge=0, description="rejections per reason logged at WARNING")
    live: LiveConfig = LiveConfig()


class UniverseConfig(BaseModel):
    """The coin hunter: the live feed's symbols chosen from Bybit's tickers; environment ``NERTZ_UNIVERSE__*``.

    Off by default: the configured ``NERTZ_SYMBOLS`` are the universe. On, the live feed asks Bybit for
    every linear ticker (and instrument) at start and every ``refresh_s``, keeps the USDT perpetuals
    that trade with a 24 h turnover of at least ``min_turnover_usdt`` and a spread of at most
    ``max_spread``, ranks them by turnover and serves the best ``max_symbols``
    (:mod:`nertz_ingest.core.universe`); each change is a ``UniverseChanged`` on the log.

    Attributes
    ----------
    enabled : bool
        Choose the symbols from the tickers (default False).
    refresh_s : float
        Seconds between two refreshes (default 21,600 = 6 h).
    min_turnover_usdt : float
        Least 24 h turnover, USDT (default 10,000,000).
    max_spread : float
        Largest spread ``(ask − bid) / mid``, a fraction (default 0.002 = 0.2 %).
    max_symbols : int
        Most symbols served (default 5).
    pin_symbols : bool
        Keep every ``NERTZ_SYMBOLS`` symbol in the universe whatever its figures, while Bybit trades it
        (they count in ``max_symbols``; default False: they are only the universe before the first change).
    qwen : bool
        Ask Qwen at each refresh which of the qualifiers to trade (default False; needs
        ``DASHSCOPE_API_KEY``): its picks rank first, validated by the same filters, and its answer is
        recorded in the ``UniverseChanged`` (:mod:`nertz_ingest.adapters.qwen`).
    qwen_model : str
        Pinned model id (``qwen-plus``).
    qwen_candidates : int
        Qualifiers shown to the model, by turnover (30).
    qwen_timeout_s, qwen_attempts : float, int
        One attempt's timeout, s (20), and attempts at most (3).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = False
    refresh_s: float = Field(default=21_600.0, gt=0, le=7 * 86_400)
    min_turnover_usdt: float = Field(default=10_000_000.0, ge=0)
    max_spread: float = Field(default=0.002, ge=0, le=1)
    max_symbols: int = Field(default=5, ge=1, le=500)
    pin_symbols: bool = False
    qwen: bool = False
    qwen_model: str = Field(default="qwen-plus", min_length=1)
    qwen_candidates: int = Field(default=30, ge=1, le=200)
    qwen_timeout_s: float = Field(default=20.0, gt=0, le=300)
    qwen_attempts: int = Field(default=3, ge=1, le=10)


class IngestSettings(CommonSettings):
    """Settings of market-ingest: the common ones plus ``ingest`` (``NERTZ_INGEST__*``), ``universe``
    (``NERTZ_UNIVERSE__*``) and ``BYBIT_ENV``.

    ``bybit_env`` picks Bybit's hosts for the live feed: ``mainnet``, ``testnet``, or ``demo`` (demo
    trading has no public market stream: its market data is mainnet's, WIRE.md §3.1).
    """

    ingest: IngestConfig = IngestConfig()  # frozen: sharing the default is safe
    universe: UniverseConfig = UniverseConfig()
    bybit_env: Literal["mainnet", "testnet", "demo"] = Field("mainnet", validation_alias="BYBIT_ENV")
    dashscope_api_key: SecretStr | None = Field(None, validation_alias="DASHSCOPE_API_KEY")
    dashscope_base_url: str | None = Field(None, validation_alias="DASHSCOPE_HTTP_BASE_URL")

    @model_validator(mode="after")
    def _qwen_has_a_key(self) -> Self:
        key = self.dashscope_api_key.get_secret_value().strip() if self.dashscope_api_key else ""
        if self.universe.qwen and not key:
            raise ValueError(
                "expected DASHSCOPE_API_KEY with NERTZ_UNIVERSE__QWEN=true (the coin hunter asks Qwen), was unset"
            )
        return self
