"""Serving finished files from the shared downloads volume (read-only for the gateway)."""

from __future__ import annotations

import os
import unicodedata
from email.utils import formatdate
from pathlib import Path
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import FileResponse, MalformedRangeHeader, RangeNotSatisfiable, Response

from nadzu_common.messages import JobResult

from .problems import Problem


def content_disposition(filename: str) -> str:
    """An RFC 6266 header: an ASCII `filename` for old clients and the exact UTF-8 name in `filename*`."""
    ascii_name = unicodedata.normalize("NFKD", filename).encode("ascii", "ignore").decode()
    ascii_name = "".join(
        ch if 0x20 <= ord(ch) < 0x7F and ch not in '"\\%' else "_" for ch in ascii_name
    ).strip()
    if not ascii_name or ascii_name.startswith("."):
        ascii_name = "download" + Path(filename).suffix.encode("ascii", "ignore").decode()
    return f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(filename, safe='')}"


def resolve_file(downloads_dir: Path, result: JobResult) -> Path:
    """Return the finished file's path, refusing any stored path that leaves the downloads directory."""
    root = downloads_dir.resolve()
    candidate = (root / result.path).resolve()
    if root not in candidate.parents:
        raise Problem(410, "file-gone", "File gone", detail="The job's file is no longer available.")
    return candidate


def _etag_matches(header: str, etag: str) -> bool:
    candidates = [item.strip() for item in header.split(",")]
    return "*" in candidates or etag in candidates or f"W/{etag}" in candidates


def file_response(request: Request, downloads_dir: Path, result: JobResult) -> Response:
    path = resolve_file(downloads_dir, result)
    try:
        stat = os.stat(path)
    except FileNotFoundError:
        raise Problem(
            410, "file-gone", "File gone", detail="The job's file was removed from the volume."
        ) from None

    etag = f'"{result.sha256}"'
    headers = {
        "ETag": etag,
        "Last-Modified": formatdate(stat.st_mtime, usegmt=True),
        "Content-Disposition": content_disposition(result.filename),
        "Cache-Control": "private, max-age=0, must-revalidate",
        "X-Content-Type-Options": "nosniff",
    }
    if_none_match = request.headers.get("if-none-match")
    if if_none_match is not None and _etag_matches(if_none_match, etag):
        return Response(
            status_code=304, headers={k: v for k, v in headers.items() if k != "Content-Disposition"}
        )

    _reject_unsatisfiable_range(request, stat.st_size, etag, headers["Last-Modified"])
    return FileResponse(path, media_type=result.content_type, headers=headers, stat_result=stat)


def _reject_unsatisfiable_range(request: Request, size: int, etag: str, last_modified: str) -> None:
    """Raise a 416 problem for a Range that no byte of the file satisfies.

    Starlette's FileResponse serves satisfiable ranges (206, multipart for several) and honours `If-Range`;
    this check only gives its 416 the API's problem-details body.
    """
    http_range = request.headers.get("range")
    if_range = request.headers.get("if-range")
    if http_range is None or (if_range is not None and if_range not in (etag, last_modified)):
        return
    try:
        FileResponse._parse_range_header(http_range, size)
    except RangeNotSatisfiable:
        raise Problem(
            416,
            "range-not-satisfiable",
            "Range not satisfiable",
            detail=f"The file is {size} bytes; the requested range lies outside it.",
            headers={"Content-Range": f"bytes */{size}"},
        ) from None
    except MalformedRangeHeader:
        return
