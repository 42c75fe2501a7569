"""Every consuming service runs on the kernel: no hand-rolled consumer loop is left in ``services/``.

Reading the log (fetch, ack, nak, term, consumer resets, redelivery) lives in one place,
``nertz_common.node.nats_runner``; a service's composition root registers its component (or its
projection) on a runner, and its core is a kernel component with ``on_<event>`` handlers.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from nertz_common.node.component import Component, Node
from nertz_executor.core.component import Executor
from nertz_executor.core.config import ExecutorConfig
from nertz_signal.core.config import SignalConfig
from nertz_signal.core.engine import SignalEngine
from nertz_validator.core.component import Validator
from nertz_validator.core.policy import RulesPolicy

ROOT = Path(__file__).resolve().parents[2]
#: JetStream consumer calls only the kernel may make
CONSUMER_CALLS = {"pull_subscribe", "pull_subscribe_bind", "reset_consumer", "consumer_info", "nak", "in_progress",
                  "ack_sync", "term", "ack"}  # fmt: skip
#: composition root -> what it must register on a runner
ROOTS = {
    "services/signal/src/nertz_signal/app.py": "component",
    "services/llm-validator/src/nertz_validator/app.py": "component",
    "services/executor/src/nertz_executor/app.py": "component",
    "services/api/src/nertz_api/app.py": "runner",
}


def _calls(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            names.add(node.func.attr)
    return names


@pytest.mark.parametrize("path", sorted(p.relative_to(ROOT).as_posix() for p in ROOT.glob("services/*/src/**/*.py")))
def test_no_service_module_consumes_the_log_itself(path):
    used = _calls(ROOT / path) & CONSUMER_CALLS
    assert not used, f"{path} calls {sorted(used)}: consuming the log is the kernel's job (nertz_common.node)"


@pytest.mark.parametrize(("path", "call"), sorted(ROOTS.items()))
def test_every_consuming_service_registers_on_a_kernel_runner(path, call):
    assert call in _calls(ROOT / path), f"{path} does not build its kernel runner (rt.{call}(...))"


@pytest.mark.parametrize(
    "component",
    [SignalEngine(SignalConfig()), Validator(RulesPolicy()), Executor(ExecutorConfig())],
    ids=lambda c: type(c).name,
)
def test_every_decision_core_is_a_complete_kernel_component(component):
    assert isinstance(component, Component)
    node = Node(component)  # a missing on_<event> handler fails here
    assert node.drivers and node.inputs >= node.drivers
    state = node.get_state()
    Node(type(component)(*_args(component))).set_state(state)  # its state round-trips


def _args(c: Component) -> tuple[object, ...]:
    if isinstance(c, SignalEngine):
        return (SignalConfig(),)
    if isinstance(c, Validator):
        return (RulesPolicy(),)
    return (ExecutorConfig(),)
