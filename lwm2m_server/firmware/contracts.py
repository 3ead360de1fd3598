"""What the firmware parts agree on: packages, download grants, update strategies, the view of
one device's update job, and the interfaces between them.

Why Protocols here and not concrete classes: the package library (content-addressed blobs and
their metadata), the download server (grants a device redeems over CoAP/HTTP), the per-device
job manager and the campaign scheduler are built and tested apart; each depends only on the
contract of the one below it.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Sequence
from typing import Protocol

import attrs


class PackageKind(enum.Enum):
    FIRMWARE = "firmware"
    """Delivered to the Firmware Update object (5): ``/5/0/0`` or ``/5/0/1``."""
    SOFTWARE = "software"
    """Delivered to a Software Management instance (9): ``/9/x/2`` or ``/9/x/3``."""


class Strategy(enum.Enum):
    """How a package reaches the device (ThingsBoard's per-profile choice)."""

    PUSH = "push"
    """Block1 CoAP Write of the bytes to ``/5/0/0`` (``/9/x/2``)."""
    PULL_COAP = "pull_coap"
    """Write a ``coap(s)://`` Package URI; the device GETs it (Block2) from this server."""
    PULL_HTTP = "pull_http"
    """Write an ``http(s)://`` Package URI served by this server's HTTP listener."""
    AUTO = "auto"
    """Choose from what the device advertises: ``/5/0/9`` delivery method and ``/5/0/8``
    protocol support (pull over the transport it registered with when it can)."""


@attrs.frozen
class Package:
    """An uploaded image. ``id`` is the lowercase hex SHA-256 of its bytes (content-addressed:
    the same bytes uploaded twice are one package)."""

    id: str
    kind: PackageKind
    name: str
    version: str
    size: int
    created_ms: int
    profile: str | None = None
    """The device profile this package is the current one for, if any."""

    @property
    def sha256(self) -> str:
        return self.id


class PackageLibrary(Protocol):
    """Uploaded packages: metadata in the server's store, bytes in the blob location (the data
    dir, or the cluster store)."""

    def add(
        self,
        data: bytes,
        *,
        kind: PackageKind,
        name: str,
        version: str,
        profile: str | None = None,
    ) -> Package:
        """Store the bytes and their metadata. Raises ``Lwm2mError`` (4.13, HTTP 413) over
        ``firmware.max_package_size`` and 4.00 for an empty package or a bad name/version."""
        ...

    def get(self, package_id: str) -> Package | None: ...

    def packages(self) -> list[Package]: ...

    def read(self, package_id: str, offset: int = 0, length: int | None = None) -> bytes:
        """Bytes ``[offset, offset + length)`` of the package (all when ``length`` is None)."""
        ...

    def delete(self, package_id: str) -> bool:
        """Remove an unused package (False when unknown). Raises ``Lwm2mError`` (4.09 /
        HTTP 409) while a job, campaign or profile still refers to it."""
        ...


@attrs.frozen
class DownloadGrant:
    """A device's right to fetch one package until ``expires_ms``: the token in its Package
    URI. Over DTLS the device must be the endpoint the grant names; over NoSec and HTTP the
    unguessable token is the capability."""

    token: str
    package_id: str
    endpoint: str
    expires_ms: int


class DownloadOutcome(enum.Enum):
    STARTED = "started"
    COMPLETED = "completed"
    """The last block (or the whole body) was served."""
    REFUSED = "refused"
    """Unknown or expired token, or the wrong device: answered 4.04/4.03, never the bytes."""


@attrs.frozen
class DownloadEvent:
    """What the download server tells the job manager (to record a device's state even when
    the device itself never reports it)."""

    outcome: DownloadOutcome
    endpoint: str | None
    """The grant's endpoint; None for a token nobody was granted."""
    package_id: str | None
    reason: str = ""


class DownloadGrants(Protocol):
    def grant(self, package_id: str, endpoint: str, ttl_s: float) -> DownloadGrant: ...

    def revoke(self, endpoint: str) -> None:
        """Forget every grant of the endpoint (its job ended)."""
        ...

    def package_uri(
        self, grant: DownloadGrant, scheme: str, *, device_host: str | None = None
    ) -> str:
        """The URI the device is told to fetch: scheme ``coap``, ``coaps``, ``http`` or
        ``https``; it carries ``?sha256=<hex>`` so the device can check what it received.
        ``device_host``: the address the device registered from (a device on loopback is given
        a loopback host when the listener binds a wildcard and no base is configured)."""
        ...

    def subscribe(self, listener: Callable[[DownloadEvent], None]) -> None: ...


class JobState(enum.Enum):
    """One device's update, as the server drives it (docs/firmware.md has the diagram)."""

    PENDING = "pending"
    """Created; waits for its campaign's rollout slot or for the device to be reachable."""
    DOWNLOADING = "downloading"
    """The package (push) or its URI (pull) was written; waiting for State = Downloaded."""
    DOWNLOADED = "downloaded"
    UPDATING = "updating"
    """Execute Update/Install sent; waiting for the device to re-register."""
    VERIFYING = "verifying"
    """Re-registered; reading the version it now runs."""
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        return self in (JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED)


@attrs.frozen
class JobView:
    """One device's update job as the API shows it."""

    endpoint: str
    package_id: str
    kind: PackageKind
    strategy: Strategy
    state: JobState
    instance: int = 0
    """The object instance (always 0 for object 5; the Software Management instance for 9)."""
    result: int | None = None
    """The last Update Result the device reported (``/5/0/5`` or ``/9/x/9``)."""
    detail: str = ""
    """Why it failed, in words (the result code explained, a timeout, a refused step)."""
    attempts: int = 0
    campaign: str | None = None
    created_ms: int = 0
    updated_ms: int = 0


class FirmwareUpdates(Protocol):
    """The per-device job manager, as campaigns and the API use it."""

    async def start(
        self,
        endpoint: str,
        package_id: str,
        *,
        strategy: Strategy = Strategy.AUTO,
        instance: int | None = None,
        campaign: str | None = None,
    ) -> JobView:
        """Create and start a job (raises ``Lwm2mError``: unknown endpoint/package 4.04, a job
        already running for that endpoint 4.09). The device may be asleep (queue mode): the
        requests are queued and the job proceeds when it wakes."""
        ...

    def job(self, endpoint: str) -> JobView | None: ...

    def jobs(self, campaign: str | None = None) -> list[JobView]: ...

    async def cancel(self, endpoint: str) -> JobView | None: ...

    def subscribe(self, listener: Callable[[JobView], None]) -> None:
        """Called with the job after every state change (campaigns count outcomes from it)."""
        ...


FIRMWARE_RESULTS: dict[int, str] = {
    0: "initial value",
    1: "firmware updated successfully",
    2: "not enough flash memory for the new package",
    3: "out of RAM during download",
    4: "connection lost during download",
    5: "integrity check failure for the new package",
    6: "unsupported package type",
    7: "invalid URI",
    8: "firmware update failed",
    9: "unsupported protocol",
    10: "firmware update cancelled",
    11: "deferred",
}
"""Object 5 Update Result (``/5/0/5``) explained (LwM2M Core, Firmware Update object)."""

SOFTWARE_RESULTS: dict[int, str] = {
    0: "initial value",
    1: "downloading",
    2: "software successfully installed",
    3: "successfully downloaded and verified",
    50: "not enough storage for the new software package",
    51: "out of memory during download",
    52: "connection lost during download",
    53: "package integrity check failure",
    54: "unsupported package type",
    56: "invalid URI",
    57: "device defined update error",
    58: "software installation failure",
    59: "uninstallation failure",
}
"""Object 9 Update Result (``/9/x/9``) explained (OMA Software Management object)."""

__all__: Sequence[str] = (
    "FIRMWARE_RESULTS",
    "SOFTWARE_RESULTS",
    "DownloadEvent",
    "DownloadGrant",
    "DownloadGrants",
    "DownloadOutcome",
    "FirmwareUpdates",
    "JobState",
    "JobView",
    "Package",
    "PackageKind",
    "PackageLibrary",
    "Strategy",
)
