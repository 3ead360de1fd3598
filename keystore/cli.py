"""``lwm2m-keystore``: the server's identity, trusted CAs and device credentials.

    lwm2m-keystore [--data-dir DIR] server generate-rpk [--force]
    lwm2m-keystore [--data-dir DIR] server generate-x509 [--cn HOST] [--san NAME]...
                                    [--ca-cert FILE --ca-key FILE] [--days N] [--new-key] [--force]
    lwm2m-keystore [--data-dir DIR] server show [--json]
    lwm2m-keystore [--data-dir DIR] ca add FILE [--auto-registration] | ca list | ca remove SHA256
    lwm2m-keystore [--data-dir DIR] device add EP --mode psk --identity ID --key HEX
                                              --mode rpk --public-key HEX|FILE
                                              --mode x509|est [--cert FILE]
                                              --mode nosec
    lwm2m-keystore [--data-dir DIR] device list | show EP [--show-secret] | remove EP
                                    | activate EP | deactivate EP
    lwm2m-keystore [--data-dir DIR] export FILE [--encoding hex|base64] | import FILE [--replace]
    lwm2m-keystore [--data-dir DIR] api-token create NAME [--role read|admin] | list | revoke NAME

Everything lives in ``DIR/lwm2m-server.sqlite`` (``keystore.store.database.DATABASE_FILE``), the
file the server opens too (its ``ServerConfig.database``), so the server sees changes on its next
lookup (the resolver does not cache). The file is kept 0600: it holds PSK keys and the server's
private key. With ``--store-url redis://...`` (``--store-prefix``, default ``lwm2m``;
``--store-cluster``) every command works on the Redis store the servers share with
``store: {engine: redis}`` instead.

Exit status: 0 done; 1 the operation failed (a conflict, an unknown endpoint, a file that cannot
be read or does not hold what it should, the store); 2 the command line is wrong (unknown
command, missing or conflicting options, a malformed value). Every error names the field or
option and the reason. Secrets are printed only by ``device show --show-secret``, ``export`` and
``api-token create`` (the one time a token exists in clear: only its digest is stored).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import attrs
from cryptography import x509

from object_models.cli_support import accept_negative_numbers, add_version
from object_models.pipes import quiet_on_broken_pipe

from . import tools
from .api_tokens import ApiToken, Role, check_name, digest, new_secret
from .credentials import (
    CredentialError,
    DeviceCredentials,
    ServerIdentity,
    TrustedCa,
    certificate_der,
    load_certificate,
    load_certificates,
    load_public_key,
    parse_hex,
    parse_psk_identity,
    raw_public_key,
    short_fingerprint,
)
from .modes import SecurityMode
from .secrets_io import write_private
from .store.credentials import (
    CredentialStore,
    SqliteCredentialStore,
    export_document,
    import_document,
)
from .store.database import DATABASE_FILE
from .store.engines import api_token_store
from .store.errors import StoreError
from .store.redis_credentials import RedisCredentialStore
from .store.redis_database import DEFAULT_PREFIX

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2

#: The server's environment override of ``data_dir``; the tool follows it too.
DATA_DIR_ENV = "LWM2M_SERVER_DATA_DIR"
PROG = "lwm2m-keystore"


class UsageError(Exception):
    """The command line itself is wrong: exit 2."""


class Failed(Exception):
    """The operation could not be done: exit 1."""


Command = Callable[[argparse.Namespace, CredentialStore], None]


@quiet_on_broken_pipe  # ``lwm2m-keystore device list | head``: stop quietly
def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse: 2 on a usage error, 0 after --help
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    command: Command = args.run
    try:
        with _open_store(args) as store:
            command(args, store)
    except UsageError as exc:
        return _error(str(exc), EXIT_USAGE)
    except (Failed, CredentialError, StoreError) as exc:
        return _error(str(exc), EXIT_FAILED)
    except BrokenPipeError:
        raise  # stdout's reader is gone: not a keystore error (``quiet_on_broken_pipe``)
    except OSError as exc:
        where = f"{exc.filename}: " if exc.filename else ""
        return _error(f"{where}{exc.strerror or exc}", EXIT_FAILED)
    return EXIT_OK


def _open_store(args: argparse.Namespace) -> SqliteCredentialStore | RedisCredentialStore:
    """The data folder's sqlite file, or the Redis store of ``--store-url`` (the one the
    servers use with ``store: {engine: redis}``, docs/cluster.md)."""
    if args.store_url:
        return RedisCredentialStore.open(
            args.store_url, prefix=args.store_prefix, cluster=args.store_cluster
        )
    return SqliteCredentialStore.open(Path(args.data_dir) / DATABASE_FILE)


def _error(message: str, code: int) -> int:
    print(f"{PROG}: error: {message}", file=sys.stderr)
    return code


def _out(text: str = "") -> None:
    print(text)


def _note(text: str) -> None:
    print(text, file=sys.stderr)


# -- parser ---------------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--data-dir",
        default=argparse.SUPPRESS,
        metavar="DIR",
        help=f"folder of the server's store ({DATABASE_FILE})",
    )
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Manage the LwM2M server's own keys/certificates, trusted CAs and device "
        f"credentials (in DIR/{DATABASE_FILE}).",
    )
    parser.add_argument(
        "--data-dir",
        default=os.environ.get(DATA_DIR_ENV) or "data",
        metavar="DIR",
        help=f"folder of {DATABASE_FILE}; default ${DATA_DIR_ENV} (as for the server), else ./data",
    )
    add_version(parser)
    parser.add_argument(
        "--store-url",
        metavar="URL",
        help="use the Redis store at URL (redis://host:6379/0) instead of the sqlite file",
    )
    parser.add_argument(
        "--store-prefix",
        default=DEFAULT_PREFIX,
        metavar="PREFIX",
        help=f"the Redis store's key prefix (as the servers' store.prefix; {DEFAULT_PREFIX})",
    )
    parser.add_argument(
        "--store-cluster",
        action="store_true",
        help="--store-url is a node of a Redis Cluster (as the servers' store.cluster)",
    )
    groups = parser.add_subparsers(dest="group", required=True, metavar="COMMAND")

    def sub(parent: Any, name: str, run: Command, help_text: str) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = parent.add_parser(name, parents=[common], help=help_text)
        p.set_defaults(run=run)
        return p

    server = groups.add_parser("server", help="the server's own RPK / X.509 identity")
    server_cmds = server.add_subparsers(dest="command", required=True, metavar="COMMAND")
    rpk = sub(server_cmds, "generate-rpk", _server_generate_rpk, "new ECDSA P-256 key pair")
    rpk.add_argument("--force", action="store_true", help="replace an existing key")
    cert = sub(server_cmds, "generate-x509", _server_generate_x509, "new server certificate")
    cert.add_argument("--cn", help="host name for CN and SAN (default: this host's FQDN)")
    cert.add_argument("--san", action="append", default=[], metavar="NAME",
                      help="extra SAN (DNS name or IP address), repeatable")  # fmt: skip
    cert.add_argument("--ca-cert", type=Path, metavar="FILE", help="sign with this CA (PEM/DER)")
    cert.add_argument("--ca-key", type=Path, metavar="FILE", help="the CA's private key")
    cert.add_argument("--days", type=int, default=tools.DEFAULT_DAYS, help="validity (365)")
    cert.add_argument("--new-key", action="store_true", help="also make a new key pair")
    cert.add_argument("--force", action="store_true", help="replace an existing certificate")
    show = sub(server_cmds, "show", _server_show, "what devices need: public key, certificate")
    show.add_argument("--json", action="store_true")

    ca = groups.add_parser("ca", help="CAs whose certificates identify devices")
    ca_cmds = ca.add_subparsers(dest="command", required=True, metavar="COMMAND")
    ca_add = sub(ca_cmds, "add", _ca_add, "trust a CA certificate (PEM/DER; bundles too)")
    ca_add.add_argument("file", type=Path, metavar="FILE")
    ca_add.add_argument("--auto-registration", action="store_true",
                        help="devices with its certificates need no device record")  # fmt: skip
    ca_list = sub(ca_cmds, "list", _ca_list, "list trusted CAs")
    ca_list.add_argument("--json", action="store_true")
    ca_rm = sub(ca_cmds, "remove", _ca_remove, "stop trusting a CA")
    ca_rm.add_argument("sha256", metavar="SHA256", help="fingerprint or 8+ digit prefix")

    device = groups.add_parser("device", help="device credentials")
    device_cmds = device.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add = sub(device_cmds, "add", _device_add, "add a device")
    add.add_argument("endpoint", metavar="EP")
    add.add_argument("--mode", required=True, help="psk, rpk, x509, est or nosec")
    add.add_argument("--identity", help="PSK identity: text, or hex:… for binary")
    add.add_argument("--key", help="PSK key, hex")
    add.add_argument("--public-key", metavar="HEX|FILE",
                     help="RPK: SPKI or X||Y as hex, or a PEM/DER file")  # fmt: skip
    add.add_argument("--cert", type=Path, metavar="FILE",
                     help="x509: pin this certificate (without: any certificate from a trusted "
                     "CA naming EP in its CN/SAN)")  # fmt: skip
    add.add_argument("--inactive", action="store_true", help="store it deactivated")
    add.add_argument("--replace", action="store_true", help="overwrite an existing endpoint")
    dev_list = sub(device_cmds, "list", _device_list, "list devices (no secrets)")
    dev_list.add_argument("--json", action="store_true")
    dev_show = sub(device_cmds, "show", _device_show, "show one device")
    dev_show.add_argument("endpoint", metavar="EP")
    dev_show.add_argument("--show-secret", action="store_true", help="include the PSK key")
    dev_show.add_argument("--json", action="store_true")
    for name, run, text in (
        ("remove", _device_remove, "remove a device"),
        ("activate", _device_activate, "let a device in again"),
        ("deactivate", _device_deactivate, "refuse a device (4.01) but keep its record"),
    ):
        sub(device_cmds, name, run, text).add_argument("endpoint", metavar="EP")

    tokens = groups.add_parser("api-token", help="bearer tokens of the servers' HTTP APIs")
    token_cmds = tokens.add_subparsers(dest="command", required=True, metavar="COMMAND")
    create = sub(token_cmds, "create", _token_create, "make a token and print it (once)")
    create.add_argument("name", metavar="NAME", help="who uses it (shown in the audit log)")
    create.add_argument("--role", choices=[r.value for r in Role], default=Role.READ.value,
                        help="read (GET only, the default) or admin (everything)")  # fmt: skip
    create.add_argument("--replace", action="store_true", help="replace a token of that name")
    token_list = sub(token_cmds, "list", _token_list, "list tokens (names and roles)")
    token_list.add_argument("--json", action="store_true")
    sub(token_cmds, "revoke", _token_revoke, "revoke a token at once").add_argument(
        "name", metavar="NAME")  # fmt: skip

    export = sub(groups, "export", _export, "write everything, secrets included, to JSON")
    export.add_argument("file", metavar="FILE", help="file (created 0600) or - for stdout")
    export.add_argument("--encoding", choices=["hex", "base64"], default="hex")
    imp = sub(groups, "import", _import, "read an export file (all or nothing)")
    imp.add_argument("file", metavar="FILE", help="file or - for stdin")
    imp.add_argument("--replace", action="store_true",
                     help="overwrite devices / the server identity that differ")  # fmt: skip
    accept_negative_numbers(parser)
    return parser


# -- server ---------------------------------------------------------------------------------------


def _server_generate_rpk(args: argparse.Namespace, store: CredentialStore) -> None:
    current = store.server_identity()
    if current is not None and not args.force:
        raise Failed(
            f"server: a key pair exists already (public key "
            f"{short_fingerprint(current.public_key_spki)}); --force replaces it, and then every "
            "device that pinned the old key must get the new one"
        )
    key = tools.generate_private_key()
    store.put_server_identity(ServerIdentity(tools.private_key_pem(key)))
    if current is not None and current.certificate_chain:
        _note("note: the old certificate was for the old key and has been dropped")
    _note("generated a new ECDSA P-256 key pair")
    _print_server(store.server_identity(), as_json=False)


def _server_generate_x509(args: argparse.Namespace, store: CredentialStore) -> None:
    if (args.ca_cert is None) != (args.ca_key is None):
        raise UsageError("--ca-cert and --ca-key go together")
    if args.days < 1:
        raise UsageError("--days: must be at least 1")
    current = store.server_identity()
    if current is not None and current.certificate_chain and not args.force:
        raise Failed("server: a certificate exists already; --force replaces it")
    key = tools.generate_private_key() if current is None or args.new_key else current.key
    host = args.cn or socket.getfqdn() or "localhost"
    if args.ca_cert is not None:
        ca_cert = _read_certificate(args.ca_cert, "--ca-cert")
        ca_key = tools.load_private_key(args.ca_key.read_bytes(), "--ca-key")
        leaf = tools.issue_certificate(key.public_key(), host, issuer_key=ca_key,
                                       issuer_cert=ca_cert, sans=[host, *args.san],
                                       days=args.days, server=True)  # fmt: skip
        chain: tuple[bytes, ...] = (certificate_der(leaf), certificate_der(ca_cert))
    else:
        leaf = tools.self_signed_server_certificate(key, host, sans=args.san, days=args.days)
        chain = (certificate_der(leaf),)
    store.put_server_identity(ServerIdentity(tools.private_key_pem(key), chain))
    kind = "CA-signed" if args.ca_cert is not None else "self-signed"
    _note(f"generated a {kind} certificate for {host!r}, valid {args.days} days")
    _print_server(store.server_identity(), as_json=False)


def _server_show(args: argparse.Namespace, store: CredentialStore) -> None:
    identity = store.server_identity()
    if identity is None:
        raise Failed("server: no identity yet (run 'server generate-rpk' or 'generate-x509')")
    _print_server(identity, as_json=args.json)


def _print_server(identity: ServerIdentity | None, *, as_json: bool) -> None:
    assert identity is not None
    info: dict[str, Any] = {
        "public_key": identity.public_key_spki.hex(),
        "public_key_xy": raw_public_key(identity.public_key_spki).hex(),
    }
    cert = identity.certificate
    if cert is not None:
        info.update(
            certificate_subject=cert.subject.rfc4514_string(),
            certificate_issuer=cert.issuer.rfc4514_string(),
            certificate_not_before=cert.not_valid_before_utc.isoformat(),
            certificate_not_after=cert.not_valid_after_utc.isoformat(),
            certificate=identity.certificate_chain[0].hex(),
            chain_length=len(identity.certificate_chain),
        )
    if as_json:
        _out(json.dumps(info, indent=2))
        return
    labels = {
        "public_key": "public key (SPKI DER, hex)",
        "public_key_xy": "public key (X||Y, hex)",
        "certificate_subject": "certificate subject",
        "certificate_issuer": "certificate issuer",
        "certificate_not_before": "valid from",
        "certificate_not_after": "valid until",
        "certificate": "certificate (DER, hex)",
        "chain_length": "chain length",
    }
    for key, value in info.items():
        _out(f"{labels[key]}: {value}")


# -- CAs ------------------------------------------------------------------------------------------


def _ca_add(args: argparse.Namespace, store: CredentialStore) -> None:
    certs = load_certificates(_read(args.file), str(args.file))
    cas = [TrustedCa(certificate_der(c), auto_registration=args.auto_registration) for c in certs]
    with store.batch():
        for ca in cas:
            store.put_trusted_ca(ca)
    for ca in cas:
        auto = "on" if ca.auto_registration else "off"
        _out(f"trusted {ca.subject} sha256:{ca.fingerprint} (auto-registration {auto})")


def _ca_list(args: argparse.Namespace, store: CredentialStore) -> None:
    rows: list[dict[str, Any]] = [
        {
            "subject": ca.subject,
            "sha256": ca.fingerprint,
            "not_after": ca.cert.not_valid_after_utc.isoformat(),
            "auto_registration": ca.auto_registration,
        }
        for ca in store.trusted_cas()
    ]
    if args.json:
        _out(json.dumps(rows, indent=2))
        return
    _table(["SHA256", "AUTO", "NOT_AFTER", "SUBJECT"],
           [[r["sha256"][:16], "yes" if r["auto_registration"] else "no",
             r["not_after"][:10], r["subject"]] for r in rows])  # fmt: skip


def _ca_remove(args: argparse.Namespace, store: CredentialStore) -> None:
    removed = store.remove_trusted_ca(args.sha256)
    if removed is None:
        raise Failed(f"sha256: no trusted CA with fingerprint {args.sha256!r}")
    _out(f"removed {removed.subject} sha256:{removed.fingerprint}")


# -- devices --------------------------------------------------------------------------------------

_MODE_OPTIONS = {
    SecurityMode.PSK: {"identity", "key"},
    SecurityMode.RPK: {"public_key"},
    SecurityMode.X509: {"cert"},
    SecurityMode.EST: {"cert"},
    SecurityMode.NOSEC: set(),
}


def _device_add(args: argparse.Namespace, store: CredentialStore) -> None:
    device = _device_from_args(args)
    if store.get_device(device.endpoint) is not None and not args.replace:
        raise Failed(f"endpoint: {device.endpoint!r} exists already (--replace overwrites it)")
    store.put_device(device)
    if device.trusts_ca and not store.trusted_cas():
        _note("note: no trusted CA yet: add the CA that issues device certificates (ca add)")
    state = "" if device.active else " (inactive)"
    _out(f"added {device.mode.label} device {device.endpoint!r}{state}: {_identity_of(device)}")


def _device_from_args(args: argparse.Namespace) -> DeviceCredentials:
    try:
        mode = SecurityMode.parse(args.mode)
    except ValueError as exc:
        raise UsageError(f"--mode: {exc}") from None
    for name in ("identity", "key", "public_key", "cert"):
        if getattr(args, name) is not None and name not in _MODE_OPTIONS[mode]:
            option = "--" + name.replace("_", "-")
            raise UsageError(f"{option}: not used with --mode {mode.label}")
    for name in sorted(_MODE_OPTIONS[mode] - {"cert"}):
        if getattr(args, name) is None:
            raise UsageError(f"--{name.replace('_', '-')}: required with --mode {mode.label}")
    active = not args.inactive
    ep = args.endpoint
    with _as_usage():
        if mode is SecurityMode.PSK:
            identity = parse_psk_identity(args.identity, "--identity")
            key = parse_hex(args.key, "--key")
            return _field_errors(
                lambda: DeviceCredentials.for_psk(ep, identity, key, active=active),
                {"psk_identity": "--identity", "psk_key": "--key"},
            )
        if mode is SecurityMode.RPK:
            path = Path(args.public_key)
            if path.is_file():
                spki = _file_value(lambda: load_public_key(path.read_bytes(), str(path)))
            else:
                spki = load_public_key(args.public_key, "--public-key")
            return DeviceCredentials.for_rpk(ep, spki, active=active)
        if mode.uses_certificates:
            cert = None if args.cert is None else _read_certificate(args.cert, "--cert")
            est = mode is SecurityMode.EST
            return DeviceCredentials.for_x509(ep, cert, est=est, active=active)
        return DeviceCredentials.for_nosec(ep, active=active)


@contextmanager
def _as_usage() -> Iterator[None]:
    """CredentialErrors from values typed on the command line are usage errors (exit 2)."""
    try:
        yield
    except CredentialError as exc:
        raise UsageError(str(exc)) from None


def _field_errors(
    build: Callable[[], DeviceCredentials], options: dict[str, str]
) -> DeviceCredentials:
    """Rename record fields to the options they came from (``psk_key`` -> ``--key``)."""
    try:
        return build()
    except CredentialError as exc:
        raise CredentialError(options.get(exc.field, exc.field), exc.reason) from None


def _file_value(load: Callable[[], bytes]) -> bytes:
    try:
        return load()
    except CredentialError as exc:
        raise Failed(str(exc)) from None


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise Failed(f"{path}: {exc.strerror or exc}") from None


def _read_certificate(path: Path, option: str) -> x509.Certificate:
    data = _read(path)
    try:
        return load_certificate(data, f"{option} {path}")
    except CredentialError as exc:
        raise Failed(str(exc)) from None


def _identity_of(device: DeviceCredentials) -> str:
    summary = device.public_summary()
    if device.psk_identity is not None:
        return f"identity {summary['psk_identity']!r}"
    if device.rpk_spki is not None:
        return f"public key {short_fingerprint(device.rpk_spki)}"
    if device.certificate is not None:
        sha = summary["certificate_sha256"][:16]
        return f"certificate {summary['certificate_subject']} sha256:{sha}"
    if device.trusts_ca:
        return "any certificate from a trusted CA naming it in CN/SAN"
    return "no credentials (NoSec)"


def _device_list(args: argparse.Namespace, store: CredentialStore) -> None:
    devices = store.devices()
    if args.json:
        _out(json.dumps([d.public_summary() for d in devices], indent=2, ensure_ascii=False))
        return
    _table(["ENDPOINT", "MODE", "ACTIVE", "IDENTITY"],
           [[d.endpoint, d.mode.label, "yes" if d.active else "no", _identity_of(d)]
            for d in devices])  # fmt: skip


def _device_show(args: argparse.Namespace, store: CredentialStore) -> None:
    device = _existing(store, args.endpoint)
    info = device.public_summary()
    if args.show_secret and device.psk_key is not None:
        info["psk_key"] = device.psk_key.hex()
    elif device.psk_key is not None:
        info["psk_key"] = "<hidden: --show-secret prints it>"
    if args.json:
        _out(json.dumps(info, indent=2, ensure_ascii=False))
        return
    for key, value in info.items():
        _out(f"{key}: {value}")


def _device_remove(args: argparse.Namespace, store: CredentialStore) -> None:
    _existing(store, args.endpoint)
    store.remove_device(args.endpoint)
    _out(f"removed device {args.endpoint!r}")


def _device_activate(args: argparse.Namespace, store: CredentialStore) -> None:
    _set_active(store, args.endpoint, True)


def _device_deactivate(args: argparse.Namespace, store: CredentialStore) -> None:
    _set_active(store, args.endpoint, False)


def _set_active(store: CredentialStore, endpoint: str, active: bool) -> None:
    device = _existing(store, endpoint)
    store.put_device(attrs.evolve(device, active=active))
    _out(f"device {endpoint!r} {'activated' if active else 'deactivated'}")


def _existing(store: CredentialStore, endpoint: str) -> DeviceCredentials:
    device = store.get_device(endpoint)
    if device is None:
        raise Failed(f"endpoint: no device {endpoint!r}")
    return device


# -- import / export ------------------------------------------------------------------------------


def _export(args: argparse.Namespace, store: CredentialStore) -> None:
    document = export_document(store, encoding=args.encoding)
    text = json.dumps(document, indent=2, ensure_ascii=False) + "\n"
    if args.file == "-":
        sys.stdout.write(text)
    else:
        write_private(args.file, text.encode("utf-8"))
    where = "stdout" if args.file == "-" else f"{args.file} (mode 0600)"
    _note(
        f"exported {len(document['devices'])} devices, {len(document['trusted_cas'])} CAs"
        f"{' and the server identity' if document['server'] else ''} to {where}; "
        "it holds secrets"
    )


def _import(args: argparse.Namespace, store: CredentialStore) -> None:
    name = "stdin" if args.file == "-" else args.file
    raw = sys.stdin.buffer.read() if args.file == "-" else _read(Path(args.file))
    try:
        document = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise Failed(f"{name}: not JSON: {exc}") from None
    try:
        summary = import_document(store, document, replace=args.replace)
    except CredentialError as exc:
        raise Failed(f"{name}: {exc}") from None
    server = " and the server identity" if summary.server_identity else ""
    _out(f"imported {summary.devices} devices, {summary.trusted_cas} CAs{server} from {name}")


# -- output ---------------------------------------------------------------------------------------


def _table(header: list[str], rows: list[list[str]]) -> None:
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(header)]
    for row in [header, *rows]:
        cells = [c.ljust(w) for c, w in zip(row[:-1], widths[:-1], strict=True)]
        _out("  ".join([*cells, row[-1]]).rstrip())


# -- api-token ------------------------------------------------------------------------------------


def _token_create(args: argparse.Namespace, store: CredentialStore) -> None:
    problem = check_name(args.name)
    if problem is not None:
        raise UsageError(problem)
    tokens = api_token_store(store)
    if not args.replace and any(t.name == args.name for t in tokens.tokens()):
        raise Failed(f"a token named {args.name!r} exists (--replace to make a new one)")
    secret = new_secret()
    tokens.put_token(ApiToken(args.name, Role(args.role), digest(secret)))
    _out(secret)
    _note(f"{args.role} token {args.name!r}: send it as 'Authorization: Bearer <token>' or "
          "set LWM2M_API_TOKEN; it is not shown again")  # fmt: skip


def _token_list(args: argparse.Namespace, store: CredentialStore) -> None:
    tokens = api_token_store(store).tokens()
    if args.json:
        _out(json.dumps([{"name": t.name, "role": t.role.value, "created_ms": t.created_ms}
                         for t in tokens], indent=2))  # fmt: skip
        return
    for token in tokens:
        _out(f"{token.name}\t{token.role.value}")


def _token_revoke(args: argparse.Namespace, store: CredentialStore) -> None:
    if api_token_store(store).remove_token(args.name) is None:
        raise Failed(f"no token named {args.name!r}")
    _note(f"revoked {args.name!r}: it is refused from now on")
