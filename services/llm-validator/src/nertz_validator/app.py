"""Composition root of the llm-validator."""

from __future__ import annotations

import argparse
import asyncio
import logging

from nertz_common import bus, runtime, settings
from nertz_common.topology import CONSUMERS
from nertz_validator.core.memory import Memory
from nertz_validator.core.policy import RulesConfig, RulesPolicy
from nertz_validator.core.rendezvous import Rendezvous
from nertz_validator.handlers import ValidatorHandler, ValidatorMetrics
from nertz_validator.settings import ValidatorSettings

log = logging.getLogger("nertz.validator")
DURABLE = "llm-validator"


async def rebuild(js, core: Rendezvous) -> int:  # type: ignore[no-untyped-def]
    """Fold the executor events this consumer already took into ``core`` (memory after a restart).

    Returns the number of events folded.
    """
    info = await js.consumer_info("NERTZ", DURABLE)
    upto = info.delivered.stream_seq
    if not upto:
        return 0
    spec = next(c for c in CONSUMERS if c.durable == DURABLE)
    exec_filters = [s for s in spec.filter_subjects if s.startswith("exec.")]
    history = await bus.read_history(js, exec_filters, upto_seq=upto)
    for r in history:
        core.on_exec(r.event, r.stream_seq)
    return len(history)


async def run(config: ValidatorSettings) -> None:
    """Run the validator until SIGTERM/SIGINT."""
    async with runtime.runtime("llm-validator", config) as rt:
        policy = RulesPolicy(RulesConfig(**config.validator.rules.model_dump()))
        if config.dashscope_api_key is not None:
            log.warning("validator.qwen_not_available", extra={"fallback": "rules"})
        core = Rendezvous(policy, Memory())
        n = await rebuild(rt.js, core)
        log.info("validator.rebuilt", extra={"events": n, "policy": policy.name})
        handler = ValidatorHandler(core, rt.publisher, ValidatorMetrics(rt.registry))
        consumer = await rt.consumer(DURABLE)
        await rt.until_stopped(_loop(consumer, handler))


async def _loop(consumer: bus.Consumer, handler: ValidatorHandler) -> None:
    # Intents are held unacked until judged, so this loop settles acks itself rather than
    # Consumer.run (which acks every message after its handler).
    while not consumer.stopping:
        for d in await consumer.fetch(256):
            await handler.handle(d)


def main(argv: list[str] | None = None) -> None:
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
    asyncio.run(run(settings.load(ValidatorSettings)))
