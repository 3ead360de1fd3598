"""Telemetry mapping: keys from the model, timestamps, and fallbacks."""

from __future__ import annotations

import pytest

from lwm2m_server.core.telemetry import (
    TelemetryPoint,
    latest_by_path,
    lower_camel,
    points_from_nodes,
    points_from_timestamped,
    telemetry_key,
)
from object_models.model import ObjectModel, Operations, ResourceModel, StaticModels
from object_models.node import (
    LwM2mMultipleResource,
    LwM2mObject,
    LwM2mObjectInstance,
    LwM2mSingleResource,
    TimestampedNodes,
)
from object_models.path import LwM2mPath
from object_models.types import ResourceType

P = LwM2mPath.parse


def res(rid: int, name: str, rtype: ResourceType, multiple: bool = False) -> ResourceModel:
    return ResourceModel(rid, name, Operations.R, multiple, False, rtype)


MODELS = StaticModels.of(
    ObjectModel(
        3,
        "Device",
        {
            0: res(0, "Manufacturer", ResourceType.STRING),
            4: ResourceModel(4, "Reboot", Operations.E, False, True, ResourceType.NONE),
            6: res(6, "Available Power Sources", ResourceType.INTEGER, True),
            9: res(9, "Battery Level", ResourceType.INTEGER),
        },
    ),
    ObjectModel(3303, "Temperature", {5700: res(5700, "Sensor Value", ResourceType.FLOAT)}),
    ObjectModel(9, "Odd", {1: res(1, "  --  ", ResourceType.STRING)}),
)


@pytest.mark.parametrize(
    ("name", "key"),
    [
        ("Manufacturer", "manufacturer"),
        ("Sensor Value", "sensorValue"),
        ("SMS Number", "smsNumber"),
        ("Router IP Addresses", "routerIpAddresses"),
        ("Cell-ID", "cellId"),
        ("Min Measured Value", "minMeasuredValue"),
        ("", ""),
    ],
)
def test_lower_camel(name: str, key: str) -> None:
    assert lower_camel(name) == key


@pytest.mark.parametrize(
    ("path", "key"),
    [
        ("/3/0/0", "manufacturer"),
        ("/3303/0/5700", "sensorValue"),
        ("/3303/1/5700", "sensorValue_1"),
        ("/3/0/6/1", "availablePowerSources[1]"),
        ("/3/2/6/0", "availablePowerSources_2[0]"),
        ("/3/0/77", "/3/0/77"),  # unknown resource
        ("/32769/0/1", "/32769/0/1"),  # unknown object
        ("/9/0/1", "/9/0/1"),  # name without a word
    ],
)
def test_keys(path: str, key: str) -> None:
    assert telemetry_key(P(path), MODELS) == key


def test_overrides_win() -> None:
    assert telemetry_key(P("/3303/0/5700"), MODELS, {"/3303/0/5700": "temperature"}) == (
        "temperature"
    )


def test_points_from_instance_node() -> None:
    node = LwM2mObjectInstance.of(
        0,
        LwM2mSingleResource.new(0, "ACME"),
        LwM2mSingleResource(4, None, ResourceType.NONE),  # executable: no telemetry
        LwM2mMultipleResource.from_values(6, {0: 1, 1: 5}),
    )
    points = points_from_nodes(
        "ep1", {P("/3/0"): node, P("/3/1"): None}, now=12.3456, models=MODELS
    )
    assert points == [
        TelemetryPoint("ep1", "/3/0/0", "manufacturer", 12346, "ACME", ResourceType.STRING),
        TelemetryPoint(
            "ep1", "/3/0/6/0", "availablePowerSources[0]", 12346, 1, ResourceType.INTEGER
        ),
        TelemetryPoint(
            "ep1", "/3/0/6/1", "availablePowerSources[1]", 12346, 5, ResourceType.INTEGER
        ),
    ]


def test_points_from_timestamped_use_entry_times() -> None:
    data = TimestampedNodes(
        (
            (100.0, {P("/3303/0/5700"): LwM2mSingleResource.new(5700, 21.5)}),
            (None, {P("/3303/0/5700"): LwM2mSingleResource.new(5700, 22.0)}),
            (
                90.0,
                {
                    P("/3303"): LwM2mObject(
                        3303, {1: LwM2mObjectInstance.of(1, LwM2mSingleResource.new(5700, 19.0))}
                    )
                },
            ),
        )
    )
    points = points_from_timestamped("ep", data, now=200.0, models=MODELS)
    assert [(p.key, p.ts_ms, p.value) for p in points] == [
        ("sensorValue", 100_000, 21.5),
        ("sensorValue", 200_000, 22.0),
        ("sensorValue_1", 90_000, 19.0),
    ]
    latest = latest_by_path(points)
    assert latest["/3303/0/5700"].value == 22.0
    assert latest["/3303/1/5700"].value == 19.0
