"""Firmware and software packages over HTTP (docs/firmware.md, "Packages"), and the HTTP side of
the download server.

    POST   /api/packages?kind=&name=&version=[&profile=]   upload (body: the bytes)
    GET    /api/packages                                   every package, oldest first
    GET    /api/packages/{id}                              one package
    DELETE /api/packages/{id}                              delete an unused package (409 if used)
    GET    /fw/{token}                                     a device's download (no bearer token:
                                                           the grant's token is the credential)

The upload body is the raw image (``application/octet-stream``), or ``multipart/form-data``
with the image in a part named ``file`` (the other fields may come as form fields instead of
the query). The size is checked against ``firmware.max_package_size`` before anything is read
when the request declares a ``Content-Length``, and while reading otherwise: 413, naming the
setting. Hashing and writing the bytes run in a worker thread (a 16 MiB image must not stall
the CoAP listeners); the metadata is written on the event loop with the store's other writes.

Uploading the same bytes again answers 200 with the package as first uploaded (content
addressed: one image, one package); a new package is 201 with ``Location``.

The routes exist when the operations object has a package library (``ops.packages``: the real
server always does); test doubles without one get the rest of the API unchanged.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import BodyPartReader, web

from lwm2m_runtime.http_errors import ApiError, bad_request
from object_models.errors import Lwm2mError, ResponseCode

from ..firmware.contracts import Package, PackageKind
from ..firmware.downloads import DownloadServer
from ..firmware.packages import Library, PackageTooLarge, check_label, check_package_id
from ..operations import ServerOperations

LIBRARY: web.AppKey[Library] = web.AppKey("lwm2m_packages", Library)
DOWNLOADS: web.AppKey[DownloadServer] = web.AppKey("lwm2m_downloads", DownloadServer)
READ_CHUNK = 256 * 1024


def add_routes(app: web.Application, ops: ServerOperations) -> None:
    """Mount the package routes and ``GET /fw/{token}`` when ``ops`` has them."""
    library = getattr(ops, "packages", None)
    if isinstance(library, Library):
        app[LIBRARY] = library
        add = app.router.add_route
        add("GET", "/api/packages", list_packages)
        add("POST", "/api/packages", upload_package)
        add("GET", "/api/packages/{id}", show_package)
        add("DELETE", "/api/packages/{id}", delete_package)
    downloads = getattr(ops, "downloads", None)
    if isinstance(downloads, DownloadServer):
        app[DOWNLOADS] = downloads
        downloads.add_http_route(app)


def package_json(package: Package) -> dict[str, Any]:
    return {
        "id": package.id,
        "sha256": package.sha256,
        "kind": package.kind.value,
        "name": package.name,
        "version": package.version,
        "size": package.size,
        "createdMs": package.created_ms,
        "profile": package.profile,
    }


def _kind(text: str | None) -> PackageKind:
    if not text:
        raise bad_request("kind is required: firmware or software")
    try:
        return PackageKind(text)
    except ValueError:
        raise bad_request(f"kind {text!r} is not firmware or software") from None


def _library(request: web.Request) -> Library:
    return request.app[LIBRARY]


async def list_packages(request: web.Request) -> web.Response:
    packages = _library(request).packages()
    return web.json_response({"packages": [package_json(p) for p in packages]})


def _get(request: web.Request) -> Package:
    package_id = check_package_id(request.match_info["id"])
    package = _library(request).get(package_id)
    if package is None:
        raise ApiError(404, f"no package {package_id}", code=ResponseCode.NOT_FOUND)
    return package


async def show_package(request: web.Request) -> web.Response:
    return web.json_response(package_json(_get(request)))


async def delete_package(request: web.Request) -> web.Response:
    package = _get(request)
    library = _library(request)
    if not library.delete(package.id):
        raise ApiError(404, f"no package {package.id}", code=ResponseCode.NOT_FOUND)
    downloads = request.app.get(DOWNLOADS)
    if downloads is not None:
        downloads.forget_package(package.id)
    return web.json_response({"deleted": package.id})


async def _read_limited(part: BodyPartReader, limit: int) -> bytes:
    """Read a multipart part up to ``limit`` bytes; 413 as soon as it is longer."""
    body = bytearray()
    while True:
        chunk = await part.read_chunk(READ_CHUNK)
        if not chunk:
            break
        body += chunk
        if len(body) > limit:
            raise PackageTooLarge(None, limit)
    return bytes(body)


async def _body(request: web.Request, library: Library, fields: dict[str, str]) -> bytes:
    if request.content_type.startswith("multipart/"):
        reader = await request.multipart()
        data: bytes | None = None
        while True:
            part = await reader.next()
            if part is None:
                break
            if not isinstance(part, BodyPartReader):
                continue
            if part.name == "file":
                data = await _read_limited(part, library.max_size)
            elif part.name in ("kind", "type", "name", "version", "profile"):
                fields.setdefault(part.name, (await part.read(decode=True)).decode())
        if data is None:
            raise bad_request("a multipart upload needs the image in a part named 'file'")
        return data
    body = bytearray()
    async for chunk in request.content.iter_chunked(READ_CHUNK):
        body += chunk
        if len(body) > library.max_size:
            raise PackageTooLarge(None, library.max_size)
    return bytes(body)


async def upload_package(request: web.Request) -> web.Response:
    library = _library(request)
    library.check_size(request.content_length)  # 413 before reading a declared-too-large body
    fields = {k: v for k, v in request.query.items()}
    if not request.content_type.startswith("multipart/"):
        _check_fields(fields)  # a bad name is refused before the body is read
    data = await _body(request, library, fields)
    kind, name, version, profile = _check_fields(fields)
    if not data:
        raise bad_request("the package is empty (send the image as the request body)")
    package_id = await asyncio.to_thread(library.prepare, data)
    package, created = library.register(
        package_id, len(data), kind=kind, name=name, version=version, profile=profile
    )
    headers = {"Location": f"/api/packages/{package.id}"}
    return web.json_response(package_json(package), status=201 if created else 200, headers=headers)


def _check_fields(fields: dict[str, str]) -> tuple[PackageKind, str, str, str | None]:
    kind = _kind(fields.get("kind") or fields.get("type"))
    try:
        name = check_label(fields.get("name"), "name")
        version = check_label(fields.get("version"), "version")
        profile = check_label(fields.get("profile"), "profile", required=False)
    except Lwm2mError as exc:
        raise bad_request(exc.message) from None
    assert name is not None and version is not None
    return kind, name, version, profile
