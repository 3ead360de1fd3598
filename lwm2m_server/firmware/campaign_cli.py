"""``lwm2m-server campaigns …``: update campaigns through the HTTP API (docs/firmware.md,
"Campaigns"), like every operator command.

    lwm2m-server campaigns create (--profile P | --endpoints A,B | --match GLOB [--attr K=V]…)
                                  [--package ID | --package-name N --package-version V]
                                  [--kind firmware|software] [--strategy S] [--rate N/min]
                                  [--max-concurrent N] [--failure-threshold R --min-sample N]
                                  [--name TEXT] [--watch]
    lwm2m-server campaigns list
    lwm2m-server campaigns show ID [--status S] [--offset N] [--limit N]
    lwm2m-server campaigns pause|resume|cancel ID
    lwm2m-server campaigns watch ID [--interval S]

``watch`` polls ``GET /api/campaigns/{id}`` (every ``--interval`` seconds) and shows the
progress: on a terminal one line redrawn in place, otherwise a plain line each time the counts
change (logs and pipes stay readable). Why polling and not the event stream: a watch started
just after a state change must still see it, and a poll answers with the state itself rather
than the changes since some moment. It ends when the campaign does: exit 0 when completed, 1
when aborted or cancelled (so a script can chain on it), like the other commands' 1 for "no".
"""

from __future__ import annotations

import argparse
import time
import urllib.parse
from typing import Any

from ..operator_cli import OK, SubParsers, UsageError, _api, _finish, _out, _table, command_group

Json = Any
FINISHED = ("completed", "cancelled", "aborted")
BAR = 24


def _url(campaign_id: str, *rest: str) -> str:
    return "/".join(["/api/campaigns", urllib.parse.quote(campaign_id, safe=""), *rest])


def _attr(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"{text!r} is not NAME=GLOB")
    return name, value


def _body(args: argparse.Namespace) -> dict[str, Any]:
    targets = [args.profile is not None, args.endpoints is not None, args.match is not None]
    if sum(targets) != 1 and not (args.attr and sum(targets) == 0):
        raise UsageError("give one target: --profile, --endpoints, or --match/--attr")
    target: dict[str, Any] = {}
    if args.profile is not None:
        target["profile"] = args.profile
    elif args.endpoints is not None:
        target["endpoints"] = [e for e in args.endpoints.split(",") if e]
    else:
        if args.match is not None:
            target["endpoint"] = args.match
        if args.attr:
            target["attributes"] = dict(args.attr)
    body: dict[str, Any] = {"target": target}
    if args.package is not None:
        body["package"] = args.package
    elif args.package_name is not None or args.package_version is not None:
        if args.package_name is None or args.package_version is None:
            raise UsageError("--package-name and --package-version go together")
        body["package"] = {"name": args.package_name, "version": args.package_version}
    for key, value in (
        ("name", args.name),
        ("kind", args.kind),
        ("strategy", args.strategy),
        ("ratePerMinute", args.rate),
        ("maxConcurrent", args.max_concurrent),
        ("failureThreshold", args.failure_threshold),
        ("minSample", args.min_sample),
        ("instance", args.instance),
    ):
        if value is not None:
            body[key] = value
    return body


def progress_line(c: Json, *, width: int = BAR) -> str:
    """``c-1 running [#####……] 120/200 ok 110 failed 5 running 5 pending 80 cancelled 0``."""
    counts = c.get("counts", {})
    total = int(c.get("total") or 0)
    done = sum(int(counts.get(k, 0)) for k in ("succeeded", "failed", "cancelled"))
    filled = int(width * done / total) if total else width
    bar = "#" * filled + "." * (width - filled)
    line = (
        f"{c['id']} {c['state']:<9} [{bar}] {done}/{total}  ok {counts.get('succeeded', 0)}"
        f"  failed {counts.get('failed', 0)}  running {counts.get('running', 0)}"
        f"  pending {counts.get('pending', 0)}  cancelled {counts.get('cancelled', 0)}"
    )
    if c.get("reason") and c["state"] in ("aborted",):
        line += f"  ({c['reason']})"
    return line


def cmd_create(args: argparse.Namespace) -> int:
    status, body = _api(args).call("POST", "/api/campaigns", json_body=_body(args))

    def human(c: Json) -> None:
        print(
            f"campaign {c['id']} created: {c['total']} devices, package {c['package']}", file=_out()
        )

    code = _finish(args, status, body, human)
    if code == OK and args.watch and isinstance(body, dict):
        args.id = body["id"]
        return cmd_watch(args)
    return code


def cmd_list(args: argparse.Namespace) -> int:
    status, body = _api(args).call("GET", "/api/campaigns")

    def human(data: Json) -> None:
        rows = []
        for c in data["campaigns"]:
            counts = c["counts"]
            rows.append(
                [
                    c["id"],
                    c["name"] or "-",
                    c["state"],
                    c["kind"],
                    c["package"][:12],
                    str(c["total"]),
                    str(counts["succeeded"]),
                    str(counts["failed"]),
                    str(counts["running"]),
                    str(counts["pending"]),
                ]
            )
        if not rows:
            print("no campaigns", file=_out())
            return
        headers = ["ID", "NAME", "STATE", "KIND", "PACKAGE", "TOTAL", "OK", "FAILED", "RUNNING"]
        _table([*headers, "PENDING"], rows)

    return _finish(args, status, body, human)


def cmd_show(args: argparse.Namespace) -> int:
    query = [(k, str(v)) for k, v in (("status", args.status), ("offset", args.offset),
                                      ("limit", args.limit)) if v is not None]  # fmt: skip
    status, body = _api(args).call("GET", _url(args.id), query=query)

    def human(c: Json) -> None:
        print(progress_line(c), file=_out())
        if c.get("reason"):
            print(f"reason: {c['reason']}", file=_out())
        rows = [
            [
                d["endpoint"],
                d["status"],
                d.get("jobState") or "-",
                "-" if d.get("result") is None else str(d["result"]),
                d.get("detail") or "",
            ]
            for d in c["devices"]
        ]
        if rows:
            _table(["ENDPOINT", "STATUS", "JOB", "RESULT", "DETAIL"], rows)
        if c.get("nextOffset") is not None:
            print(f"… more: --offset {c['nextOffset']}", file=_out())

    return _finish(args, status, body, human)


def _action(name: str) -> Any:
    def run(args: argparse.Namespace) -> int:
        status, body = _api(args).call("POST", _url(args.id, name))
        return _finish(args, status, body, lambda c: print(progress_line(c), file=_out()))

    run.__name__ = f"cmd_{name}"
    return run


def cmd_watch(args: argparse.Namespace) -> int:
    api = _api(args)
    out = _out()
    tty = out.isatty()
    last = None
    interval = max(0.05, float(getattr(args, "interval", None) or 1.0))
    while True:
        status, body = api.call("GET", _url(args.id), query=[("limit", "1")])
        if status >= 400 or not isinstance(body, dict):
            if tty and last is not None:
                print(file=out)
            return _finish(args, status, body)
        line = progress_line(body)
        if tty:
            print("\r\x1b[2K" + line, end="", file=out, flush=True)
        elif line != last:
            print(line, file=out, flush=True)
        last = line
        if body["state"] in FINISHED:
            if tty:
                print(file=out)
            if body.get("reason") and body["state"] != "completed":
                print(f"{body['state']}: {body['reason']}", file=out)
            return OK if body["state"] == "completed" else 1
        time.sleep(interval)


def register_campaign_commands(subparsers: SubParsers[argparse.ArgumentParser]) -> None:
    """Add ``campaigns`` with its subcommands to the operator CLI's subparsers."""
    text = "firmware/software update campaigns: create, list, show, pause, resume, cancel, watch"
    add = command_group(subparsers, "campaigns", text)

    p = add("create", cmd_create, "create and start a campaign")
    p.add_argument("--profile", metavar="NAME", help="target: the devices using this profile")
    p.add_argument("--endpoints", metavar="A,B,…", help="target: these endpoints")
    p.add_argument("--match", metavar="GLOB", help="target filter: endpoint glob (sensor-*)")
    p.add_argument(
        "--attr",
        type=_attr,
        action="append",
        metavar="NAME=GLOB",
        help="target filter: a registration attribute (lwm2m, binding, transport, queue, …)",
    )
    p.add_argument("--package", metavar="ID", help="package id (default: the profile's)")
    p.add_argument("--package-name", metavar="NAME")
    p.add_argument("--package-version", metavar="VERSION")
    p.add_argument("--kind", choices=["firmware", "software"])
    p.add_argument("--strategy", choices=["push", "pull_coap", "pull_http", "auto"])
    p.add_argument("--rate", type=float, metavar="N", help="devices started per minute")
    p.add_argument("--max-concurrent", type=int, metavar="N", help="running jobs at most")
    p.add_argument(
        "--failure-threshold", type=float, metavar="R", help="abort above this failed ratio"
    )
    p.add_argument("--min-sample", type=int, metavar="N", help="finished devices before that")
    p.add_argument("--instance", type=int, metavar="I", help="object 9 instance (software)")
    p.add_argument("--name", metavar="TEXT")
    p.add_argument("--watch", action="store_true", help="then watch its progress")
    p.add_argument("--interval", type=float, default=1.0, metavar="S", help=argparse.SUPPRESS)
    add("list", cmd_list, "list the campaigns")
    p = add("show", cmd_show, "a campaign and its devices' outcomes")
    p.add_argument("id", metavar="ID")
    p.add_argument("--status", choices=["pending", "running", "succeeded", "failed", "cancelled"])
    p.add_argument("--offset", type=int, metavar="N")
    p.add_argument("--limit", type=int, metavar="N")
    for action, help_text in (
        ("pause", "stop starting devices (running jobs go on)"),
        ("resume", "start devices again"),
        ("cancel", "cancel the pending devices and the running jobs"),
    ):
        add(action, _action(action), help_text).add_argument("id", metavar="ID")
    p = add("watch", cmd_watch, "show the progress until the campaign ends")
    p.add_argument("id", metavar="ID")
    p.add_argument("--interval", type=float, default=1.0, metavar="S", help="seconds between polls")


__all__ = ["progress_line", "register_campaign_commands"]
