"""Settings changed while running: the dotted keys of ``ConfigChanged`` applied to a settings group.

An operator changes a setting through the api (``POST /config/update_all``), which publishes one
``ConfigChanged`` on ``sys.config.all``; every service reads it on its driver lane and applies the keys
of its own section (``signal.``, ``executor.``, ``validator.``) where the event sits in the log, so a
replay of the log reproduces the change at the same position (ARCHITECTURE.md §7).

A key names a field of a pydantic settings group by its path: ``entry_threshold``,
``weights.ild``, or an entry of a mapping field (``entry_thresholds.egm+pio``). Values are JSON scalars.
A group lists in ``RESTART_KEYS`` the fields that shape state built up from the log (indicator
periods, the venue): those are refused here, since applying them mid-stream would leave the state
inconsistent; they change through the environment and a restart.

A component holds the group it was started with and the overrides read from the log so far (part of
its snapshot), and rebuilds its configuration from both with :func:`updated`, so a restart applies the
same overrides to the same base.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar, get_origin

from pydantic import BaseModel, ValidationError

from nertz_common import events as ev

M = TypeVar("M", bound=BaseModel)


class ConfigRejected(ValueError):
    """Changes that cannot be applied: every bad key with its reason.

    Attributes
    ----------
    errors : dict of str to str
        Dotted key (as given, section included when it was) -> why it was refused. A cross-field rule
        broken by the changes together is under the section's name.
    """

    def __init__(self, errors: Mapping[str, str]) -> None:
        self.errors = dict(errors)
        super().__init__("; ".join(f"{k}: {v}" for k, v in self.errors.items()))


def section(changes: Mapping[str, ev.ConfigValue], name: str) -> dict[str, ev.ConfigValue]:
    """Return the changes of section ``name`` with the section stripped (``signal.x`` -> ``x``)."""
    prefix = name + "."
    return {k[len(prefix) :]: v for k, v in changes.items() if k.startswith(prefix)}


def flatten(doc: Mapping[str, Any], prefix: str = "") -> dict[str, ev.ConfigValue]:
    """Flatten a nested mapping into dotted keys (``{"signal": {"weights": {"ild": 0.3}}}`` ->
    ``{"signal.weights.ild": 0.3}``); lists and other values are kept as they are (and refused later)."""
    out: dict[str, Any] = {}
    for k, v in doc.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping) and v:
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def updated(base: M, changes: Mapping[str, Any], *, label: str = "") -> M:
    """Return ``base`` with ``changes`` applied and validated as a whole.

    Parameters
    ----------
    base : pydantic model
        The group the changes apply to (e.g. the running ``SignalConfig``).
    changes : mapping of str to JSON scalar
        Dotted keys relative to the group (``entry_threshold``, ``weights.ild``).
    label : str
        Prefix of the keys in error messages (``"signal."``).

    Raises
    ------
    ConfigRejected
        Listing every key that is unknown, not a scalar setting, needs a restart, or holds a value the
        group's validation refuses (all keys are checked; nothing is applied when one is bad).
    """
    cls = type(base)
    restart: frozenset[str] = getattr(cls, "RESTART_KEYS", frozenset())
    data = base.model_dump()
    errors: dict[str, str] = {}
    for key, value in changes.items():
        reason = _check(cls, key.split("."), value, restart)
        if reason is not None:
            errors[label + key] = reason
            continue
        _assign(data, key.split("."), value)
    try:  # the well-formed keys are validated even when others are not: every bad key is reported
        out = cls.model_validate(data)
    except ValidationError as e:
        for err in e.errors():
            loc = ".".join(str(p) for p in err["loc"] if p != "__root__")
            errors.setdefault(label + loc if loc else label.rstrip(".") or cls.__name__, err["msg"])
    if errors:
        raise ConfigRejected(errors)
    return out


def _check(cls: type[BaseModel], parts: list[str], value: Any, restart: frozenset[str]) -> str | None:
    head, rest = parts[0], parts[1:]
    field = cls.model_fields.get(head)
    if field is None:
        return f"unknown setting (expected one of {', '.join(sorted(cls.model_fields))})"
    if head in restart:
        return "shapes state built from the log: set it in the environment and restart the service"
    ann = field.annotation
    if isinstance(ann, type) and issubclass(ann, BaseModel):
        if not rest:
            return f"a group of settings: change its keys ({head}.<key>)"
        return _check(ann, rest, value, getattr(ann, "RESTART_KEYS", frozenset()))
    if get_origin(ann) is dict:
        if len(rest) != 1:
            return f"a mapping: change one entry ({head}.<key>)"
    elif rest:
        return f"not a group: {head} has no key {'.'.join(rest)!r}"
    if not isinstance(value, str | int | float | bool):
        return f"expected a JSON scalar (string, number or boolean), was {type(value).__name__}"
    return None


def _assign(data: dict[str, Any], parts: list[str], value: Any) -> None:
    node = data
    for p in parts[:-1]:
        node = node.setdefault(p, {})
    node[parts[-1]] = value
