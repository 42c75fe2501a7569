"""Composition root of the llm-validator: the validator component on its JetStream lane, Qwen as its
outside party, and the ``nertz_llm_validator_*`` / ``nertz_llm_*`` metrics; beside it, in the same
process, the news analyst on its own lane (with a DashScope key; off without one, and it says so)."""

from __future__ import annotations

import argparse
import logging
import re
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from nertz_common import events as ev
from nertz_common import runtime, settings, subjects, topology
from nertz_common.node.component import Node, Output
from nertz_common.node.nats_runner import ComponentRunner, Hooks
from nertz_validator.build import build, build_news
from nertz_validator.settings import ValidatorSettings

if TYPE_CHECKING:  # the dashscope SDK is imported only where a model is used
    from nertz_validator.adapters.qwen import LlmMetrics, QwenClient

log = logging.getLogger("nertz.validator")
SERVICE = "llm-validator"
SHADOW_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")


class ValidatorMetrics:
    """``nertz_llm_validator_*``: verdicts by decision and policy, fail-closed rejects by reason, approval
    rate, how often the model disagrees with the signal, overrides, intents waiting."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.verdicts = Counter(
            "nertz_llm_validator_verdicts_total", "Verdicts issued", ["symbol", "decision", "policy"], registry=registry
        )
        self.fail_closed = Counter(
            "nertz_llm_validator_fail_closed_total", "Rejects because the model failed, by reason", ["reason"],
            registry=registry,
        )  # fmt: skip
        self.approval = Gauge(
            "nertz_llm_validator_approval_rate", "Approved share of the verdicts a policy decided", ["policy"],
            registry=registry,
        )  # fmt: skip
        self.disagreements = Counter(
            "nertz_llm_validator_signal_disagreements_total",
            "Intents the model rejected on its own judgement (not a failure, a lock or an override)",
            ["policy"], registry=registry,
        )  # fmt: skip
        self.confidence = Histogram(
            "nertz_llm_validator_confidence", "Confidence of model verdicts, by decision", ["decision"],
            buckets=(0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0), registry=registry,
        )  # fmt: skip
        for decision in ("approve", "reject"):  # at 0 from the start: a rate() sees the first verdicts
            self.confidence.labels(decision=decision)
        self.overrides = Counter(
            "nertz_llm_validator_overrides_total", "Risk overrides issued by the circuit breaker, by kind and policy",
            ["kind", "policy"], registry=registry,
        )  # fmt: skip
        self.refused = Counter(
            "nertz_llm_validator_tool_calls_refused_total", "Breaker tool calls refused", registry=registry
        )
        self.waiting = Gauge(
            "nertz_llm_validator_intents_waiting", "Intents held until the executor reaches them", registry=registry
        )
        self._decided: dict[str, list[int]] = {}

    def observe(self, v: ev.VerdictIssued | ev.ShadowVerdictIssued) -> None:
        """Count one verdict."""
        self.verdicts.labels(symbol=v.symbol, decision=v.decision, policy=v.policy).inc()
        if v.failure:
            self.fail_closed.labels(reason=v.failure).inc()
        if v.policy in ("rules", "qwen", "council"):
            n = self._decided.setdefault(v.policy, [0, 0])
            n[0] += v.decision == "approve"
            n[1] += 1
            self.approval.labels(policy=v.policy).set(n[0] / n[1])
            if v.calls and not v.failure:
                self.confidence.labels(decision=v.decision).observe(v.confidence)
                if v.decision == "reject":
                    self.disagreements.labels(policy=v.policy).inc()


def hooks(metrics: ValidatorMetrics, node: Node) -> Hooks:
    """Count and log the published verdicts and reviews; never a decision."""

    def published(outputs: list[Output]) -> None:
        for v, pos in outputs:
            if isinstance(v, ev.VerdictIssued | ev.ShadowVerdictIssued):
                metrics.observe(v)
                log.info(
                    "verdict.issued",
                    extra={
                        "symbol": v.symbol, "correlation_id": v.correlation_id, "decision": v.decision,
                        "policy": v.policy, "reasons": v.reasons, "failure": v.failure, "stream_seq": pos.seq,
                    },
                )  # fmt: skip
            elif isinstance(v, ev.RiskOverrideIssued):
                for o in v.overrides:
                    metrics.overrides.labels(kind=o.kind, policy=v.policy).inc()
                metrics.refused.inc(len(v.refused))
                log.warning(
                    "breaker.review",
                    extra={"symbol": v.symbol, "trigger": v.trigger, "policy": v.policy, "note": v.note,
                           "overrides": [f"{o.kind}={o.value or o.side or ''}" for o in v.overrides],
                           "refused": v.refused},
                )  # fmt: skip

    return Hooks(published=published, after_flush=lambda: metrics.waiting.set(node.buffered))


class NewsMetrics:
    """``nertz_llm_news_*``: the news analyst's assessments by outcome, and the latest impact per symbol."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.assessments = Counter(
            "nertz_llm_news_assessments_total", "News assessments published, by symbol and outcome (ok, or the "
            "failure: invalid_json, schema, timeout, http_429...)", ["symbol", "outcome"], registry=registry,
        )  # fmt: skip
        self.critical = Counter(
            "nertz_llm_news_critical_events_total", "Critical key events in the assessments", ["symbol"],
            registry=registry,
        )  # fmt: skip
        self.impact = Gauge(
            "nertz_llm_news_impact", "The latest usable assessment's impact (-2 bearish .. +2 bullish)", ["symbol"],
            registry=registry,
        )  # fmt: skip


def news_hooks(metrics: NewsMetrics) -> Hooks:
    """Count and log the published news assessments (a failure as a warning); never a decision."""

    def published(outputs: list[Output]) -> None:
        for e, pos in outputs:
            if not isinstance(e, ev.NewsAssessed):
                continue
            metrics.assessments.labels(symbol=e.symbol, outcome=e.failure or "ok").inc()
            critical = sum(k.critical for k in e.key_events)
            fields = {
                "symbol": e.symbol, "event_id": e.event_id, "trigger": e.trigger, "stream_seq": pos.seq,
                "impact": e.impact, "key_events": len(e.key_events), "critical": critical, "failure": e.failure,
                "latency_ms": e.call.latency_ms if e.call else None,
            }  # fmt: skip
            if e.failure is not None:
                log.warning("news.failed", extra={**fields, "detail": e.failure_detail})
                continue
            metrics.impact.labels(symbol=e.symbol).set(e.impact)
            metrics.critical.labels(symbol=e.symbol).inc(critical)
            log.info("news.assessed", extra=fields)

    return Hooks(published=published)


async def start_news(
    rt: runtime.Runtime, config: ValidatorSettings, metrics: LlmMetrics | None = None
) -> tuple[Node, ComponentRunner, QwenClient] | None:
    """Build the news analyst's node, its Qwen client and its JetStream runner on ``rt``; None when it is off
    (no DashScope key, or ``NERTZ_VALIDATOR__NEWS__ENABLED=false``), which is logged once.

    ``metrics`` are the ``nertz_llm_*`` metrics of the validator's client, when it has one (shared).

    Raises
    ------
    ValueError
        If the configured prompt template does not exist.
    """
    news = config.validator.news
    keys = config.keys()
    if not news.enabled or not keys:
        why = "NERTZ_VALIDATOR__NEWS__ENABLED=false" if not news.enabled else "no DASHSCOPE_API_KEY (or _KEYS)"
        log.info("news.off", extra={"reason": why, "effect": "no NewsAssessed: no news veto, regime or protection"})
        return None
    from nertz_validator.adapters.qwen import QwenClient, fresh_only

    node = build_news(news)
    q = config.validator.qwen.model_copy(
        update={"request_timeout_s": news.request_timeout_s, "budget_s": news.budget_s}
    )
    client = QwenClient(q, keys, base_url=config.dashscope_base_url, registry=rt.registry, metrics=metrics)
    client.metrics.start(news.model, ("news",))
    runner = await rt.component(
        node, config, config_hash=config.fingerprint(), hooks=news_hooks(NewsMetrics(rt.registry)),
        answer=fresh_only(client, news.max_lag_s),
    )  # fmt: skip
    log.info(
        "news.on",
        extra={"model": news.model, "prompt": news.prompt, "refresh_h": news.refresh_h,
               "window_days": news.window_days, "keys": len(keys), "base_url": config.dashscope_base_url},
    )  # fmt: skip
    return node, runner, client


async def start(
    rt: runtime.Runtime, config: ValidatorSettings, shadow: str | None = None
) -> tuple[Node, ComponentRunner, QwenClient | None]:
    """Build the validator (or shadow ``shadow``) node and its JetStream runner on ``rt``.

    Raises
    ------
    ValueError
        If a model policy is configured and no DashScope key is set.
    """
    keys = config.keys()
    policy = config.policy
    node = build(config.validator, has_key=bool(keys), shadow=shadow)
    client = None
    if policy != "rules":
        if not keys:
            raise ValueError(f"validator.policy={policy} needs DASHSCOPE_API_KEY (or DASHSCOPE_API_KEYS)")
        from nertz_validator.adapters.qwen import QwenClient
        from nertz_validator.core.component import COUNCIL

        client = QwenClient(config.validator.qwen, keys, base_url=config.dashscope_base_url, registry=rt.registry)
        client.metrics.start(config.validator.qwen.model, COUNCIL if policy == "council" else ("verdict",))
    lanes = outputs = None
    if shadow is not None:
        lanes = (topology.shadow_name(shadow),)
        outputs = (subjects.service("llm", "shadow", shadow),)
        await topology.ensure_consumer(rt.js, topology.shadow_consumer(shadow))
    runner = await rt.component(
        node, config, config_hash=config.fingerprint(), hooks=hooks(ValidatorMetrics(rt.registry), node),
        answer=client, lanes=lanes, outputs=outputs,
    )  # fmt: skip
    log.info(
        "validator.policy",
        extra={"policy": policy, "model": config.validator.qwen.model if client else None,
               "prompt": config.validator.qwen.prompt if client else None, "keys": len(keys), "shadow": shadow,
               "base_url": config.dashscope_base_url},
    )  # fmt: skip
    return node, runner, client


async def run(config: ValidatorSettings, shadow: str | None = None) -> None:
    """Run the validator (and, unless a shadow, the news analyst beside it) until SIGTERM/SIGINT."""
    async with runtime.runtime(SERVICE if shadow is None else topology.shadow_name(shadow), config) as rt:
        _, runner, client = await start(rt, config, shadow)
        news = None if shadow is not None else await start_news(rt, config, client.metrics if client else None)
        work = [runner.run()] + ([news[1].run()] if news is not None else [])
        try:
            await rt.until_stopped(*work)
        finally:
            for c in (client, news[2] if news is not None else None):
                if c is not None:
                    await c.close()


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m nertz_validator``."""
    parser = argparse.ArgumentParser(
        prog="python -m nertz_validator",
        description=(
            "Nertz llm-validator: approves or rejects each IntentProposed (sig.intent) and publishes "
            "VerdictIssued (llm.verdict). With DASHSCOPE_API_KEY (or a pool in DASHSCOPE_API_KEYS) Qwen "
            "judges every intent, and any failure is a reject naming it (fail-closed); without a key the "
            "deterministic rules policy decides. It judges an intent when the executor has reached it "
            "(exec VerdictAwaited), with a memory folded from exec.* up to that point, and records the "
            "model's answer in the verdict, so a replay serves it back without asking again. With a key, the "
            "news analyst runs beside it: Qwen with web search asked for each symbol's last 7 days of news "
            "every 6 h of bars and on POST /news/{symbol}, published as NewsAssessed (llm.news)."
        ),
        epilog=(
            "Environment: NATS_URL, DASHSCOPE_API_KEY, DASHSCOPE_API_KEYS=k1,k2, DASHSCOPE_HTTP_BASE_URL, "
            "NERTZ_VALIDATOR__POLICY=auto|rules|qwen|council, NERTZ_VALIDATOR__QWEN__MODEL, "
            "NERTZ_VALIDATOR__QWEN__PROMPT, NERTZ_VALIDATOR__QWEN__BUDGET_S, NERTZ_VALIDATOR__NEWS__ENABLED, "
            "NERTZ_VALIDATOR__NEWS__MODEL, NERTZ_VALIDATOR__NEWS__REFRESH_H, NERTZ_METRICS_PORT, NERTZ_LOG_LEVEL"
        ),
    )
    parser.add_argument(
        "--shadow",
        metavar="NAME",
        help="run as shadow validator NAME: judge the same intents with this process's policy, model or "
        "prompt, on its own consumer, and publish llm.shadow.NAME verdicts that nothing executes",
    )
    args = parser.parse_args(argv)
    if args.shadow is not None and not SHADOW_NAME.match(args.shadow):
        parser.error(f"--shadow: expected 1-32 of a-z 0-9 _ - (starting with a letter or digit), was {args.shadow!r}")
    return runtime.run_service(run(settings.load(ValidatorSettings), args.shadow))
