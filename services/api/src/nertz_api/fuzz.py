"""A schema-driven fuzzer of a running Nertz API (schemathesis over ``/openapi.json``).

For every operation of the API's own OpenAPI document it sends ``examples`` generated requests that fit
the schema and ``examples`` that break it (schemathesis' positive and negative modes; symbols drawn at
random and from ``symbols``), and counts:

- ``server_errors``: any 5xx except a documented 503 (``database_unavailable``/``bus_unavailable``,
  counted apart as ``unavailable``: expected while Postgres or NATS is down, never otherwise);
- ``schema_violations``: a status the operation does not declare, another content type, a body that does
  not validate against the declared model, data the schema forbids accepted or data it allows refused;
- ``auth_failures``: a secured operation (one with a security requirement: a mutating one, or a read
  behind the API's read token) that answers a request without the token, or with a wrong one, with
  anything but 401/403 (413, or a 422 that the same request with the token gets too, come before auth
  and are allowed); the authorized call uses ``admin_token``, which reads too;
- ``secrets_leaked``: responses whose body or headers contain any of ``secrets`` (sentinel values the
  caller configured as the admin token or a database password).

Only for development and the chaos suite: it needs the dev dependencies (schemathesis, hypothesis) and
it only talks to ``base_url``. With ``admin_token`` the mutating endpoints are also called authorized,
so they publish ``TradingStarted``/``TradingStopped`` on the log; without it they are only probed
unauthorized. ``python -m nertz_api.fuzz http://127.0.0.1:8081`` runs it and prints the report as JSON
(``NERTZ_FUZZ_EXAMPLES`` sets the examples per operation and mode, default 10); it exits 1 on any finding.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import requests
    from schemathesis import APIOperation, Case, Response

__all__ = ["DEFAULT_EXAMPLES", "FuzzReport", "fuzz", "main"]

DEFAULT_EXAMPLES = 10
UNAVAILABLE = frozenset({"database_unavailable", "bus_unavailable"})
_KEPT_FINDINGS = 50


@dataclass
class FuzzReport:
    """What a fuzz run sent and found (see the module docstring for what each count means).

    Attributes
    ----------
    requests : int
        HTTP requests sent (auth probes included).
    server_errors, unavailable, schema_violations, auth_failures, secrets_leaked : int
        Responses of each kind of finding.
    operations : int
        API operations of the OpenAPI document that were fuzzed.
    statuses : dict[int, int]
        Responses by HTTP status.
    seconds : float
        Wall time of the run, s.
    findings : list of str
        The first distinct findings, each ``"<kind> <METHOD> <path> -> <status>: <detail>"`` (never a secret).
    """

    requests: int = 0
    server_errors: int = 0
    unavailable: int = 0
    schema_violations: int = 0
    auth_failures: int = 0
    secrets_leaked: int = 0
    operations: int = 0
    statuses: dict[int, int] = field(default_factory=dict)
    seconds: float = 0.0
    findings: list[str] = field(default_factory=list)

    def ok(self, allow_unavailable: bool = False) -> bool:
        """Return True when nothing was found (503s tolerated only with ``allow_unavailable``)."""
        bad = self.server_errors + self.schema_violations + self.auth_failures + self.secrets_leaked
        return bad == 0 and (allow_unavailable or self.unavailable == 0)

    def as_dict(self) -> dict[str, Any]:
        """Return the report as JSON-ready values."""
        return asdict(self)

    def _note(self, kind: str, case: Case, status: int, detail: str) -> None:
        line = f"{kind} {case.operation.label} -> {status}: {detail}"[:500]
        if len(self.findings) < _KEPT_FINDINGS and line not in self.findings:
            self.findings.append(line)


class _OutOfTime(Exception):
    pass


def fuzz(
    base_url: str,
    *,
    admin_token: str | None = None,
    secrets: Sequence[str] = (),
    examples: int = DEFAULT_EXAMPLES,
    symbols: Sequence[str] = ("BTCUSDT",),
    seed: int | None = 0,
    timeout_s: float = 10.0,
    max_seconds: float | None = None,
) -> FuzzReport:
    """Fuzz the API at ``base_url`` from its own OpenAPI document and return what was found.

    Parameters
    ----------
    base_url : str
        Where the API listens, e.g. ``http://127.0.0.1:8081`` (its schema is read from ``/openapi.json``).
    admin_token : str or None
        The API's ``NERTZ_API__TOKEN``: mutating endpoints are then also called authorized (they publish
        commands on the log). None probes them without a token only.
    secrets : sequence of str
        Sentinel values that must never appear in a response body or header (empty ones are ignored).
    examples : int
        Generated requests per operation and mode (positive, negative), >= 1.
    symbols : sequence of str
        Known symbols offered to ``{symbol}`` path parameters besides random ones, so reads reach data.
    seed : int or None
        Hypothesis seed (the same seed sends the same requests to the same schema); None: random.
    timeout_s : float
        Timeout of each HTTP request, s.
    max_seconds : float or None
        Stop generating after this many seconds (the report covers what was sent).

    Returns
    -------
    FuzzReport
        The counts; ``report.ok()`` is True when nothing was found.

    Raises
    ------
    ValueError
        If ``examples < 1``.
    schemathesis.errors.LoaderError
        If ``/openapi.json`` cannot be fetched or is not a valid OpenAPI document.
    """
    import hypothesis
    import hypothesis.errors
    import requests as requests_
    import schemathesis
    from hypothesis import strategies as st
    from schemathesis import GenerationMode
    from schemathesis.core.result import Err

    if examples < 1:
        raise ValueError(f"expected examples >= 1, was {examples}")
    t0 = time.monotonic()
    base_url = base_url.rstrip("/")
    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json", timeout=timeout_s)
    report = FuzzReport()
    sentinels = [s.encode() for s in secrets if s]
    session = requests_.Session()
    settings = hypothesis.settings(
        max_examples=examples,
        database=None,
        deadline=None,
        derandomize=False,
        phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate],  # no shrinking: keep the run bounded
        suppress_health_check=list(hypothesis.HealthCheck),
        print_blob=False,
    )
    probe = _Prober(base_url, session, report, sentinels, admin_token, timeout_s)
    try:
        for result in schema.get_all_operations():
            if isinstance(result, Err):  # an operation the document does not describe readably
                report.schema_violations += 1
                report.findings.append(f"schema: unreadable operation: {result.err()}"[:500])
                continue
            operation = result.ok()
            report.operations += 1
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
                strategy = _strategy(operation, mode, symbols, st)

                @settings
                @hypothesis.given(case=strategy)
                def run(case: Case) -> None:
                    if max_seconds is not None and time.monotonic() - t0 > max_seconds:
                        raise _OutOfTime
                    probe(case)

                if seed is not None:
                    run = hypothesis.seed(seed)(run)
                with contextlib.suppress(hypothesis.errors.Unsatisfiable):  # nothing to negate (no parameters)
                    run()
    except _OutOfTime:
        pass
    finally:
        session.close()
        report.seconds = round(time.monotonic() - t0, 3)
    return report


def _strategy(operation: APIOperation, mode: Any, symbols: Sequence[str], st: Any) -> Any:
    strategy = operation.as_strategy(generation_mode=mode)
    if "{symbol}" in operation.path and symbols:
        known = [operation.as_strategy(generation_mode=mode, path_parameters={"symbol": s}) for s in symbols]
        strategy = st.one_of(strategy, *known)
    return strategy


class _Prober:
    """Send one case (and, for a secured operation, its auth probes) and record what the answers show."""

    def __init__(
        self,
        base_url: str,
        session: requests.Session,
        report: FuzzReport,
        sentinels: list[bytes],
        admin_token: str | None,
        timeout_s: float,
    ) -> None:
        self.base_url = base_url
        self.session = session
        self.report = report
        self.sentinels = sentinels
        self.admin_token = admin_token
        self.timeout_s = timeout_s

    def __call__(self, case: Case) -> None:
        secured = bool(case.operation.definition.raw.get("security"))
        if not secured:
            self._send(case, None)
            return
        authorized = None
        if self.admin_token:
            # a negative case that drops or breaks the Authorization header is repaired by the token sent
            # here: its answer says nothing of how invalid data is rejected
            authorized = self._send(
                case, {"Authorization": f"Bearer {self.admin_token}"}, negative=not _mutates_auth(case)
            )
        for headers in ({"Authorization": "Bearer wrong-token"}, {"Authorization": ""}):
            r = self._send(case, headers, validate=False)
            allowed = {401, 403}
            if authorized is not None and authorized.status_code in (413, 422):
                allowed.add(authorized.status_code)  # refused before auth, whoever asks
            elif authorized is None:
                allowed.add(413)
            if r.status_code not in allowed:
                self.report.auth_failures += 1
                self.report._note(
                    "auth", case, r.status_code, f"without the token, expected 401/403, was {r.status_code}"
                )

    def _send(
        self, case: Case, headers: dict[str, str] | None, validate: bool = True, negative: bool = True
    ) -> Response:
        from schemathesis.core.failures import FailureGroup
        from schemathesis.specs.openapi import checks

        r = case.call(base_url=self.base_url, session=self.session, headers=headers, timeout=self.timeout_s)
        self.report.requests += 1
        self.report.statuses[r.status_code] = self.report.statuses.get(r.status_code, 0) + 1
        if self.sentinels:
            wire = r.content + b"\n".join(f"{k}: {', '.join(v)}".encode() for k, v in r.headers.items())
            if any(s in wire for s in self.sentinels):
                self.report.secrets_leaked += 1
                self.report._note("secret", case, r.status_code, "a sentinel secret is in the response")
        if r.status_code >= 500:
            if r.status_code == 503 and _error_slug(r) in UNAVAILABLE:
                self.report.unavailable += 1
            else:
                self.report.server_errors += 1
                self.report._note("server_error", case, r.status_code, r.content[:200].decode(errors="replace"))
                return r
        if validate:
            try:
                case.validate_response(
                    r,
                    checks=[
                        checks.status_code_conformance,
                        checks.content_type_conformance,
                        checks.response_schema_conformance,
                        *([checks.negative_data_rejection] if negative else []),
                        # a config change the schema allows but a service's settings refuse (an unknown
                        # key, a cross-field rule) is a documented 422 invalid_config, not a schema hole
                        *([] if _error_slug(r) in SEMANTIC_REFUSALS else [checks.positive_data_acceptance]),
                    ],
                    headers=headers,
                )
            except FailureGroup as group:
                self.report.schema_violations += 1
                for failure in group.exceptions:
                    self.report._note("schema", case, r.status_code, f"{failure.title}: {failure.message}")
        return r


#: 422 slugs of values the schema cannot express (checked against the services' settings)
SEMANTIC_REFUSALS = frozenset({"invalid_config"})


def _mutates_auth(case: Case) -> bool:
    meta = case.meta
    if meta is None or not meta.generation.mode.is_negative:
        return False
    data = meta.phase.data
    names = [data.parameter, *(m.parameter for m in data.mutations)]
    return any((n or "").lower() == "authorization" for n in names)


def _error_slug(r: Response) -> str | None:
    try:
        body = json.loads(r.content)
    except ValueError:
        return None
    return body.get("error") if isinstance(body, dict) else None


def main(argv: Sequence[str] | None = None) -> int:
    """Fuzz the API at the given URL, print the report as JSON and return 1 on any finding."""
    p = argparse.ArgumentParser(prog="python -m nertz_api.fuzz", description=__doc__.split("\n\n")[0])
    p.add_argument("base_url", help="e.g. http://127.0.0.1:8081")
    p.add_argument("--examples", type=int, default=int(os.environ.get("NERTZ_FUZZ_EXAMPLES", DEFAULT_EXAMPLES)))
    p.add_argument("--token", default=None, help="the API's admin token (then commands are published)")
    p.add_argument("--secret", action="append", default=[], help="a sentinel that must never be answered")
    p.add_argument("--symbol", action="append", default=None, help="a known symbol (default BTCUSDT)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-seconds", type=float, default=None)
    p.add_argument("--allow-unavailable", action="store_true", help="503 database/bus unavailable is no finding")
    a = p.parse_args(argv)
    report = fuzz(
        a.base_url, admin_token=a.token, secrets=[*a.secret, *([a.token] if a.token else [])],
        examples=a.examples, symbols=a.symbol or ["BTCUSDT"], seed=a.seed, max_seconds=a.max_seconds,
    )  # fmt: skip
    print(json.dumps(report.as_dict(), indent=2))
    return 0 if report.ok(a.allow_unavailable) else 1


if __name__ == "__main__":
    sys.exit(main())
