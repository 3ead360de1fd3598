"""Building the profile engine for a running ``Lwm2mServer`` from its configuration, so the
service needs one call (``create_engine(self)``) and knows nothing of profiles or sinks."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..config import SinkSettings
from .engine import ProfileEngine
from .sinks import Sink, SinkSet
from .sinks.jsonl import JsonLinesSink
from .sinks.mqtt import MqttSink

if TYPE_CHECKING:
    from ..service import Lwm2mServer


def build_sinks(settings: SinkSettings) -> SinkSet:
    sinks: list[Sink] = []
    if settings.jsonl is not None:
        sinks.append(JsonLinesSink(settings.jsonl, settings.queue_size))
    if settings.mqtt:
        sinks.append(MqttSink(settings.mqtt, settings.mqtt_topic, queue_size=settings.queue_size))
    return SinkSet(sinks)


def create_engine(server: Lwm2mServer) -> ProfileEngine:
    config = server.config
    return ProfileEngine(
        server,
        server.stores.profiles,
        server.stores.device_state,
        server.registry,
        listen=server.bus.listen,
        # the engine's events by fields, both ways: no ``ServerEvent`` made for it per
        # keep-alive or per PROFILE/TELEMETRY it publishes unless someone reads it
        listen_fields=server.bus.listen_fields,
        publish=server.bus.announce,
        folder=config.profiles_dir,
        default_profile=config.default_profile,
        sinks=build_sinks(config.sinks),
        timeout=config.request_timeout,
        # the catalog's changes are committed before they are used (catalog.py); on Redis the
        # profiles are written at once (the node's sqlite group is not theirs)
        durable=None if config.store.engine == "redis" else server.store.settle,
    )
