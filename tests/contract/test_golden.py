"""Golden payloads of every event type keep decoding (schema evolution: new fields get defaults)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from nertz_common import events as ev
from nertz_common import subjects

GOLDEN = Path(__file__).parent / "golden"
_spec = importlib.util.spec_from_file_location("samples", Path(__file__).parent / "samples.py")
assert _spec and _spec.loader
samples = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(samples)


def test_golden_every_event_type_has_a_payload():
    names = {t.__name__ for t in ev.ALL_EVENT_TYPES}
    assert names == {p.stem for p in GOLDEN.glob("*.json")}
    assert names == set(samples.samples())


@pytest.mark.parametrize("path", sorted(GOLDEN.glob("*.json")), ids=lambda p: p.stem)
def test_golden_payload_decodes_to_its_type_and_routes(path):
    event = ev.decode(path.read_bytes())
    assert type(event).__name__ == path.stem
    assert subjects.parse(subjects.for_event(event)).domain in subjects.DOMAINS
    # today's encoder writes every field the golden payload has, with the same values
    again = ev.decode(ev.encode(event))
    assert again == event


def test_decode_unknown_type_tag_raises():
    with pytest.raises(Exception, match="Invalid value 'Nope'"):
        ev.decode(b'{"type":"Nope","event_id":"x","ts_event":1,"ts_init":1}')


def test_decode_out_of_range_field_raises():
    bad = (GOLDEN / "Bar.json").read_bytes().replace(b'"volume":10.0', b'"volume":-1.0')
    with pytest.raises(Exception, match="volume"):
        ev.decode(bad)
