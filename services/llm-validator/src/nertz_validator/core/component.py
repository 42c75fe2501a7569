"""The validator as a kernel component: judge each intent once the executor has reached it.

Its driver inputs are the executor's events (``exec.*``), in log order; they fold the memory. At a
``VerdictAwaited`` the component joins the intent (``Join(IntentProposed, "correlation_id")``) and
judges it with the memory *as of that point*: exactly the executor's log of that symbol up to this
intent, whatever the timing of the services (docs/decisions.md D1, D13).

Steps are scoped by symbol, so one symbol waiting for Qwen never holds another: the judgement asks a
:class:`Ask` (the rendered prompt) and the step resumes with the model's answer
(:meth:`Validator.on_answer`), which the runner brings — from DashScope live, from the recorded
verdict after a restart or in a replay. The answer is recorded in the verdict (``calls``), and
:meth:`Validator.recorded` finds it there again. How an intent is judged:

1. its symbol is locked → ``skipped: locked`` (no model is asked);
2. an override in force refuses it (symbol or side disabled, entry threshold) → reject, policy
   ``override`` (no model is asked);
3. the policy decides: ``rules`` at once; ``qwen`` with one call; ``council`` with a quant and a
   strategist call, then a judge call that sees both (fail-closed if the judge fails);
4. a size override in force scales an approval.

At a ``PositionClosed`` whose symbol breaches a limit, the circuit breaker reviews it
(:mod:`nertz_validator.core.breaker`) and publishes ``RiskOverrideIssued``.

A shadow validator (``shadow="name"``) judges the same intents with its own policy and publishes
``ShadowVerdictIssued`` on ``llm.shadow.<name>``; nothing executes them, and it runs no breaker.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import msgspec

from nertz_common import events as ev
from nertz_common import live_config, topology
from nertz_common.derive import derive
from nertz_common.node.component import Call, Component, Join
from nertz_validator.core import answer as answers
from nertz_validator.core import breaker as brk
from nertz_validator.core import prompt
from nertz_validator.core.memory import Memory, SymbolMemory
from nertz_validator.core.policy import Opinion, RulesPolicy, skipped_locked

log = logging.getLogger("nertz.validator")


class Ask(Call, frozen=True, kw_only=True):
    """A question to the model: the rendered prompt and how to ask it.

    Attributes
    ----------
    role : str
        ``verdict``, ``quant``, ``strategist``, ``judge``, ``breaker`` or ``news``.
    symbol : str
    model : str
        The pinned model id.
    prompt_id, prompt_sha256 : str
        Template id and the hash of ``messages``.
    messages : list[dict[str, str]]
        The chat messages (system + user).
    tools : list[dict] or None
        The function-calling palette (breaker); None asks for a JSON object instead.
    json_mode : bool
        Without ``tools``: ask for a JSON object (``response_format``); False leaves the format to the
        prompt (the news analyst's searches).
    enable_search : bool
        Let the model search the web first (DashScope ``enable_search``; the news analyst).
    search_options : dict or None
        DashScope ``search_options`` with ``enable_search`` (``{"forced_search": true}``).
    as_of_ns : int or None
        The event time the question is about, UNIX ns (the news analyst's; a search answers about now).
    """

    role: str
    symbol: str
    model: str
    prompt_id: str
    prompt_sha256: str
    messages: list[dict[str, str]]
    tools: list[dict[str, Any]] | None = None
    json_mode: bool = True
    enable_search: bool = False
    search_options: dict[str, Any] | None = None
    as_of_ns: int | None = None


@dataclass(frozen=True, slots=True)
class ModelPolicy:
    """How the model is asked.

    Attributes
    ----------
    mode : {"qwen", "council"}
    model : str
        Pinned model id for every role (``qwen-plus-2025-09-11``).
    prompt : str
        Template of the single-model verdict (``verdict.v1``).
    council : tuple[str, str, str]
        Templates of the quant, the strategist and the judge.
    breaker_prompt : str
        Template of the circuit breaker's review.
    """

    mode: Literal["qwen", "council"] = "qwen"
    model: str = "qwen-plus"
    prompt: str = "verdict.v1"
    council: tuple[str, str, str] = ("quant.v1", "strategist.v1", "judge.v1")
    breaker_prompt: str = "breaker.v1"

    def check(self) -> None:
        """Raise ValueError if a template does not exist."""
        for p in (self.prompt, *self.council, self.breaker_prompt):
            prompt.template(p)


class ValidatorState(msgspec.Struct):
    """The validator's state between steps: its memory (overrides included) and the ``validator.`` keys
    of every ConfigChanged read so far."""

    memory: Memory = Memory()
    config_overrides: dict[str, ev.ConfigValue] = {}


@dataclass
class _Judging:
    """One intent being judged (per symbol at most one)."""

    awaited: ev.VerdictAwaited
    intent: ev.IntentProposed | None = None
    active: list[ev.RiskOverride] = field(default_factory=list)
    calls: list[ev.ModelCall] = field(default_factory=list)
    opinions: dict[str, Opinion] = field(default_factory=dict)


COUNCIL = ("quant", "strategist", "judge")


def same_ask(call: Call, answer: Any) -> bool:
    """True when ``answer`` (a recorded :class:`~nertz_common.events.ModelCall`) answers the :class:`Ask`
    ``call``: the same model asked the same prompt (its hash)."""
    return (
        isinstance(call, Ask)
        and isinstance(answer, ev.ModelCall)
        and (call.model, call.prompt_sha256) == (answer.model, answer.prompt_sha256)
    )


def call_key(intent_id: str, role: str) -> str:
    """The key of a verdict call: the intent id (``verdict``), or ``<intent id>:<role>`` (council)."""
    return intent_id if role == "verdict" else f"{intent_id}:{role}"


def review_key(closed_id: str) -> str:
    """The key of a circuit-breaker call: the ``PositionClosed`` that triggered it."""
    return f"review:{closed_id}"


class Validator(Component):
    """Approve or reject intents with a policy and a memory folded from ``exec.*``.

    Parameters
    ----------
    rules : RulesPolicy
        The rules policy (decides when ``model`` is None).
    model : ModelPolicy, optional
        Ask Qwen (``qwen``) or the council (``council``).
    breaker : BreakerConfig, optional
        The circuit breaker (default limits); with ``model`` the model reviews, else the rules.
    shadow : str, optional
        Publish ``ShadowVerdictIssued`` under this name instead of verdicts, and run no breaker.
    reconfigure : callable, optional
        ``reconfigure(overrides) -> (rules, breaker)``: the limits the validator was started with, with
        the ``validator.`` keys of the log's ConfigChanged applied (raises
        :class:`~nertz_common.live_config.ConfigRejected`); without it config changes are ignored.

    Attributes
    ----------
    memory : Memory
        Folded from every executor event seen, in log order, and the breaker's reviews.
    """

    name: ClassVar[str] = "llm-validator"
    scope: ClassVar[str | None] = "symbol"
    inputs: ClassVar[tuple[type[ev.Event], ...]] = (
        ev.VerdictAwaited, ev.SignalSuppressed, ev.RiskDenied, ev.OrderSubmitted, ev.OrderRejected,
        ev.PositionOpened, ev.LockEngaged, ev.PositionClosed, ev.EntryExpired, ev.LockReleased,
        ev.PositionReduced, ev.StopMoved, ev.VenueMismatch, ev.ConfigChanged,
    )  # fmt: skip
    joins: ClassVar[tuple[Join, ...]] = (Join(ev.IntentProposed, "correlation_id"),)
    state_type: ClassVar[type[msgspec.Struct]] = ValidatorState

    def __init__(
        self,
        rules: RulesPolicy | None = None,
        model: ModelPolicy | None = None,
        breaker: brk.BreakerConfig | None = None,
        shadow: str | None = None,
        reconfigure: Callable[[Mapping[str, ev.ConfigValue]], tuple[RulesPolicy, brk.BreakerConfig]] | None = None,
    ) -> None:
        self.reconfigure = reconfigure
        self.overrides: dict[str, ev.ConfigValue] = {}
        #: ConfigChanged this validator refused (another base configuration than the api validated on)
        self.config_rejected = 0
        self.rules = rules or RulesPolicy()
        self.model = model
        if model is not None:
            model.check()
        self.breaker = breaker or brk.BreakerConfig()
        self._base = (self.rules, self.breaker)
        self.shadow = shadow
        self.policy_name = "rules" if model is None else model.mode
        self.memory = Memory()
        self._judging: dict[str, _Judging] = {}
        self._reviews: dict[str, tuple[ev.PositionClosed, list[tuple[str, str]]]] = {}

    # --- operator commands ------------------------------------------------------------------------

    def on_config_changed(self, e: ev.ConfigChanged) -> list[ev.Event]:
        """Apply the ``validator.`` keys of a config change (the rules' and the breaker's limits) from here
        on (all of them, or none if one is bad: logged and counted in :attr:`config_rejected`)."""
        mine = live_config.section(e.changes, "validator")
        if not mine:
            return []
        overrides = {**self.overrides, **mine}
        if not self._reconfigure(overrides, e.event_id):
            return []
        self.overrides = overrides
        return []

    def _reconfigure(self, overrides: dict[str, ev.ConfigValue], at: str) -> bool:
        if not overrides:
            self.rules, self.breaker = self._base
            return True
        try:
            if self.reconfigure is None:
                raise live_config.ConfigRejected({"validator": "this validator was built without reconfigure"})
            self.rules, self.breaker = self.reconfigure(overrides)
        except live_config.ConfigRejected as err:
            self.config_rejected += 1
            log.warning("config.rejected", extra={"event_id": at, "errors": err.errors})
            return False
        return True

    # --- judging ----------------------------------------------------------------------------------

    def on_verdict_awaited(self, e: ev.VerdictAwaited) -> list[ev.Event]:
        """The executor waits for this intent's verdict: join the intent."""
        self._judging[e.symbol] = _Judging(e)
        self.memory = self.memory.apply(e)
        self.awaiting = (ev.IntentProposed, e.correlation_id)
        return []

    def on_intent_proposed(self, intent: ev.IntentProposed) -> list[ev.Event]:
        """Judge the awaited intent (see the module docstring for the order of the checks)."""
        j = self._judging.get(intent.symbol)
        if j is None or j.awaited.correlation_id != intent.correlation_id:
            raise ValueError(f"expected a VerdictAwaited before intent {intent.correlation_id}")
        j.intent = intent
        if j.awaited.lock_state != "FLAT":
            return self._done(j, skipped_locked(j.awaited.lock_state))
        mem = self.memory.of(intent.symbol)
        j.active = mem.active(intent.ts_event)
        refusal = answers.refusal_of(j.active, intent)
        if refusal is not None:
            return self._done(j, Opinion("reject", 1.0, 0.0, (refusal,), ("override",), "override"))
        if self.model is None:
            return self._done(j, self.rules.judge(intent, mem))
        first = "verdict" if self.model.mode == "qwen" else "quant"
        self.ask(self._ask(intent, first, mem, j))
        return []

    def _ask(self, intent: ev.IntentProposed, role: str, mem: SymbolMemory, j: _Judging) -> Ask:
        assert self.model is not None
        doc = prompt.verdict_doc(intent, mem, j.active)
        if role == "verdict":
            template = self.model.prompt
        else:
            template = self.model.council[COUNCIL.index(role)]
            if role == "judge":
                doc["opinions"] = {r: _opinion_doc(o) for r, o in j.opinions.items()}
        r = prompt.render(template, doc)
        return Ask(
            key=call_key(intent.correlation_id, role), role=role, symbol=intent.symbol, model=self.model.model,
            prompt_id=r.prompt_id, prompt_sha256=r.sha256, messages=list(r.messages),
        )  # fmt: skip

    def on_answer(self, call: Call, answer: Any) -> list[ev.Event]:
        """Resume with the model's answer (a :class:`~nertz_common.events.ModelCall`)."""
        assert isinstance(call, Ask) and isinstance(answer, ev.ModelCall)
        if call.role == "breaker":
            return self._reviewed(call, answer)
        j = self._judging[call.symbol]
        assert j.intent is not None
        j.calls.append(answer)
        policy = self.policy_name
        opinion = answers.opinion_of(answer, policy)
        if call.role in ("quant", "strategist"):
            j.opinions[call.role] = opinion
            nxt = "strategist" if call.role == "quant" else "judge"
            self.ask(self._ask(j.intent, nxt, self.memory.of(call.symbol), j))
            return []
        return self._done(j, opinion)

    def _done(self, j: _Judging, opinion: Opinion) -> list[ev.Event]:
        intent = j.intent
        assert intent is not None
        del self._judging[intent.symbol]
        applied: list[str] = []
        if opinion.decision == "approve":
            size = answers.size_of(j.active)
            if size < 1.0:
                applied = [o.override_id for o in j.active if o.kind == "position_size"]
                opinion = Opinion(
                    opinion.decision, opinion.confidence, opinion.size_multiplier * size,
                    (*opinion.reasons, f"override: size x{size:g}"), (*opinion.risk_flags, "override"),
                    opinion.policy, opinion.failure,
                )  # fmt: skip
        elif opinion.policy == "override":
            applied = [o.override_id for o in j.active]
        return [self._verdict(intent, opinion, j, applied)]

    def _verdict(
        self, intent: ev.IntentProposed, o: Opinion, j: _Judging, applied: list[str]
    ) -> ev.VerdictIssued | ev.ShadowVerdictIssued:
        last = j.calls[-1] if j.calls else None
        common: dict[str, Any] = dict(
            correlation_id=intent.correlation_id, causation_id=j.awaited.event_id, decision=o.decision,
            confidence=o.confidence, size_multiplier=o.size_multiplier, policy=o.policy, reasons=list(o.reasons),
            risk_flags=list(o.risk_flags), model=last.model if last else None,
            prompt_id=last.prompt_id if last else None, prompt_hash=last.prompt_sha256 if last else None,
            failure=o.failure, calls=list(j.calls),
        )  # fmt: skip
        if self.shadow is not None:
            return derive(ev.ShadowVerdictIssued, intent, intent.event_id, self.shadow, shadow=self.shadow, **common)
        if j.calls:
            common.update(
                raw_text=last.raw_text if last else None,
                latency_ms=sum(c.latency_ms for c in j.calls),
                tokens_in=sum(c.tokens_in for c in j.calls),
                tokens_out=sum(c.tokens_out for c in j.calls),
                request_id=last.request_id if last else None,
                cost_usd=sum(c.cost_usd for c in j.calls),
            )
        return derive(ev.VerdictIssued, intent, intent.event_id, overrides=applied, **common)

    # --- memory and the circuit breaker -----------------------------------------------------------

    def _fold(self, e: ev.Event) -> list[ev.Event]:
        self.memory = self.memory.apply(e)
        return []

    on_signal_suppressed = on_risk_denied = on_order_submitted = on_order_rejected = _fold
    on_position_opened = on_lock_engaged = on_entry_expired = on_lock_released = _fold
    # managing the open position (no lock move; the round trip counts at its PositionClosed) and
    # reconciliation (an adoption moves the lock)
    on_position_reduced = on_stop_moved = on_venue_mismatch = _fold

    def on_position_closed(self, e: ev.PositionClosed) -> list[ev.Event]:
        """Fold the round trip; review the symbol when it breaches a limit."""
        self.memory = self.memory.apply(e)
        if self.shadow is not None:
            return []
        m = self.memory.of(e.symbol)
        found = brk.due(m, self.breaker, e.ts_event)
        if not found:
            return []
        if self.model is None:
            return [self._review(e, found, "rules", brk.rules_overrides(e.symbol, found, review_key(e.event_id),
                                                                         e.ts_event), [], "", None)]  # fmt: skip
        doc = brk.report_doc(e.symbol, found, m, e.ts_event)
        r = prompt.render(self.model.breaker_prompt, doc)
        self._reviews[e.symbol] = (e, found)
        self.ask(Ask(key=review_key(e.event_id), role="breaker", symbol=e.symbol, model=self.model.model,
                     prompt_id=r.prompt_id, prompt_sha256=r.sha256, messages=list(r.messages),
                     tools=answers.tools()))  # fmt: skip
        return []

    def _reviewed(self, call: Ask, answer: ev.ModelCall) -> list[ev.Event]:
        closed, found = self._reviews.pop(call.symbol)
        key = review_key(closed.event_id)
        overrides, refused, note = answers.overrides_of(answer, closed.symbol, key, closed.ts_event)
        policy = "qwen"
        if answer.outcome != "ok" or (not overrides and not note):
            # fail closed: the model could not review, so the rules breaker decides
            overrides = brk.rules_overrides(closed.symbol, found, key, closed.ts_event)
            policy = "rules"
            note = f"model review unusable ({'; '.join(refused) or answer.outcome}): rules breaker applied"
        return [self._review(closed, found, policy, overrides, refused, note, answer)]

    def _review(
        self,
        closed: ev.PositionClosed,
        found: list[tuple[str, str]],
        policy: str,
        overrides: list[ev.RiskOverride],
        refused: list[str],
        note: str,
        call: ev.ModelCall | None,
    ) -> ev.RiskOverrideIssued:
        out = derive(
            ev.RiskOverrideIssued, closed, review_key(closed.event_id), correlation_id=closed.correlation_id,
            trigger="; ".join(what for _, what in found), policy=policy, overrides=overrides, refused=refused,
            note=note, call=call,
        )  # fmt: skip
        self.memory = self.memory.with_review(out, self.breaker.cooloff_ns)
        return out

    # --- the kernel's hooks -----------------------------------------------------------------------

    def recorded(self, event: ev.Event) -> Iterable[tuple[str, Any]]:
        """The model calls recorded in a verdict (by intent and role) or a review (by its trigger)."""
        if isinstance(event, ev.VerdictIssued | ev.ShadowVerdictIssued):
            return [(call_key(event.correlation_id, c.role), c) for c in event.calls]
        if isinstance(event, ev.RiskOverrideIssued) and event.call is not None:
            return [(review_key(event.causation_id), event.call)]
        return ()

    def same_question(self, call: Call, answer: Any) -> bool:
        """A recorded answer answers ``call`` when the model and the prompt (its hash) are the same."""
        return same_ask(call, answer)

    def get_state(self) -> ValidatorState:
        """Return the memory (between steps nothing else is held)."""
        return ValidatorState(self.memory, dict(self.overrides))

    def set_state(self, state: ValidatorState) -> None:
        """Put back a memory from :meth:`get_state` (its config overrides applied to this validator's base)."""
        self.overrides = dict(state.config_overrides)
        if not self._reconfigure(self.overrides, "restore"):
            self.rules, self.breaker = self._base
        self.memory = state.memory
        self._judging = {}
        self._reviews = {}


def _opinion_doc(o: Opinion) -> dict[str, Any]:
    return {
        "decision": o.decision,
        "confidence": o.confidence,
        "size_multiplier": o.size_multiplier,
        "reasons": list(o.reasons),
        "failure": o.failure,
    }


def shadow_class(shadow: str) -> type[Validator]:
    """A :class:`Validator` subclass named for the shadow (its snapshot key and producer name)."""
    return type(f"ShadowValidator_{shadow}", (Validator,), {"name": topology.shadow_name(shadow)})
