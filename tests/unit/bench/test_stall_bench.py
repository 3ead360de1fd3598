"""bench/stall.py's pieces that need no server: the Send payloads it times are what it says."""

from __future__ import annotations

from bench import stall
from object_models import codecs
from object_models.path import LwM2mPath
from object_models.registry import ModelRegistry


def test_send_packs_fit_their_size_and_decode_as_a_time_series() -> None:
    models = ModelRegistry([]).for_client({})
    for size in (stall.SIZES["capped"], 20_000):
        payload = stall.send_pack(size)
        assert size * 3 // 4 <= len(payload) <= size
        data = codecs.decode_timestamped(payload, stall.SENML_CBOR, models)
        assert len(data.entries) > 100
        assert all(list(nodes) == [LwM2mPath(3303, 0, 5700)] for _, nodes in data.entries)


def test_the_default_cap_takes_the_capped_variant_and_refuses_the_others() -> None:
    limit = codecs.limit_for(stall.SENML_CBOR)
    assert stall.SIZES["capped"] <= limit
    assert all(size > limit for name, size in stall.SIZES.items() if name != "capped")
