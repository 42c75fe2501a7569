"""Composition root of the signal service: the engine as a kernel component on its JetStream lane."""

from __future__ import annotations

import logging

from nertz_common import events as ev
from nertz_common.node.component import Node, Output
from nertz_common.node.nats_runner import ComponentRunner, Hooks
from nertz_common.runtime import Runtime, runtime
from nertz_signal.core.engine import SignalEngine
from nertz_signal.metrics import SignalMetrics
from nertz_signal.settings import SignalSettings

SERVICE = "signal"

log = logging.getLogger("nertz.signal")


def hooks(metrics: SignalMetrics, engine: SignalEngine) -> Hooks:
    """Log and count what was published (intents, vetoes, warm-up resets, the news impact); never a decision."""
    resets = [engine.resets]

    def published(outputs: list[Output]) -> None:
        last = metrics.observe([e for e, _ in outputs])
        for symbol, snapshot in last.items():  # the gauge holds the last snapshot's value
            metrics.set_news_impact(symbol, engine.news_impact(symbol, snapshot.ts_event))
        for e, pos in outputs:
            if isinstance(e, ev.IntentProposed):
                log.info(
                    "intent.proposed",
                    extra={
                        "symbol": e.symbol, "side": e.side, "event_id": e.event_id, "correlation_id": e.correlation_id,
                        "causation_id": e.causation_id, "stream_seq": pos.seq, "entry_price": e.entry_price,
                        "take_profit": e.take_profit, "stop_loss": e.stop_loss, "qty": e.qty,
                        "leverage": e.leverage, "combined": e.combined, "regime": e.regime,
                    },
                )  # fmt: skip
            elif isinstance(e, ev.FactorSnapshot) and e.veto:
                log.info(
                    "intent.vetoed",
                    extra={"symbol": e.symbol, "event_id": e.event_id, "stream_seq": pos.seq, "veto": e.veto},
                )
        if engine.resets != resets[0]:
            metrics.resets.labels(symbol="all").inc(engine.resets - resets[0])
            resets[0] = engine.resets

    return Hooks(published=published)


async def start(rt: Runtime, settings: SignalSettings) -> tuple[SignalEngine, ComponentRunner]:
    """Build the engine and its JetStream runner on ``rt`` (run it with ``runner.run()``)."""
    engine = SignalEngine(settings.signal)
    runner = await rt.component(
        Node(engine), settings, config_hash=settings.fingerprint(), hooks=hooks(SignalMetrics(rt.registry), engine)
    )
    return engine, runner


async def serve(settings: SignalSettings) -> None:
    """Run the signal service until SIGTERM/SIGINT: restore the snapshot, then consume in log order.

    Raises
    ------
    nats.js.errors.NotFoundError
        If the ``NERTZ`` stream or the ``signal`` consumer is missing (run ``nertz streams apply``).
    InvariantViolation
        If the log no longer holds what the state needs, or a restart re-derives something else.
    """
    async with runtime(SERVICE, settings) as rt:
        cfg = settings.signal
        _, runner = await start(rt, settings)
        log.info(
            "signal.ready",
            extra={
                "entry_threshold": cfg.entry_threshold,
                "entry_threshold_books": cfg.entry_threshold_books,
                "entry_thresholds": cfg.entry_thresholds,
                "weights": cfg.weights.as_dict(),
                "stop_mode": cfg.stop_mode,
                "stop_timeframe": cfg.stop_timeframe,
                "min_risk_reward": cfg.min_risk_reward,
                "costs": cfg.costs,
                "risk_per_trade": cfg.risk_per_trade,
                "max_leverage": cfg.max_leverage,
            },
        )
        await rt.until_stopped(runner.run())
