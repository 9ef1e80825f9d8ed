"""Checks on what a client asks to download: the URL and the format selector.

The gateway rejects what it can see in the URL itself, such as a loopback or private address written
literally in any spelling. Names that resolve to such addresses are the downloader's to reject, because
only the connection knows where a name leads.
"""

from __future__ import annotations

import re
from functools import lru_cache
from urllib.parse import urlsplit

from nadzu_common.netguard import is_forbidden_address, is_local_name, literal_address

from .problems import Problem

MAX_URL_LENGTH = 2048
MAX_FORMAT_LENGTH = 200
NAMED_FORMATS = ("video", "audio")

_CONTROL_OR_SPACE = re.compile(r"[\x00-\x20\x7f]")
# Characters of yt-dlp's format selector language; anything else cannot be a valid selector.
_SELECTOR_CHARACTERS = re.compile(r"^[A-Za-z0-9_+\-/\[\]<>=!*?.:~^$,()| ]+$")


def _invalid_url(detail: str, code: str) -> Problem:
    return Problem(
        422,
        "invalid-url",
        "Invalid URL",
        detail=detail,
        errors=[{"field": "url", "code": code, "message": detail}],
    )


def validate_download_url(url: str, allow_private: bool) -> str:
    """Return the URL when a downloader may fetch it, else raise a 422 problem saying why."""
    url = url.strip()
    if not url:
        raise _invalid_url("The URL is empty.", "empty")
    if len(url) > MAX_URL_LENGTH:
        raise _invalid_url(f"The URL is longer than {MAX_URL_LENGTH} characters.", "too-long")
    if _CONTROL_OR_SPACE.search(url):
        raise _invalid_url("The URL contains spaces or control characters.", "bad-characters")

    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as error:
        raise _invalid_url(f"The URL cannot be parsed: {error}.", "unparseable") from None
    if parts.scheme.lower() not in ("http", "https"):
        raise _invalid_url("Only http and https URLs can be downloaded.", "unsupported-scheme")
    host = (parts.hostname or "").lower()
    if not host:
        raise _invalid_url("The URL has no host.", "missing-host")
    if port == 0:
        raise _invalid_url("The URL's port 0 is not valid.", "invalid-port")

    if allow_private:
        return url

    name = host.rstrip(".")
    address = literal_address(host)
    if address is not None and is_forbidden_address(address):
        raise _invalid_url(
            f"The URL targets {address}, a loopback, private, link-local or otherwise non-public address.",
            "forbidden-address",
        )
    if is_local_name(name):
        raise _invalid_url(f"The URL targets {name}, a local name.", "forbidden-address")
    return url


@lru_cache(maxsize=1)
def _format_parser() -> object:
    # Imported lazily: yt-dlp takes a few hundred milliseconds to import and only this check needs it.
    from yt_dlp import YoutubeDL

    return YoutubeDL({"quiet": True, "no_warnings": True})


def validate_format(selector: str) -> str:
    """Accept `video`, `audio` or a yt-dlp format selector that yt-dlp itself can parse."""
    selector = selector.strip()
    if selector in NAMED_FORMATS:
        return selector

    problem = Problem(
        422,
        "invalid-format",
        "Invalid format",
        detail="Use 'video', 'audio' or a yt-dlp format selector such as 'bv*+ba/b'.",
        errors=[
            {"field": "format", "code": "invalid-format", "message": f"Cannot parse format {selector!r}."}
        ],
    )
    # A leading dash could read as an option to any tool that is handed the selector later.
    if not selector or selector.startswith("-") or len(selector) > MAX_FORMAT_LENGTH:
        raise problem
    if not _SELECTOR_CHARACTERS.match(selector):
        raise problem
    try:
        _format_parser().build_format_selector(selector)  # type: ignore[attr-defined]
    except Exception:  # yt-dlp raises SyntaxError and assorted errors for malformed selectors
        raise problem from None
    return selector
