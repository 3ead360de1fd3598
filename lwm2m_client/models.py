"""Where the client gets its object models from.

The shipped registry (``object_models.registry.ModelRegistry.builtin()``) is the source of truth.
The few models the demo device instantiates (Security 0, Server 1, Device 3, Temperature 3303)
are also written out here, transcribed from the OMA DDF files, so the client keeps working when
the registry cannot be loaded (a stripped install, or a registry module under construction):
a demo device that refuses to start because a JSON file is missing helps nobody.
"""

from __future__ import annotations

import logging

from object_models.model import ModelProvider, ObjectModel, Operations, ResourceModel, StaticModels
from object_models.types import ResourceType

log = logging.getLogger(__name__)

_T = ResourceType
_O = Operations


def _r(
    id: int,
    name: str,
    ops: Operations,
    type: ResourceType,
    *,
    multiple: bool = False,
    mandatory: bool = False,
    units: str = "",
    range_enumeration: str = "",
) -> ResourceModel:
    return ResourceModel(
        id=id,
        name=name,
        operations=ops,
        multiple=multiple,
        mandatory=mandatory,
        type=type,
        units=units,
        range_enumeration=range_enumeration,
    )


SECURITY = ObjectModel(
    id=0,
    name="LWM2M Security",
    version="1.2",
    lwm2m_version="1.1",
    multiple=True,
    mandatory=True,
    resources={
        r.id: r
        for r in (
            _r(0, "LWM2M  Server URI", _O.NONE, _T.STRING, mandatory=True),
            _r(1, "Bootstrap-Server", _O.NONE, _T.BOOLEAN, mandatory=True),
            _r(2, "Security Mode", _O.NONE, _T.INTEGER, mandatory=True, range_enumeration="0..4"),
            _r(3, "Public Key or Identity", _O.NONE, _T.OPAQUE, mandatory=True),
            _r(4, "Server Public Key", _O.NONE, _T.OPAQUE, mandatory=True),
            _r(5, "Secret Key", _O.NONE, _T.OPAQUE, mandatory=True),
            _r(10, "Short Server ID", _O.NONE, _T.INTEGER, range_enumeration="1..65534"),
            _r(11, "Client Hold Off Time", _O.NONE, _T.INTEGER, units="s"),
            _r(12, "Bootstrap-Server Account Timeout", _O.NONE, _T.INTEGER, units="s"),
        )
    },
)

SERVER = ObjectModel(
    id=1,
    name="LwM2M Server",
    version="1.2",
    lwm2m_version="1.2",
    multiple=True,
    mandatory=True,
    resources={
        r.id: r
        for r in (
            _r(0, "Short Server ID", _O.R, _T.INTEGER, mandatory=True),
            _r(1, "Lifetime", _O.RW, _T.INTEGER, mandatory=True, units="s"),
            _r(2, "Default Minimum Period", _O.RW, _T.INTEGER, units="s"),
            _r(3, "Default Maximum Period", _O.RW, _T.INTEGER, units="s"),
            _r(4, "Disable", _O.E, _T.NONE),
            _r(5, "Disable Timeout", _O.RW, _T.INTEGER, units="s"),
            _r(6, "Notification Storing When Disabled or Offline", _O.RW, _T.BOOLEAN,
               mandatory=True),
            _r(7, "Binding", _O.RW, _T.STRING, mandatory=True),
            _r(8, "Registration Update Trigger", _O.E, _T.NONE, mandatory=True),
            _r(9, "Bootstrap-Request Trigger", _O.E, _T.NONE),
            _r(23, "Mute Send", _O.RW, _T.BOOLEAN),
        )
    },
)  # fmt: skip

DEVICE = ObjectModel(
    id=3,
    name="Device",
    version="1.2",
    lwm2m_version="1.1",
    multiple=False,
    mandatory=True,
    resources={
        r.id: r
        for r in (
            _r(0, "Manufacturer", _O.R, _T.STRING),
            _r(1, "Model Number", _O.R, _T.STRING),
            _r(2, "Serial Number", _O.R, _T.STRING),
            _r(3, "Firmware Version", _O.R, _T.STRING),
            _r(4, "Reboot", _O.E, _T.NONE, mandatory=True),
            _r(5, "Factory Reset", _O.E, _T.NONE),
            _r(6, "Available Power Sources", _O.R, _T.INTEGER, multiple=True,
               range_enumeration="0..7"),
            _r(7, "Power Source Voltage", _O.R, _T.INTEGER, multiple=True),
            _r(8, "Power Source Current", _O.R, _T.INTEGER, multiple=True),
            _r(9, "Battery Level", _O.R, _T.INTEGER, units="/100", range_enumeration="0..100"),
            _r(10, "Memory Free", _O.R, _T.INTEGER),
            _r(11, "Error Code", _O.R, _T.INTEGER, multiple=True, mandatory=True,
               range_enumeration="0..32"),
            _r(12, "Reset Error Code", _O.E, _T.NONE),
            _r(13, "Current Time", _O.RW, _T.TIME),
            _r(14, "UTC Offset", _O.RW, _T.STRING),
            _r(15, "Timezone", _O.RW, _T.STRING),
            _r(16, "Supported Binding and Modes", _O.R, _T.STRING, mandatory=True),
            _r(17, "Device Type", _O.R, _T.STRING),
            _r(18, "Hardware Version", _O.R, _T.STRING),
            _r(19, "Software Version", _O.R, _T.STRING),
            _r(20, "Battery Status", _O.R, _T.INTEGER, range_enumeration="0..6"),
            _r(21, "Memory Total", _O.R, _T.INTEGER),
        )
    },
)  # fmt: skip

TEMPERATURE = ObjectModel(
    id=3303,
    name="Temperature",
    version="1.1",
    lwm2m_version="1.0",
    multiple=True,
    mandatory=False,
    resources={
        r.id: r
        for r in (
            _r(5700, "Sensor Value", _O.R, _T.FLOAT, mandatory=True),
            _r(5601, "Min Measured Value", _O.R, _T.FLOAT),
            _r(5602, "Max Measured Value", _O.R, _T.FLOAT),
            _r(5603, "Min Range Value", _O.R, _T.FLOAT),
            _r(5604, "Max Range Value", _O.R, _T.FLOAT),
            _r(5701, "Sensor Units", _O.R, _T.STRING),
            _r(5605, "Reset Min and Max Measured Values", _O.E, _T.NONE),
            _r(5750, "Application Type", _O.RW, _T.STRING),
            _r(5518, "Timestamp", _O.R, _T.TIME),
        )
    },
)

FALLBACK_MODELS = StaticModels.of(SECURITY, SERVER, DEVICE, TEMPERATURE)
"""The demo device's own models, used only when the shipped registry is unavailable."""


class LayeredModels:
    """A ``ModelProvider`` asking ``primary`` first, then ``fallback``.

    Why: the registry knows every OMA object; the fallback guarantees that the handful the demo
    device needs are always typed, whatever state the registry is in.
    """

    def __init__(self, primary: ModelProvider, fallback: ModelProvider) -> None:
        self.primary = primary
        self.fallback = fallback

    def get_object(self, object_id: int) -> ObjectModel | None:
        return self.primary.get_object(object_id) or self.fallback.get_object(object_id)


def default_models() -> ModelProvider:
    """The shipped registry layered over the fallback models, or the fallback alone."""
    try:
        from object_models.registry import ModelRegistry  # type: ignore[import-not-found,unused-ignore]

        registry: ModelProvider = ModelRegistry.builtin()
    except Exception as exc:  # any failure here must not stop a demo device from starting
        log.warning("object model registry unavailable (%s); using the client's own models", exc)
        return FALLBACK_MODELS
    return LayeredModels(registry, FALLBACK_MODELS)
