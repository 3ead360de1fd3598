"""``lwm2m-models``: list, show and convert LwM2M object models.

    lwm2m-models list [--models-dir DIR]... [--json]
    lwm2m-models show ID[:VERSION] [--models-dir DIR]... [--json] [--descriptions]
    lwm2m-models convert FILE.xml... [-o DIR]

Exit status: 0 ok; 1 when a model file could not be loaded (each problem is printed to stderr
as ``file[:line]: field: reason``; every other model is still listed or converted); 2 for a
usage error or an unknown object.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from . import json_models
from .cli_support import accept_negative_numbers, add_version
from .ddf import copyright_line, load_ddf
from .errors import ModelError
from .pipes import quiet_on_broken_pipe
from .registry import ModelEntry, ModelRegistry

EXIT_OK = 0
EXIT_BROKEN_FILE = 1
EXIT_USAGE = 2

_TARGET = re.compile(r"/?([0-9]{1,5})(?:[:@]([0-9]+(?:\.[0-9]+)*))?")
_RANGE_WIDTH = 32


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lwm2m-models",
        description="List, show and convert LwM2M object models (built-in OMA registry models "
        "plus *.json / *.xml files in --models-dir folders).",
    )
    add_version(parser)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def models_dir(sub: argparse.ArgumentParser) -> None:
        sub.add_argument(
            "--models-dir",
            action="append",
            default=[],
            metavar="DIR",
            type=Path,
            help="folder of *.json / *.xml models overriding the built-ins (repeatable)",
        )

    listing = commands.add_parser("list", help="list every known object model and version")
    models_dir(listing)
    listing.add_argument("--json", action="store_true", help="print JSON instead of a table")

    show = commands.add_parser("show", help="show one object model and its resources")
    show.add_argument("target", metavar="ID[:VERSION]", help="object id, e.g. 3 or 3303:1.0")
    models_dir(show)
    show.add_argument("--json", action="store_true", help="print the model as a JSON model file")
    show.add_argument(
        "-d", "--descriptions", action="store_true", help="also print resource descriptions"
    )

    convert = commands.add_parser("convert", help="convert DDF XML files to JSON model files")
    convert.add_argument("files", nargs="+", type=Path, metavar="FILE.xml")
    convert.add_argument(
        "-o",
        "--output",
        type=Path,
        default=Path("."),
        metavar="DIR",
        help="folder for the JSON files, one <id>-<version>.json per object (default: .)",
    )
    accept_negative_numbers(parser)
    return parser


def _report(errors: Sequence[ModelError], err: TextIO) -> None:
    for error in errors:
        print(str(error), file=err)


def _table(rows: Sequence[Sequence[str]], out: TextIO) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=True)]
        print("  ".join(cells).rstrip(), file=out)


def _list(registry: ModelRegistry, as_json: bool, out: TextIO) -> None:
    entries = registry.entries()
    if as_json:
        data = [
            {
                "id": e.model.id,
                "version": e.model.version,
                "name": e.model.name,
                "lwm2mVersion": e.model.lwm2m_version,
                "urn": e.model.urn,
                "source": e.origin,
            }
            for e in entries
        ]
        print(json.dumps(data, indent=2, ensure_ascii=False), file=out)
        return
    rows = [["ID", "VERSION", "NAME", "SOURCE"]]
    rows += [[str(e.model.id), e.model.version, e.model.name, e.origin] for e in entries]
    _table(rows, out)


def _clip(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def _wrap(text: str, indent: str = "") -> str:
    paragraphs = [p for p in re.split(r"\n\s*\n", text.strip()) if p.strip()]
    return "\n\n".join(
        textwrap.fill(" ".join(p.split()), 100, initial_indent=indent, subsequent_indent=indent)
        for p in paragraphs
    )


def _show(
    registry: ModelRegistry, entry: ModelEntry, args: argparse.Namespace, out: TextIO
) -> None:
    model = entry.model
    if args.json:
        out.write(json_models.dumps([(model, entry.source)]))
        return
    print(f"Object {model.id}: {model.name}", file=out)
    facts = [
        ("Version", f"{model.version} (LwM2M {model.lwm2m_version})"),
        ("URN", model.urn or "-"),
        ("Instances", "multiple" if model.multiple else "single"),
        ("Mandatory", "yes" if model.mandatory else "no"),
        ("Source", entry.origin),
    ]
    provenance = [entry.source[k] for k in ("file", "license", "copyright") if entry.source.get(k)]
    if provenance:
        facts.append(("", ", ".join(provenance)))
    others = [v for v in registry.versions(model.id) if v != model.version]
    if others:
        facts.append(("Other versions", ", ".join(others)))
    for label, value in facts:
        print(f"  {label + ':' if label else '':<16}{value}", file=out)
    if model.description:
        print(file=out)
        print(_wrap(model.description, "  "), file=out)
    print(file=out)
    rows = [["ID", "NAME", "OPS", "INSTANCES", "MANDATORY", "TYPE", "UNITS", "RANGE"]]
    for resource in (model.resources[k] for k in sorted(model.resources)):
        rows.append(
            [
                str(resource.id),
                resource.name,
                resource.operations.value or "-",
                "multiple" if resource.multiple else "single",
                "yes" if resource.mandatory else "no",
                resource.type.value,
                _clip(resource.units, 16),
                _clip(resource.range_enumeration, _RANGE_WIDTH),
            ]
        )
    if len(rows) == 1:
        print("  (no resources)", file=out)
    else:
        _table(rows, out)
    if args.descriptions:
        for resource in (model.resources[k] for k in sorted(model.resources)):
            print(file=out)
            print(f"{resource.id} {resource.name}", file=out)
            if resource.range_enumeration:
                print(_wrap(f"Range: {resource.range_enumeration}", "    "), file=out)
            if resource.description:
                print(_wrap(resource.description, "    "), file=out)
    if model.description2:
        print(file=out)
        print(_wrap(model.description2, "  "), file=out)


def _convert(files: Sequence[Path], output: Path, out: TextIO, err: TextIO) -> int:
    missing = [f for f in files if not f.is_file()]
    if missing:
        for path in missing:
            print(f"lwm2m-models convert: no such file: {path}", file=err)
        return EXIT_USAGE
    status = EXIT_OK
    for path in files:
        try:
            models = load_ddf(path)
        except ModelError as exc:
            _report([exc], err)
            status = EXIT_BROKEN_FILE
            continue
        source = {"file": path.name}
        copyright_text = copyright_line(path.read_bytes())
        if copyright_text:
            source["copyright"] = copyright_text
        output.mkdir(parents=True, exist_ok=True)
        for model in models:
            target = output / f"{model.id}-{model.version}.json"
            json_models.dump(target, [(model, source)])
            print(f"{path} -> {target} (object {model.id} {model.name} {model.version})", file=out)
    return status


def run(argv: Sequence[str] | None, out: TextIO, err: TextIO) -> int:
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exc:  # argparse: --help (0) or a usage error (2)
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    if args.command == "convert":
        return _convert(args.files, args.output, out, err)

    registry = ModelRegistry(args.models_dir)
    status = EXIT_BROKEN_FILE if registry.errors else EXIT_OK
    _report(registry.errors, err)
    if args.command == "list":
        _list(registry, args.json, out)
        return status

    match = _TARGET.fullmatch(args.target.strip())
    if not match:
        print(f"lwm2m-models show: expected ID or ID:VERSION, got {args.target!r}", file=err)
        return EXIT_USAGE
    object_id, version = int(match.group(1)), match.group(2)
    entry = registry.entry(object_id, version)
    if entry is None:
        known = registry.versions(object_id)
        if known:
            reason = f"object {object_id} has no version {version} (known: {', '.join(known)})"
        else:
            reason = f"unknown object {object_id}"
        print(f"lwm2m-models show: {reason}", file=err)
        return EXIT_USAGE
    _show(registry, entry, args, out)
    return status


@quiet_on_broken_pipe  # ``lwm2m-models list | head``: stop quietly
def main(argv: Sequence[str] | None = None) -> int:
    return run(argv, sys.stdout, sys.stderr)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
