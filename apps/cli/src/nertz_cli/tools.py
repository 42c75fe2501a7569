"""What ``nertz backtest``, ``replay``, ``export`` and ``verify`` do, as functions (the CLI is a thin shell).

They run the services' own components (:mod:`nertz_cli.config`) through the kernel's in-memory log
runner: a backtest on files, a replay on a JetStream slice or a bundle. The live services, a replay and
a backtest therefore share every line of decision code.
"""

from __future__ import annotations

import contextlib
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from typing import TYPE_CHECKING, Any

from nertz_cli.config import PipelineSettings, news_node, nodes
from nertz_common import events as ev
from nertz_common import subjects, topology, version
from nertz_common.errors import ConfigurationError
from nertz_common.node import bundle as bundle_io
from nertz_common.node.component import Call, Output
from nertz_common.node.log import Record, gc_paused, log_range, read_log, records_of
from nertz_common.node.log_runner import LogRunner, ReplayResult, replay
from nertz_common.node.snapshot import Snapshot, SnapshotStore, choose
from nertz_common.storage import Storage, Target

if TYPE_CHECKING:
    from nats.js import JetStreamContext

COMPONENTS = ("signal", "llm-validator", "executor")
#: the news analyst, replayed on its own (its assessments are the other components' recorded inputs)
NEWS = "news-analyst"
HOUR_NS = 3_600_000_000_000


# --- inputs -----------------------------------------------------------------------------------------


@dataclass
class Inputs:
    """A backtest's market data: records in log order, and what the parser refused."""

    records: list[Record]
    rejected: Counter[str] = field(default_factory=Counter)
    files: list[str] = field(default_factory=list)

    @property
    def bars(self) -> int:
        """Closed bars among the records."""
        return sum(1 for r in self.records if type(r.event) is ev.Bar and r.event.closed)


def load_inputs(
    paths: Sequence[Target],
    symbols: Iterable[str] | None = None,
    instruments: Target | None = "bundled",
    storage: Storage | None = None,
) -> Inputs:
    """Parse kline CSVs and recordings (cryptofeed's, Nertz's) through market-ingest's parser, merged in
    time order, into records (the same events ``market-ingest replay`` publishes, each symbol's
    ``InstrumentSpec`` before its first event included).

    ``paths``: local paths or URLs (``s3://bucket/BTCUSDT_1m.csv.xz``), a directory or a glob standing
    for the recordings in it. ``instruments``: the instruments-info answer of those specs: ``"bundled"``
    (default) for the bundled copy of Bybit's answer (none if it is absent), a path or URL, or None /
    ``"none"`` for no specs. ``storage``: how URLs are read (default: settings from the environment).

    Raises
    ------
    FileNotFoundError
        If a path does not exist.
    nertz_ingest.adapters.recording.RecordingError
        If a file is not a recording market-ingest reads, or the instruments file not an answer.
    StorageError
        If a URL's store cannot be read (missing bucket, credentials, network).
    """
    storage = storage or Storage()
    missing = [str(p) for p in paths if not storage.exists(p)]
    if missing:
        raise FileNotFoundError(f"expected input files, missing: {', '.join(missing)}")
    from nertz_ingest.core.rejection import Rejected
    from nertz_ingest.replay import BUNDLED_INSTRUMENTS, load_instruments, parse_files

    if instruments == "bundled":
        instruments = BUNDLED_INSTRUMENTS if BUNDLED_INSTRUMENTS.exists() else None
    elif instruments == "none":
        instruments = None
    specs = None if instruments is None else load_instruments(instruments, storage)
    wanted = set(symbols) if symbols else None
    events: list[ev.Event] = []
    rejected: Counter[str] = Counter()
    with gc_paused():
        for out in parse_files(list(paths), symbols=wanted, instruments=specs, storage=storage):
            if type(out) is Rejected:
                rejected[out.reason] += 1
            else:
                events.append(out)  # type: ignore[arg-type]
        return Inputs(records_of(events), rejected, [str(p) for p in paths])


# --- backtest ---------------------------------------------------------------------------------------


@dataclass
class Run:
    """What one run of the components over some inputs produced.

    Attributes
    ----------
    settings : PipelineSettings
    outputs : dict[str, list[Event]]
        Per component, every event it emitted, in order.
    inputs : int
        External inputs fed.
    bars : int
        Closed bars among them.
    seconds : float
        Wall time of the run (the components only; loading is not included).
    first_ns, last_ns : int
        Event time of the first and last input.
    closes : dict[str, tuple[float, float]]
        Per symbol, the first and last close of its bars (for buy-and-hold).
    hold : list[list[float]]
        Buy-and-hold of the same period: ``[ts_ns, growth]`` every hour of event time, the mean over the
        symbols seen so far of ``close / first close`` (an equal-weight portfolio; 1.0 at the start).
    """

    settings: PipelineSettings
    outputs: dict[str, list[ev.Event]]
    inputs: int
    bars: int
    seconds: float
    first_ns: int = 0
    last_ns: int = 0
    closes: dict[str, tuple[float, float]] = field(default_factory=dict)
    hold: list[list[float]] = field(default_factory=list)

    @property
    def bars_per_s(self) -> float:
        """Closed bars per wall second."""
        return self.bars / self.seconds if self.seconds > 0 else 0.0

    def events(self, producer: str = "executor") -> list[ev.Event]:
        """The events of one component."""
        return self.outputs.get(producer, [])


def backtest(
    records: Sequence[Record],
    settings: PipelineSettings,
    *,
    keep: bool = True,
    answer: Callable[[str, Call], Any] | None = None,
) -> Run:
    """Run signal, the validator and the executor (paper venue) over ``records``, in process.

    The cyclic garbage collector is held back while the run lasts (:func:`~nertz_common.node.log.gc_paused`).
    ``answer`` asks the model the calls of a model policy (``validator.policy=qwen``; see
    :func:`model_client`).
    """
    runner = LogRunner(nodes(settings), keep=keep, answer=answer)
    first: dict[str, float] = {}
    last: dict[str, float] = {}
    hold: list[list[float]] = []
    next_hold = 0
    bars = 0
    t0 = time.perf_counter()
    with gc_paused():
        feed = runner.feed
        takes = runner.takes
        from nertz_common.node.component import Pos

        bar_t = ev.Bar
        for r in records:
            e = r.event
            t = type(e)
            if t is bar_t and e.closed:  # type: ignore[union-attr]
                bars += 1
                sym = e.symbol  # type: ignore[union-attr]
                if sym not in first:
                    first[sym] = e.close  # type: ignore[union-attr]
                last[sym] = e.close  # type: ignore[union-attr]
                if e.ts_event >= next_hold:
                    hold.append([e.ts_event, sum(last[s] / first[s] for s in first) / len(first)])
                    next_hold = e.ts_event - e.ts_event % HOUR_NS + HOUR_NS
            if takes(t):
                feed(e, Pos(r.seq, r.origin))
        seconds = time.perf_counter() - t0
    outputs = {name: [e for e, _ in outs] for name, outs in runner.outputs.items()}
    return Run(
        settings=settings,
        outputs=outputs,
        inputs=runner.inputs,
        bars=bars,
        seconds=seconds,
        first_ns=records[0].event.ts_event if records else 0,
        last_ns=records[-1].event.ts_event if records else 0,
        closes={s: (first[s], last[s]) for s in first},
        hold=hold,
    )


# --- the log: JetStream or a bundle -----------------------------------------------------------------


@dataclass
class Slice:
    """A piece of the log to replay: its records, where re-derivation starts and stops, the snapshots.

    Attributes
    ----------
    records : list[Record]
    start : int
        Steps from this position on are derived again (earlier ones are taken as recorded).
    until : int
        The last external input fed.
    snapshots : dict[str, Snapshot]
    config : dict or None
        The decision configuration recorded with it (a bundle's), None for a live stream.
    source : str
        Where it came from, for the report.
    """

    records: list[Record]
    start: int
    until: int
    snapshots: dict[str, Snapshot] = field(default_factory=dict)
    config: dict[str, Any] | None = None
    source: str = ""


def boundary_of(records: Sequence[Record], since_ns: int | None, until_ns: int | None) -> tuple[int | None, int | None]:
    """Return the positions of the first external input at or after ``since_ns`` and of the last one
    before ``until_ns`` (event time, UNIX ns), None where not given."""
    start = end = None
    for r in records:
        if r.input_seq is not None:
            continue
        if since_ns is not None and start is None and r.event.ts_event >= since_ns:
            start = r.seq
        if until_ns is not None and r.event.ts_event < until_ns:
            end = r.seq
    return start, end


async def read_slice(
    js: JetStreamContext,
    *,
    from_seq: int | None = None,
    to_seq: int | None = None,
    since_ns: int | None = None,
    until_ns: int | None = None,
    use_snapshots: bool = True,
    progress: Callable[[int, int], None] | None = None,
    stream: str = subjects.STREAM,
) -> Slice:
    """Read what a replay of ``[from_seq, to_seq]`` (or of an event-time window) needs from JetStream.

    With snapshots, each component starts from its latest snapshot before the slice and the log is read
    from the earliest position they need; without, from the stream's first message.

    Raises
    ------
    ConfigurationError
        If the stream no longer holds what the replay needs (trimmed past every snapshot).
    """
    rng = await log_range(js, stream)
    start = from_seq if from_seq is not None else rng.first_seq
    snaps: dict[str, Snapshot] = {}
    if use_snapshots and start > 1:
        store = await SnapshotStore.open(js)
        for name in (*COMPONENTS, NEWS):
            s = choose(await store.history(name), start)
            if s is not None:
                snaps[name] = s
    missing = [c for c in COMPONENTS if c not in snaps]
    need = 1 if missing else min(min(snaps[c].positions.values(), default=0) + 1 for c in COMPONENTS)
    news = snaps.get(NEWS)
    if news is not None and min(news.positions.values(), default=0) + 1 < min(need, start):
        del snaps[NEWS]  # older than what is read: the analyst replays from the slice's first record
    if need < rng.first_seq:
        raise ConfigurationError(
            f"the stream starts at {rng.first_seq}, but a replay from {start} needs every message since {need} "
            f"({'no snapshot before it for ' + ', '.join(missing) if missing else 'the snapshots are older'}); "
            f"replay a later slice, or an exported bundle"
        )
    records = await read_log(js, from_seq=min(need, start), progress=progress, stream=stream)
    until = to_seq if to_seq is not None else rng.last_seq
    if since_ns is not None or until_ns is not None:
        s0, s1 = boundary_of(records, since_ns, until_ns)
        start = s0 if s0 is not None else rng.last_seq + 1
        until = s1 if s1 is not None else until
    return Slice(records, start, until, snaps, None, f"stream {stream} on the server")


def slice_of_bundle(
    path: Target, *, from_seq: int | None = None, to_seq: int | None = None, storage: Storage | None = None
) -> Slice:
    """Open a bundle (a local path or a URL, e.g. ``s3://bucket/incidents/x.nertz``) as a slice (its own
    start and end unless narrowed).

    Raises
    ------
    BundleError
        If the file is not a readable bundle.
    FileNotFoundError
        If there is no such file or object.
    StorageError
        If a URL's store cannot be read (missing bucket, credentials, network).
    """
    b = bundle_io.read(path, storage)
    start = from_seq if from_seq is not None else b.start
    until = to_seq if to_seq is not None else b.until
    return Slice(b.records, start, until, b.snapshots, b.config, f"bundle {path}")


def rerun(
    sl: Slice,
    settings: PipelineSettings,
    *,
    symbols: Iterable[str] | None = None,
    progress: Callable[[int], None] | None = None,
    ask: Callable[[str, Call], Any] | None = None,
) -> ReplayResult:
    """Replay a slice: derive every step from ``start`` on again and compare with the recording.

    Model answers are served from the recorded verdicts (the model is never asked); with ``ask`` (a
    counterfactual with another model or prompt), a question the recording did not ask is asked anew.

    A slice with news assessments is replayed in two passes (docs/decisions.md D25): signal, validator
    and executor read the recorded ``NewsAssessed`` where they sit in the log, as they did live; then
    the news analyst alone derives its assessments again from the recorded answers and they are compared
    too (a question the log holds no answer to — the live analyst had not answered it yet when the slice
    was read — is answered ``not_recorded``, never asked: its assessment falls after the recording's, or
    is a divergence). The result is the two passes' together.
    """
    wanted = set(symbols) if symbols else None
    compare = None
    if wanted:

        def compare(e: ev.Event) -> bool:
            return getattr(e, "symbol", None) in wanted

    def run(nodes_: list[Any], ask_: Callable[[str, Call], Any] | None) -> ReplayResult:
        names = {n.name for n in nodes_}
        return replay(
            sl.records,
            nodes_,
            topology.producer_of,
            start=sl.start,
            until=sl.until,
            snapshots={k: v for k, v in sl.snapshots.items() if v.origin < sl.start and k in names},
            lane_of=topology.lane_of,
            compare=compare,
            progress=progress,
            ask=ask_,
        )

    result = run(nodes(settings), ask)
    if not any(type(r.event) is ev.NewsAssessed for r in sl.records):
        return result
    unanswered: list[Call] = []

    def not_recorded(_component: str, call: Call) -> ev.ModelCall:
        unanswered.append(call)
        return ev.ModelCall(
            role="news", model=getattr(call, "model", ""), prompt_id=getattr(call, "prompt_id", ""),
            prompt_sha256=getattr(call, "prompt_sha256", ""), outcome="not_recorded",
        )  # fmt: skip

    news = run([news_node(settings)], not_recorded)
    news.answers_asked -= len(unanswered)
    return merged(result, news)


def merged(a: ReplayResult, b: ReplayResult) -> ReplayResult:
    """Two replays of the same slice by different components as one result (the first divergence in the log
    of either; the inputs of the first)."""
    firsts = [d for d in (a.divergence, b.divergence) if d is not None]
    return ReplayResult(
        compared={**a.compared, **b.compared},
        identical=a.identical + b.identical,
        divergence=min(firsts, key=lambda d: (d.origin, d.index)) if firsts else None,
        beyond={**a.beyond, **b.beyond},
        inputs=a.inputs,
        warmup=a.warmup + b.warmup,
        busy={**a.busy, **b.busy},
        answers_served=a.answers_served + b.answers_served,
        answers_asked=a.answers_asked + b.answers_asked,
        derived={**a.derived, **b.derived},
        recorded={**a.recorded, **b.recorded},
    )


def recorded_validator(records: Iterable[Record]) -> dict[str, Any]:
    """How the recorded verdicts were decided: ``{"policy", "model", "prompt"}`` of the model verdicts
    (the most frequent of each), ``{}`` when only the rules decided."""
    policies: Counter[str] = Counter()
    models: Counter[str] = Counter()
    prompts: Counter[str] = Counter()
    for r in records:
        e = r.event
        if isinstance(e, ev.VerdictIssued) and e.calls:
            policies[e.policy] += 1
            for c in e.calls:
                models[c.model] += 1
                if c.role == "verdict":
                    prompts[c.prompt_id] += 1
    if not policies:
        return {}
    out: dict[str, Any] = {"policy": policies.most_common(1)[0][0], "model": models.most_common(1)[0][0]}
    if prompts:
        out["prompt"] = prompts.most_common(1)[0][0]
    return out


def as_recorded(settings: PipelineSettings, records: Iterable[Record], explicit: dict[str, Any]) -> PipelineSettings:
    """With ``validator.policy=auto``, replay a log judged by Qwen as it was judged: the recorded policy,
    model and prompt, unless ``explicit`` (the parsed ``--set``) names them."""
    if settings.validator.policy != "auto":
        return settings
    rec = recorded_validator(records)
    if not rec:
        return settings
    mine = explicit.get("validator", {})
    q = settings.validator.qwen.model_copy(
        update={k: rec[k] for k in ("model", "prompt") if k in rec and k not in mine.get("qwen", {})}
    )
    v = settings.validator.model_copy(update={"policy": mine.get("policy", rec["policy"]), "qwen": q})
    return settings.model_copy(update={"validator": v})


def model_client(settings: PipelineSettings) -> Any:
    """A blocking Qwen client for the tools when ``validator.policy`` asks a model, else None.

    Keys and the base URL come from the environment, as the validator reads them (``DASHSCOPE_API_KEY``,
    ``DASHSCOPE_API_KEYS``, ``DASHSCOPE_HTTP_BASE_URL``). Close it (``with``) when done.

    Raises
    ------
    ConfigurationError
        If a model policy is asked for and no key is set.
    """
    policy = settings.validator.resolved(False)
    if policy == "rules":
        return None
    from nertz_validator.adapters.qwen import BlockingQwen, QwenClient
    from nertz_validator.settings import ValidatorSettings

    env = ValidatorSettings()
    keys = env.keys()
    if not keys:
        raise ConfigurationError(f"validator.policy={policy} asks Qwen: set DASHSCOPE_API_KEY (or DASHSCOPE_API_KEYS)")
    return BlockingQwen(QwenClient(settings.validator.qwen, keys, base_url=env.dashscope_base_url))


def models_of(records: Iterable[Record]) -> dict[str, Any]:
    """The model ids and prompt templates the slice's verdicts used (a bundle's manifest lists them)."""
    from nertz_validator.core import prompt as prompts

    models: set[str] = set()
    ids: set[str] = set()
    for r in records:
        e = r.event
        calls = (
            list(e.calls)
            if isinstance(e, ev.VerdictIssued)
            else [e.call]
            if isinstance(e, ev.RiskOverrideIssued | ev.NewsAssessed) and e.call
            else []
        )
        for c in calls:
            models.add(c.model)
            ids.add(c.prompt_id)
    templates = {}
    for i in sorted(ids):
        with contextlib.suppress(ValueError):
            templates[i] = prompts.template(i)
    return {"models": sorted(models), "prompts": templates}


def export(sl: Slice, settings: PipelineSettings, out: Target, storage: Storage | None = None) -> dict[str, Any]:
    """Write a slice as a bundle to a local path or a URL (``s3://bucket/incidents/x.nertz``, atomically);
    return its manifest.

    Only the records the replay needs are kept: from the earliest snapshot position (or the start) on,
    up to the last record whose step is in the slice.

    Raises
    ------
    StorageError
        If a URL's store refuses the write or cannot be reached.
    OSError
        If a local file cannot be written.
    """
    keep_from = min((min(s.positions.values(), default=0) + 1 for s in sl.snapshots.values()), default=sl.start)
    if any(c not in sl.snapshots for c in COMPONENTS):
        keep_from = sl.records[0].seq if sl.records else sl.start
    records = [r for r in sl.records if r.seq >= keep_from and r.origin <= sl.until]
    packages = {}
    for dist in (
        "nertz-common",
        "nertz-signal",
        "nertz-validator",
        "nertz-executor",
        "nertz-ingest",
        "msgspec",
        "nats-py",
    ):
        with contextlib.suppress(metadata.PackageNotFoundError):
            packages[dist] = metadata.version(dist)
    b = bundle_io.Bundle(
        records=records, snapshots=sl.snapshots, config=settings.decisions(), start=sl.start, until=sl.until,
        manifest={"source": sl.source, "config_hash": settings.decisions_hash(), **models_of(records)},
    )  # fmt: skip
    return bundle_io.write(
        out, b, code_version=version.version(), stream=subjects.STREAM, packages=packages, storage=storage
    )


# --- counterfactuals --------------------------------------------------------------------------------


@dataclass
class Decision:
    """One intent's path: proposed, judged, and what the executor did with it."""

    intent: ev.IntentProposed | None = None
    verdict: ev.VerdictIssued | None = None
    outcome: str = ""
    pnl_usdt: float | None = None

    def key(self) -> tuple[str, str, str]:
        """What a counterfactual compares: the intent's side, the verdict, the executor's outcome."""
        return (
            self.intent.side if self.intent else "-",
            self.verdict.decision if self.verdict else "-",
            self.outcome or "-",
        )


def decisions(events: Iterable[ev.Event]) -> dict[str, Decision]:
    """Group signal, validator and executor events by intent id."""
    out: dict[str, Decision] = defaultdict(Decision)
    for e in events:
        if isinstance(e, ev.IntentProposed):
            out[e.correlation_id].intent = e
        elif isinstance(e, ev.VerdictIssued):
            out[e.correlation_id].verdict = e
        elif isinstance(e, ev.SignalSuppressed):
            out[e.correlation_id].outcome = f"suppressed: {e.reason}"
        elif isinstance(e, ev.RiskDenied):
            out[e.correlation_id].outcome = f"risk_denied: {e.rule}"
        elif isinstance(e, ev.OrderSubmitted) and not e.reduce_only:
            out[e.correlation_id].outcome = "ordered"
        elif isinstance(e, ev.EntryExpired):
            out[e.correlation_id].outcome = "expired"
        elif isinstance(e, ev.PositionClosed):
            d = out[e.correlation_id]
            d.outcome = f"closed: {e.exit_reason}"
            d.pnl_usdt = e.trade_pnl_usdt
    return dict(out)


@dataclass
class Counterfactual:
    """The decisions that changed between the recording and a re-run with other settings."""

    recorded: dict[str, Decision]
    derived: dict[str, Decision]
    changed: list[tuple[str, Decision | None, Decision | None]]
    pnl_recorded: float
    pnl_derived: float
    result: ReplayResult


def counterfactual(result: ReplayResult) -> Counterfactual:
    """Compare a replay's derived decisions with the recorded ones, intent by intent."""
    rec_events = [r.event for recs in result.recorded.values() for r in recs]
    rec_events.sort(key=lambda e: e.ts_event)
    der_events: list[ev.Event] = [e for outs in result.derived.values() for e, _ in outs]
    rec, der = decisions(rec_events), decisions(der_events)
    changed = []
    for iid in sorted(set(rec) | set(der), key=lambda i: _when(rec.get(i) or der.get(i))):
        a, b = rec.get(iid), der.get(iid)
        if a is None or b is None or a.key() != b.key():
            changed.append((iid, a, b))
    pnl = sum(e.trade_pnl_usdt for e in rec_events if isinstance(e, ev.PositionClosed))
    pnl2 = sum(e.trade_pnl_usdt for e in der_events if isinstance(e, ev.PositionClosed))
    return Counterfactual(rec, der, changed, pnl, pnl2, result)


def _when(d: Decision | None) -> int:
    if d is None:
        return 0
    e = d.intent or d.verdict
    return e.ts_event if e is not None else 0


def outputs_of(result: ReplayResult) -> dict[str, list[Output]]:
    """The derived events of a replay, per component."""
    return result.derived
