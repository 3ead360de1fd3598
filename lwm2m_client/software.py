"""The Software Management object (9) of the demo device: one instance per software component.

The Package Installation state machine (Update State ``/9/x/7``, Update Result ``/9/x/9``) as
the OMA object describes it; State and Result are stored values, so every change notifies:

| from | event | to | Update Result |
|---|---|---|---|
| INITIAL | Write Package / Package URI | DOWNLOAD STARTED | 1 downloading |
| DOWNLOAD STARTED | all bytes received | DOWNLOADED | 1 |
| DOWNLOADED | digests check out | DELIVERED | 3 verified |
| DOWNLOAD STARTED, DOWNLOADED | lost / bad digest / not an image / bad URI | INITIAL | 52-56 |
| DELIVERED | Execute Install | INSTALLED | 2 installed |
| DELIVERED | Execute Install fails (simulation knob) | DELIVERED | 58 |
| DELIVERED, INSTALLED | Execute Uninstall (no argument or 0) | INITIAL | 0 |
| INSTALLED | Execute Uninstall with argument 1 (ForUpdate) | INITIAL | 0 |

Activate/Deactivate (``/9/x/10``, ``/9/x/11``) work only in INSTALLED and set Activation State
(``/9/x/12``). Everything else is 4.05 Method Not Allowed. A new package is accepted only in
INITIAL: to update installed software the server executes Uninstall with argument 1 first
(the software stays installed and keeps its version until the new package is installed).
Writing an empty Package URI (or an empty Package) while a package is being downloaded or
waits for Install abandons it (back to INITIAL, result 0) — object 5's reset, applied here.

Install needs no reboot: PkgName/PkgVersion (``/9/x/0``, ``/9/x/1``) become the image's at once;
when Update Supported Objects (``/9/x/8``) is true the device sends a registration Update with
its object list, as the object asks.
"""

from __future__ import annotations

import enum
import logging

from object_models.path import LwM2mPath

from .firmware import Delivery, PackageReceiver, UpdateHost, UpdateSimulation, not_allowed
from .objects import Dynamic, ObjectTree
from .package_download import DownloadFailure

log = logging.getLogger(__name__)

SOFTWARE_OBJECT = 9
PKG_NAME, PKG_VERSION, PACKAGE, PACKAGE_URI, INSTALL = 0, 1, 2, 3, 4
UNINSTALL, UPDATE_STATE, UPDATE_SUPPORTED_OBJECTS, UPDATE_RESULT = 6, 7, 8, 9
ACTIVATE, DEACTIVATE, ACTIVATION_STATE = 10, 11, 12


class SwState(enum.IntEnum):
    INITIAL = 0
    DOWNLOAD_STARTED = 1
    DOWNLOADED = 2
    DELIVERED = 3
    INSTALLED = 4


class SwResult(enum.IntEnum):
    INITIAL = 0
    DOWNLOADING = 1
    INSTALLED = 2
    DOWNLOADED_VERIFIED = 3
    NOT_ENOUGH_STORAGE = 50
    OUT_OF_MEMORY = 51
    CONNECTION_LOST = 52
    INTEGRITY_FAILURE = 53
    UNSUPPORTED_PACKAGE = 54
    INVALID_URI = 56
    DEVICE_ERROR = 57
    INSTALL_FAILED = 58
    UNINSTALL_FAILED = 59


SOFTWARE_DELIVERY: Delivery[SwState, SwResult] = Delivery(
    package_resource=PACKAGE,
    uri_resource=PACKAGE_URI,
    state_resource=UPDATE_STATE,
    result_resource=UPDATE_RESULT,
    idle=SwState.INITIAL,
    downloading=SwState.DOWNLOAD_STARTED,
    initial=SwResult.INITIAL,
    downloading_result=SwResult.DOWNLOADING,
    # object 9 has no "unsupported protocol": a URI this device cannot use is invalid
    failures={
        DownloadFailure.INVALID_URI: SwResult.INVALID_URI,
        DownloadFailure.UNSUPPORTED_PROTOCOL: SwResult.INVALID_URI,
        DownloadFailure.CONNECTION_LOST: SwResult.CONNECTION_LOST,
    },
    integrity_failure=SwResult.INTEGRITY_FAILURE,
    unsupported_package=SwResult.UNSUPPORTED_PACKAGE,
    what="software",
)


class SoftwareManagement(PackageReceiver[SwState, SwResult]):
    """One Software Management instance ``/9/instance_id`` installed into ``tree``."""

    def __init__(
        self,
        tree: ObjectTree,
        host: UpdateHost,
        simulation: UpdateSimulation | None = None,
        *,
        instance_id: int = 0,
        pkg_name: str = "",
        pkg_version: str = "",
    ) -> None:
        super().__init__(
            tree,
            host,
            simulation or UpdateSimulation(),
            LwM2mPath(SOFTWARE_OBJECT, instance_id),
            SOFTWARE_DELIVERY,
        )
        tree.add_instance(
            SOFTWARE_OBJECT,
            {
                PKG_NAME: pkg_name,
                PKG_VERSION: pkg_version,
                UPDATE_STATE: int(SwState.INSTALLED if pkg_version else SwState.INITIAL),
                UPDATE_SUPPORTED_OBJECTS: False,
                UPDATE_RESULT: int(SwResult.INITIAL),
                ACTIVATION_STATE: False,
            },
            instance_id=instance_id,
            dynamic={
                PACKAGE: Dynamic(lambda: b"", self._write_package),
                PACKAGE_URI: Dynamic(lambda: "", self._write_uri),
            },
            executables={
                INSTALL: self._install,
                UNINSTALL: self._uninstall,
                ACTIVATE: self._activate,
                DEACTIVATE: self._deactivate,
            },
        )

    @property
    def active(self) -> bool:
        return self.tree.get_value(self.base.child(ACTIVATION_STATE)) is True

    def _reset_refusal(self) -> str | None:
        if self.state is SwState.INSTALLED:
            return "nothing is being delivered (Uninstall removes software)"
        return None

    def _busy(self) -> str:
        return f"Update State is {self.state.name}, not INITIAL"

    def _downloaded(self, data: bytes, expected: str | None) -> None:
        """DOWNLOADED as the last byte is in, DELIVERED once the image checks out."""
        self._set(SwState.DOWNLOADED, None)
        image = self._verified(data, expected)
        if image is None:
            return
        self.image = image
        self._set(SwState.DELIVERED, SwResult.DOWNLOADED_VERIFIED)

    # -- installation and activation --------------------------------------------------------------
    def _install(self, _args: str) -> None:
        path = self.base.child(INSTALL)
        if self.state is not SwState.DELIVERED or self.image is None:
            raise not_allowed(path, f"Install needs DELIVERED, not {self.state.name}")
        if self.simulation.fail_update:
            log.warning("simulation: installing %s failed", self.image.version)
            self.tree.set_value(self.base.child(UPDATE_RESULT), int(SwResult.INSTALL_FAILED))
            return
        image, self.image = self.image, None
        self.tree.set_value(self.base.child(PKG_NAME), image.name)
        self.tree.set_value(self.base.child(PKG_VERSION), image.version)
        self._set(SwState.INSTALLED, SwResult.INSTALLED)
        log.info("%s: %s %s installed", self.base, image.name, image.version)
        if self.tree.get_value(self.base.child(UPDATE_SUPPORTED_OBJECTS)) is True:
            self._spawn(self.host.announce_objects())

    def _uninstall(self, args: str) -> None:
        path = self.base.child(UNINSTALL)
        for_update = args.split("=", 1)[0].strip() == "1"
        allowed = (SwState.INSTALLED,) if for_update else (SwState.DELIVERED, SwState.INSTALLED)
        if self.state not in allowed:
            raise not_allowed(path, f"nothing to uninstall in {self.state.name}")
        self.image = None
        if not for_update and self.state is SwState.INSTALLED:
            self.tree.set_value(self.base.child(ACTIVATION_STATE), False)
            self.tree.set_value(self.base.child(PKG_NAME), "")
            self.tree.set_value(self.base.child(PKG_VERSION), "")
        self._set(SwState.INITIAL, SwResult.INITIAL)

    def _activate(self, _args: str) -> None:
        if self.state is not SwState.INSTALLED:
            raise not_allowed(self.base.child(ACTIVATE), "Activate needs INSTALLED software")
        self.tree.set_value(self.base.child(ACTIVATION_STATE), True)

    def _deactivate(self, _args: str) -> None:
        if self.state is not SwState.INSTALLED:
            raise not_allowed(self.base.child(DEACTIVATE), "Deactivate needs INSTALLED software")
        self.tree.set_value(self.base.child(ACTIVATION_STATE), False)


__all__ = ["SOFTWARE_DELIVERY", "SoftwareManagement", "SwResult", "SwState"]
