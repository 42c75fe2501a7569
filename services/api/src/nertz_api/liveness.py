"""Which services run, from their heartbeats (``nertz-heartbeats``, never the log): ``/status`` and ``/config``.

A service is **alive** while its last beat is younger than three of its own intervals and it did not
stop; **stale** when the beats stopped coming without a clean stop (killed, hung, or cut off from
NATS); **stopped** when its last beat says it stopped cleanly; **missing** when the bucket holds none
(never started, or gone for longer than the bucket's TTL). The overall status is ``degraded`` with one
reason per problem — an expected service missing, stale or stopped, any service stale, a runner paused,
the heartbeats unreadable, the projector paused — and ``ok`` otherwise.

Ages compare the beat's wall clock with the API's: clocks of different hosts may differ a little (an
age is never negative).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

from nertz_common.heartbeat import Heartbeat, masked

#: the services of a complete deployment (``NERTZ_API__SERVICES``)
EXPECTED: tuple[str, ...] = ("market-ingest", "signal", "llm-validator", "executor", "api")

State = Literal["alive", "stale", "stopped", "missing"]


def state_of(hb: Heartbeat | None, now_ns: int) -> State:
    """Return what ``hb`` says of its service at ``now_ns`` (UNIX ns; None: no heartbeat)."""
    if hb is None:
        return "missing"
    if hb.stopped:
        return "stopped"
    return "alive" if hb.alive(now_ns) else "stale"


def service_status(hb: Heartbeat | None, now_ns: int, expected: bool) -> dict[str, Any]:
    """Return one service's row of ``/status`` (every field None when it has no heartbeat)."""
    state = state_of(hb, now_ns)
    row: dict[str, Any] = {"state": state, "alive": state == "alive", "expected": expected}
    if hb is None:
        keys = ("last_beat_ns", "last_beat_age_s", "interval_s", "iterations", "published", "out_seq", "version",
                "config_hash", "pid", "host", "started_ns")  # fmt: skip
        return {**row, **dict.fromkeys(keys), "lanes": {}, "paused": []}
    return {
        **row,
        "last_beat_ns": hb.beat_ns,
        "last_beat_age_s": round(hb.age_s(now_ns), 3),
        "interval_s": hb.interval_s,
        "iterations": hb.iterations,
        "published": hb.published,
        "out_seq": hb.out_seq,
        "version": hb.version,
        "config_hash": hb.config_hash,
        "pid": hb.pid,
        "host": hb.host,
        "started_ns": hb.started_ns,
        "lanes": {d: {"consumed": ln.consumed, "acked": ln.acked, "pending": ln.pending} for d, ln in hb.lanes.items()},
        "paused": list(hb.paused),
    }


def assess(
    beats: Mapping[str, Heartbeat],
    now_ns: int,
    expected: Sequence[str] = EXPECTED,
    *,
    unreadable: str | None = None,
    paused: str | None = None,
    own: str = "api",
) -> dict[str, Any]:
    """Return ``status``, ``reasons`` and ``services`` of ``/status``.

    Parameters
    ----------
    beats : mapping of str to Heartbeat
        The latest heartbeat of each service (empty when they could not be read).
    now_ns : int
        The API's wall clock, UNIX ns.
    expected : sequence of str
        The services a complete deployment runs (missing or stopped: degraded).
    unreadable : str, optional
        Why the heartbeats could not be read (degraded).
    paused : str, optional
        Why this API's projector is paused (degraded), read live from it.
    own : str
        This API's service name (its heartbeat's paused runners are ``paused`` already).
    """
    reasons: list[str] = []
    if paused is not None:
        reasons.append(f"database: the projector is paused ({paused})")
    if unreadable is not None:
        reasons.append(f"heartbeats: {unreadable}")
    services: dict[str, dict[str, Any]] = {}
    for name in sorted(set(expected) | set(beats)):
        hb = beats.get(name)
        row = service_status(hb, now_ns, name in expected)
        services[name] = row
        state = row["state"]
        if state == "stale":
            reasons.append(
                f"{name}: stale: last beat {row['last_beat_age_s']:.1f} s ago, expected every {row['interval_s']:g} s"
            )
        elif name in expected and state == "stopped":
            reasons.append(f"{name}: stopped {row['last_beat_age_s']:.0f} s ago")
        elif name in expected and state == "missing" and unreadable is None:
            reasons.append(f"{name}: no heartbeat (not started, or gone for longer than the heartbeats' TTL)")
        if state == "alive" and not (name == own and paused is not None):
            reasons += [f"{name}: paused: {p}" for p in row["paused"]]
    return {"status": "degraded" if reasons else "ok", "reasons": reasons, "services": services}


def configs(beats: Mapping[str, Heartbeat], now_ns: int) -> dict[str, dict[str, Any]]:
    """Return ``/config``'s ``services``: each service's effective settings (masked again) from its heartbeat."""
    return {
        name: {
            "state": state_of(hb, now_ns),
            "last_beat_ns": hb.beat_ns,
            "version": hb.version,
            "config_hash": hb.config_hash,
            "settings": masked(hb.settings),
        }
        for name, hb in sorted(beats.items())
    }
