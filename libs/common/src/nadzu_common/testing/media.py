"""Test media made by ffmpeg, and a local HTTP server that serves it the way media hosts do.

The server answers Range requests (206/416), can throttle each connection to a byte rate, and serves
whatever files its directory holds: MP4s, HLS playlists with segments, HTML pages that embed a video.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")
_TYPES = {
    ".mp4": "video/mp4",
    ".m3u8": "application/vnd.apple.mpegurl",
    ".ts": "video/mp2t",
    ".html": "text/html; charset=utf-8",
    ".m4a": "audio/mp4",
}


def make_video(
    path: Path,
    seconds: float = 2.0,
    size: str = "320x240",
    bitrate: str | None = None,
    noise: bool = False,
    title: str | None = None,
) -> Path:
    """Encode an H.264/AAC MP4 test clip with ffmpeg."""
    path.parent.mkdir(parents=True, exist_ok=True)
    video_filter = ["-vf", "noise=alls=40:allf=t"] if noise else []
    rate = ["-b:v", bitrate, "-maxrate", bitrate, "-minrate", bitrate, "-bufsize", bitrate] if bitrate else []
    metadata = ["-metadata", f"title={title}"] if title else []
    command = [
        "ffmpeg",
        "-loglevel",
        "error",
        "-y",
        "-f",
        "lavfi",
        "-i",
        f"testsrc2=size={size}:rate=25:duration={seconds}",
        "-f",
        "lavfi",
        "-i",
        f"sine=frequency=440:duration={seconds}",
        *video_filter,
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        *rate,
        "-g",
        "25",
        "-keyint_min",
        "25",
        "-sc_threshold",
        "0",
        "-pix_fmt",
        "yuv420p",
        "-c:a",
        "aac",
        "-b:a",
        "64k",
        "-shortest",
        "-movflags",
        "+faststart",
        *metadata,
        str(path),
    ]
    subprocess.run(command, check=True)
    return path


def make_hls(source: Path, directory: Path, segment_seconds: int = 1) -> Path:
    """Cut an MP4 into an HLS playlist with MPEG-TS segments; return the playlist path."""
    directory.mkdir(parents=True, exist_ok=True)
    playlist = directory / "index.m3u8"
    subprocess.run(
        [
            "ffmpeg",
            "-loglevel",
            "error",
            "-y",
            "-i",
            str(source),
            "-c",
            "copy",
            "-f",
            "hls",
            "-hls_time",
            str(segment_seconds),
            "-hls_playlist_type",
            "vod",
            "-hls_segment_filename",
            str(directory / "segment%03d.ts"),
            str(playlist),
        ],
        check=True,
    )
    return playlist


def make_embed_page(path: Path, video_name: str, title: str) -> Path:
    """Write an HTML page that embeds a video with `<video><source>`, as a plain web page would."""
    path.write_text(
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>{title}</title><meta property='og:title' content='{title}'></head>"
        f"<body><h1>{title}</h1><video controls><source src='{video_name}' type='video/mp4'></video>"
        "</body></html>",
        encoding="utf-8",
    )
    return path


def ffmpeg_available() -> bool:
    return shutil.which("ffmpeg") is not None


class MediaServer:
    """A threaded HTTP server on 127.0.0.1 serving `root`, with Range support and optional throttling."""

    def __init__(self, root: Path, rate_bytes_per_second: int | None = None, port: int = 0) -> None:
        self.root = root
        self.rate = rate_bytes_per_second
        self.requests: list[tuple[str, str]] = []
        # Paths whose transfers pause until the event is set (for tests that must act mid-download).
        self.gates: dict[str, threading.Event] = {}
        # Paths that misbehave: "status:<code>" answers that status, "truncate" closes the connection
        # halfway through the announced length, "empty" sends a 200 with no body, "drip" sends one byte
        # a second, "endless" streams zeros with no Content-Length, "cookie:<name>=<value>" answers 403
        # unless the request carries that cookie, "cut-then-ignore-range" cuts the first transfer short
        # and then answers every request, Range or not, with the whole file.
        self.faults: dict[str, str] = {}
        self.cut_once: set[str] = set()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                return

            def do_HEAD(self) -> None:
                self._serve(head=True)

            def do_GET(self) -> None:
                self._serve(head=False)

            def _serve(self, head: bool) -> None:
                path = unquote(urlsplit(self.path).path)
                server.requests.append((self.command, path))
                fault = server.faults.get(path, "")
                if fault.startswith("status:"):
                    self._plain(HTTPStatus(int(fault.split(":", 1)[1])), b"fault")
                    return
                if fault.startswith("cookie:") and fault.split(":", 1)[1] not in (
                    self.headers.get("Cookie") or ""
                ):
                    self._plain(HTTPStatus.FORBIDDEN, b"sign in first")
                    return
                if fault == "endless":
                    self._endless()
                    return
                if fault == "empty":
                    self.send_response(HTTPStatus.OK)
                    self.send_header("Content-Type", "video/mp4")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                file = (server.root / path.lstrip("/")).resolve()
                if server.root.resolve() not in file.parents or not file.is_file():
                    self._plain(HTTPStatus.NOT_FOUND, b"not found")
                    return

                size = file.stat().st_size
                start, end = 0, size - 1
                status = HTTPStatus.OK
                header = self.headers.get("Range")
                if fault == "cut-then-ignore-range":
                    if path not in server.cut_once:
                        server.cut_once.add(path)
                        fault = "truncate"
                    header = None
                if header:
                    match = _RANGE.match(header.strip())
                    if match and (match.group(1) or match.group(2)):
                        if match.group(1):
                            start = int(match.group(1))
                            end = int(match.group(2)) if match.group(2) else size - 1
                        else:
                            start = max(0, size - int(match.group(2)))
                        end = min(end, size - 1)
                        if start >= size or start > end:
                            self.send_response(HTTPStatus.REQUESTED_RANGE_NOT_SATISFIABLE)
                            self.send_header("Content-Range", f"bytes */{size}")
                            self.send_header("Content-Length", "0")
                            self.end_headers()
                            return
                        status = HTTPStatus.PARTIAL_CONTENT

                length = end - start + 1
                self.send_response(status)
                self.send_header("Content-Type", _TYPES.get(file.suffix, "application/octet-stream"))
                self.send_header("Content-Length", str(length))
                self.send_header("Accept-Ranges", "bytes")
                if status == HTTPStatus.PARTIAL_CONTENT:
                    self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
                self.end_headers()
                if head:
                    return
                gate = server.gates.get(path)
                if fault == "truncate":
                    self._send_file(file, start, length // 2, gate)
                    self.close_connection = True
                    return
                if fault == "drip":
                    self._drip(file, start, length)
                    return
                self._send_file(file, start, length, gate)

            def _endless(self) -> None:
                # No Content-Length and no end: the body lasts until the client hangs up (or 2 GB).
                self.send_response(HTTPStatus.OK)
                self.send_header("Content-Type", "video/mp4")
                self.send_header("Connection", "close")
                self.end_headers()
                block = bytes(64 * 1024)
                try:
                    for _ in range(32 * 1024):
                        self.wfile.write(block)
                except (BrokenPipeError, ConnectionResetError):
                    return

            def _drip(self, file: Path, start: int, length: int) -> None:
                with file.open("rb") as handle:
                    handle.seek(start)
                    for _ in range(min(length, 600)):
                        try:
                            self.wfile.write(handle.read(1))
                            self.wfile.flush()
                        except (BrokenPipeError, ConnectionResetError):
                            return
                        time.sleep(1)

            def _send_file(self, file: Path, start: int, length: int, gate: threading.Event | None) -> None:
                chunk = 64 * 1024
                sent = 0
                began = time.monotonic()
                try:
                    with file.open("rb") as handle:
                        handle.seek(start)
                        while sent < length:
                            data = handle.read(min(chunk, length - sent))
                            if not data:
                                break
                            self.wfile.write(data)
                            sent += len(data)
                            if gate is not None and sent >= min(length, 2 * chunk):
                                gate.wait(timeout=120)
                                gate = None
                            if server.rate:
                                ahead = sent / server.rate - (time.monotonic() - began)
                                if ahead > 0:
                                    time.sleep(ahead)
                except (BrokenPipeError, ConnectionResetError):
                    return

            def _plain(self, status: HTTPStatus, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

        class QuietServer(ThreadingHTTPServer):
            def handle_error(self, request: object, client_address: object) -> None:
                # Clients that hang up mid-transfer (a cancelled download) are expected here.
                return

        self._httpd = QuietServer(("127.0.0.1", port), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def url(self, name: str) -> str:
        from urllib.parse import quote

        return f"{self.base_url}/{quote(name)}"

    def start(self) -> MediaServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        for gate in self.gates.values():
            gate.set()
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> MediaServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
