"""How the validator component is built: the one place the service, replays and backtests share."""

from __future__ import annotations

from nertz_common.node.component import Node
from nertz_validator.core.component import Validator
from nertz_validator.core.policy import RulesConfig, RulesPolicy
from nertz_validator.settings import ValidatorGroup


def build(group: ValidatorGroup) -> Node:
    """Return the validator node with the configured policy (the rules policy; Qwen comes later)."""
    return Node(Validator(RulesPolicy(RulesConfig(**group.rules.model_dump()))))
