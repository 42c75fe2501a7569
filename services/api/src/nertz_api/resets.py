"""``GET /check_reset``: were the log or the projections reset since a client's last known position?

A client keeps three numbers from its last answer: ``seq`` (the projector's ``stream_seq`` it last read
from ``/status`` or here, i.e. a position the projections covered), ``log.created_ns`` and
``projections.created_ns``. Given them back, the API answers whether what it serves now still extends
what the client saw:

- **the log was reset** when the stream does not exist, ends before ``seq`` (recreated or purged), or
  was created at another time than the client's ``log_created_ns`` (recreated, perhaps refilled past
  ``seq`` since);
- **the projections were reset** when they track less than ``seq`` (a fresh or rebuilt database),
  were created at another time than ``projections_created_ns`` (the first migration's time), or track
  more than the log holds (they project an earlier log: the log was recreated under them).

``log.missed`` counts messages after ``seq`` that retention has dropped (no reset: the projections kept
them). Without the two creation times only the sequences are compared.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def ns_of(t: dt.datetime | None) -> int | None:
    """Return ``t`` as UNIX ns (microsecond precision; a naive time is UTC), None for None."""
    if t is None:
        return None
    if t.tzinfo is None:
        t = t.replace(tzinfo=dt.UTC)
    return (t - _EPOCH) // dt.timedelta(microseconds=1) * 1000


def check(
    seq: int,
    log: dict[str, Any],
    projections: dict[str, Any],
    log_created_ns: int | None = None,
    projections_created_ns: int | None = None,
) -> dict[str, Any]:
    """Return the answer of ``/check_reset``.

    Parameters
    ----------
    seq : int
        The client's last known stream sequence (a position the projections covered).
    log : dict
        ``stream``, ``exists``, ``first_seq``, ``last_seq``, ``messages``, ``created_ns``, ``created`` of
        the stream now.
    projections : dict
        ``consumer``, ``stream_seq`` (tracked), ``created_ns``, ``created`` of the projections now.
    log_created_ns, projections_created_ns : int, optional
        The creation times the client was told before (UNIX ns).
    """
    log_why: list[str] = []
    last = int(log["last_seq"])
    if not log["exists"]:
        if seq > 0 or log_created_ns is not None:
            log_why.append(f"the log {log['stream']} does not exist")
    else:
        if last < seq:
            log_why.append(f"the log ends at {last}, before your position {seq}: it was recreated or purged")
        if log_created_ns is not None and log["created_ns"] != log_created_ns:
            log_why.append(f"the log was created at {log['created_ns']} ns, not {log_created_ns}: it was recreated")
    tracked = int(projections["stream_seq"])
    proj_why: list[str] = []
    if tracked < seq:
        proj_why.append(f"the projections track {tracked}, below your position {seq}: they were rebuilt")
    if projections_created_ns is not None and projections["created_ns"] != projections_created_ns:
        proj_why.append(
            f"the projections were created at {projections['created_ns']} ns, not {projections_created_ns}: "
            "they were rebuilt"
        )
    if log["exists"] and tracked > last:
        proj_why.append(f"the projections track {tracked}, beyond the log's end {last}: they project an earlier log")
    first = int(log["first_seq"])
    missed = max(0, min(first - 1, last) - seq) if log["exists"] and not log_why else 0
    reasons = log_why + proj_why
    return {
        "reset": bool(reasons),
        "reason": "; ".join(reasons) if reasons else None,
        "seq": seq,
        "log": {**log, "reset": bool(log_why), "missed": missed},
        "projections": {**projections, "reset": bool(proj_why)},
    }
