"""``lwm2m-server update …``: one device's firmware/software update through the HTTP API (like
every operator command, so it works from any shell that reaches the API).

    lwm2m-server update EP --package ID [--strategy auto|push|pull_coap|pull_http]
                           [--instance N] [--wait]     start a job (and follow it to its end)
    lwm2m-server update EP --status                    the device's job
    lwm2m-server update EP --cancel                    cancel it

``--wait`` polls the job (``GET /api/clients/{ep}/firmware``) and prints each change until it
ends: the exit code is then 0 only if it succeeded. Polling rather than the event stream: a
job may end between the POST and the moment a stream would be open, and a poll cannot miss
that. Exit codes as the other operator commands: 0 success, 1 the server said no (or, with
``--wait``, the job failed or was cancelled), 2 usage.
"""

from __future__ import annotations

import argparse
import time
import urllib.parse
from typing import Any

from ..operator_cli import FAILED, OK, UsageError, _api, _common, _finish, _guard, _out

Json = Any

STRATEGIES = ("auto", "push", "pull_coap", "pull_http")


def _url(endpoint: str) -> str:
    return f"/api/clients/{urllib.parse.quote(endpoint, safe='')}/firmware"


def describe(job: Json) -> str:
    """One line for a job: state, attempts, Update Result and detail."""
    text = f"{job['endpoint']}: {job['state']}"
    if job.get("attempts", 0) > 1:
        text += f" (delivery {job['attempts']})"
    if job.get("result") not in (None, 0):
        text += f", Update Result {job['result']} ({job.get('resultText')})"
    if job.get("detail"):
        text += f" — {job['detail']}"
    return text


def cmd_update(args: argparse.Namespace) -> int:
    api = _api(args)
    if args.cancel or args.status:
        if args.package:
            raise UsageError("--package starts a job: not with --cancel or --status")
        method = "DELETE" if args.cancel else "GET"
        status, body = api.call(method, _url(args.endpoint))
        return _finish(args, status, body, lambda job: print(describe(job), file=_out()))
    if not args.package:
        raise UsageError("--package ID is required (or --status / --cancel)")
    request: dict[str, Json] = {"package": args.package, "strategy": args.strategy}
    if args.instance is not None:
        request["instance"] = args.instance
    status, body = api.call("POST", _url(args.endpoint), json_body=request)
    code = _finish(args, status, body, lambda job: print(describe(job), file=_out()))
    if code != OK or not args.wait:
        return code
    return _wait(args, api, body)


def _wait(args: argparse.Namespace, api: Any, job: Json) -> int:
    last = describe(job)
    while not job.get("finished"):
        time.sleep(args.interval)
        status, body = api.call("GET", _url(args.endpoint))
        if status >= 400:
            return _finish(args, status, body)
        job = body
        line = describe(job)
        if line != last and not args.json:
            print(line, file=_out())
            _out().flush()
        last = line
    if args.json:
        _finish(args, 200, job)
    return OK if job.get("state") == "succeeded" else FAILED


def register_update_commands(subparsers: Any) -> None:
    text = "update a device's firmware or software (an update job; docs/firmware.md)"
    parser = subparsers.add_parser("update", parents=[_common()], help=text, description=text)
    parser.set_defaults(func=_guard(cmd_update))
    parser.add_argument("endpoint", metavar="EP")
    parser.add_argument("--package", metavar="ID", help="the package id (lwm2m-server packages)")
    parser.add_argument("--strategy", choices=STRATEGIES, default="auto", help="default: auto")
    parser.add_argument("--instance", type=int, metavar="N", help="object 9 instance (software)")
    parser.add_argument(
        "--wait", action="store_true", help="follow the job until it ends (exit 1 if it failed)"
    )
    parser.add_argument(
        "--interval", type=float, default=1.0, metavar="S", help="--wait: seconds between polls"
    )
    parser.add_argument("--status", action="store_true", help="show the device's job")
    parser.add_argument("--cancel", action="store_true", help="cancel the device's job")
