"""Prompts: versioned templates kept in the repository, rendered deterministically, hashed.

A prompt is two messages: the template's text as the system message (``prompts/<id>.txt``, e.g.
``verdict.v1``) and a JSON document as the user message: the intent, its factor scores, the regime,
the overrides in force and the symbol's memory. The document is canonical JSON (sorted keys, floats
rounded to 6 significant digits), so the same log renders the same bytes, and ``sha256`` of the
messages (canonical JSON) names exactly what was asked: it goes into the verdict beside the template
id, and a replay recomputes it.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

import msgspec

from nertz_common import events as ev
from nertz_common.node.component import HOUR_NS
from nertz_validator.core.memory import SymbolMemory

_ENC = msgspec.json.Encoder(order="sorted")


@dataclass(frozen=True, slots=True)
class Rendered:
    """A rendered prompt.

    Attributes
    ----------
    prompt_id : str
        Template id and version (``verdict.v1``).
    messages : tuple[dict[str, str], ...]
        ``({"role": "system", ...}, {"role": "user", ...})``.
    sha256 : str
        Hex sha256 of the messages as canonical JSON.
    """

    prompt_id: str
    messages: tuple[dict[str, str], ...]
    sha256: str


def available() -> list[str]:
    """Return the ids of the templates shipped with the validator (``verdict.v1``, ...)."""
    return sorted(p.name.removesuffix(".txt") for p in resources.files("nertz_validator.prompts").iterdir()
                  if p.name.endswith(".txt"))  # fmt: skip


@cache
def template(prompt_id: str) -> str:
    """Return the text of template ``prompt_id``.

    Raises
    ------
    ValueError
        If no such template ships with the validator (the message lists those that do).
    """
    f = resources.files("nertz_validator.prompts") / f"{prompt_id}.txt"
    if not f.is_file():
        raise ValueError(f"expected a prompt template id, one of {available()}, was {prompt_id!r}")
    return f.read_text(encoding="utf-8").strip()


def render(prompt_id: str, document: dict[str, Any]) -> Rendered:
    """Render template ``prompt_id`` with ``document`` as the user message.

    Raises
    ------
    ValueError
        If the template does not exist.
    """
    messages = (
        {"role": "system", "content": template(prompt_id)},
        {"role": "user", "content": _ENC.encode(_tidy(document)).decode()},
    )
    return Rendered(prompt_id, messages, hashlib.sha256(_ENC.encode(list(messages))).hexdigest())


def _tidy(x: Any) -> Any:
    """Round floats to 6 significant digits (stable, readable prompts); NaN/inf become None."""
    if isinstance(x, float):
        if not math.isfinite(x):
            return None
        return float(f"{x:.6g}")
    if isinstance(x, dict):
        return {k: _tidy(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_tidy(v) for v in x]
    return x


# --- documents ------------------------------------------------------------------------------------


def intent_doc(intent: ev.IntentProposed) -> dict[str, Any]:
    """The proposed trade as the model sees it (prices USDT, distances fractions of the entry)."""
    return {
        "side": intent.side,
        "entry_price": intent.entry_price,
        "take_profit": intent.take_profit,
        "stop_loss": intent.stop_loss,
        "sl_distance": intent.sl_distance,
        "tp_distance": intent.tp_distance,
        "reward_risk": intent.tp_distance / intent.sl_distance if intent.sl_distance > 0 else None,
        "leverage": intent.leverage,
        "notional_usdt": intent.notional_usdt,
        "combined_score": intent.combined,
        "trend": intent.trend,
        "regime": intent.regime,
        "atr": intent.atr,
        "signal_reasons": list(intent.reasons),
    }


def memory_doc(m: SymbolMemory, now_ns: int, side: str | None = None, last: int = 5) -> dict[str, Any]:
    """The symbol's recent performance: last round trips, win rate, streaks, drawdown, average R."""
    trades = m.trades
    doc: dict[str, Any] = {
        "round_trips": len(trades),
        "win_rate": (sum(t.pnl_usdt > 0 for t in trades) / len(trades)) if trades else None,
        "loss_streak": m.loss_streak,
        "win_streak": m.win_streak,
        "realized_pnl_usdt": m.cum_pnl_usdt,
        "drawdown_usdt": m.drawdown_usdt,
        "average_r": m.average_r(),
        "last": [
            {
                "side": t.side,
                "pnl_usdt": t.pnl_usdt,
                "r_multiple": t.r_multiple,
                "exit_reason": t.exit_reason,
                "hours_ago": (now_ns - t.ts_close_ns) / HOUR_NS,
            }
            for t in trades[-last:]
        ],
    }
    if side is not None:
        n, wr, avg_r = m.side_stats(side)
        doc["same_side"] = {"side": side, "round_trips": n, "win_rate": wr, "average_r": avg_r}
    return doc


def overrides_doc(overrides: list[ev.RiskOverride], now_ns: int) -> list[dict[str, Any]]:
    """The risk overrides in force, with the hours they have left."""
    return [
        {
            "kind": o.kind,
            "value": o.value,
            "side": o.side,
            "hours_left": (o.until_ns - now_ns) / HOUR_NS,
            "reason": o.reason,
        }
        for o in overrides
    ]


def verdict_doc(intent: ev.IntentProposed, m: SymbolMemory, overrides: list[ev.RiskOverride]) -> dict[str, Any]:
    """The user document of a verdict prompt (``verdict.*``, ``quant.*``, ``strategist.*``)."""
    now = intent.ts_event
    return {
        "task": "verdict",
        "symbol": intent.symbol,
        "intent": intent_doc(intent),
        "factors": dict(intent.factors),
        "overrides": overrides_doc(overrides, now),
        "memory": memory_doc(m, now, intent.side),
    }
