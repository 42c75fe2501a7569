"""Portable incident bundles: one file that replays offline, with no NATS, Postgres, exchange or model.

A bundle is a zip file (``.nertz``) of parts, each listed with its sha256 in ``manifest.json``:

- ``log.msgpack``: the log slice, every message as ``[seq, subject, input_seq, origin, payload]`` with
  the payload's bytes exactly as stored (so a replay compares byte for byte);
- ``snapshots.msgpack``: the components' snapshots at the slice's start (encoded as in the KV bucket);
- ``config.json``: the effective decision configuration (secrets are never part of it);
- ``version.json``: the code version and the Python packages it ran with;
- ``prompts/`` and ``models.json``: the prompt templates and model ids, when a model policy ran.

Reading checks every part against its hash: a bundle edited by hand, or cut short, is refused.

A bundle's place is a local path or a URL (``s3://bucket/incidents/x.nertz``, see
:mod:`nertz_common.storage`); it is written atomically (a reader never sees half a bundle).
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from dataclasses import dataclass, field
from typing import Any

import msgspec

from nertz_common import events as ev
from nertz_common.node import snapshot
from nertz_common.node.log import Record, gc_paused
from nertz_common.node.snapshot import Snapshot
from nertz_common.storage import Storage, Target

FORMAT = "nertz-bundle"
VERSION = 1


class BundleError(ValueError):
    """A file that is not a readable Nertz bundle (wrong format, a part missing or altered)."""


@dataclass
class Bundle:
    """What a bundle holds.

    Attributes
    ----------
    records : list[Record]
        The log slice, in order.
    snapshots : dict[str, Snapshot]
        Per component, its snapshot at the slice's start.
    config : dict
        The decision configuration (``signal``, ``validator``, ``executor`` groups).
    start, until : int
        The slice asked for (positions; records before ``start`` warm components up).
    manifest : dict
        Everything else recorded (code version, stream, created time, hashes).
    prompts : dict[str, str]
        Prompt templates by id (empty without a model policy).
    """

    records: list[Record]
    snapshots: dict[str, Snapshot] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    start: int = 0
    until: int = 0
    manifest: dict[str, Any] = field(default_factory=dict)
    prompts: dict[str, str] = field(default_factory=dict)


_Row = tuple[int, str, int | None, int, bytes]


def write(
    path: Target,
    bundle: Bundle,
    *,
    code_version: str,
    stream: str,
    packages: dict[str, str],
    storage: Storage | None = None,
) -> dict[str, Any]:
    """Write ``bundle`` to ``path`` (a zip); return its manifest.

    Parameters
    ----------
    path : Path or str
        Where to write (overwritten, atomically): a local path or a URL (``s3://bucket/x.nertz``).
    bundle : Bundle
    code_version : str
    stream : str
        The stream the slice was read from.
    packages : dict[str, str]
        Installed package versions (recorded in ``version.json``).
    storage : Storage, optional
        How URLs are reached (default: settings from the environment).

    Raises
    ------
    StorageError
        If a URL's store refuses the write or cannot be reached.
    OSError
        If a local file cannot be written.
    """
    rows: list[_Row] = [(r.seq, r.subject, r.input_seq, r.origin, r.raw or ev.encode(r.event)) for r in bundle.records]
    parts: dict[str, bytes] = {
        "log.msgpack": msgspec.msgpack.encode(rows),
        "snapshots.msgpack": msgspec.msgpack.encode([snapshot.encode(s) for s in bundle.snapshots.values()]),
        "config.json": json.dumps(bundle.config, indent=2, sort_keys=True).encode(),
        "version.json": json.dumps({"code_version": code_version, "packages": packages}, indent=2).encode(),
        "models.json": json.dumps(sorted(bundle.manifest.get("models", [])), indent=2).encode(),
    }
    for name, text in bundle.prompts.items():
        parts[f"prompts/{name}"] = text.encode()
    seqs = [r.seq for r in bundle.records]
    manifest = {
        "format": FORMAT,
        "version": VERSION,
        "code_version": code_version,
        "stream": stream,
        "start": bundle.start,
        "until": bundle.until,
        "first_seq": min(seqs, default=0),
        "last_seq": max(seqs, default=0),
        "events": len(rows),
        "snapshots": {name: {"origin": s.origin, "positions": s.positions} for name, s in bundle.snapshots.items()},
        "parts": {
            name: {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)} for name, data in parts.items()
        },
        **{k: v for k, v in bundle.manifest.items() if k not in ("parts", "format", "version")},
    }
    with (
        (storage or Storage()).open_write(path) as f,
        zipfile.ZipFile(f, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=6) as z,
    ):
        z.writestr("manifest.json", json.dumps(manifest, indent=2, sort_keys=True))
        for name, data in parts.items():
            z.writestr(name, data)
    return manifest


def read(path: Target, storage: Storage | None = None) -> Bundle:
    """Read and check a bundle at a local path or a URL.

    Raises
    ------
    BundleError
        If the file is not a zip, has no manifest of this format, or a part is missing or does not
        match its sha256.
    FileNotFoundError
        If ``path`` does not exist (a :class:`~nertz_common.storage.StorageNotFound` for a URL).
    StorageError
        If a URL's store cannot be read (missing bucket, credentials, network).
    """
    with (storage or Storage()).open_read(path) as f:
        try:
            z = zipfile.ZipFile(f)
        except zipfile.BadZipFile as e:
            raise BundleError(f"expected a Nertz bundle (a zip file), {path} is not one: {e}") from e
        with z:
            manifest, parts = _checked_parts(z, path)
    with gc_paused():
        rows = msgspec.msgpack.decode(parts["log.msgpack"], type=list[tuple[int, str, int | None, int, bytes]])
        decode = ev.decode
        records = [Record(seq, subj, decode(raw), input_seq, origin, raw) for seq, subj, input_seq, origin, raw in rows]
    snaps = [snapshot.decode(b) for b in msgspec.msgpack.decode(parts["snapshots.msgpack"], type=list[bytes])]
    prompts = {n.removeprefix("prompts/"): d.decode() for n, d in parts.items() if n.startswith("prompts/")}
    return Bundle(
        records=records,
        snapshots={s.component: s for s in snaps},
        config=json.loads(parts["config.json"]),
        start=int(manifest.get("start", 0)),
        until=int(manifest.get("until", 0)),
        manifest=manifest,
        prompts=prompts,
    )


def _checked_parts(z: zipfile.ZipFile, path: Target) -> tuple[dict[str, Any], dict[str, bytes]]:
    try:
        manifest = json.loads(z.read("manifest.json"))
    except KeyError:
        raise BundleError(f"expected manifest.json in {path}, found {z.namelist()[:10]}") from None
    if manifest.get("format") != FORMAT or manifest.get("version") != VERSION:
        raise BundleError(
            f"expected format {FORMAT} v{VERSION}, was {manifest.get('format')} v{manifest.get('version')}"
        )
    parts: dict[str, bytes] = {}
    for name, meta in manifest["parts"].items():
        try:
            data = z.read(name)
        except KeyError:
            raise BundleError(f"part {name} is listed in the manifest but missing from {path}") from None
        digest = hashlib.sha256(data).hexdigest()
        if digest != meta["sha256"]:
            raise BundleError(f"part {name} of {path} was altered: sha256 {digest}, manifest {meta['sha256']}")
        parts[name] = data
    return manifest, parts


def summary(manifest: dict[str, Any]) -> str:
    """One line describing a bundle's manifest."""
    buf = io.StringIO()
    buf.write(
        f"{manifest['events']} events, seq {manifest['first_seq']}..{manifest['last_seq']} "
        f"(replay from {manifest['start']} to {manifest['until']}), code {manifest['code_version']}"
    )
    snaps = manifest.get("snapshots") or {}
    if snaps:
        buf.write(", snapshots: " + ", ".join(f"{n} (origin {s['origin']})" for n, s in sorted(snaps.items())))
    return buf.getvalue()
