"""``lwm2m-bootstrap``: run the bootstrap server (``serve``, the default) and its operator
commands, which talk to a running server over the HTTP API (``--api``, default
``$LWM2M_BOOTSTRAP_API`` or http://127.0.0.1:8081), like ``lwm2m-server``'s.

    lwm2m-bootstrap [serve] --config FILE.yaml --host H --coap-port 5783 --coaps-port 5784
                    --http-port 8081 --data-dir DIR --models-dir DIR
    lwm2m-bootstrap configs add FILE.yaml|FILE.json
    lwm2m-bootstrap configs list | show NAME | remove NAME   (NAME: endpoint, or profile:NAME)
    lwm2m-bootstrap devices import FILE.csv [--profile P] | list
    lwm2m-bootstrap sessions [--endpoint EP] [--limit N]
    lwm2m-bootstrap bootstrap EP [--address HOST:PORT]

Exit status: 0 success; 1 the server cannot start or the API said no; 2 usage or
configuration error (the message names the file or variable, the key and the reason).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from keystore.config_error import ConfigError
from lwm2m_runtime.api_client import TOKEN_ENV, ApiClient, ApiFailure, default_token
from lwm2m_runtime.log_filters import RateLimit
from lwm2m_runtime.server import run
from object_models.cli_support import (
    accept_negative_numbers,
    add_version,
    subcommands,
    unknown_command,
)
from object_models.pipes import quiet_on_broken_pipe

from .config import BootstrapServerConfig, load_config, log_level_number

log = logging.getLogger("bootstrap_server")
DEFAULT_API = "http://127.0.0.1:8081"
API_ENV = "LWM2M_BOOTSTRAP_API"
DATA_DIR_ENV = "LWM2M_BOOTSTRAP_DATA_DIR"
OK, FAILED, USAGE = 0, 1, 2
COMMANDS = ("serve", "configs", "devices", "sessions", "bootstrap")


# -- serve ----------------------------------------------------------------------------------------


def _serve_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="FILE.yaml", help="YAML settings file")
    parser.add_argument("--host", help="CoAP listen address (default 0.0.0.0 = all)")
    parser.add_argument("--coap-port", type=int, help="CoAP (NoSec) UDP port (default 5783)")
    parser.add_argument("--coaps-port", type=int, help="CoAPs (DTLS) UDP port (default 5784)")
    parser.add_argument("--http-host", help="HTTP API listen address (default 127.0.0.1)")
    parser.add_argument("--http-port", type=int, help="HTTP API port (default 8081)")
    parser.add_argument("--data-dir", help="stores and default configs folder (default ./data)")
    parser.add_argument(
        "--configs-dir", help="bootstrap configurations (default DATA/bootstrap-configs)"
    )
    parser.add_argument("--models-dir", action="append", dest="models_dirs", metavar="DIR",
                        help="folder of user object models; repeatable")  # fmt: skip
    parser.add_argument("--log-level", help="DEBUG, INFO (default), WARNING, ERROR")


def config_from_args(args: argparse.Namespace) -> BootstrapServerConfig:
    names = ("host", "coap_port", "coaps_port", "http_host", "http_port", "data_dir",
             "configs_dir", "models_dirs", "log_level")  # fmt: skip
    return load_config(args.config, overrides={n: getattr(args, n) for n in names})


def serve_command(args: argparse.Namespace) -> int:
    try:
        config = config_from_args(args)
    except ConfigError as exc:
        print(f"lwm2m-bootstrap: configuration error: {exc}", file=sys.stderr)
        return USAGE
    logging.basicConfig(level=log_level_number(config),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")  # fmt: skip
    coap_log = logging.getLogger("coap-server")
    if config.log_level != "DEBUG":
        coap_log.setLevel(logging.WARNING)
    coap_log.addFilter(RateLimit())
    with contextlib.suppress(KeyboardInterrupt):
        return run(serve(config))  # on uvloop when it is installed
    return OK


def _bind_error(exc: OSError, config: BootstrapServerConfig) -> str:
    """The listener(s) whose port is taken (the message used to name no port at all)."""
    from lwm2m_runtime.listeners import listeners
    from lwm2m_runtime.ports import describe_bind_error

    nosec, coaps = listeners(config.security_modes, config.dtls)
    ports = {
        "CoAP": config.coap_port if nosec else None,
        "CoAPs": config.coaps_port if coaps is not None and config.coaps else None,
    }
    return describe_bind_error(exc, config.host, ports)


async def serve(config: BootstrapServerConfig) -> int:
    from aiohttp import web

    from keystore.store.errors import StoreError

    from .api import create_app
    from .service import BootstrapServer, ConfigErrors

    server = BootstrapServer(config)
    try:
        await server.start()
    except ConfigErrors as exc:
        for error in exc.errors:
            print(f"lwm2m-bootstrap: configuration error: {error}", file=sys.stderr)
        await server.stop()
        return USAGE
    except ConfigError as exc:
        print(f"lwm2m-bootstrap: configuration error: {exc}", file=sys.stderr)
        await server.stop()
        return USAGE
    except StoreError as exc:
        log.error("cannot start: %s", exc)
        await server.stop()
        return FAILED
    except OSError as exc:
        await server.stop()
        log.error("cannot listen on %s", _bind_error(exc, config))
        return FAILED
    # the listeners (CoAP and CoAPs, with their real ports) are logged by server.start()
    log.info("bootstrap server: %d configurations", len(server.catalog.configs))
    runner = web.AppRunner(create_app(server), access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, config.http_host, config.http_port).start()
    except OSError as exc:
        log.error("HTTP API cannot listen on %s:%d: %s", config.http_host, config.http_port, exc)
        await runner.cleanup()
        await server.stop()
        return FAILED
    # the handlers before the line that tells the world we are up: a SIGHUP or SIGTERM sent as
    # soon as it is in the log must reach them, not the default action that kills the process
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    def reload() -> None:
        for error in server.reload_configs():
            log.error("reload refused: %s", error)

    loop.add_signal_handler(signal.SIGHUP, reload)
    log.info("HTTP API on http://%s:%d", config.http_host, config.http_port)
    try:
        await stop.wait()
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.remove_signal_handler(sig)
        await runner.cleanup()
        await server.stop()
    return OK


# -- operator commands -----------------------------------------------------------------------------


def _api(args: argparse.Namespace) -> ApiClient:
    token = default_token(token_file=args.token_file, data_dir=os.environ.get(DATA_DIR_ENV))
    return ApiClient(args.api, token=token)


def _check(status: int, body: Any) -> Any:
    if status >= 400:
        message = body.get("error") if isinstance(body, dict) else body
        raise ApiFailure(f"HTTP {status}: {message}", body)
    return body


def _print(args: argparse.Namespace, body: Any, text: Callable[[Any], str]) -> int:
    print(json.dumps(body, indent=2) if args.json else text(body))
    return OK


def _name(value: str) -> tuple[str, str]:
    kind, sep, name = value.partition(":")
    if sep and kind in ("endpoint", "profile"):
        return kind, name
    return "endpoint", value


def cmd_configs_add(args: argparse.Namespace) -> int:
    from .core.catalog import read_document

    path = Path(args.file)
    try:
        document = read_document(path)
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return USAGE
    if not isinstance(document, dict) or ("endpoint" in document) == ("profile" in document):
        print(f"{path}: give exactly one of 'endpoint' or 'profile'", file=sys.stderr)
        return USAGE
    kind = "endpoint" if "endpoint" in document else "profile"
    status, body = _api(args).call("PUT", f"/api/bootstrap/configs/{kind}/{document[kind]}",
                                   json_body=document)  # fmt: skip
    if status == 400 and isinstance(body, dict) and "key" in body:
        print(f"configuration error: {path}: {body['key']}: {body['reason']}", file=sys.stderr)
        return USAGE
    body = _check(status, body)
    return _print(args, body, lambda b: f"{b['kind']} {b['name']} saved as {b['source']}")


def _config_line(c: Any) -> str:
    servers = ", ".join(
        f"{s['shortServerId']}={s['uri']} ({s['securityMode']}"
        f"{', generated' if s['generate'] else ''})"
        for s in c["servers"]
    )
    return f"{c['kind']:8} {c['name']:24} bootstrap={'/'.join(c['bootstrapSecurity'])}  {servers}"


def cmd_configs_list(args: argparse.Namespace) -> int:
    body = _check(*_api(args).call("GET", "/api/bootstrap/configs"))
    return _print(args, body, lambda b: "\n".join(_config_line(c) for c in b) or "no configs")


def cmd_configs_show(args: argparse.Namespace) -> int:
    kind, name = _name(args.name)
    body = _check(*_api(args).call("GET", f"/api/bootstrap/configs/{kind}/{name}"))
    return _print(args, body, lambda b: json.dumps(b, indent=2))


def cmd_configs_remove(args: argparse.Namespace) -> int:
    kind, name = _name(args.name)
    _check(*_api(args).call("DELETE", f"/api/bootstrap/configs/{kind}/{name}"))
    print(f"{kind} {name} removed")
    return OK


def cmd_devices_import(args: argparse.Namespace) -> int:
    try:
        text = Path(args.file).read_text(encoding="utf-8")
    except OSError as exc:
        print(f"{args.file}: {exc.strerror}", file=sys.stderr)
        return USAGE
    query = [("source", Path(args.file).name)] + ([("profile", args.profile)]
                                                   if args.profile else [])  # fmt: skip
    body = _check(*_api(args).call("POST", "/api/bootstrap/devices/import", query,
                                   text_body=text))  # fmt: skip
    return _print(args, body, lambda b: f"{b['imported']} devices imported")


def cmd_devices_list(args: argparse.Namespace) -> int:
    body = _check(*_api(args).call("GET", "/api/bootstrap/devices"))
    return _print(args, body, lambda b: "\n".join(
        f"{d['endpoint']:24} {d['profile'] or '-':16} {d['provisionState']:13} {d['reason']}"
        for d in b) or "no devices")  # fmt: skip


def cmd_sessions(args: argparse.Namespace) -> int:
    query = [("limit", str(args.limit))] + ([("endpoint", args.endpoint)] if args.endpoint
                                             else [])  # fmt: skip
    body = _check(*_api(args).call("GET", "/api/bootstrap/sessions", query))

    def text(sessions: Any) -> str:
        lines = []
        for s in sessions:
            kind = s.get("kind", "bootstrap")  # sessions stored before packs were recorded
            lines.append(f"{s['id']:10} {s['endpoint']:24} {s['initiatedBy']:6} {kind:9} "
                         f"{s['outcome']}")  # fmt: skip
            lines.extend(f"    {st['step']:8} {st['target']:6} {st['result']}"
                         for st in s["steps"])  # fmt: skip
        return "\n".join(lines) or "no sessions"

    return _print(args, body, text)


def cmd_bootstrap(args: argparse.Namespace) -> int:
    payload = {"address": args.address} if args.address else {}
    body = _check(*_api(args).call("POST", f"/api/bootstrap/clients/{args.endpoint}/bootstrap",
                                   json_body=payload))  # fmt: skip
    return _print(args, body, lambda b: f"bootstrap started: session {b['session']}")


def _guard(command: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        try:
            return command(args)
        except ApiFailure as exc:
            print(str(exc), file=sys.stderr)
            return FAILED

    return run


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lwm2m-bootstrap", description="OMA LwM2M bootstrap server. Without a command: serve."
    )
    add_version(parser)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    serve_parser = sub.add_parser("serve", help="run the bootstrap server (the default)")
    _serve_options(serve_parser)
    serve_parser.set_defaults(func=serve_command)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--api",
        default=os.environ.get(API_ENV, DEFAULT_API),
        metavar="URL",
        help=f"the bootstrap server's HTTP API (default ${API_ENV} or {DEFAULT_API})",
    )
    common.add_argument(
        "--token-file",
        metavar="FILE",
        help=f"file holding the API token (default ${TOKEN_ENV}, else "
        f"${DATA_DIR_ENV}/api-token or ./data/api-token: the first admin token)",
    )
    common.add_argument("--json", action="store_true", help="print the API's JSON answer")

    configs = sub.add_parser("configs", help="bootstrap configurations").add_subparsers(
        dest="action", metavar="ACTION", required=True)  # fmt: skip
    add = configs.add_parser("add", parents=[common], help="add or replace from a file")
    add.add_argument("file")
    add.set_defaults(func=_guard(cmd_configs_add))
    configs.add_parser("list", parents=[common], help="list").set_defaults(
        func=_guard(cmd_configs_list))  # fmt: skip
    for name, func in (("show", cmd_configs_show), ("remove", cmd_configs_remove)):
        p = configs.add_parser(
            name, parents=[common], help=f"{name} one (endpoint, or profile:NAME)"
        )
        p.add_argument("name")
        p.set_defaults(func=_guard(func))

    devices = sub.add_parser("devices", help="provisioning records").add_subparsers(
        dest="action", metavar="ACTION", required=True)  # fmt: skip
    imp = devices.add_parser("import", parents=[common], help="import endpoint[,profile] CSV")
    imp.add_argument("file")
    imp.add_argument("--profile", help="profile for lines that name none")
    imp.set_defaults(func=_guard(cmd_devices_import))
    devices.add_parser("list", parents=[common], help="list with provisionState").set_defaults(
        func=_guard(cmd_devices_list))  # fmt: skip

    sessions = sub.add_parser("sessions", parents=[common], help="finished sessions")
    sessions.add_argument("--endpoint")
    sessions.add_argument("--limit", type=int, default=20)
    sessions.set_defaults(func=_guard(cmd_sessions))

    trigger = sub.add_parser("bootstrap", parents=[common], help="server-initiated bootstrap")
    trigger.add_argument("endpoint")
    trigger.add_argument("--address", metavar="HOST:PORT", help="where the client listens")
    trigger.set_defaults(func=_guard(cmd_bootstrap))
    accept_negative_numbers(parser)
    return parser


@quiet_on_broken_pipe  # ``lwm2m-bootstrap configs list | head``: stop quietly
def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    first = args_list[0] if args_list else None
    if first is not None and not first.startswith("-") and first not in COMMANDS:
        print(unknown_command(parser.prog, first, subcommands(parser)), file=sys.stderr)
        return 2
    if first is None or (first not in COMMANDS and first not in ("-h", "--help", "--version")):
        args_list.insert(0, "serve")  # only options: they are serve's
    try:
        args = parser.parse_args(args_list)
    except SystemExit as exc:
        return int(exc.code or 0)
    return int(args.func(args))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
