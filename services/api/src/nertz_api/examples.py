"""Examples of every endpoint's answer in the OpenAPI document: real answers, recorded from the test
scenario (``examples.json`` beside this module).

``tests/api/test_web.py`` projects a scenario (trades, vetoes, suppressions, a venue's reports...) and
calls every endpoint; with ``NERTZ_WRITE_API_EXAMPLES=1`` it writes what they answered here, lists cut to
their first two items, and otherwise checks that every operation has an example and that each one
still validates against the response schema the API declares. So an example is never invented and never
goes stale silently.
"""

from __future__ import annotations

import copy
import json
from functools import cache
from importlib import resources
from typing import Any

#: where the recorded answers live (package data)
FILE = "examples.json"
#: items kept of each list in an example (an answer of 50 candles would drown the document)
KEEP = 2


def trimmed(value: Any) -> Any:
    """``value`` with every list cut to its first :data:`KEEP` items, recursively."""
    if isinstance(value, list):
        return [trimmed(v) for v in value[:KEEP]]
    if isinstance(value, dict):
        return {k: trimmed(v) for k, v in value.items()}
    return value


@cache
def recorded() -> dict[str, Any]:
    """The recorded answers by ``"<METHOD> <path template>"`` (``"GET /trades/{symbol}"``); empty if none."""
    try:
        text = resources.files("nertz_api").joinpath(FILE).read_text()
    except FileNotFoundError:
        return {}
    return dict(json.loads(text))


def with_examples(doc: dict[str, Any]) -> dict[str, Any]:
    """Add the recorded answer as the example of each operation's success response that has none.

    Returns a new document; ``doc`` is not changed.
    """
    out = copy.deepcopy(doc)
    answers = recorded()
    for path, item in out.get("paths", {}).items():
        for method, op in item.items():
            value = answers.get(f"{method.upper()} {path}")
            if value is None:
                continue
            code = next((c for c in op.get("responses", {}) if c.startswith("2")), None)
            if code is None:
                continue
            content = op["responses"][code].setdefault("content", {}).setdefault("application/json", {})
            if not content.get("examples"):
                content["examples"] = {"scenario": {"summary": "an answer of the test scenario", "value": value}}
    return out
