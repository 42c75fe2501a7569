"""Composition root of the llm-validator: the validator component on its JetStream lane."""

from __future__ import annotations

import argparse
import logging

from prometheus_client import CollectorRegistry, Counter, Gauge

from nertz_common import events as ev
from nertz_common import runtime, settings
from nertz_common.node.component import Node, Output
from nertz_common.node.nats_runner import ComponentRunner, Hooks
from nertz_validator.build import build
from nertz_validator.settings import ValidatorSettings

log = logging.getLogger("nertz.validator")
SERVICE = "llm-validator"


class ValidatorMetrics:
    """``nertz_llm_validator_*`` metrics: verdicts by decision and policy, intents waiting."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.verdicts = Counter(
            "nertz_llm_validator_verdicts_total", "Verdicts issued", ["symbol", "decision", "policy"], registry=registry
        )
        self.waiting = Gauge(
            "nertz_llm_validator_intents_waiting", "Intents held until the executor reaches them", registry=registry
        )


def hooks(metrics: ValidatorMetrics, node: Node) -> Hooks:
    """Count and log the published verdicts; never a decision."""

    def published(outputs: list[Output]) -> None:
        for v, pos in outputs:
            if isinstance(v, ev.VerdictIssued):
                metrics.verdicts.labels(symbol=v.symbol, decision=v.decision, policy=v.policy).inc()
                log.info(
                    "verdict.issued",
                    extra={
                        "symbol": v.symbol, "correlation_id": v.correlation_id, "decision": v.decision,
                        "policy": v.policy, "reasons": v.reasons, "stream_seq": pos.seq,
                    },
                )  # fmt: skip

    return Hooks(published=published, after_flush=lambda: metrics.waiting.set(node.buffered))


async def start(rt: runtime.Runtime, config: ValidatorSettings) -> tuple[Node, ComponentRunner]:
    """Build the validator node and its JetStream runner on ``rt`` (run it with ``runner.run()``)."""
    if config.dashscope_api_key is not None:
        log.warning("validator.qwen_not_available", extra={"fallback": "rules"})
    node = build(config.validator)
    runner = await rt.component(
        node, config, config_hash=config.fingerprint(), hooks=hooks(ValidatorMetrics(rt.registry), node)
    )
    return node, runner


async def run(config: ValidatorSettings) -> None:
    """Run the validator until SIGTERM/SIGINT."""
    async with runtime.runtime(SERVICE, config) as rt:
        _, runner = await start(rt, config)
        await rt.until_stopped(runner.run())


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m nertz_validator``."""
    parser = argparse.ArgumentParser(
        prog="python -m nertz_validator",
        description=(
            "Nertz llm-validator: approves or rejects each IntentProposed (sig.intent) and publishes "
            "VerdictIssued (llm.verdict). Without DASHSCOPE_API_KEY it runs the deterministic rules "
            "policy. It judges an intent only when the executor has reached it (exec VerdictAwaited), "
            "with a memory folded from exec.* up to that point, so replays decide identically."
        ),
        epilog="Environment: NATS_URL, NERTZ_METRICS_PORT, NERTZ_LOG_LEVEL, NERTZ_VALIDATOR__RULES__<THRESHOLD>",
    )
    parser.parse_args(argv)
    return runtime.run_service(run(settings.load(ValidatorSettings)))
