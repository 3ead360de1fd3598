"""``lwm2m-client``: run the demo device against an LwM2M server until Ctrl-C.

    python -m lwm2m_client --endpoint demo-1 --server coap://127.0.0.1:5683 --lifetime 300
    python -m lwm2m_client -e demo-1 --bootstrap coaps://bs:5784 --psk-identity ID --psk-key HEX

Registers, prints the registration id, logs every request the server sends, simulates the
temperature sensor (/3303/0/5700, a random walk every few seconds, so observations of it see
notifications), ticks Current Time (/3/0/13 changes every second, so it notifies too), keeps
the registration alive, and de-registers on Ctrl-C / SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Sequence

from object_models.cli_support import accept_negative_numbers, add_version
from object_models.pipes import quiet_on_broken_pipe

from .client import Lwm2mClient, Lwm2mClientError
from .device import simulate_temperature, tick_clock
from .firmware import UpdateSimulation
from .management import Request, Response
from .queue_mode import DEFAULT_AWAKE_TIME
from .registration import SUPPORTED_VERSIONS

log = logging.getLogger("lwm2m_client")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lwm2m-client",
        description="pylwm2m demo LwM2M client (Device, Server, Temperature objects).",
    )
    add_version(parser)
    parser.add_argument("--endpoint", "-e", required=True, help="endpoint client name (ep)")
    parser.add_argument(
        "--server", "-s", default="coap://127.0.0.1:5683", help="LwM2M server URI (coap://)"
    )
    parser.add_argument(
        "--bootstrap",
        metavar="URI",
        help="bootstrap server URI: start with only this account and get the server from it",
    )
    parser.add_argument(
        "--bootstrap-pack", action="store_true", help="use Bootstrap-Pack (GET /bspack, 1.2)"
    )
    parser.add_argument("--psk-identity", help="DTLS PSK identity (bootstrap server if given)")
    parser.add_argument("--psk-key", help="DTLS PSK key, hex")
    parser.add_argument("--lifetime", "-l", type=int, default=300, help="lifetime in seconds")
    parser.add_argument("--lwm2m", default="1.1", choices=SUPPORTED_VERSIONS, help="LwM2M version")
    parser.add_argument("--queue", action="store_true", help="queue mode (sleeps between sends)")
    parser.add_argument(
        "--awake-time",
        type=float,
        default=DEFAULT_AWAKE_TIME,
        help="queue mode: seconds the device stays reachable after sending",
    )
    parser.add_argument(
        "--temperature-period",
        type=float,
        default=5.0,
        help="seconds between simulated temperature readings (0 disables the simulation)",
    )
    parser.add_argument("--bind", default=None, help="local address to bind (default: automatic)")
    updates = parser.add_argument_group(
        "firmware and software updates (objects 5 and 9): failure simulation"
    )
    updates.add_argument(
        "--fw-fail-update",
        action="store_true",
        help="Execute Update fails with Update Result 8 (Install: 58); the version stays",
    )
    updates.add_argument(
        "--fw-corrupt-download",
        action="store_true",
        help="flip a byte of every package received: Update Result 5 (53)",
    )
    updates.add_argument(
        "--fw-vanish-after-blocks",
        type=int,
        metavar="K",
        help="go silent (no answers, no uplink) after receiving K blocks of a package",
    )
    updates.add_argument(
        "--fw-vanish-for",
        type=float,
        metavar="SECONDS",
        help="come back after this long (default: never); the download is then lost (4 / 52)",
    )
    updates.add_argument(
        "--fw-reboot-delay",
        type=float,
        default=UpdateSimulation().reboot_delay,
        metavar="SECONDS",
        help="seconds offline while rebooting into a new firmware (default: %(default)s)",
    )
    updates.add_argument(
        "--fw-block-timeout",
        type=float,
        default=UpdateSimulation().block_timeout,
        metavar="SECONDS",
        help="pull: seconds to wait for one block (default: %(default)s)",
    )
    updates.add_argument(
        "--ca-file",
        metavar="FILE",
        help="PEM certificates to trust for https:// Package URIs (default: the system's)",
    )
    updates.add_argument(
        "--software-instances",
        type=int,
        default=1,
        metavar="N",
        help="Software Management instances /9/0 … /9/N-1 (default: %(default)s)",
    )
    parser.add_argument(
        "--log-level",
        default="INFO",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="logging level",
    )
    accept_negative_numbers(parser)
    return parser


def log_request(request: Request, response: Response) -> None:
    extras = []
    if request.accept is not None:
        extras.append(f"accept={request.accept}")
    if request.content_format is not None:
        extras.append(f"ct={request.content_format}")
    if request.observe is not None:
        extras.append(f"observe={request.observe}")
    if request.query:
        extras.append("?" + "&".join(request.query))
    code = f"{response.code >> 5}.{response.code & 0x1F:02d}"
    log.info("%s %s %s -> %s", request.method, request.path, " ".join(extras), code)


def psk_argument(args: argparse.Namespace) -> tuple[str, bytes] | None:
    """``--psk-identity``/``--psk-key`` go together; ValueError (exit 2) otherwise."""
    if args.psk_identity is None and args.psk_key is None:
        return None
    if args.psk_identity is None or args.psk_key is None:
        raise ValueError("--psk-identity and --psk-key go together")
    return args.psk_identity, bytes.fromhex(args.psk_key)


def update_simulation(args: argparse.Namespace) -> UpdateSimulation:
    """The ``--fw-*`` flags; ValueError (exit 2) for values that make no sense."""
    if args.fw_vanish_after_blocks is not None and args.fw_vanish_after_blocks < 1:
        raise ValueError("--fw-vanish-after-blocks takes a number of blocks >= 1")
    if args.fw_vanish_for is not None and args.fw_vanish_after_blocks is None:
        raise ValueError("--fw-vanish-for goes with --fw-vanish-after-blocks")
    for flag, value in (("--fw-reboot-delay", args.fw_reboot_delay),
                        ("--fw-block-timeout", args.fw_block_timeout),
                        ("--fw-vanish-for", args.fw_vanish_for)):  # fmt: skip
        if value is not None and not value >= 0:
            raise ValueError(f"{flag} takes a number of seconds >= 0")
    if args.software_instances < 0:
        raise ValueError("--software-instances takes a count >= 0")
    return UpdateSimulation(
        fail_update=args.fw_fail_update,
        corrupt_download=args.fw_corrupt_download,
        vanish_after_blocks=args.fw_vanish_after_blocks,
        vanish_for=args.fw_vanish_for,
        reboot_delay=args.fw_reboot_delay,
        block_timeout=args.fw_block_timeout,
    )


def ca_file_argument(args: argparse.Namespace) -> str | None:
    """``--ca-file``, checked now (ValueError, exit 2) rather than at the first download."""
    if args.ca_file is None:
        return None
    from .package_download import https_context

    try:
        https_context(args.ca_file)
    except OSError as exc:  # ssl.SSLError too: no certificate in the file
        raise ValueError(f"--ca-file {args.ca_file}: {exc.strerror or exc}") from None
    return str(args.ca_file)


def build_client(args: argparse.Namespace) -> Lwm2mClient:
    options = {
        "lifetime": args.lifetime,
        "lwm2m_version": args.lwm2m,
        "queue_mode": args.queue,
        "awake_time": args.awake_time,
        "bind_host": args.bind,
        "on_request": log_request,
        "psk": psk_argument(args),
        "update_objects": True,
        "update_simulation": update_simulation(args),
        "software_instances": args.software_instances,
        "ca_file": ca_file_argument(args),
    }
    if args.bootstrap:
        return Lwm2mClient.from_bootstrap(
            args.endpoint, args.bootstrap, pack=args.bootstrap_pack, attempts=None, **options
        )
    if args.bootstrap_pack:
        raise ValueError("--bootstrap-pack needs --bootstrap URI")
    return Lwm2mClient(args.endpoint, args.server, **options)


async def run(args: argparse.Namespace) -> int:
    client = build_client(args)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    # Bootstrapping and registering retry until a server answers: race them against the
    # signals, so Ctrl-C/SIGTERM stop the client at any time, not only once it is registered.
    registering = loop.create_task(_bootstrap_and_register(client, args))
    stopping = loop.create_task(stop.wait())
    await asyncio.wait({registering, stopping}, return_when=asyncio.FIRST_COMPLETED)
    stopping.cancel()
    if not registering.done():
        registering.cancel()
        with contextlib.suppress(asyncio.CancelledError, Lwm2mClientError, OSError):
            await registering
        print(f"lwm2m-client: stopped before {client.endpoint} was registered", file=sys.stderr)
        await client.close()
        return 130
    try:
        registration = registering.result()
    except (Lwm2mClientError, OSError) as exc:
        print(f"lwm2m-client: registration failed: {exc}", file=sys.stderr)
        await client.stop()
        return 1
    print(
        f"registered {client.endpoint} at {client.server.base_uri} as {registration} "
        f"(local {client.local_address}); Ctrl-C to stop",
        flush=True,
    )
    simulations = [loop.create_task(tick_clock(client.objects))]
    if args.temperature_period > 0:
        simulations.append(
            loop.create_task(simulate_temperature(client.objects, period=args.temperature_period))
        )
    try:
        await stop.wait()
    finally:
        for simulation in simulations:
            simulation.cancel()
        await client.close()
    return 0


async def _bootstrap_and_register(client: Lwm2mClient, args: argparse.Namespace) -> str:
    if args.bootstrap:
        registration = await client.bootstrap_and_register()
        print(f"bootstrapped {client.endpoint}: LwM2M server {client.server.base_uri}")
        return registration
    await client.start()
    return await client.register()


@quiet_on_broken_pipe  # ``lwm2m-client --help | head``: stop quietly
def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=getattr(logging, args.log_level),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if args.log_level != "DEBUG":
        logging.getLogger("coap").setLevel(logging.WARNING)
        logging.getLogger("coap-server").setLevel(logging.WARNING)
    try:
        return asyncio.run(run(args))
    except NotImplementedError as exc:
        print(f"lwm2m-client: {exc}", file=sys.stderr)
        return 2
    except ValueError as exc:
        print(f"lwm2m-client: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
