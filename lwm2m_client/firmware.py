"""The Firmware Update object (5) of the demo device, honest to the LwM2M state machine.

State (``/5/0/3``) and Update Result (``/5/0/5``) move exactly as the Core specification's
Firmware Update state diagram says; both are plain stored values, so every change notifies
observers (the server's update job observes them):

| from        | event                                           | to          | Update Result |
|-------------|-------------------------------------------------|-------------|---------------|
| Idle        | Write Package (first Block1 block or whole)     | Downloading | 0             |
| Idle        | Write Package URI (supported, well-formed)      | Downloading | 0             |
| Idle        | Write Package URI, bad URI / unsupported scheme | Idle        | 7 / 9         |
| Downloading | download complete, image verified               | Downloaded  | 0             |
| Downloading | digest mismatch / not an image / lost           | Idle        | 5 / 6 / 4     |
| Downloading, Downloaded | Write "" to URI or NULL to Package  | Idle        | 0             |
| Downloading, Downloaded | Execute Cancel (``/5/0/10``)        | Idle        | 10            |
| Downloaded  | Execute Update                                  | Updating    | 0             |
| Updating    | new image boots (re-Register)                   | Idle        | 1             |
| Updating    | the update fails (simulation knob)              | Downloaded  | 8             |

Anything else is refused with 4.05 Method Not Allowed and changes nothing: Execute Update
outside Downloaded, a second package or URI while one is in progress or downloaded (the server
resets first with an empty URI), a reset while Updating.

"Honest" means the device checks what it received: the image's own SHA-256 (``firmware_image``)
always, and for pull also the ``sha256`` the Package URI carries, against the SHA-256 of every
byte received. The update itself is a reboot: the device goes offline (no De-register), comes
back after ``reboot_delay`` and sends a new Register reporting the image's version in
``/3/0/3`` (Device Firmware Version) and ``/5/0/7``.

The object talks to the network and the client only through an ``UpdateHost``, so the state
machine runs in memory in the unit tests with a fake host.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import hashlib
import logging
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from typing import Any, Generic, Protocol, TypeVar

import attrs

from object_models.errors import Lwm2mError, ResponseCode
from object_models.path import LwM2mPath

from .firmware_image import FirmwareImage, ImageError, IntegrityError, parse_image
from .objects import Dynamic, ObjectTree
from .package_download import (
    PROTOCOL_NUMBERS,
    BlockHook,
    DownloadError,
    DownloadFailure,
    expected_sha256,
    parse_package_uri,
)

log = logging.getLogger(__name__)

FIRMWARE_OBJECT = 5
DEVICE_FIRMWARE_VERSION = LwM2mPath(3, 0, 3)
PACKAGE, PACKAGE_URI, UPDATE, STATE, UPDATE_RESULT = 0, 1, 2, 3, 5
PKG_NAME, PKG_VERSION, PROTOCOL_SUPPORT, DELIVERY_METHOD, CANCEL = 6, 7, 8, 9, 10
DELIVERY_BOTH = 2


class FwState(enum.IntEnum):
    IDLE = 0
    DOWNLOADING = 1
    DOWNLOADED = 2
    UPDATING = 3


class FwResult(enum.IntEnum):
    INITIAL = 0
    SUCCESS = 1
    NOT_ENOUGH_FLASH = 2
    OUT_OF_RAM = 3
    CONNECTION_LOST = 4
    INTEGRITY_FAILURE = 5
    UNSUPPORTED_PACKAGE = 6
    INVALID_URI = 7
    UPDATE_FAILED = 8
    UNSUPPORTED_PROTOCOL = 9
    CANCELLED = 10
    DEFERRED = 11


@attrs.frozen
class UpdateSimulation:
    """Failure knobs of the demo device (constructor option ``update_simulation`` and the
    ``--fw-*`` flags of ``lwm2m-client``)."""

    fail_update: bool = False
    """Execute Update (Install for object 9) fails: Update Result 8 (58), version unchanged."""
    corrupt_download: bool = False
    """Flip one byte of every package received (push or pull): Update Result 5 (53)."""
    vanish_after_blocks: int | None = None
    """Go silent after receiving this many blocks of a package (push or pull): the device
    answers nothing and sends nothing, as if out of coverage."""
    vanish_for: float | None = None
    """How long the silence lasts; None = the device never comes back. When it does, the
    download is lost (Update Result 4 / 52) and it sends a registration Update."""
    reboot_delay: float = 1.0
    """Seconds the device is offline while it "reboots" into a new firmware."""
    block_timeout: float = 30.0
    """Pull: seconds to wait for one block before the download counts as lost."""
    push_timeout: float = 120.0
    """Push: seconds without a Block1 block before a started transfer counts as lost."""


class UpdateHost(Protocol):
    """What the update objects need from the device around them (the client, or a fake)."""

    @property
    def schemes(self) -> tuple[str, ...]:
        """The Package URI schemes the device can download from."""
        ...

    async def fetch(self, uri: str, on_block: BlockHook) -> bytes: ...

    def vanish(self, duration: float | None) -> Awaitable[None]:
        """Go silent now (synchronously: the next datagram is already dropped); the awaitable
        resolves when the device is back (never for ``None``)."""
        ...

    async def reboot(self, apply: Callable[[], None]) -> None:
        """Go offline, call ``apply`` (the new image is now running), come back, Register."""
        ...

    async def announce_objects(self) -> None:
        """Registration Update with the object list (object 9: new software, new objects)."""
        ...


def not_allowed(path: LwM2mPath, why: str) -> Lwm2mError:
    return Lwm2mError(f"{path}: {why}", code=ResponseCode.METHOD_NOT_ALLOWED)


def corrupt(data: bytes) -> bytes:
    """``data`` with one byte flipped (near the end: inside the body, past the header)."""
    if not data:
        return b"\x00"
    index = max(0, len(data) - 1 - len(data) // 4)
    return data[:index] + bytes([data[index] ^ 0xFF]) + data[index + 1 :]


S = TypeVar("S", bound=enum.IntEnum)
R = TypeVar("R", bound=enum.IntEnum)


@attrs.frozen
class Delivery(Generic[S, R]):
    """Where objects 5 and 9 differ in the delivery steps they share: which resources hold
    State and Result, and the values the two objects give the same moments."""

    package_resource: int
    uri_resource: int
    state_resource: int
    result_resource: int
    idle: S
    """No package: a new one may be written (5: Idle, 9: INITIAL)."""
    downloading: S
    """A package is arriving (5: Downloading, 9: DOWNLOAD STARTED)."""
    initial: R
    """Update Result after a reset (0 for both)."""
    downloading_result: R
    """Update Result while a package arrives: object 9 says "downloading" (1), object 5 has no
    such value and keeps 0."""
    failures: Mapping[DownloadFailure, R]
    """Update Result for a refused Package URI or a failed pull: object 5 tells an unsupported
    scheme (9) from a malformed URI (7); object 9 has only "invalid URI" (56)."""
    integrity_failure: R
    unsupported_package: R
    what: str
    """"firmware" or "software", for the logs."""


class PackageReceiver(Generic[S, R]):
    """What objects 5 and 9 share: delivery by push (Write Package, Block1) and pull (Write
    Package URI), the checks on what arrived, background tasks and the "go silent after K
    blocks" knob. Each object names its resources and values in a ``Delivery``; installing
    what was delivered is the object's own."""

    def __init__(
        self,
        tree: ObjectTree,
        host: UpdateHost,
        simulation: UpdateSimulation,
        base: LwM2mPath,
        delivery: Delivery[S, R],
    ) -> None:
        self.tree = tree
        self.host = host
        self.simulation = simulation
        self.base = base
        self.delivery = delivery
        self.uri = ""
        self.image: FirmwareImage | None = None
        self._pushing = False
        self._tasks: set[asyncio.Task[Any]] = set()
        self._download: asyncio.Task[Any] | None = None
        self._push_blocks = 0
        self._push_accepted = False
        self._push_watchdog: asyncio.Task[Any] | None = None
        self.vanished = False

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)

        def done(t: asyncio.Task[Any]) -> None:
            self._tasks.discard(t)
            if not t.cancelled() and t.exception() is not None:
                log.warning("firmware task failed: %r", t.exception())

        task.add_done_callback(done)
        return task

    async def settle(self) -> None:
        """Wait until no download, update or watchdog is running (tests; a calm shutdown)."""
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def close(self) -> None:
        """Cancel downloads, watchdogs and pending updates (the client stops)."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()

    # -- reading and moving the state -------------------------------------------------------------
    @property
    def state(self) -> S:
        value = self.tree.get_value(self.base.child(self.delivery.state_resource))
        assert isinstance(value, int)
        return type(self.delivery.idle)(value)

    @property
    def result(self) -> R:
        value = self.tree.get_value(self.base.child(self.delivery.result_resource))
        assert isinstance(value, int)
        return type(self.delivery.initial)(value)

    def _set(self, state: S | None = None, result: R | None = None) -> None:
        """Result first, then State: an observer that sees the State change reads the result
        that goes with it."""
        if result is not None and result != self.result:
            self.tree.set_value(self.base.child(self.delivery.result_resource), int(result))
        if state is not None and state != self.state:
            log.info("%s %s state %s -> %s (result %s)", self.base, self.delivery.what,
                     self.state.name, state.name, self.result.name)  # fmt: skip
            self.tree.set_value(self.base.child(self.delivery.state_resource), int(state))

    def _back_to_idle(self, result: R) -> None:
        """Drop the transfer and whatever was delivered; State idle with ``result``."""
        self._cancel_transfer()
        self.image = None
        self._pushing = False
        self._set(self.delivery.idle, result)

    def _fail(self, result: R, why: str) -> None:
        log.warning("%s: %s download failed: %s (Update Result %d)", self.base,
                    self.delivery.what, why, int(result))  # fmt: skip
        self._back_to_idle(result)

    def _reset(self, path: LwM2mPath) -> None:
        """Empty URI / NULL package: back to idle, result 0, the delivered image dropped."""
        refusal = self._reset_refusal()
        if refusal is not None:
            raise not_allowed(path, refusal)
        self.uri = ""
        self._back_to_idle(self.delivery.initial)

    def _reset_refusal(self) -> str | None:
        """Why an empty URI / NULL package cannot reset now (None: it can)."""
        raise NotImplementedError

    def _busy(self) -> str:
        """Why a new package is refused (the State is neither idle nor this push's)."""
        raise NotImplementedError

    def _cancel_transfer(self) -> None:
        for task in (self._download, self._push_watchdog):
            if task is not None and task is not asyncio.current_task():
                task.cancel()
        self._download = self._push_watchdog = None
        self._push_blocks = 0
        self._push_accepted = False

    async def _count_block(self, blocks: int) -> None:
        """After each pulled block: the vanish knob."""
        limit = self.simulation.vanish_after_blocks
        if limit is not None and blocks >= limit and not self.vanished:
            await self._vanish()
            raise DownloadError(DownloadFailure.CONNECTION_LOST, "the device was out of reach")

    async def _vanish(self) -> None:
        self.vanished = True
        log.info("simulation: silent after %s blocks", self.simulation.vanish_after_blocks)
        await self.host.vanish(self.simulation.vanish_for)
        self.vanished = False

    # -- push (Block1) ----------------------------------------------------------------------------
    def push_block(self, number: int, more: bool) -> None:
        """A Block1 block of a Write to the Package resource arrived (before aiocoap has the
        whole body): the transfer has started, and the vanish knob counts blocks."""
        if number == 0:
            self._push_blocks = 0
            self._push_accepted = self._push_started()
        if not self._push_accepted:
            return  # refused (the Write will be answered 4.05): nothing to count
        self._push_blocks += 1
        self._arm_push_watchdog()
        limit = self.simulation.vanish_after_blocks
        if more and limit is not None and self._push_blocks >= limit and not self.vanished:
            self._spawn(self._vanish_during_push())

    async def _vanish_during_push(self) -> None:
        vanishing = self.host.vanish(self.simulation.vanish_for)
        self.vanished = True
        if self._push_watchdog is not None:
            # the loss is noticed when the device is back, so that its notifications go out
            self._push_watchdog.cancel()
            self._push_watchdog = None
        await vanishing
        self.vanished = False
        self._push_lost()

    def _arm_push_watchdog(self) -> None:
        if self._push_watchdog is not None:
            self._push_watchdog.cancel()
        self._push_watchdog = self._spawn(self._push_timeout())

    async def _push_timeout(self) -> None:
        await asyncio.sleep(self.simulation.push_timeout)
        self._push_watchdog = None
        self._push_lost()

    def _pushing_now(self) -> bool:
        return self._pushing and self.state is self.delivery.downloading

    def _push_started(self) -> bool:
        """Block 0 of a push: move to the downloading state if allowed (False: ignore)."""
        if self.state is self.delivery.idle:
            self._pushing = True
            self._set(self.delivery.downloading, self.delivery.downloading_result)
            return True
        return self._pushing_now()  # a restarted transfer

    def _push_lost(self) -> None:
        """A push stopped mid-way (timeout, or the device was out of reach)."""
        if self._pushing_now():
            self._fail(self.delivery.failures[DownloadFailure.CONNECTION_LOST],
                       "the pushed package stopped arriving")  # fmt: skip

    def _write_package(self, value: object) -> None:
        path = self.base.child(self.delivery.package_resource)
        assert isinstance(value, bytes)
        if value in (b"", b"\x00"):
            self._reset(path)
            return
        if self.vanished:
            # the last block slipped in as the device went silent: it is out of reach
            return
        if not self._pushing_now() and self.state is not self.delivery.idle:
            raise not_allowed(path, self._busy())
        self._cancel_transfer()
        self._pushing = False
        self._set(self.delivery.downloading, self.delivery.downloading_result)
        self._downloaded(value, None)

    # -- pull (Package URI) -----------------------------------------------------------------------
    def _write_uri(self, value: object) -> None:
        path = self.base.child(self.delivery.uri_resource)
        assert isinstance(value, str)
        if value == "":
            self._reset(path)
            return
        if self.state is not self.delivery.idle:
            raise not_allowed(path, self._busy())
        self.uri = value
        try:
            parse_package_uri(value, self.host.schemes)
        except DownloadError as exc:
            self._fail(self.delivery.failures[exc.kind], str(exc))
            return
        self._set(self.delivery.downloading, self.delivery.downloading_result)
        self._download = self._spawn(self._pull(value))

    async def _pull(self, uri: str) -> None:
        try:
            data = await self.host.fetch(uri, self._count_block)
        except DownloadError as exc:
            self._download = None
            self._fail(self.delivery.failures[exc.kind], str(exc))
            return
        self._download = None
        self._downloaded(data, expected_sha256(uri))

    # -- what arrived -----------------------------------------------------------------------------
    def _downloaded(self, data: bytes, expected: str | None) -> None:
        """The whole package is here (push or pull): check it, deliver it or fail."""
        raise NotImplementedError

    def _verified(self, data: bytes, expected: str | None) -> FirmwareImage | None:
        """Check what arrived (against the URI's digest, then the image's own); None: it failed
        and the object is back to idle with the result that says why."""
        if self.simulation.corrupt_download:
            data = corrupt(data)
        if expected is not None and hashlib.sha256(data).hexdigest() != expected:
            self._fail(self.delivery.integrity_failure, "SHA-256 differs from the Package URI's")
            return None
        try:
            image = parse_image(data)
            image.verify()
        except IntegrityError as exc:
            self._fail(self.delivery.integrity_failure, str(exc))
            return None
        except ImageError as exc:
            self._fail(self.delivery.unsupported_package, str(exc))
            return None
        return image


FIRMWARE_DELIVERY: Delivery[FwState, FwResult] = Delivery(
    package_resource=PACKAGE,
    uri_resource=PACKAGE_URI,
    state_resource=STATE,
    result_resource=UPDATE_RESULT,
    idle=FwState.IDLE,
    downloading=FwState.DOWNLOADING,
    initial=FwResult.INITIAL,
    downloading_result=FwResult.INITIAL,
    failures={
        DownloadFailure.INVALID_URI: FwResult.INVALID_URI,
        DownloadFailure.UNSUPPORTED_PROTOCOL: FwResult.UNSUPPORTED_PROTOCOL,
        DownloadFailure.CONNECTION_LOST: FwResult.CONNECTION_LOST,
    },
    integrity_failure=FwResult.INTEGRITY_FAILURE,
    unsupported_package=FwResult.UNSUPPORTED_PACKAGE,
    what="firmware",
)


class FirmwareUpdate(PackageReceiver[FwState, FwResult]):
    """Object 5, instance 0, installed into ``tree`` (see the module docstring)."""

    def __init__(
        self,
        tree: ObjectTree,
        host: UpdateHost,
        simulation: UpdateSimulation | None = None,
        *,
        pkg_name: str = "pylwm2m-demo",
        pkg_version: str = "0.1.0",
    ) -> None:
        super().__init__(
            tree,
            host,
            simulation or UpdateSimulation(),
            LwM2mPath(FIRMWARE_OBJECT, 0),
            FIRMWARE_DELIVERY,
        )
        tree.add_instance(
            FIRMWARE_OBJECT,
            {
                STATE: int(FwState.IDLE),
                UPDATE_RESULT: int(FwResult.INITIAL),
                PKG_NAME: pkg_name,
                PKG_VERSION: pkg_version,
                PROTOCOL_SUPPORT: self._protocols(),
                DELIVERY_METHOD: DELIVERY_BOTH,
            },
            instance_id=0,
            dynamic={
                PACKAGE: Dynamic(lambda: b"", self._write_package),
                PACKAGE_URI: Dynamic(lambda: self.uri, self._write_uri),
            },
            executables={UPDATE: self._execute_update, CANCEL: self._execute_cancel},
        )

    def _protocols(self) -> list[int]:
        return sorted(PROTOCOL_NUMBERS[s] for s in self.host.schemes if s in PROTOCOL_NUMBERS)

    def refresh_protocols(self) -> None:
        """``/5/0/8`` again, after the device's credentials changed (bootstrap)."""
        path = self.base.child(PROTOCOL_SUPPORT)
        protocols = dict(enumerate(self._protocols()))
        if self.tree.get_value(path) != protocols:
            self.tree.set_value(path, protocols)

    def _reset_refusal(self) -> str | None:
        return "the update is in progress" if self.state is FwState.UPDATING else None

    def _busy(self) -> str:
        return f"a package is already {self.state.name.lower()}"

    def _downloaded(self, data: bytes, expected: str | None) -> None:
        """Downloaded once the image checks out; back to Idle with the reason otherwise."""
        image = self._verified(data, expected)
        if image is None:
            return
        self.image = image
        log.info("firmware %s %s downloaded (%d bytes)", image.name, image.version, len(data))
        self._set(FwState.DOWNLOADED, FwResult.INITIAL)

    # -- Execute Update / Cancel ------------------------------------------------------------------
    def _execute_update(self, _args: str) -> None:
        path = self.base.child(UPDATE)
        if self.state is not FwState.DOWNLOADED or self.image is None:
            raise not_allowed(path, f"Update needs State Downloaded, not {self.state.name}")
        self._set(FwState.UPDATING, FwResult.INITIAL)
        self._spawn(self._update(self.image))

    async def _update(self, image: FirmwareImage) -> None:
        await asyncio.sleep(0.05)  # the 2.04 to the Execute and the State notification go first
        if self.simulation.fail_update:
            await asyncio.sleep(self.simulation.reboot_delay)
            log.warning("simulation: the update to %s failed", image.version)
            self._set(FwState.DOWNLOADED, FwResult.UPDATE_FAILED)
            return

        def apply() -> None:
            self.tree.set_value(DEVICE_FIRMWARE_VERSION, image.version)
            self.tree.set_value(self.base.child(PKG_NAME), image.name)
            self.tree.set_value(self.base.child(PKG_VERSION), image.version)
            self.image = None
            self.uri = ""
            self._set(FwState.IDLE, FwResult.SUCCESS)

        await self.host.reboot(apply)

    def _execute_cancel(self, _args: str) -> None:
        path = self.base.child(CANCEL)
        if self.state not in (FwState.DOWNLOADING, FwState.DOWNLOADED):
            raise not_allowed(path, f"nothing to cancel in State {self.state.name}")
        self.uri = ""
        self._back_to_idle(FwResult.CANCELLED)


__all__ = [
    "FIRMWARE_DELIVERY",
    "Delivery",
    "FirmwareUpdate",
    "FwResult",
    "FwState",
    "PackageReceiver",
    "UpdateHost",
    "UpdateSimulation",
    "corrupt",
]
