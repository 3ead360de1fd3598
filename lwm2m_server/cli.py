"""``lwm2m-server``: run the LwM2M server (``serve``, the default) and the operator commands.

``lwm2m-server`` with no subcommand (or only options) is ``lwm2m-server serve``. Exit status:
0 after a clean stop, 1 when the server cannot start (port in use, unreadable store), 2 for a
usage or configuration error (the message names the file or variable, the key and the reason).

Defaults: CoAP on every address (``0.0.0.0``: devices are remote), the HTTP API on
``127.0.0.1`` only (it is unauthenticated: expose it deliberately with ``http_host``).
Signals: SIGTERM/SIGINT stop gracefully; SIGHUP reloads the user object-model folders.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Sequence
from typing import Any

from keystore.config_error import ConfigError
from object_models.cli_support import (
    accept_negative_numbers,
    add_version,
    subcommands,
    unknown_command,
)
from object_models.pipes import quiet_on_broken_pipe

from .config import ServerConfig, load_config, log_level_number
from .operator_cli import register_commands

log = logging.getLogger("lwm2m_server")


def _serve_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="FILE.yaml", help="YAML configuration file")
    parser.add_argument("--host", help="CoAP listen address (default 0.0.0.0 = all)")
    parser.add_argument("--coap-port", type=int, help="CoAP (NoSec) UDP port (default 5683)")
    parser.add_argument("--coaps-port", type=int, help="CoAPs (DTLS) UDP port (default 5684)")
    parser.add_argument("--http-host", help="HTTP API listen address (default 127.0.0.1)")
    parser.add_argument("--http-port", type=int, help="HTTP API port (default 8080)")
    parser.add_argument(
        "--http-cert",
        "--http-tls-cert",
        dest="http_cert",
        metavar="FILE",
        help="PEM certificate chain: serve the HTTP API and /fw downloads over HTTPS",
    )
    parser.add_argument(
        "--http-key",
        "--http-tls-key",
        dest="http_key",
        metavar="FILE",
        help="PEM private key of --http-cert (must not be readable by other users)",
    )
    parser.add_argument("--data-dir", help="where the sqlite store lives (default ./data)")
    parser.add_argument(
        "--models-dir",
        action="append",
        dest="models_dirs",
        metavar="DIR",
        help="folder of user object models (*.json, *.xml); repeatable",
    )
    parser.add_argument("--log-level", help="DEBUG, INFO (default), WARNING, ERROR")
    parser.add_argument(
        "--workers",
        type=int,
        help="worker processes sharing the CoAP ports (default 1; >1 needs store.engine: redis)",
    )
    parser.add_argument(
        "--worker-cpu-affinity",
        metavar="off|auto|CPUS",
        help="pin worker i to one CPU: auto (the i-th CPU) or a list like 2-5 (default off)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lwm2m-server",
        description="OMA LwM2M server. Without a command: serve.",
    )
    add_version(parser)
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    serve = subparsers.add_parser("serve", help="run the server (the default)")
    _serve_options(serve)
    serve.set_defaults(func=serve_command)
    register_commands(subparsers)
    accept_negative_numbers(parser)  # ``write ep /3303/0/5700 -1e3`` without ``--``
    return parser


@quiet_on_broken_pipe  # ``lwm2m-server clients | head``: stop quietly
def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    commands = subcommands(parser)
    first = args_list[0] if args_list else None
    if first is not None and not first.startswith("-") and first not in commands:
        print(unknown_command(parser.prog, first, commands), file=sys.stderr)
        return 2
    if first is None or (first not in commands and first not in ("-h", "--help", "--version")):
        args_list.insert(0, "serve")  # only options: they are serve's
    try:
        args = parser.parse_args(args_list)
        args.argv = args_list[1:]  # serve's options as given: the workers of --workers get them
    except SystemExit as exc:  # argparse: 2 on usage errors, 0 on --help
        return int(exc.code or 0)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 2
    return int(func(args))


def config_from_args(args: argparse.Namespace) -> ServerConfig:
    overrides: dict[str, Any] = {
        "host": args.host,
        "coap_port": args.coap_port,
        "coaps_port": args.coaps_port,
        "http_host": args.http_host,
        "http_port": args.http_port,
        "http_tls.cert": getattr(args, "http_cert", None),
        "http_tls.key": getattr(args, "http_key", None),
        "data_dir": args.data_dir,
        "models_dirs": args.models_dirs,
        "log_level": args.log_level,
        "workers": args.workers,
        "worker_cpu_affinity": getattr(args, "worker_cpu_affinity", None),
    }
    return load_config(args.config, overrides=overrides)


def serve_command(args: argparse.Namespace) -> int:
    try:
        config = config_from_args(args)
    except ConfigError as exc:
        print(f"lwm2m-server: configuration error: {exc}", file=sys.stderr)
        return 2
    from .cluster.workers import Supervisor, affinity_plan, pin, refuse_reason, worker_index

    index = worker_index()
    refused = refuse_reason(config.workers, config.store.engine)
    if refused is not None:
        print(f"lwm2m-server: configuration error: {refused}", file=sys.stderr)
        return 2
    cpus = None
    if index is None:  # the supervisor or the one process (a worker's parent pinned it)
        try:
            cpus = affinity_plan(
                config.worker_cpu_affinity, config.workers, os.sched_getaffinity(0)
            )
        except ValueError as exc:
            print(f"lwm2m-server: configuration error: {exc}", file=sys.stderr)
            return 2
    where = "" if index is None else f"[worker {index}] "
    logging.basicConfig(
        level=log_level_number(config),
        format=f"%(asctime)s {where}%(levelname)s %(name)s: %(message)s",
    )
    if config.workers > 1 and index is None:  # the parent: it only runs the workers
        return Supervisor(
            args.argv, config.workers, config.data_dir, config.coap_port, config.coaps_port, cpus
        ).run()
    if cpus is not None and index is None:  # one process: it pins itself, before any thread
        pin(os.getpid(), cpus[0])
    # refused datagrams are logged by the runtime once per peer host and kind per minute
    from lwm2m_runtime.server import run

    with contextlib.suppress(KeyboardInterrupt):
        return run(serve(config))  # on uvloop when it is installed
    return 0


async def serve(config: ServerConfig) -> int:
    """Run until SIGTERM/SIGINT; returns the exit status."""
    from keystore.store.errors import StoreError

    from .service import Lwm2mServer

    server = Lwm2mServer(config)
    try:
        await server.start()
    except StoreError as exc:
        log.error("cannot open the store: %s", exc)
        return 1
    except OSError as exc:
        log.error("cannot listen on %s", _bind_error(exc, config))
        return 1
    # Signal handlers before anything says "ready" (the listening lines, the HTTP API line,
    # the worker's ready report): a SIGHUP or SIGTERM sent as soon as the log shows the server
    # up must reach these handlers, not the default action that kills the process.
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    reloads: set[asyncio.Task[Any]] = set()

    def reload() -> None:
        task = loop.create_task(server.reload_models())
        reloads.add(task)
        task.add_done_callback(reloads.discard)

    loop.add_signal_handler(signal.SIGHUP, reload)
    runner = None
    try:
        if server.nosec_enabled:
            log.info("CoAP listening on udp %s:%d", config.host, server.coap_address.port)
        if server.dtls_modes:
            modes = ", ".join(sorted(m.name for m in server.dtls_modes))
            log.info(
                "CoAPs listening on udp %s:%d (%s)", config.host, server.coaps_address.port, modes
            )
        from .cluster.workers import report_ready, worker_index

        if not worker_index():  # of --workers, worker 0 alone serves the HTTP API
            try:
                runner = await _start_http(server, config)
            except OSError:
                return 1  # logged by _start_http; the finally below stops the server
        report_ready(
            server.coap_address.port if server.nosec_enabled else config.coap_port,
            server.coaps_address.port if server.dtls_modes else config.coaps_port,
            int(runner.addresses[0][1]) if runner is not None and runner.addresses else 0,
        )
        await stop.wait()
        log.info("stopping")
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.remove_signal_handler(sig)
        if runner is not None:
            await runner.cleanup()
        await server.stop()
    log.info("stopped")
    return 0


def _bind_error(exc: OSError, config: ServerConfig) -> str:
    """The listener(s) whose port is taken, not always the CoAP one (issue 11)."""
    from lwm2m_runtime.listeners import listeners
    from lwm2m_runtime.ports import describe_bind_error

    nosec, coaps = listeners(config.security_modes, config.dtls)
    ports = {
        "CoAP": config.coap_port if nosec else None,
        "CoAPs": config.coaps_port if coaps is not None else None,
    }
    return describe_bind_error(exc, config.host, ports)


async def _start_http(server: Any, config: ServerConfig) -> Any:
    from aiohttp import web

    from .api import create_server_app
    from .config import server_tls_context

    app = create_server_app(server)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    tls = server_tls_context(config.http_tls)  # the files were checked by load_config
    scheme = "http" if tls is None else "https"
    site = web.TCPSite(runner, config.http_host, config.http_port, ssl_context=tls)
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        log.error("HTTP API cannot listen on %s:%d: %s", config.http_host, config.http_port, exc)
        raise
    for address in runner.addresses:
        host, port = address[0], address[1]
        shown = f"[{host}]" if ":" in str(host) else host
        log.info("HTTP API on %s://%s:%d", scheme, shown, port)
    if tls is None and not _loopback(config.http_host):
        log.warning(
            "the HTTP API listens on %s without TLS: API tokens and session cookies cross the "
            'network in clear; set http_tls (docs/configuration.md, "HTTPS") or keep a TLS '
            "proxy in front",
            config.http_host,
        )
    if server.downloads is not None and runner.addresses:  # http(s):// Package URIs (firmware.md)
        from .firmware.setup import set_http_base

        set_http_base(server.downloads, config, int(runner.addresses[0][1]), scheme=scheme)
    return runner


def _loopback(host: str) -> bool:
    """Whether ``host`` is a loopback address or ``localhost`` (plain HTTP stays on the host)."""
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
