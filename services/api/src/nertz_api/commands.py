"""The operator commands beyond start/stop, validated before anything is published.

``POST /config/update_all`` and ``POST /config/update_thresholds`` publish one ``ConfigChanged``;
every service applies its section's keys where that event sits in the log
(:mod:`nertz_common.live_config`). Here the change is checked the way each service will apply it: on
the service's running settings (from its heartbeat; the defaults when it has not beaten yet) with every
earlier change of the log on top. A bad key anywhere refuses the whole change, and the 422 lists each
one with its reason.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

from pydantic import BaseModel, ValidationError

from nertz_common import events as ev
from nertz_common import live_config
from nertz_common.heartbeat import Heartbeat
from nertz_executor.settings import ExecutorGroup
from nertz_signal.core.config import SignalConfig
from nertz_validator.settings import ValidatorGroup


class Section(NamedTuple):
    """A service's settings group that a ConfigChanged can change."""

    name: str
    service: str
    model: type[BaseModel]


#: the services whose settings a ConfigChanged can change, by the section its keys start with
SECTIONS: tuple[Section, ...] = (
    Section("signal", "signal", SignalConfig),
    Section("executor", "executor", ExecutorGroup),
    Section("validator", "llm-validator", ValidatorGroup),
)


def base_of(section: Section, beats: Mapping[str, Heartbeat]) -> BaseModel:
    """The running settings group of ``section``'s service: from its heartbeat, else the defaults."""
    hb = beats.get(section.service)
    doc = (hb.settings or {}).get(section.name) if hb is not None else None
    if isinstance(doc, dict):
        try:
            return section.model.model_validate(doc)
        except ValidationError:
            pass  # another version's settings: validate on the defaults
    return section.model()


def validated(
    changes: Mapping[str, Any], beats: Mapping[str, Heartbeat], earlier: Sequence[Mapping[str, Any]] = ()
) -> dict[str, ev.ConfigValue]:
    """Return ``changes`` flattened to dotted keys, once every section would apply them.

    Parameters
    ----------
    changes : mapping
        Dotted keys (``signal.entry_threshold``) or nested objects (``{"signal": {"entry_threshold": 9}}``).
    beats : mapping of service -> Heartbeat
        The services' heartbeats (their running settings).
    earlier : sequence of mappings
        The ``changes`` of every earlier ConfigChanged, in log order (still in force).

    Raises
    ------
    ConfigRejected
        Listing every bad key: outside the known sections, unknown, needing a restart, or refused by
        the service's validation.
    """
    flat = live_config.flatten(changes)
    if not flat:
        raise live_config.ConfigRejected({"changes": "expected at least one setting to change"})
    errors: dict[str, str] = {}
    names = {s.name for s in SECTIONS}
    for key in flat:
        if key.split(".", 1)[0] not in names or "." not in key:
            errors[key] = (
                f"expected a key in one of the sections {', '.join(sorted(names))} (e.g. signal.entry_threshold)"
            )
    for s in SECTIONS:
        mine = live_config.section(flat, s.name)
        if not mine:
            continue
        before: dict[str, Any] = {}
        for c in earlier:
            before.update(live_config.section(c, s.name))
        try:
            live_config.updated(base_of(s, beats), {**before, **mine}, label=s.name + ".")
        except live_config.ConfigRejected as e:
            errors.update({k: v for k, v in e.errors.items() if k in flat or k.split(".", 1)[0] == s.name})
    if errors:
        raise live_config.ConfigRejected(errors)
    return flat


def thresholds(
    entry_threshold: float | None = None,
    entry_threshold_books: float | None = None,
    entry_thresholds: Mapping[str, float] | None = None,
    egm_buy_threshold: float | None = None,
    egm_sell_threshold: float | None = None,
) -> dict[str, ev.ConfigValue]:
    """The ``signal.`` keys of ``POST /config/update_thresholds``.

    ``egm_buy_threshold``/``egm_sell_threshold`` are the original engine's names of the bars-only
    entry threshold (the combined score a long needs, and the negative one a short needs): Nertz's
    threshold is symmetric, so the sell threshold must be the buy threshold's negative.

    Raises
    ------
    ConfigRejected
        If both an ``entry_threshold`` and an EGM threshold are given and differ, or the two EGM
        thresholds are not symmetric.
    """
    out: dict[str, ev.ConfigValue] = {}
    errors: dict[str, str] = {}
    egm = egm_buy_threshold
    if egm_sell_threshold is not None:
        if egm is not None and abs(egm + egm_sell_threshold) > 1e-12:
            errors["egm_sell_threshold"] = (
                f"expected -egm_buy_threshold (the entry threshold is symmetric), was {egm_sell_threshold:g} "
                f"with egm_buy_threshold {egm:g}"
            )
        egm = -egm_sell_threshold if egm is None else egm
    if egm is not None and entry_threshold is not None and egm != entry_threshold:
        errors["egm_buy_threshold"] = (
            f"names entry_threshold too: expected one value, was {egm:g} and {entry_threshold:g}"
        )
    value = entry_threshold if entry_threshold is not None else egm
    if value is not None:
        out["signal.entry_threshold"] = value
    if entry_threshold_books is not None:
        out["signal.entry_threshold_books"] = entry_threshold_books
    for k, v in (entry_thresholds or {}).items():
        out[f"signal.entry_thresholds.{k}"] = v
    if errors:
        raise live_config.ConfigRejected(errors)
    return out
