"""How the validator and the news analyst are built: the one place the service, replays and backtests share."""

from __future__ import annotations

from collections.abc import Mapping

from nertz_common import events as ev
from nertz_common import live_config
from nertz_common.node.component import Node
from nertz_validator.core.breaker import BreakerConfig
from nertz_validator.core.component import ModelPolicy, Validator, shadow_class
from nertz_validator.core.news import NewsAnalyst, NewsPolicy
from nertz_validator.core.policy import RulesConfig, RulesPolicy
from nertz_validator.settings import NewsSettings, ValidatorGroup


def build(group: ValidatorGroup, *, has_key: bool = False, shadow: str | None = None) -> Node:
    """Return the validator node for ``group``.

    Parameters
    ----------
    group : ValidatorGroup
    has_key : bool
        Whether a DashScope key is set (``policy=auto`` then asks Qwen).
    shadow : str, optional
        Build the shadow validator of that name (``llm.shadow.<name>``).

    Raises
    ------
    ValueError
        If a configured prompt template does not exist.
    """
    policy = group.resolved(has_key)
    model = None
    if policy != "rules":
        q = group.qwen
        model = ModelPolicy(
            mode=policy, model=q.model, prompt=q.prompt, council=q.council, breaker_prompt=q.breaker_prompt
        )
    cls = Validator if shadow is None else shadow_class(shadow)

    def reconfigure(overrides: Mapping[str, ev.ConfigValue]) -> tuple[RulesPolicy, BreakerConfig]:
        return limits(live_config.updated(group, overrides, label="validator."))

    rules, breaker = limits(group)
    return Node(cls(rules, model, breaker, shadow, reconfigure))


def limits(group: ValidatorGroup) -> tuple[RulesPolicy, BreakerConfig]:
    """The rules policy and the circuit breaker's limits of ``group``."""
    return RulesPolicy(RulesConfig(**group.rules.model_dump())), BreakerConfig(**group.breaker.model_dump())


def build_news(news: NewsSettings) -> Node:
    """Return the news analyst's node for ``news`` (the service, replays and tests build it here).

    Raises
    ------
    ValueError
        If the configured prompt template does not exist.
    """
    return Node(
        NewsAnalyst(
            NewsPolicy(
                model=news.model, prompt=news.prompt, refresh_h=news.refresh_h, window_days=news.window_days,
                json_mode=news.json_mode, forced_search=news.forced_search,
            )
        )
    )  # fmt: skip
