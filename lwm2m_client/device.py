"""The demo device: the default object instances and the simulated temperature sensor.

What a freshly started ``lwm2m-client`` holds (and what the integration tests read back):

- Security ``/0/0``: the server URI, NoSec (mode 3), short server id 1 — never shown to servers;
- Server ``/1/0``: short server id 1, lifetime, binding, Registration Update Trigger (E),
  Disable (E), Mute Send;
- Device ``/3/0``: manufacturer "pylwm2m", model number, serial number, firmware version, Reboot
  (E), Reset Error Code (E), Error Code (multiple), Current Time (Time, ticking, writable: a
  Write moves the device clock), UTC offset, supported binding and modes, battery level,
  available power sources (multiple) with their voltage;
- Temperature ``/3303/0``: Sensor Value (Float), Units "Cel", min/max measured, min/max range,
  Reset Min and Max Measured Values (E).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable

from object_models.model import ModelProvider
from object_models.path import LwM2mPath
from object_models.types import Value

from .objects import Dynamic, ObjectTree

log = logging.getLogger(__name__)

FIRMWARE_VERSION = "0.1.0"
TEMPERATURE = LwM2mPath(3303, 0, 5700)


class DeviceClock:
    """Current Time (/3/0/13): the host clock plus the offset a server Write sets."""

    def __init__(self) -> None:
        self.offset = 0.0

    def read(self) -> Value:
        return int(time.time() + self.offset)

    def write(self, value: Value) -> None:
        assert isinstance(value, int)
        self.offset = value - time.time()


def build_default_tree(
    models: ModelProvider,
    *,
    endpoint: str,
    server_uri: str,
    lifetime: int,
    binding: str = "U",
    supported_binding: str = "UQ",
    short_server_id: int = 1,
    temperature: float = 21.5,
) -> ObjectTree:
    """The object tree of the demo device (executables that need the client are added later)."""
    tree = ObjectTree(models)
    tree.add_instance(
        0,
        {
            0: server_uri,
            1: False,
            2: 3,  # NoSec
            3: b"",
            4: b"",
            5: b"",
            10: short_server_id,
        },
        instance_id=0,
    )
    tree.add_instance(
        1,
        {0: short_server_id, 1: lifetime, 6: True, 7: binding, 23: False},
        instance_id=0,
    )
    clock = DeviceClock()
    tree.add_instance(
        3,
        {
            0: "pylwm2m",
            1: "pylwm2m-demo",
            2: f"PY-{endpoint}",
            3: FIRMWARE_VERSION,
            6: [1, 5],  # internal battery, USB
            7: [3800, 5000],  # mV
            9: 100,
            11: [0],  # no error
            14: "+00:00",
            16: supported_binding,
        },
        instance_id=0,
        dynamic={13: Dynamic(clock.read, clock.write)},
        executables={4: _log_execute("reboot requested (the demo device does not reboot)")},
    )

    def reset_error_codes(_args: str) -> None:
        tree.set_value("/3/0/11", [0])

    tree.set_executable("/3/0/12", reset_error_codes)

    tree.add_instance(
        3303,
        {
            5700: temperature,
            5601: temperature,
            5602: temperature,
            5603: -40.0,
            5604: 85.0,
            5701: "Cel",
        },
        instance_id=0,
    )
    tree.set_executable("/3303/0/5605", lambda _args: reset_min_max(tree, 0))
    return tree


def reset_min_max(tree: ObjectTree, instance_id: int) -> None:
    """Execute /3303/i/5605: min and max measured become the current value."""
    current = tree.get_value(LwM2mPath(3303, instance_id, 5700))
    tree.set_value(LwM2mPath(3303, instance_id, 5601), current)
    tree.set_value(LwM2mPath(3303, instance_id, 5602), current)


def record_temperature(tree: ObjectTree, value: float, instance_id: int = 0) -> None:
    """Store a new reading and keep min/max measured in step (each change notifies)."""
    tree.set_value(LwM2mPath(3303, instance_id, 5700), value)
    for rid, better in ((5601, min), (5602, max)):
        path = LwM2mPath(3303, instance_id, rid)
        try:
            current = tree.get_value(path)
        except Exception:
            current = value
        assert isinstance(current, float | int)
        if better(float(current), value) != current:
            tree.set_value(path, better(float(current), value))


async def simulate_temperature(
    tree: ObjectTree,
    *,
    period: float = 5.0,
    step: float = 0.5,
    rng: random.Random | None = None,
    instance_id: int = 0,
) -> None:
    """Random walk of /3303/i/5700 every ``period`` seconds, forever (cancel to stop)."""
    rng = rng or random.Random()
    while True:
        await asyncio.sleep(period)
        current = tree.get_value(LwM2mPath(3303, instance_id, 5700))
        assert isinstance(current, float)
        record_temperature(tree, round(current + rng.uniform(-step, step), 2), instance_id)


CURRENT_TIME = LwM2mPath(3, 0, 13)


async def tick_clock(tree: ObjectTree, *, period: float = 1.0) -> None:
    """Current Time (/3/0/13) changes every second on a real device, so an observation of it
    notifies (at most once per ``pmin``) the way Leshan's and Wakaama's demo clients do; without
    this an ``observe /3/0/13`` answers once and then stays silent until ``pmax``."""
    while True:
        await asyncio.sleep(period)
        tree.mark_changed(CURRENT_TIME)


def _log_execute(message: str) -> Callable[[str], None]:
    def run(args: str) -> None:
        log.info("%s (arguments %r)", message, args)

    return run
