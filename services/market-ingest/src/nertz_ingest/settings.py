"""Typed settings of market-ingest (environment ``NERTZ_``, nested with ``__``).

Example: ``NERTZ_INGEST__BOOK_DEPTH=20 NERTZ_INGEST__BOOK_MIN_INTERVAL_MS=200``.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from nertz_common.settings import CommonSettings


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
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    book_depth: int = Field(default=50, ge=1, le=1000, description="levels per side in BookSnapshot")
    book_min_interval_ms: int = Field(default=100, ge=0, le=60_000, description="ms of exchange time between snapshots")
    publish_window: int = Field(default=1000, ge=1, le=10_000, description="events per pipelined publish window")
    log_rejections: int = Field(default=20, ge=0, description="rejections per reason logged at WARNING")


class IngestSettings(CommonSettings):
    """Settings of market-ingest: the common ones plus ``ingest`` (``NERTZ_INGEST__*``)."""

    ingest: IngestConfig = IngestConfig()  # frozen: sharing the default is safe
