"""What a model's answer means: the verdict schema, fail-closed, and the circuit breaker's tool palette.

Pure functions of the recorded :class:`~nertz_common.events.ModelCall`, so a replay that serves the
recorded answer re-derives the same verdict, reasons included.

**Fail closed.** Anything but a valid verdict is a reject whose reason names the failure, and whose
``failure`` code is counted in metrics: the transport's outcome (``timeout``, ``http_429``,
``http_401``, ``http_400``, ``http_5xx``, ``connection``, ``no_key``, ``budget``), an answer cut short
(``length``), an empty answer (``empty``), text that is not JSON (``invalid_json``) or JSON that breaks
the schema (``schema``).

**The palette.** The circuit breaker may answer only through these function calls, each argument
bounded, each action expiring (after AlphaStrike's LLM circuit breaker):
``adjust_position_size(symbol, multiplier ∈ [0.1, 1], hours ∈ (0, 72])``,
``adjust_entry_threshold(symbol, threshold ∈ [0, 10], hours)``,
``disable_side(symbol, side ∈ {long, short}, hours)``, ``disable_symbol(symbol, hours)``,
``no_action(reason)``. A call outside the palette or its bounds, or for another symbol, is refused
with the reason; what is left is applied.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta, Struct

from nertz_common import events as ev
from nertz_common.ids import derive_id
from nertz_validator.core.policy import Opinion

HOUR_NS = 3_600_000_000_000
MAX_HOURS = 72.0

Unit = Annotated[float, Meta(ge=0.0, le=1.0)]
Short = Annotated[str, Meta(max_length=300)]


class VerdictAnswer(Struct, frozen=True, forbid_unknown_fields=False):
    """The verdict schema a model must answer with (JSON object)."""

    decision: Literal["approve", "reject"]
    confidence: Unit
    size_multiplier: Unit
    reasons: Annotated[list[Short], Meta(max_length=12)]
    risk_flags: Annotated[list[Short], Meta(max_length=12)] = []


_VERDICT = msgspec.json.Decoder(VerdictAnswer)


def fail_closed(reason: str, failure: str, policy: str) -> Opinion:
    """A reject for a failure (``failure`` is the counted code)."""
    return Opinion("reject", 0.0, 0.0, (reason,), ("fail_closed",), policy, failure)


def opinion_of(call: ev.ModelCall, policy: str) -> Opinion:
    """Return what a model call says: its verdict, or a fail-closed reject naming the failure."""
    if call.outcome != "ok":
        detail = f" {call.error_code}" if call.error_code else ""
        return fail_closed(f"fail-closed: model call failed ({call.outcome}{detail})", call.outcome, policy)
    if call.finish_reason == "length":
        return fail_closed("fail-closed: model answer cut short (finish_reason=length)", "length", policy)
    text = (call.raw_text or "").strip()
    if not text:
        return fail_closed("fail-closed: model answered nothing", "empty", policy)
    try:
        a = _VERDICT.decode(unfence(text))
    except msgspec.ValidationError as e:
        return fail_closed(f"fail-closed: model answer breaks the verdict schema ({e})", "schema", policy)
    except msgspec.DecodeError as e:
        return fail_closed(f"fail-closed: model answer is not JSON ({e})", "invalid_json", policy)
    return Opinion(a.decision, a.confidence, a.size_multiplier, tuple(a.reasons), tuple(a.risk_flags), policy)


def unfence(text: str) -> str:
    """Return ``text`` without a Markdown code fence around it (```json ... ```), which models add."""
    if text.startswith("```"):
        body = text.split("\n", 1)[1] if "\n" in text else ""
        return body.rsplit("```", 1)[0].strip()
    return text


# --- the circuit breaker's palette -----------------------------------------------------------------

Hours = Annotated[float, Meta(gt=0.0, le=MAX_HOURS)]


class SizeArgs(Struct, frozen=True, forbid_unknown_fields=True):
    symbol: str
    multiplier: Annotated[float, Meta(ge=0.1, le=1.0)]
    hours: Hours = 24.0


class ThresholdArgs(Struct, frozen=True, forbid_unknown_fields=True):
    symbol: str
    threshold: Annotated[float, Meta(ge=0.0, le=10.0)]
    hours: Hours = 24.0


class SideArgs(Struct, frozen=True, forbid_unknown_fields=True):
    symbol: str
    side: Literal["long", "short"]
    hours: Hours = 12.0


class SymbolArgs(Struct, frozen=True, forbid_unknown_fields=True):
    symbol: str
    hours: Hours = 6.0


class NoActionArgs(Struct, frozen=True, forbid_unknown_fields=True):
    reason: Short = ""


_PALETTE: dict[str, type[Struct]] = {
    "adjust_position_size": SizeArgs,
    "adjust_entry_threshold": ThresholdArgs,
    "disable_side": SideArgs,
    "disable_symbol": SymbolArgs,
    "no_action": NoActionArgs,
}


def _param(kind: str, description: str, **extra: Any) -> dict[str, Any]:
    return {"type": kind, "description": description, **extra}


def _fn(name: str, description: str, props: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {
        "type": "function",
        "function": {
            "name": name,
            "description": description,
            "parameters": {"type": "object", "properties": props, "required": required},
        },
    }


def tools() -> list[dict[str, Any]]:
    """The palette as DashScope ``tools=`` (OpenAI function-calling JSON schemas, bounds included)."""
    sym = _param("string", "the symbol under review, e.g. BTCUSDT")
    hours = _param("number", f"how long the action lasts, hours (0, {MAX_HOURS:g}]", exclusiveMinimum=0,
                   maximum=MAX_HOURS)  # fmt: skip
    return [
        _fn("adjust_position_size", "Scale the size of the symbol's next entries.",
            {"symbol": sym, "multiplier": _param("number", "size multiplier [0.1, 1]", minimum=0.1, maximum=1.0),
             "hours": hours}, ["symbol", "multiplier"]),
        _fn("adjust_entry_threshold", "Require a stronger combined score (absolute value) for new entries.",
            {"symbol": sym, "threshold": _param("number", "minimum |combined score| [0, 10]", minimum=0, maximum=10),
             "hours": hours}, ["symbol", "threshold"]),
        _fn("disable_side", "Allow no new entries on one side of the symbol.",
            {"symbol": sym, "side": _param("string", "long or short", enum=["long", "short"]), "hours": hours},
            ["symbol", "side"]),
        _fn("disable_symbol", "Allow no new entries on the symbol.", {"symbol": sym, "hours": hours},
            ["symbol"]),
        _fn("no_action", "Change nothing (the breach is noise).",
            {"reason": _param("string", "why no action is needed")}, ["reason"]),
    ]  # fmt: skip


class ToolCall(Struct, frozen=True):
    """One function call as recorded: its name and its arguments (a JSON string, verbatim)."""

    name: str
    arguments: str


def overrides_of(
    call: ev.ModelCall, symbol: str, review_id: str, now_ns: int
) -> tuple[list[ev.RiskOverride], list[str], str]:
    """Return ``(overrides, refused, note)`` of the breaker's answer (tool calls recorded as JSON).

    A failed call or an answer without a usable tool call gives no override, with the reason in
    ``refused`` (the caller falls back to the rules breaker).
    """
    if call.outcome != "ok":
        return [], [f"model call failed ({call.outcome})"], ""
    try:
        calls = msgspec.json.decode(call.raw_text or "[]", type=list[ToolCall])
    except (msgspec.DecodeError, msgspec.ValidationError) as e:
        return [], [f"tool calls unreadable: {e}"], ""
    if not calls:
        return [], ["the model called no tool"], ""
    out: list[ev.RiskOverride] = []
    refused: list[str] = []
    note = ""
    for i, tc in enumerate(calls):
        spec = _PALETTE.get(tc.name)
        if spec is None:
            refused.append(f"{tc.name}: not in the palette {sorted(_PALETTE)}")
            continue
        try:
            args: Any = msgspec.json.decode(tc.arguments or "{}", type=spec)
        except (msgspec.DecodeError, msgspec.ValidationError) as e:
            refused.append(f"{tc.name}: arguments refused ({e})")
            continue
        if isinstance(args, NoActionArgs):
            note = f"no_action: {args.reason}"
            continue
        if args.symbol != symbol:
            refused.append(f"{tc.name}: for {args.symbol}, but the review is of {symbol}")
            continue
        oid = derive_id("RiskOverride", review_id, i)
        until = now_ns + int(args.hours * HOUR_NS)
        reason = f"{tc.name} by the model for {args.hours:g} h"
        if isinstance(args, SizeArgs):
            out.append(ev.RiskOverride(override_id=oid, kind="position_size", symbol=symbol, value=args.multiplier,
                                       until_ns=until, reason=reason))  # fmt: skip
        elif isinstance(args, ThresholdArgs):
            out.append(ev.RiskOverride(override_id=oid, kind="entry_threshold", symbol=symbol, value=args.threshold,
                                       until_ns=until, reason=reason))  # fmt: skip
        elif isinstance(args, SideArgs):
            out.append(ev.RiskOverride(override_id=oid, kind="disable_side", symbol=symbol, side=args.side,
                                       until_ns=until, reason=reason))  # fmt: skip
        else:
            out.append(ev.RiskOverride(override_id=oid, kind="disable_symbol", symbol=symbol, until_ns=until,
                                       reason=reason))  # fmt: skip
    return out, refused, note


def refusal_of(overrides: list[ev.RiskOverride], intent: ev.IntentProposed) -> str | None:
    """The reason an override in force refuses ``intent`` (disabled symbol or side, entry threshold)."""
    for o in overrides:
        if o.kind == "disable_symbol":
            return f"override: {intent.symbol} disabled ({o.reason})"
        if o.kind == "disable_side" and o.side == intent.side:
            return f"override: {o.side} disabled on {intent.symbol} ({o.reason})"
        if o.kind == "entry_threshold" and o.value is not None and abs(intent.combined) < o.value:
            return f"override: |combined| {abs(intent.combined):.2f} below the entry threshold {o.value:g} ({o.reason})"
    return None


def size_of(overrides: list[ev.RiskOverride]) -> float:
    """The size multiplier the overrides in force impose (the smallest; 1 when none)."""
    return min((o.value for o in overrides if o.kind == "position_size" and o.value is not None), default=1.0)
