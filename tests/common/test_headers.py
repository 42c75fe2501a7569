"""``bus.parse_header_lines``: the same headers as the pinned nats-py's parser, for any header block."""

from __future__ import annotations

import random

import pytest
from nats.aio.client import Client

from nertz_common import bus

CASES = [
    b"Nats-Msg-Id: 5ec2d7fc-476c-568b-9e78-813e0fa2a340\r\nNertz-Input-Seq: 12\r\nNertz-Origin-Seq: 7\r\n\r\n",
    b"", b"\r\n", b"a:b", b" a : b \r\n", b"a b: c", b"\x1ca: v", b"\xff: v", b"k:\xff", b"::",
    b"a\tb:c\r\nd:e", b"noval", b"x:\r\n: y", b"a:\x1cb\x1c", b"Name:\tValue", b"dup: 1\r\ndup: 2",
]  # fmt: skip


@pytest.mark.parametrize("raw", CASES)
def test_parse_header_lines_equals_nats_py(raw):
    assert bus.parse_header_lines(raw) == Client._parse_header_lines(raw)


def test_parse_header_lines_equals_nats_py_on_random_blocks():
    rnd = random.Random(7)
    alphabet = b" \t\r\n:ab\x1c\x1f\x0b\x0c\xff\xc3\xa9"
    for _ in range(20_000):
        raw = bytes(rnd.choice(alphabet) for _ in range(rnd.randint(0, 16)))
        assert bus.parse_header_lines(raw) == Client._parse_header_lines(raw), raw


@pytest.mark.integration
async def test_a_connection_of_bus_connect_parses_headers_with_it(nats_url):
    nc = await bus.connect(nats_url, "test-headers")
    try:
        assert nc._parse_header_lines is bus.parse_header_lines
        sub = await nc.subscribe("t.headers")
        await nc.publish("t.headers", b"x", headers={"Nats-Msg-Id": "id-1", "Nertz-Input-Seq": "3"})
        msg = await sub.next_msg(timeout=5)
        assert msg.headers == {"Nats-Msg-Id": "id-1", "Nertz-Input-Seq": "3"}
    finally:
        await nc.close()
