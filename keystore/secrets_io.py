"""Files that hold secrets: created owner-only (0600), written atomically.

Why not ``Path.write_bytes``: it creates the file with ``0666 & ~umask``, so under the common
umask 022 a private key is world-readable from the moment it exists, and a crash half-way
leaves a truncated key in place of a good one. Here the data goes to a temporary file in the
same folder, created with mode 0600 and ``fchmod``-ed to 0600 again (a umask can only remove
bits, but a file system or ACL default may add some), fsync-ed, then renamed over the target:
readers see the old content or the new one, never a mix, and never a readable one.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
from pathlib import Path

PRIVATE_FILE = 0o600
PRIVATE_DIR = 0o700


def write_private(path: str | Path, data: bytes) -> Path:
    """Atomically replace ``path`` with ``data``, mode 0600. Returns the path written."""
    target = Path(path)
    folder = target.parent
    tmp = folder / f".{target.name}.{secrets.token_hex(6)}.tmp"
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    fd = os.open(tmp, flags, PRIVATE_FILE)
    try:
        os.fchmod(fd, PRIVATE_FILE)
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    os.close(fd)
    try:
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    _fsync_dir(folder)
    return target


def ensure_private_file(path: str | Path) -> Path:
    """Create ``path`` empty with mode 0600 if it is missing; chmod it to 0600 if it exists.

    Used for the sqlite file before sqlite opens it: sqlite would create it with the umask's
    mode, and its ``-wal``/``-shm`` files copy the database file's mode.
    """
    target = Path(path)
    try:
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE)
    except FileExistsError:
        restrict(target)
        return target
    try:
        os.fchmod(fd, PRIVATE_FILE)
    finally:
        os.close(fd)
    return target


def restrict(path: str | Path) -> None:
    """chmod an existing regular file to 0600 unless it already is (no-op for missing files)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return
    if stat.S_ISREG(st.st_mode) and stat.S_IMODE(st.st_mode) != PRIVATE_FILE:
        os.chmod(path, PRIVATE_FILE)


def ensure_private_dir(path: str | Path) -> Path:
    """Create a folder 0700 (with missing parents) if it is missing. An existing folder keeps
    its mode: it may be shared on purpose; the files in it are what must be private."""
    folder = Path(path)
    if not folder.is_dir():
        folder.mkdir(parents=True, exist_ok=True, mode=PRIVATE_DIR)
        os.chmod(folder, PRIVATE_DIR)
    return folder


def is_private(path: str | Path) -> bool:
    """True when neither group nor others have any permission on ``path``."""
    return stat.S_IMODE(os.stat(path).st_mode) & 0o077 == 0


def _fsync_dir(folder: Path) -> None:
    """Make the rename durable; some platforms cannot open folders, then it is best effort."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
