"""Deterministic ids: the same inputs always give the same id (uuid5), so re-ingest and retries are
recognised by the server's ``Nats-Msg-Id`` dedup and by Bybit's ``orderLinkId`` check.
"""

from __future__ import annotations

import uuid

NERTZ_NAMESPACE = uuid.UUID("6f1c2f0e-5c1e-4b8a-9d0e-6e6572747a00")


def derive_id(kind: str, *parts: object) -> str:
    """Return the uuid5 (36 chars) of ``kind`` and ``parts`` under the Nertz namespace.

    Parameters
    ----------
    kind : str
        What the id names (an event type or ``"order"``), so equal parts of different kinds differ.
    *parts : object
        The inputs the id is a function of; each is rendered with ``str``.
    """
    return str(uuid.uuid5(NERTZ_NAMESPACE, "|".join([kind, *map(str, parts)])))


def order_link_id(intent_id: str, leg: str = "entry") -> str:
    """Return Bybit's ``orderLinkId`` for an intent's order (≤ 36 chars, deterministic).

    A retried submit carries the same id, so Bybit rejects the duplicate (retCode 110072).
    """
    return derive_id("order", intent_id, leg)
