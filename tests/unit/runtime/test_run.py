"""``lwm2m_runtime.server.run``: the servers' loop runner tunes the cyclic collector while it
runs and gives an in-process caller its interpreter back as it was."""

from __future__ import annotations

import gc

from lwm2m_runtime.server import GC_THRESHOLDS, run


def test_run_tunes_the_collector_only_while_it_runs() -> None:
    before = gc.get_threshold()
    frozen_before = gc.get_freeze_count()

    async def main() -> tuple[tuple[int, int, int], int]:
        return gc.get_threshold(), gc.get_freeze_count()

    inside, frozen_inside = run(main())
    assert inside == GC_THRESHOLDS
    assert frozen_inside > 0  # what existed before the server started is out of the traversals
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == frozen_before
