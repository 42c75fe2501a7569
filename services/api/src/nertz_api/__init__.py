"""Nertz api: Postgres projections of the ``NERTZ`` log and the monitoring API (``python -m nertz_api``).

``summary(pool)`` returns the per-symbol figures the demo prints (see :mod:`nertz_api.queries`).
"""

from nertz_api.queries import summary

__all__ = ["summary"]
