"""``ProfileStore.assignment(endpoint)``: the one-device lookup a Register makes (the bootstrap
server, another process, may have assigned the device since the LwM2M server loaded), over
every engine (``engine`` fixture: sqlite, redis, redis-cluster)."""

from __future__ import annotations

from tests.store_engines import Engine


def test_one_assignment_is_read_from_the_store(engine: Engine) -> None:
    writer, reader = engine.profiles(), engine.profiles()  # two processes on one store
    assert reader.assignment("dev-1") is None
    writer.assign("dev-1", "fleet")
    writer.assign("dev-2", "other")
    assert reader.assignment("dev-1") == "fleet"
    writer.assign("dev-1", None)
    assert reader.assignment("dev-1") is None
    assert reader.assignment("dev-2") == "other"
