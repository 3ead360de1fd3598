"""``lwm2m-server packages …``: firmware and software packages through the HTTP API (like every
operator command, so it works from any shell that reaches the API; docs/firmware.md).

    lwm2m-server packages add FILE --type firmware|software --name N --version V [--profile P]
    lwm2m-server packages list                    id (short), kind, name, version, size, profile
    lwm2m-server packages show ID                 one package (an unambiguous id prefix will do)
    lwm2m-server packages delete ID               refused (exit 1) while in use

Exit codes as the other operator commands: 0 success, 1 the server said no, 2 usage.
"""

from __future__ import annotations

import argparse
import datetime
from pathlib import Path
from typing import Any

from ..operator_cli import SubParsers, UsageError, _api, _finish, _out, _table, command_group

Json = Any


def _size(size: int) -> str:
    for unit, scale in (("MiB", 1 << 20), ("KiB", 1 << 10)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{size} B"


def _when(ms: int) -> str:
    moment = datetime.datetime.fromtimestamp(ms / 1000, tz=datetime.UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%SZ")


def _describe(p: Json) -> None:
    out = _out()
    for label, value in (
        ("id", p["id"]),
        ("kind", p["kind"]),
        ("name", p["name"]),
        ("version", p["version"]),
        ("size", f"{p['size']} bytes ({_size(p['size'])})"),
        ("sha256", p["sha256"]),
        ("profile", p.get("profile") or "-"),
        ("added", _when(p["createdMs"])),
    ):
        print(f"{label + ':':9} {value}", file=out)


def cmd_add(args: argparse.Namespace) -> int:
    path = Path(args.file)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from None
    query = [("kind", args.type), ("name", args.name), ("version", args.version)]
    if args.profile:
        query.append(("profile", args.profile))
    status, body = _api(args).call("POST", "/api/packages", query, raw_body=data)

    def human(p: Json) -> None:
        verb = "added" if status == 201 else "already there (same bytes)"
        print(f"{verb}: {p['id']}", file=_out())
        _describe(p)

    return _finish(args, status, body, human)


def cmd_list(args: argparse.Namespace) -> int:
    status, body = _api(args).call("GET", "/api/packages")

    def human(data: Json) -> None:
        rows = [
            [
                p["id"][:12],
                p["kind"],
                p["name"],
                p["version"],
                _size(p["size"]),
                p.get("profile") or "-",
                _when(p["createdMs"]),
            ]
            for p in data["packages"]
        ]
        _table(["ID", "KIND", "NAME", "VERSION", "SIZE", "PROFILE", "ADDED"], rows)

    return _finish(args, status, body, human)


def _resolve(args: argparse.Namespace, text: str) -> str:
    """A full id, or the one package whose id starts with ``text`` (as ``list`` shows them)."""
    text = text.strip().lower()
    if len(text) == 64:
        return text
    status, body = _api(args).call("GET", "/api/packages")
    if status != 200 or not isinstance(body, dict):
        return text  # the real request reports the error
    found = [p["id"] for p in body.get("packages", []) if p["id"].startswith(text)]
    if len(found) > 1:
        raise UsageError(f"{text!r} is the start of {len(found)} package ids: give more of it")
    return found[0] if found else text


def cmd_show(args: argparse.Namespace) -> int:
    package_id = _resolve(args, args.id)
    status, body = _api(args).call("GET", f"/api/packages/{package_id}")
    return _finish(args, status, body, _describe)


def cmd_delete(args: argparse.Namespace) -> int:
    package_id = _resolve(args, args.id)
    status, body = _api(args).call("DELETE", f"/api/packages/{package_id}")
    return _finish(args, status, body, lambda b: print(f"deleted {b['deleted']}", file=_out()))


def register_package_commands(subparsers: SubParsers[argparse.ArgumentParser]) -> None:
    """Add ``packages`` with its subcommands to the operator CLI's subparsers."""
    text = "firmware/software packages: add, list, show, delete"
    add = command_group(subparsers, "packages", text)

    p = add("add", cmd_add, "upload a package file")
    p.add_argument("file", metavar="FILE")
    p.add_argument("--type", required=True, choices=("firmware", "software"))
    p.add_argument("--name", required=True, metavar="N")
    p.add_argument("--version", required=True, metavar="V")
    p.add_argument("--profile", metavar="P", help="the device profile it is for")
    add("list", cmd_list, "list the packages")
    add("show", cmd_show, "show one package").add_argument("id", metavar="ID")
    add("delete", cmd_delete, "delete an unused package").add_argument("id", metavar="ID")


__all__ = ["register_package_commands"]
