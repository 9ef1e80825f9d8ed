"""Safe file names for finished downloads.

Titles come from strangers: they may hold path separators, control characters, reserved device names or
hundreds of bytes of CJK and emoji. The result is one path component, valid on Linux, macOS and Windows
volumes, at most `MAX_NAME_BYTES` bytes of UTF-8, with the readable title kept where possible.
"""

from __future__ import annotations

import mimetypes
import re
import unicodedata

# Most file systems cap a name at 255 bytes; leave room for the extension and a temporary suffix.
MAX_NAME_BYTES = 200
_FORBIDDEN = re.compile(r'[\x00-\x1f\x7f<>:"/\\|?*\u200b-\u200f\u2028-\u202e\u2066-\u2069\ufeff]')
_WHITESPACE = re.compile(r"\s+")
_RESERVED = {
    "con",
    "prn",
    "aux",
    "nul",
    *(f"com{i}" for i in range(1, 10)),
    *(f"lpt{i}" for i in range(1, 10)),
}
_EXTENSION = re.compile(r"^[a-z0-9]{1,10}$")

_CONTENT_TYPES = {
    "mp4": "video/mp4",
    "m4a": "audio/mp4",
    "webm": "video/webm",
    "mkv": "video/x-matroska",
    "mp3": "audio/mpeg",
    "opus": "audio/ogg",
    "ogg": "audio/ogg",
    "flac": "audio/flac",
    "wav": "audio/wav",
    "ts": "video/mp2t",
    "mov": "video/quicktime",
}


def _truncate_utf8(text: str, max_bytes: int) -> str:
    encoded = text.encode("utf-8")
    if len(encoded) <= max_bytes:
        return text
    # Cut on a character boundary, then drop a trailing combining mark left without its base.
    cut = encoded[:max_bytes].decode("utf-8", "ignore")
    while cut and unicodedata.combining(cut[-1]):
        cut = cut[:-1]
    return cut


def safe_filename(title: str | None, extension: str, fallback: str = "download") -> str:
    """Build `<title>.<ext>` that is safe as a single path component."""
    ext = extension.lower().lstrip(".")
    if not _EXTENSION.match(ext):
        ext = "bin"

    name = unicodedata.normalize("NFC", title or "")
    name = _FORBIDDEN.sub("_", name)
    name = _WHITESPACE.sub(" ", name).strip(" .")
    name = _truncate_utf8(name, MAX_NAME_BYTES - len(ext) - 1).rstrip(" .")
    if not name or name.split(".")[0].lower() in _RESERVED:
        name = f"{fallback}_{name}" if name else fallback
    return f"{name}.{ext}"


def content_type_for(extension: str) -> str:
    ext = extension.lower().lstrip(".")
    known = _CONTENT_TYPES.get(ext)
    if known:
        return known
    guessed, _ = mimetypes.guess_type(f"file.{ext}")
    return guessed or "application/octet-stream"
