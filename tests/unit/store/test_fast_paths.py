"""The hot path's hand-written shortcuts give exactly what the general code gives."""

from __future__ import annotations

import attrs
from hypothesis import given
from hypothesis import strategies as st

from keystore.store.database import dumps
from lwm2m_server.core.observations import Observation, ObservationIndex
from lwm2m_server.store.records import value_text, value_to_json
from object_models.path import LwM2mPath

values = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(2**64), max_value=2**64),
    st.booleans(),
    st.none(),
    st.text(max_size=20),
    st.binary(max_size=20),
)


@given(values)
def test_value_text_is_the_json_of_the_tagged_value(value: object) -> None:
    assert value_text(value) == dumps(value_to_json(value))  # type: ignore[arg-type]


def test_a_notification_changes_only_the_observation_s_last_notification() -> None:
    """``on_notification`` writes ``attrs.evolve`` out by hand: every other field is kept
    (a field added to ``Observation`` and forgotten there fails here)."""
    observation = Observation(
        token=b"tok",
        endpoint="dev",
        registration_id="reg",
        paths=(LwM2mPath.parse("/3303/0/5700"), LwM2mPath.parse("/3303/0/5701")),
        content_format=112,
        created_at=12.5,
        composite=True,
        active=True,
        last_notification=3.0,
    )
    copied = [f.name for f in attrs.fields(Observation)]
    assert len(copied) == 9, f"on_notification copies 9 fields; Observation has {copied}"
    index = ObservationIndex()
    index.add(observation)
    updated = index.on_notification(b"tok", 99.0)
    assert updated == attrs.evolve(observation, last_notification=99.0)
    assert index.by_token(b"tok") is updated
