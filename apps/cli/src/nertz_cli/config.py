"""The decision configuration the tools run the components with, and ``--set key=value`` overrides.

The same settings the services read (``NERTZ_SIGNAL__...``, ``NERTZ_VALIDATOR__...``,
``NERTZ_EXECUTOR__...``) in one object, so that a backtest or a replay runs the components exactly as
the services would with this environment; ``--set signal.entry_threshold=8`` changes one value on top.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from typing import Any

from pydantic import ValidationError

from nertz_common.errors import ConfigurationError
from nertz_common.node.component import Node
from nertz_common.settings import CommonSettings, legacy_applied, shown_input
from nertz_executor import build as executor_build
from nertz_executor.settings import ExecutorGroup
from nertz_signal import build as signal_build
from nertz_signal.core.config import SignalConfig
from nertz_validator import build as validator_build
from nertz_validator.settings import ValidatorGroup

GROUPS = ("signal", "validator", "executor")


class PipelineSettings(CommonSettings):
    """The decision parameters of signal, validator and executor (environment: ``NERTZ_<GROUP>__<KEY>``)."""

    signal: SignalConfig = SignalConfig()
    validator: ValidatorGroup = ValidatorGroup()
    executor: ExecutorGroup = ExecutorGroup()

    def decisions(self) -> dict[str, Any]:
        """Return the decision configuration as plain data (what a bundle records; no secrets in it)."""
        return {g: getattr(self, g).model_dump(mode="json") for g in GROUPS}

    def decisions_hash(self) -> str:
        """Return a short hash of :meth:`decisions`."""
        return hashlib.sha256(json.dumps(self.decisions(), sort_keys=True).encode()).hexdigest()[:12]


def parse_sets(pairs: Iterable[str]) -> dict[str, Any]:
    """Turn ``["signal.entry_threshold=8", ...]`` into a nested dict of overrides.

    Values are read as JSON when they parse (``8``, ``true``, ``[1, 2]``), else as strings.

    Raises
    ------
    ConfigurationError
        If a pair has no ``=`` or its key does not start with one of ``signal``, ``validator``,
        ``executor``.
    """
    out: dict[str, Any] = {}
    bad: list[str] = []
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        path = key.strip().split(".")
        if not sep or len(path) < 2 or path[0] not in GROUPS or not all(path):
            bad.append(f"{pair!r}: expected <group>.<key>=<value> with group in {', '.join(GROUPS)}")
            continue
        try:
            value: Any = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        node = out
        for p in path[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                bad.append(f"{pair!r}: {p} is set both as a value and as a group")
                break
        else:
            node[path[-1]] = value
    if bad:
        raise ConfigurationError("bad --set: " + "; ".join(bad))
    return out


def merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """Return ``base`` with ``over`` merged in, recursively."""
    out = dict(base)
    for k, v in over.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def load(sets: Iterable[str] = (), base: dict[str, Any] | None = None) -> PipelineSettings:
    """Build the settings from the environment (or ``base``, e.g. a bundle's recorded configuration),
    with ``sets`` applied on top.

    Raises
    ------
    ConfigurationError
        Listing every bad key or value.
    """
    over = parse_sets(sets)
    try:
        if base is not None:
            return PipelineSettings.model_validate(merge(base, over))
        with legacy_applied() as legacy_errors:  # the original .env names, as the services read them
            if legacy_errors:
                raise ConfigurationError("; ".join(legacy_errors))
            env = PipelineSettings()
        if not over:
            return env
        return PipelineSettings.model_validate(merge(env.decisions(), over))
    except ValidationError as e:
        lines = [
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}"
            f"{shown_input('.'.join(str(p) for p in err['loc']), err.get('input'))}"
            for err in e.errors()
        ]
        raise ConfigurationError(f"{e.error_count()} bad setting(s): " + "; ".join(lines)) from None


def news_node(settings: PipelineSettings) -> Node:
    """Return a fresh news analyst's node, built as the llm-validator builds it (replays of logs with news)."""
    return validator_build.build_news(settings.validator.news)


def nodes(settings: PipelineSettings) -> list[Node]:
    """Return fresh signal, validator and executor nodes, built as the services build them."""
    return [
        signal_build.build(settings.signal),
        validator_build.build(settings.validator),
        executor_build.build(settings.executor.to_config(), settings.executor.reconfigured),
    ]
