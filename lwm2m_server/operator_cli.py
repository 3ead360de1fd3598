"""Operator subcommands of ``lwm2m-server``: talk to a running server through its HTTP API.

``register_commands(subparsers)`` adds ``clients``, ``show``, ``read``, ``write``, ``execute``,
``observe``, ``cancel``, ``discover``, ``attributes``, ``create``, ``delete``, ``telemetry`` and
``events`` to the main CLI's subparsers. Each subcommand sets ``func``: a callable that takes
the parsed ``argparse.Namespace`` and returns the exit code, so the main CLI runs
``sys.exit(args.func(args))``. ``main(argv)`` runs them alone (``python -m
lwm2m_server.operator_cli``), which is what the tests use.

Why over HTTP and not in-process: the operator's shell is rarely the server's process, and
going through the API means the CLI exercises exactly what every other tool uses.

Output is for people by default (tables; a Read as an indented tree with resource names and
units from the built-in object models) and JSON with ``--json`` (the API's body as is, one
JSON document per line for ``events``). Exit codes: 0 success (including a request queued for
a sleeping client), 1 the device or the server said no (message on stderr), 2 usage.

Values given to ``write`` are sent as text and parsed by the server with the resource's type
(``300``, ``true``, ``3:0``, ``hex:0102``, ``2024-05-01T12:00:00Z``), so a string resource
can be written ``42`` without JSON quoting; a value starting with ``{`` or ``[`` is JSON (an
instance ``{"14": "+02:00"}``, a multiple resource ``{"0": 1, "1": 5}``).

Only the standard library is used (``urllib``): the commands are synchronous, one request each,
and need no event loop.
"""

from __future__ import annotations

import argparse
import base64
import datetime
import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from typing import TextIO

from lwm2m_runtime.api_client import (
    TOKEN_ENV,
    ApiClient,
    ApiFailure,
    Json,
    default_token,
    error_text,
)
from object_models.errors import InvalidPathError
from object_models.model import ModelProvider
from object_models.path import LwM2mPath

DEFAULT_API = "http://127.0.0.1:8080"
API_ENV = "LWM2M_API"
DATA_DIR_ENV = "LWM2M_SERVER_DATA_DIR"

OK, FAILED, USAGE = 0, 1, 2


class UsageError(Exception):
    """Bad command-line input found after argparse (a path, a JSON value): exit code 2."""


# -- input ----------------------------------------------------------------------------------------


def _path(text: str) -> LwM2mPath:
    try:
        path = LwM2mPath.parse(text)
    except InvalidPathError as exc:
        raise UsageError(f"invalid LwM2M path {text!r}: {exc.message}") from None
    if path.is_root:
        raise UsageError("the root path / is not allowed here")
    return path


def _client_url(endpoint: str, *rest: str) -> str:
    parts = [urllib.parse.quote(endpoint, safe="")] + [r.strip("/") for r in rest if r]
    return "/api/clients/" + "/".join(parts)


def _common_query(args: argparse.Namespace, *names: str) -> list[tuple[str, str]]:
    query: list[tuple[str, str]] = []
    for name in names:
        value = getattr(args, name, None)
        if value is not None:
            query.append((name, str(value)))
    return query


def _http_timeout(args: argparse.Namespace) -> float:
    return float(getattr(args, "timeout", None) or 10.0) + 15.0


def _json_arg(text: str, what: str) -> Json:
    try:
        return json.loads(text)
    except ValueError as exc:
        raise UsageError(f"{what} is not valid JSON: {exc}") from None


# -- output ---------------------------------------------------------------------------------------


def _models() -> ModelProvider:
    from object_models.registry import ModelRegistry

    return ModelRegistry.builtin()


def _out() -> TextIO:
    return sys.stdout


def _err(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)


def _print_json(body: Json) -> None:
    print(json.dumps(body, indent=2, ensure_ascii=False), file=_out())


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(headers)]
    for row in [list(headers), *rows]:
        line = "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True))
        print(line.rstrip(), file=_out())


def _utc(seconds: float) -> datetime.datetime | None:
    """``seconds`` since the epoch as a UTC datetime, or None outside what ``datetime`` can
    hold (years 1..9999): a device may report any 64-bit Time (a bad RTC, 2**62), and a
    command that shows it must print the number rather than crash."""
    try:
        return datetime.datetime.fromtimestamp(seconds, tz=datetime.UTC)
    except (OverflowError, OSError, ValueError):
        return None


def _format_value(value: Json, rtype: str | None, units: str = "") -> str:
    if value is None:
        return "null"
    if rtype == "OPAQUE" and isinstance(value, str):
        try:
            raw = base64.b64decode(value)
        except ValueError:
            return value
        shown = raw[:32].hex()
        return f"0x{shown}" + (f"… ({len(raw)} bytes)" if len(raw) > 32 else "")
    if rtype == "TIME" and isinstance(value, int) and not isinstance(value, bool):
        stamp = _utc(value)
        if stamp is None:
            return f"{value} (seconds since 1970, outside the calendar range)"
        return stamp.isoformat().replace("+00:00", "Z")
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, str):
        text = value if value else '""'
    else:
        text = json.dumps(value)
    return f"{text} {units}" if units else text


def _compact(node: Json) -> str:
    """One line for a node (event summaries)."""
    if not isinstance(node, dict):
        return json.dumps(node)
    kind = node.get("kind")
    if kind in ("singleResource", "resourceInstance"):
        return _format_value(node.get("value"), node.get("type"))
    if kind == "multiResource":
        values = node.get("values", {})
        return (
            "{"
            + ", ".join(f"{k}: {_format_value(v, node.get('type'))}" for k, v in values.items())
            + "}"
        )
    if kind == "instance":
        return (
            "{"
            + ", ".join(f"{r.get('id')}: {_compact(r)}" for r in node.get("resources", []))
            + "}"
        )
    if kind == "obj":
        return (
            "{"
            + ", ".join(f"{i.get('id')}: {_compact(i)}" for i in node.get("instances", []))
            + "}"
        )
    return json.dumps(node)


class _Tree:
    """A Read result as indented lines with names and units from the object models."""

    def __init__(self, models: ModelProvider) -> None:
        self.models = models
        self.lines: list[str] = []

    def _resource_model(self, object_id: int, resource_id: int) -> tuple[str, str]:
        model = self.models.get_object(object_id)
        res = None if model is None else model.resource(resource_id)
        return ("", "") if res is None else (res.name, res.units)

    def _object_name(self, object_id: int) -> str:
        model = self.models.get_object(object_id)
        return "" if model is None else model.name

    def node(self, path: LwM2mPath, node: Json) -> list[str]:
        kind = node.get("kind") if isinstance(node, dict) else None
        if kind == "obj":
            for inst in node.get("instances", []):
                self.instance(path.ids[0], inst)
        elif kind == "instance":
            self.instance(path.ids[0], node)
        elif kind in ("singleResource", "multiResource"):
            o, i = path.ids[:2]
            self.resources(f"/{o}/{i}/", [node], o, indent="")
        elif kind == "resourceInstance":
            o, _, r, ri = path.ids
            name, units = self._resource_model(o, r)
            label = f"{path}  {name}[{ri}]" if name else str(path)
            self.lines.append(
                f"{label} = {_format_value(node.get('value'), node.get('type'), units)}"
            )
        else:
            self.lines.append(json.dumps(node))
        return self.lines

    def instance(self, object_id: int, inst: Json) -> None:
        name = self._object_name(object_id)
        self.lines.append(f"/{object_id}/{inst.get('id', '?')}" + (f"  {name}" if name else ""))
        self.resources("", inst.get("resources", []), object_id, indent="  ")

    def resources(
        self, prefix: str, resources: Sequence[Json], object_id: int, indent: str
    ) -> None:
        rows = []
        for res in resources:
            name, units = self._resource_model(object_id, int(res.get("id", 0)))
            rows.append((f"{prefix}{res.get('id')}", name, res, units))
        id_w = max((len(r[0]) for r in rows), default=0)
        name_w = max((len(r[1]) for r in rows), default=0)
        for rid, name, res, units in rows:
            head = f"{indent}{rid.ljust(id_w)}  {name.ljust(name_w)}"
            if res.get("kind") == "multiResource":
                self.lines.append(head.rstrip())
                values = res.get("values", {})
                ri_w = max((len(k) for k in values), default=0)
                for key, value in values.items():
                    shown = _format_value(value, res.get("type"), units)
                    self.lines.append(f"{indent}{' ' * (id_w + 2)}[{key.rjust(ri_w)}]  {shown}")
            else:
                shown = _format_value(res.get("value"), res.get("type"), units)
                self.lines.append(f"{head}  {shown}" if name else f"{head}{shown}")


# -- outcome --------------------------------------------------------------------------------------


def _finish(
    args: argparse.Namespace,
    status: int,
    body: Json,
    human: Callable[[Json], None] | None = None,
) -> int:
    """Print the API's answer and choose the exit code (see the module doc)."""
    if args.json:
        _print_json(body)
    if status == 202:
        if not args.json:
            print(
                f"queued: {getattr(args, 'endpoint', 'the client')} is sleeping (queue mode); "
                "the request is sent when it wakes up",
                file=_out(),
            )
        return OK
    if status >= 400:
        _err(error_text(status, body))
        return FAILED
    if isinstance(body, dict) and body.get("success") is False:
        message = f"the device answered {body.get('status')} ({body.get('code')})"
        if body.get("errormessage"):
            message += f": {body['errormessage']}"
        _err(message)
        return FAILED
    if not args.json:
        if human is not None:
            human(body)
        elif isinstance(body, dict) and "status" in body:
            print(f"{body['status']} ({body.get('code')})", file=_out())
    return OK


# -- commands -------------------------------------------------------------------------------------


def _api(args: argparse.Namespace) -> ApiClient:
    token = default_token(token_file=args.token_file, data_dir=os.environ.get(DATA_DIR_ENV))
    return ApiClient(args.api, timeout=_http_timeout(args), token=token)


def _iso(text: Json) -> str:
    return str(text).replace(".000Z", "Z") if text else "-"


def _page_size(text: str) -> int:
    """``--page-size``: the API's own bounds (``GET /api/clients?limit=``), checked here so a
    bad value is a usage error (exit 2) rather than an HTTP 400."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if not 1 <= value <= 10_000:
        raise argparse.ArgumentTypeError(f"{value} is outside 1..10000")
    return value


def cmd_clients(args: argparse.Namespace) -> int:
    # page by page (the API caps each response so that listing never stalls the server)
    status, body = _api(args).list_all("/api/clients", page_size=args.page_size)

    def human(regs: Json) -> None:
        if not regs:
            print("no clients registered", file=_out())
            return
        rows = []
        for reg in regs:
            mode = "-"
            if reg.get("queuemode"):
                mode = "queue" + {True: " (sleeping)", False: " (awake)"}.get(
                    reg.get("sleeping"), ""
                )
            rows.append(
                [
                    reg["endpoint"],
                    reg.get("address", ""),
                    reg.get("lwM2mVersion", ""),
                    reg.get("bindingMode", ""),
                    f"{reg.get('lifetime')} s",
                    _iso(reg.get("lastUpdate")),
                    mode,
                ]
            )
        _table(["ENDPOINT", "ADDRESS", "LWM2M", "BINDING", "LIFETIME", "LAST UPDATE", "MODE"], rows)

    return _finish(args, status, body, human)


def cmd_show(args: argparse.Namespace) -> int:
    status, body = _api(args).call("GET", _client_url(args.endpoint))

    def human(reg: Json) -> None:
        models = _models()
        queue = "no"
        if reg.get("queuemode"):
            queue = "yes" + {True: ", sleeping", False: ", awake"}.get(reg.get("sleeping"), "")
        secure = "yes" if reg.get("secure") else "no"
        fields = [
            ("endpoint", reg["endpoint"]),
            ("registration id", reg.get("registrationId", "")),
            (
                "address",
                f"{reg.get('address', '')} ({reg.get('transport', 'coap')}, secure: {secure})",
            ),
            ("lwm2m version", reg.get("lwM2mVersion", "")),
            ("binding", reg.get("bindingMode", "")),
            ("queue mode", queue),
            ("lifetime", f"{reg.get('lifetime')} s, expires {_iso(reg.get('expiresAt'))}"),
            ("registered", _iso(reg.get("registrationDate"))),
            ("last update", _iso(reg.get("lastUpdate"))),
        ]
        width = max(len(k) for k, _ in fields)
        for key, value in fields:
            print(f"{key.ljust(width)}  {value}", file=_out())
        print("objects:", file=_out())
        versions = reg.get("supportedObjects", {})
        instances = reg.get("availableInstances", {})
        rows = []
        for oid in sorted({*versions, *instances}, key=int):
            model = models.get_object(int(oid))
            ids = ", ".join(str(i) for i in instances.get(oid, [])) or "-"
            rows.append([f"  /{oid}", model.name if model else "?", versions.get(oid) or "-", ids])
        _table(["  OBJECT", "NAME", "VERSION", "INSTANCES"], rows)

    return _finish(args, status, body, human)


def cmd_read(args: argparse.Namespace) -> int:
    paths = [_path(p) for p in args.paths]
    api = _api(args)
    if len(paths) == 1:
        query = _common_query(args, "format", "timeout")
        status, body = api.call("GET", _client_url(args.endpoint, str(paths[0])), query)

        def human(resp: Json) -> None:
            for line in _Tree(_models()).node(paths[0], resp.get("content")):
                print(line, file=_out())

        return _finish(args, status, body, human)
    query = [("paths", ",".join(str(p) for p in paths)), *_common_query(args, "format", "timeout")]
    status, body = api.call("GET", _client_url(args.endpoint, "composite"), query)

    def human_composite(resp: Json) -> None:
        models = _models()
        for text, node in (resp.get("content") or {}).items():
            if node is None:
                print(f"{text}  (no value)", file=_out())
            else:
                for line in _Tree(models).node(LwM2mPath.parse(text), node):
                    print(line, file=_out())

    return _finish(args, status, body, human_composite)


def cmd_write(args: argparse.Namespace) -> int:
    path = _path(args.path)
    query = _common_query(args, "format", "timeout")
    if args.partial:
        query.append(("replace", "false"))
    value: str = args.value
    api = _api(args)
    url = _client_url(args.endpoint, str(path))
    if value.lstrip().startswith(("{", "[")):
        status, body = api.call("PUT", url, query, json_body=_json_arg(value, "VALUE"))
    else:
        status, body = api.call("PUT", url, query, text_body=value)
    return _finish(args, status, body)


def cmd_execute(args: argparse.Namespace) -> int:
    path = _path(args.path)
    url = _client_url(args.endpoint, str(path))
    query = _common_query(args, "timeout")
    status, body = _api(args).call("POST", url, query, text_body=args.arguments or "")
    return _finish(args, status, body)


def cmd_create(args: argparse.Namespace) -> int:
    path = _path(args.path)
    instance = _json_arg(args.instance, "the instance")
    url = _client_url(args.endpoint, str(path))
    query = _common_query(args, "format", "timeout")
    status, body = _api(args).call("POST", url, query, json_body=instance)

    def human(resp: Json) -> None:
        where = f" at {resp['location']}" if resp.get("location") else ""
        print(f"{resp['status']} ({resp.get('code')}){where}", file=_out())

    return _finish(args, status, body, human)


def cmd_delete(args: argparse.Namespace) -> int:
    path = _path(args.path)
    url = _client_url(args.endpoint, str(path))
    status, body = _api(args).call("DELETE", url, _common_query(args, "timeout"))
    return _finish(args, status, body)


def cmd_discover(args: argparse.Namespace) -> int:
    path = _path(args.path)
    url = _client_url(args.endpoint, str(path), "discover")
    status, body = _api(args).call("GET", url, _common_query(args, "timeout"))

    def human(resp: Json) -> None:
        links = resp.get("objectLinks", [])
        width = max((len(link["url"]) for link in links), default=0)
        for link in links:
            attrs = ";".join(
                k if v is None else f"{k}={v}" for k, v in link.get("attributes", {}).items()
            )
            print(f"{link['url'].ljust(width)}  {attrs}".rstrip(), file=_out())

    return _finish(args, status, body, human)


def cmd_attributes(args: argparse.Namespace) -> int:
    path = _path(args.path)
    query: list[tuple[str, str]] = []
    for item in args.attributes:
        name, _, value = item.partition("=")
        if not name.strip():
            raise UsageError(f"attribute {item!r} is not NAME=VALUE (or NAME= to remove)")
        query.append((name.strip(), value.strip()))
    query += _common_query(args, "timeout")
    url = _client_url(args.endpoint, str(path), "attributes")
    status, body = _api(args).call("PUT", url, query)
    return _finish(args, status, body)


def cmd_observe(args: argparse.Namespace) -> int:
    path = _path(args.path)
    api = _api(args)
    url = _client_url(args.endpoint, str(path), "observe")
    status, body = api.call("POST", url, _common_query(args, "format", "timeout"))

    def human(resp: Json) -> None:
        print(f"observing {path} on {args.endpoint}", file=_out())
        for line in _Tree(_models()).node(path, resp.get("content")):
            print(f"  {line}", file=_out())

    code = _finish(args, status, body, human)
    if code != OK or not args.follow or status == 202:
        return code
    return _follow(args, api, [("ep", args.endpoint)], path)


def cmd_cancel(args: argparse.Namespace) -> int:
    path = _path(args.path)
    url = _client_url(args.endpoint, str(path), "observe")
    query = [("active", "false" if args.passive else "true"), *_common_query(args, "timeout")]
    status, body = _api(args).call("DELETE", url, query)
    return _finish(args, status, body)


def cmd_telemetry(args: argparse.Namespace) -> int:
    query = _common_query(args, "key", "since", "until", "limit")
    status, body = _api(args).call("GET", _client_url(args.endpoint, "telemetry"), query)

    def human(resp: Json) -> None:
        points = resp.get("points", [])
        if not points:
            print("no telemetry", file=_out())
            return
        rows = [
            [
                _iso(p.get("time")),
                p["path"],
                p.get("key", ""),
                _format_value(p.get("value"), p.get("type")),
            ]
            for p in points
        ]
        _table(["TIME", "PATH", "KEY", "VALUE"], rows)

    return _finish(args, status, body, human)


def _event_summary(kind: str, data: Json) -> str:
    """One line for an event. Registrations (``GET /api/clients``' shape): address, version,
    lifetime; notifications and Sends: ``path = value`` for each value, from ``points`` (this
    server: telemetry points as ``/api/clients/{ep}/telemetry`` has them) or ``val`` (the Leshan
    shape: a node, or ``{path: node}`` for a composite notification)."""
    if not isinstance(data, dict):
        return json.dumps(data)
    if kind in ("REGISTRATION", "UPDATED", "DEREGISTRATION") and "address" in data:
        version = data.get("lwM2mVersion")
        text = f"{data.get('address')} lwm2m {version} lifetime {data.get('lifetime')} s"
        return text + (f" ({data['reason']})" if data.get("reason") else "")
    if isinstance(data.get("points"), list) and data["points"]:
        return ", ".join(
            f"{p.get('path')} = {_format_value(p.get('value'), _text(p.get('type')))}"
            for p in data["points"]
        )
    if "val" in data:
        val = data["val"]
        if data.get("kind") == "composite" or (isinstance(val, dict) and "kind" not in val):
            return ", ".join(f"{p} = {_compact(n)}" for p, n in val.items())
        where = data.get("res") or data.get("path") or ""
        return f"{where} = {_compact(val)}".strip(" =")
    if data.get("error"):
        return f"error: {data['error']}"
    if kind == "CAMPAIGN" and "counts" in data:  # an update campaign (docs/firmware.md)
        from .firmware.campaign_cli import progress_line

        return f"{data.get('event')}: {progress_line(data)}"
    if kind == "FIRMWARE" and "state" in data:  # an update job (docs/firmware.md)
        from .firmware.cli import describe

        return describe(data).split(": ", 1)[-1]
    if kind in ("AWAKE", "SLEEPING"):
        for name in ("until", "since"):
            if isinstance(data.get(name), int | float):
                stamp = _utc(data[name])
                if stamp is None:
                    return f"{name} {data[name]} (outside the calendar range)"
                return f"{name} {stamp.strftime('%H:%M:%S.%f')[:-3]}"
    rest = {k: v for k, v in data.items() if k != "ep"}
    return json.dumps(rest, separators=(",", ":")) if rest else ""


def _text(name: Json) -> str | None:
    return name if isinstance(name, str) else None


def _follow(
    args: argparse.Namespace,
    api: ApiClient,
    query: list[tuple[str, str]],
    path: LwM2mPath | None = None,
) -> int:
    """Print events until Ctrl-C (or ``--count`` events)."""
    count = 0
    limit = getattr(args, "count", None)
    try:
        for kind, data in api.stream("/api/event", query):
            if path is not None and not _about(data, path):
                continue
            if args.json:
                print(json.dumps({"event": kind, "data": data}, ensure_ascii=False), file=_out())
            else:
                now = datetime.datetime.now(datetime.UTC).strftime("%H:%M:%S.%f")[:-3]
                ep = data.get("ep", "") if isinstance(data, dict) else ""
                line = f"{now}  {kind:<14} {ep}  {_event_summary(kind, data)}"
                print(line.rstrip(), file=_out())
            _out().flush()
            count += 1
            if limit is not None and count >= limit:
                return OK
    except KeyboardInterrupt:
        return OK
    except TimeoutError:
        _err("the event stream went silent (no keep-alive for 60 s)")
        return FAILED
    _err("the server closed the event stream")
    return FAILED


def _about(data: Json, path: LwM2mPath) -> bool:
    """Whether a NOTIFICATION event concerns ``path`` (``observe --follow``)."""
    if not isinstance(data, dict):
        return False
    targets = [data.get("res"), data.get("path"), *(data.get("paths") or [])]
    return str(path) in [t for t in targets if t]


def cmd_events(args: argparse.Namespace) -> int:
    query = [("ep", args.ep)] if args.ep else []
    try:
        return _follow(args, _api(args), query)
    except ApiFailure as exc:
        _err(str(exc))
        return FAILED


# -- wiring ---------------------------------------------------------------------------------------


def _guard(command: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        try:
            return command(args)
        except UsageError as exc:
            print(f"usage error: {exc}", file=sys.stderr)
            return USAGE
        except ApiFailure as exc:
            _err(str(exc))
            return FAILED
        except KeyboardInterrupt:
            return FAILED

    run.__doc__ = command.__doc__
    return run


def _common() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument(
        "--api",
        default=os.environ.get(API_ENV, DEFAULT_API),
        metavar="URL",
        help=f"the server's HTTP API (default ${API_ENV} or {DEFAULT_API})",
    )
    parser.add_argument(
        "--token-file",
        metavar="FILE",
        help=f"file holding the API token (default ${TOKEN_ENV}, else "
        f"${DATA_DIR_ENV}/api-token or ./data/api-token: the first admin token)",
    )
    parser.add_argument("--json", action="store_true", help="print the API's JSON answer")
    return parser


def _device_options(parser: argparse.ArgumentParser, *, fmt: bool = True) -> None:
    if fmt:
        parser.add_argument("--format", metavar="F", help="content format (tlv, senml-cbor, …)")
    parser.add_argument("--timeout", type=float, metavar="S", help="seconds to wait for the device")


SubParsers = argparse._SubParsersAction  # the type of parser.add_subparsers()
Command = Callable[[argparse.Namespace], int]
AddCommand = Callable[[str, Command, str], argparse.ArgumentParser]
"""``add(name, func, help_text)``: one subcommand with the common options (``--api``,
``--token-file``, ``--json``), run through ``_guard``; returns its parser for its arguments."""


def _adder(subparsers: SubParsers[argparse.ArgumentParser]) -> AddCommand:
    common = _common()

    def add(name: str, func: Command, text: str) -> argparse.ArgumentParser:
        parser = subparsers.add_parser(name, parents=[common], help=text, description=text)
        parser.set_defaults(func=_guard(func))
        return parser

    return add


def command_group(
    subparsers: SubParsers[argparse.ArgumentParser], name: str, text: str
) -> AddCommand:
    """``name`` as a command of its own subcommands (``lwm2m-server packages list``), as the
    package, campaign and profile commands are: every one gets the common options and the same
    error handling, so they all behave as the top-level operator commands do."""
    top = subparsers.add_parser(name, help=text, description=text)
    nested = top.add_subparsers(dest=f"{name}_command", required=True, metavar="COMMAND")
    return _adder(nested)


def register_commands(subparsers: SubParsers[argparse.ArgumentParser]) -> None:
    """Add the operator subcommands to ``subparsers`` (from ``parser.add_subparsers()``)."""
    add = _adder(subparsers)

    p = add("clients", cmd_clients, "list the registered clients")
    p.add_argument(
        "--page-size",
        type=_page_size,
        default=1000,
        metavar="N",
        help="clients per API request (1..10000; every page is fetched and printed)",
    )

    p = add("show", cmd_show, "show one client's registration")
    p.add_argument("endpoint", metavar="EP")

    p = add("read", cmd_read, "read a node (several paths: Read-Composite)")
    p.add_argument("endpoint", metavar="EP")
    p.add_argument("paths", metavar="PATH", nargs="+")
    _device_options(p)

    p = add("write", cmd_write, "write a resource, instance or resource instance")
    p.add_argument("endpoint", metavar="EP")
    p.add_argument("path", metavar="PATH")
    p.add_argument("value", metavar="VALUE", help="a value (parsed with the resource type) or JSON")
    p.add_argument("--partial", action="store_true", help="partial update instead of replace")
    _device_options(p)

    p = add("execute", cmd_execute, "execute a resource")
    p.add_argument("endpoint", metavar="EP")
    p.add_argument("path", metavar="PATH")
    p.add_argument("arguments", metavar="ARGS", nargs="?", help="execute arguments, e.g. 0='x'")
    _device_options(p, fmt=False)

    p = add("observe", cmd_observe, "start observing a path")
    p.add_argument("endpoint", metavar="EP")
    p.add_argument("path", metavar="PATH")
    p.add_argument("--follow", action="store_true", help="then print notifications until Ctrl-C")
    p.add_argument("--count", type=int, metavar="N", help="with --follow: stop after N")
    _device_options(p)

    p = add("cancel", cmd_cancel, "cancel an observation")
    p.add_argument("endpoint", metavar="EP")
    p.add_argument("path", metavar="PATH")
    p.add_argument("--passive", action="store_true", help="only forget it (no request sent)")
    _device_options(p, fmt=False)

    p = add("discover", cmd_discover, "list objects, resources and attributes under a path")
    p.add_argument("endpoint", metavar="EP")
    p.add_argument("path", metavar="PATH")
    _device_options(p, fmt=False)

    p = add("attributes", cmd_attributes, "write notification attributes (pmin=10 pmax=60 gt=)")
    p.add_argument("endpoint", metavar="EP")
    p.add_argument("path", metavar="PATH")
    p.add_argument("attributes", metavar="NAME=VALUE", nargs="+")
    _device_options(p, fmt=False)

    p = add("create", cmd_create, "create an object instance from JSON")
    p.add_argument("endpoint", metavar="EP")
    p.add_argument("path", metavar="PATH", help="the object, e.g. /3303")
    p.add_argument("instance", metavar="JSON", help='e.g. \'{"id": 1, "5700": 20.5}\'')
    _device_options(p)

    p = add("delete", cmd_delete, "delete an object instance")
    p.add_argument("endpoint", metavar="EP")
    p.add_argument("path", metavar="PATH")
    _device_options(p, fmt=False)

    p = add("telemetry", cmd_telemetry, "latest values, or history with --key/--since/--until")
    p.add_argument("endpoint", metavar="EP")
    p.add_argument("--key", help="one series (telemetry key, e.g. sensorValue)")
    p.add_argument("--since", metavar="ISO", help="from this time (ISO 8601 or epoch ms)")
    p.add_argument("--until", metavar="ISO", help="before this time (ISO 8601 or epoch ms)")
    p.add_argument("--limit", type=int, metavar="N", help="at most N points")

    p = add("events", cmd_events, "follow the server's events until Ctrl-C")
    p.add_argument("--ep", metavar="EP", help="only this endpoint's events")
    p.add_argument("--count", type=int, metavar="N", help="stop after N events")

    from .profiles.cli import register_profile_commands  # it builds on this module

    register_profile_commands(subparsers)
    from .firmware.campaign_cli import register_campaign_commands

    register_campaign_commands(subparsers)
    from .firmware.package_cli import register_package_commands

    register_package_commands(subparsers)

    from .firmware.cli import register_update_commands  # it builds on this module too

    register_update_commands(subparsers)


def main(argv: Sequence[str] | None = None) -> int:
    """Run one operator command alone (the main CLI mounts the same commands)."""
    parser = argparse.ArgumentParser(
        prog="lwm2m-server", description="Operate a running LwM2M server over its HTTP API."
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    register_commands(subparsers)
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
