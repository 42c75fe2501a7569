from __future__ import annotations

import uuid

from hypothesis import given
from hypothesis import strategies as st

from nertz_common.ids import NERTZ_NAMESPACE, derive_id, order_link_id


@given(st.text(), st.lists(st.one_of(st.text(), st.integers(), st.floats(allow_nan=False), st.booleans())))
def test_derive_id_equals_rfc4122_uuid5(kind, parts):
    assert derive_id(kind, *parts) == str(uuid.uuid5(NERTZ_NAMESPACE, "|".join([kind, *map(str, parts)])))


def test_order_link_id_is_deterministic_and_fits_bybit():
    a, b = order_link_id("intent-1"), order_link_id("intent-1")
    assert a == b and len(a) <= 36 and a != order_link_id("intent-1", "exit")
