"""``lwm2m-server profiles …``: device profiles through the HTTP API (like every operator command,
so it works from any shell that reaches the API).

    lwm2m-server profiles list                    names, strategy, on-connect mode, devices
    lwm2m-server profiles show NAME               the profile's document (YAML; --json: the API's)
    lwm2m-server profiles apply FILE…             upload profile files (validated by the server)
    lwm2m-server profiles delete NAME
    lwm2m-server profiles reload                  re-read the server's profiles folder
    lwm2m-server profiles assign EP NAME|--none   which profile a device uses
    lwm2m-server profiles status EP               how applying its profile went

Exit codes as the other operator commands: 0 success, 1 the server said no, 2 usage.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import yaml

from keystore.config_error import ConfigError
from lwm2m_runtime.api_client import ApiFailure

from ..operator_cli import SubParsers, UsageError, _api, _finish, _out, _table, command_group
from .loader import read_document

Json = Any


def cmd_list(args: argparse.Namespace) -> int:
    status, body = _api(args).call("GET", "/api/profiles")

    def human(data: Json) -> None:
        rows = [
            [
                p["name"],
                p["observeStrategy"],
                p["onConnect"],
                str(len(p["resources"])),
                ",".join(p["endpoints"]) or "-",
                ",".join(p["devices"]) or "-",
                p["source"],
            ]
            for p in data["profiles"]
        ]
        _table(["NAME", "STRATEGY", "ON CONNECT", "PATHS", "MATCHES", "DEVICES", "SOURCE"], rows)
        for error in data.get("errors", []):
            print(f"error: {error}", file=_out())

    return _finish(args, status, body, human)


def cmd_show(args: argparse.Namespace) -> int:
    status, body = _api(args).call("GET", f"/api/profiles/{args.name}")

    def human(data: Json) -> None:
        print(f"# source: {data['source']}", file=_out())
        print(f"# devices: {', '.join(data['devices']) or '-'}", file=_out())
        print(yaml.safe_dump(data["document"], sort_keys=False).rstrip(), file=_out())

    return _finish(args, status, body, human)


def cmd_apply(args: argparse.Namespace) -> int:
    api = _api(args)
    result = 0
    for name in args.files:
        path = Path(name)
        try:
            document = read_document(path)
        except ConfigError as exc:
            raise UsageError(str(exc)) from None
        if not isinstance(document, dict):
            raise UsageError(f"{path}: a profile file holds a mapping")
        profile = str(document.get("name") or path.stem)
        document = json.loads(json.dumps(document, default=str))
        status, body = api.call("PUT", f"/api/profiles/{profile}", json_body=document)

        def human(data: Json, shown: str = profile, code: int = status) -> None:
            verb = "created" if code == 201 else "updated"
            devices = ", ".join(data.get("devices", [])) or "no connected device"
            print(f"{shown}: {verb} ({devices})", file=_out())

        result = max(result, _finish(args, status, body, human))
    return result


def cmd_delete(args: argparse.Namespace) -> int:
    status, body = _api(args).call("DELETE", f"/api/profiles/{args.name}")
    return _finish(args, status, body, lambda _b: print(f"deleted {args.name}", file=_out()))


def cmd_reload(args: argparse.Namespace) -> int:
    status, body = _api(args).call("POST", "/api/profiles/reload")
    if status == 422 and not args.json:
        for error in body.get("errors", []):
            print(f"error: {error}", file=_out())
        return 1

    def human(data: Json) -> None:
        print(
            f"changed: {', '.join(data['changed']) or '-'}; "
            f"removed: {', '.join(data['removed']) or '-'}",
            file=_out(),
        )

    return _finish(args, status, body, human)


def cmd_assign(args: argparse.Namespace) -> int:
    if (args.profile is None) == (not args.none):
        raise UsageError("give a profile name or --none")
    status, body = _api(args).call(
        "PUT", f"/api/clients/{args.endpoint}/profile", json_body={"profile": args.profile}
    )

    def human(data: Json) -> None:
        print(f"{data['endpoint']}: {data['profile']} ({data['chosenBy']})", file=_out())

    return _finish(args, status, body, human)


def cmd_status(args: argparse.Namespace) -> int:
    status, body = _api(args).call("GET", f"/api/clients/{args.endpoint}/profile-status")

    def human(data: Json) -> None:
        print(
            f"{data['endpoint']}: profile {data['profile']} ({data.get('chosenBy') or '-'}), "
            f"{data['state']}",
            file=_out(),
        )
        for target in data.get("observations", []):
            print(f"  observing {' '.join(target)}", file=_out())
        for problem in data.get("problems", []) + data.get("valueProblems", []):
            where = " ".join(problem.get("paths", [])) or problem.get("path", "")
            print(f"  problem: {where}: {problem['message']}", file=_out())

    return _finish(args, status, body, human)


def register_profile_commands(subparsers: SubParsers[argparse.ArgumentParser]) -> None:
    """Add ``profiles`` with its subcommands to the operator CLI's subparsers."""
    text = "device profiles: list, show, apply files, assign, status"
    add = command_group(subparsers, "profiles", text)

    add("list", cmd_list, "list the profiles")
    add("show", cmd_show, "show one profile").add_argument("name", metavar="NAME")
    add("apply", cmd_apply, "upload profile files (YAML or JSON)").add_argument(
        "files", metavar="FILE", nargs="+"
    )
    add("delete", cmd_delete, "delete a profile").add_argument("name", metavar="NAME")
    add("reload", cmd_reload, "re-read the server's profiles folder")
    p = add("assign", cmd_assign, "assign a profile to a device")
    p.add_argument("endpoint", metavar="EP")
    p.add_argument("profile", metavar="NAME", nargs="?")
    p.add_argument("--none", action="store_true", help="remove the assignment")
    add("status", cmd_status, "how applying its profile to a device went").add_argument(
        "endpoint", metavar="EP"
    )


__all__ = ["ApiFailure", "register_profile_commands"]
