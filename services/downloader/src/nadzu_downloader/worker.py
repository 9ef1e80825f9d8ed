"""A warm worker process: imports yt-dlp once, then runs one download job at a time.

Started by `pool.WorkerPool` as `python -m nadzu_downloader.worker` in its own process group, so a cancel
can kill it together with the ffmpeg or aria2c processes it started. It reads one JSON job per line on
stdin and writes JSON lines on its protocol channel (the original stdout): `ready`, `progress`, then
`done` or `error`. Everything else a library prints goes to stderr, so it cannot corrupt the protocol.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import socket
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import unquote, urlsplit

# Progress lines are sent at most this often; the parent throttles events further.
PROGRESS_INTERVAL_SECONDS = 0.1
HASH_CHUNK_BYTES = 1024 * 1024

VIDEO_FORMAT = "bv*+ba/b"
# Eight connections of 1 MiB pieces. `trunc` avoids writing zeros to reserve the file, so the file's
# allocated blocks show how much has arrived (aria2c sends yt-dlp no progress of its own).
ARIA2C_ARGS = [
    "--max-connection-per-server=8",
    "--split=8",
    "--min-split-size=1M",
    "--file-allocation=trunc",
    # aria2c holds up to 16 MiB in memory by default, so a small file's blocks would appear on disk
    # only at the end and progress would stand still until then.
    "--disk-cache=0",
    "--summary-interval=0",
    "--console-log-level=warn",
    "--download-result=hide",
    "--auto-file-renaming=false",
    "--allow-overwrite=true",
]
ARIA2C_POLL_SECONDS = 0.25
AUDIO_FORMAT = "ba/b"


class JobFailure(Exception):
    def __init__(self, kind: str, code: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.code = code
        self.message = message


class _Logger:
    """Send yt-dlp's warnings and errors to the parent as `log` messages, which it logs with the job's ids.

    It also remembers the outcomes yt-dlp only reports as text, such as a download skipped for being
    over the size limit.
    """

    def __init__(self, send: Any) -> None:
        self.send = send
        self.over_size_limit = False

    def _note(self, message: str) -> None:
        if "larger than max-filesize" in message:
            self.over_size_limit = True

    def debug(self, message: str) -> None:
        self._note(message)

    def info(self, message: str) -> None:
        self._note(message)

    def warning(self, message: str) -> None:
        self._note(message)
        self.send({"type": "log", "level": "warning", "message": message})

    def error(self, message: str) -> None:
        self._note(message)
        self.send({"type": "log", "level": "error", "message": message})


def _causes(error: BaseException) -> list[BaseException]:
    """Collect the error and what it wraps: yt-dlp nests the real cause in `exc_info` and `cause`."""
    seen: list[BaseException] = []
    pending: list[BaseException | None] = [error]
    while pending and len(seen) < 12:
        current = pending.pop(0)
        if current is None or any(current is known for known in seen):
            continue
        seen.append(current)
        exc_info = getattr(current, "exc_info", None)
        if isinstance(exc_info, tuple) and len(exc_info) > 1 and isinstance(exc_info[1], BaseException):
            pending.append(exc_info[1])
        cause = getattr(current, "cause", None)
        if isinstance(cause, BaseException):
            pending.append(cause)
        pending.extend([current.__cause__, current.__context__])
    return seen


def classify(error: BaseException) -> JobFailure:
    """Map a yt-dlp failure to a job error: permanent (fail now) or transient (retry later)."""
    from yt_dlp.networking.exceptions import HTTPError, ProxyError, TransportError
    from yt_dlp.utils import ContentTooShortError, UnsupportedError

    message = str(error).removeprefix("ERROR: ").strip() or type(error).__name__
    for cause in _causes(error):
        if isinstance(cause, JobFailure):
            return cause
        if isinstance(cause, HTTPError):
            status = cause.status
            if status in (404, 410):
                return JobFailure(
                    "permanent", "source-not-found", f"The media server answered {status}: {message}"
                )
            if status in (401, 403, 451):
                return JobFailure(
                    "permanent", "source-forbidden", f"The media server refused access ({status})."
                )
            if status in (408, 425, 429) or status >= 500:
                return JobFailure("transient", "source-unavailable", f"The media server answered {status}.")
            return JobFailure("permanent", "source-error", f"The media server answered {status}: {message}")
        if isinstance(cause, UnsupportedError):
            return JobFailure("permanent", "unsupported-url", "No extractor supports this URL.")
        if isinstance(cause, ProxyError):
            return JobFailure("transient", "proxy-unavailable", f"The egress proxy failed: {message}")
        if isinstance(cause, ContentTooShortError):
            return JobFailure("transient", "incomplete-download", "The server closed the transfer early.")
        if isinstance(cause, TransportError | TimeoutError | ConnectionError):
            return JobFailure(
                "transient", "network-error", f"The media server could not be reached: {message}"
            )
    if "bytes read" in message and "more expected" in message:
        return JobFailure("transient", "incomplete-download", "The server closed the transfer early.")
    if "Did not get any data blocks" in message:
        return JobFailure("permanent", "empty-media", "The server sent no data.")
    if "Unsupported URL" in message:
        return JobFailure("permanent", "unsupported-url", "No extractor supports this URL.")
    if "Requested format is not available" in message:
        return JobFailure("permanent", "format-not-available", "The requested format is not available.")
    return JobFailure("permanent", "download-failed", message[:500])


def check_host_allowed(url: str) -> None:
    """Reject a URL whose host resolves to a loopback, private or otherwise non-public address."""
    from nadzu_common.netguard import is_forbidden_address, is_local_name, literal_address

    host = urlsplit(url).hostname or ""
    if is_local_name(host):
        raise JobFailure("permanent", "forbidden-address", f"{host} is a local name.")
    literal = literal_address(host)
    if literal is not None:
        addresses = [literal]
    else:
        try:
            infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
        except socket.gaierror as error:
            raise JobFailure("transient", "dns-error", f"{host} could not be resolved: {error}") from None
        from ipaddress import ip_address

        addresses = [ip_address(str(info[4][0]).split("%", 1)[0]) for info in infos]
    for address in addresses:
        if is_forbidden_address(address):
            raise JobFailure("permanent", "forbidden-address", f"{host} resolves to a non-public address.")


class _Aria2cMonitor:
    """Report aria2c's progress from the file it writes, four times a second.

    The file's allocated blocks grow as pieces arrive, so `st_blocks` measures the bytes received (in
    4 KiB steps) even while several connections fill it out of order. The total is the size announced
    for the format (the HEAD of a direct link gives it); without one, `total_bytes` stays unknown.
    """

    def __init__(self, workdir: Path, send: Any, expected_total: int | None) -> None:
        self._workdir = workdir
        self._send = send
        self._expected_total = expected_total
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="aria2c-progress", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        previous: tuple[float, int] | None = None
        while not self._stopped.wait(ARIA2C_POLL_SECONDS):
            size = received = 0
            for part in self._workdir.glob("*.part"):
                try:
                    stat = part.stat()
                except FileNotFoundError:
                    continue
                size += stat.st_size
                received += min(stat.st_blocks * 512, stat.st_size)
            if not size:
                continue
            total = self._expected_total or None
            if total is not None:
                received = min(received, total)
            now = time.monotonic()
            speed = None
            if previous is not None and now > previous[0]:
                speed = max(0.0, (received - previous[1]) / (now - previous[0]))
            previous = (now, received)
            eta = int((total - received) / speed) if speed and total else None
            self._send(
                {
                    "type": "progress",
                    "downloaded_bytes": received,
                    "total_bytes": total,
                    "speed": speed,
                    "eta": eta,
                }
            )

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join(timeout=2)


def _direct_media_info(ydl: Any, url: str) -> dict[str, Any] | None:
    """Describe a URL that serves a media file directly, from one HEAD request; None for anything else.

    yt-dlp's generic extractor starts a full GET of the URL to sniff it, which on a slow server costs
    seconds before the download proper begins. A HEAD through yt-dlp's own networking (same proxy,
    cookies and headers) answers the same question.
    """
    from yt_dlp.networking import Request
    from yt_dlp.networking.exceptions import RequestError
    from yt_dlp.utils import determine_ext, mimetype2ext, url_basename

    try:
        response = ydl.urlopen(Request(url, method="HEAD"))
    except RequestError:
        return None  # the extractor will make its own request and report the error properly
    try:
        content_type = (response.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        length = response.headers.get("Content-Length")
        final_url = response.url
    finally:
        response.close()
    if not content_type.startswith(("video/", "audio/")) or content_type == "video/vnd.mpeg.dash.mpd":
        return None

    name = unquote(url_basename(final_url))
    title = name.rsplit(".", 1)[0] if "." in name else name
    ext = determine_ext(name, default_ext="") or mimetype2ext(content_type) or "bin"
    media_format: dict[str, Any] = {"format_id": "direct", "url": final_url, "ext": ext}
    if content_type.startswith("audio/"):
        media_format["vcodec"] = "none"
    if length and length.isdigit():
        media_format["filesize"] = int(length)
    return {
        "id": title or "media",
        "title": title or "media",
        "webpage_url": url,
        "direct": True,
        "extractor": "generic",
        "extractor_key": "Generic",
        "formats": [media_format],
    }


def _announced_size(info: dict[str, Any]) -> int | None:
    """Return the byte size the source announced for a single-format download, or None."""
    formats = info.get("formats") or []
    if info.get("filesize"):
        return int(info["filesize"])
    if len(formats) == 1 and formats[0].get("filesize"):
        return int(formats[0]["filesize"])
    return None


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(HASH_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def _has_codec(value: object) -> bool:
    """Return whether yt-dlp's `vcodec` value promises a video stream (None means unknown)."""
    return value is not None and str(value) != "none"


def probe_media(path: Path) -> tuple[set[str], float | None]:
    """Open the file with FFmpeg's demuxers (through PyAV) and return its stream kinds and duration.

    In-process it takes about 2 ms, where starting ffprobe costs about 70 ms per file on a 2-core machine
    (measured for docs/benchmarks.md). Both read the same container headers with the same libraries.
    """
    import av

    try:
        with av.open(str(path), metadata_errors="ignore") as container:
            kinds: set[str] = {str(stream.type) for stream in container.streams}
            duration = container.duration
    except (av.error.FFmpegError, OSError, UnicodeDecodeError) as error:
        raise JobFailure("permanent", "corrupt-media", f"The file is not valid media: {error}") from None
    seconds = round(duration / av.time_base, 3) if duration else None
    return kinds, seconds


def validate_media(path: Path, info: dict[str, Any]) -> float | None:
    """Check that the file parses, has the promised streams and the expected duration.

    Returns the measured duration. Raises `corrupt-media` for a file that fails any check, so a
    truncated or garbled file is never reported as completed.
    """
    kinds, measured = probe_media(path)
    if not kinds & {"video", "audio"}:
        raise JobFailure("permanent", "corrupt-media", "The file has no audio or video stream.")
    requested = info.get("requested_downloads") or [info]
    if any(_has_codec(item.get("vcodec")) for item in requested) and "video" not in kinds:
        raise JobFailure("permanent", "corrupt-media", "The format promised video but the file has none.")

    expected = info.get("duration")
    if expected and measured is not None:
        tolerance = max(2.0, 0.05 * float(expected))
        if abs(measured - float(expected)) > tolerance:
            message = f"The file lasts {measured:.1f} s but the source reported {float(expected):.1f} s."
            raise JobFailure("permanent", "corrupt-media", message)
    return measured


def _options(job: dict[str, Any], workdir: Path, hook: Any, logger: _Logger) -> dict[str, Any]:
    requested = job["format"]
    options: dict[str, Any] = {
        "outtmpl": {"default": str(workdir / "media.%(ext)s")},
        "noplaylist": True,
        "quiet": True,
        "noprogress": True,
        "logger": logger,
        "progress_hooks": [hook],
        "socket_timeout": job["stall_timeout"],
        "max_filesize": job["max_filesize"],
        "retries": 2,
        "fragment_retries": 3,
        # yt-dlp would otherwise skip a fragment that keeps failing and join the rest: a gap in the
        # file that still plays, and that no duration check can see when the source gave none.
        "skip_unavailable_fragments": False,
        "concurrent_fragment_downloads": 8,
        "overwrites": True,
        "continuedl": False,
        "cachedir": False,
        "color": {"stderr": "never", "stdout": "never"},
    }
    if job.get("proxy"):
        options["proxy"] = job["proxy"]
    if job.get("cookies_file"):
        # yt-dlp writes its cookie jar back to the file when it closes. The operator's file must stay
        # as it is (it may be read-only), so each job gets a private copy in its work directory.
        private_copy = workdir / ".cookies.txt"
        shutil.copyfile(job["cookies_file"], private_copy)
        private_copy.chmod(0o600)
        options["cookiefile"] = str(private_copy)
    if job.get("aria2c"):
        # Direct HTTP(S) media only: yt-dlp keeps its own downloader for HLS and DASH, where the
        # concurrent fragments above give the speed instead.
        options["external_downloader"] = {"http": "aria2c"}
        options["external_downloader_args"] = {"aria2c": ARIA2C_ARGS}

    if requested == "video":
        options["format"] = VIDEO_FORMAT
        options["merge_output_format"] = "mp4/mkv"
    elif requested == "audio":
        options["format"] = AUDIO_FORMAT
        options["postprocessors"] = [{"key": "FFmpegExtractAudio", "preferredcodec": "best"}]
    else:
        options["format"] = requested
        options["merge_output_format"] = "mp4/mkv"
    return options


def _finished_file(info: dict[str, Any], workdir: Path) -> Path | None:
    candidates = [info.get("filepath")]
    candidates += [item.get("filepath") for item in info.get("requested_downloads") or []]
    for candidate in candidates:
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    leftovers = [
        p
        for p in workdir.iterdir()
        if p.is_file() and not p.name.startswith(".") and not p.name.endswith((".part", ".ytdl"))
    ]
    return leftovers[0] if len(leftovers) == 1 else None


def run_job(job: dict[str, Any], send: Any) -> dict[str, Any]:
    from yt_dlp import YoutubeDL

    workdir = Path(job["workdir"])
    workdir.mkdir(parents=True, exist_ok=True)
    # Commands may come from any publisher on the bus, not only the gateway that checked the URL.
    if urlsplit(job["url"]).scheme.lower() not in ("http", "https"):
        raise JobFailure("permanent", "invalid-url", "Only http and https URLs can be downloaded.")
    if not job.get("allow_private"):
        check_host_allowed(job["url"])

    last_sent = 0.0

    def hook(status: dict[str, Any]) -> None:
        nonlocal last_sent
        now = time.monotonic()
        finished = status.get("status") == "finished"
        if not finished and now - last_sent < PROGRESS_INTERVAL_SECONDS:
            return
        last_sent = now
        total = status.get("total_bytes") or status.get("total_bytes_estimate")
        downloaded = status.get("downloaded_bytes")
        if finished and total is None:
            total = downloaded
        send(
            {
                "type": "progress",
                "downloaded_bytes": downloaded,
                "total_bytes": int(total) if total else None,
                "speed": status.get("speed"),
                "eta": status.get("eta"),
                "finished": finished,
            }
        )

    def postprocessing(status: dict[str, Any]) -> None:
        # The parent's stall watchdog pauses while ffmpeg works, because post-processing reports no bytes.
        phase = "postprocessing" if status.get("status") == "started" else "downloading"
        send({"type": "phase", "phase": phase})

    logger = _Logger(send)
    options = _options(job, workdir, hook, logger)
    options["postprocessor_hooks"] = [postprocessing]
    with YoutubeDL(options) as ydl:
        info = _direct_media_info(ydl, job["url"]) or ydl.extract_info(job["url"], download=False)
        if info is None:
            raise JobFailure("permanent", "extraction-failed", "No media information could be extracted.")
        if info.get("_type") in ("playlist", "multi_video"):
            raise JobFailure(
                "permanent", "playlist-not-supported", "Playlists are not supported; send one item's URL."
            )
        if info.get("is_live") or info.get("live_status") in ("is_live", "is_upcoming"):
            raise JobFailure("permanent", "live-not-supported", "Live streams are not supported.")
        duration = info.get("duration")
        if duration and duration > job["max_duration"]:
            raise JobFailure(
                "permanent",
                "too-long",
                f"The media lasts {duration:.0f} s; the limit is {job['max_duration']:.0f} s.",
            )
        # The parent's stall watch covers the transfer from here on, not the extraction before it.
        send({"type": "phase", "phase": "downloading"})
        monitor = _Aria2cMonitor(workdir, send, _announced_size(info)) if job.get("aria2c") else None
        try:
            info = ydl.process_ie_result(info, download=True)
        finally:
            if monitor is not None:
                monitor.stop()

    path = _finished_file(info, workdir)
    if path is None and logger.over_size_limit:
        raise JobFailure(
            "permanent", "too-large", f"The file is larger than the limit of {job['max_filesize']} bytes."
        )
    if path is None:
        size_hint = info.get("filesize") or info.get("filesize_approx")
        if size_hint and size_hint > job["max_filesize"]:
            raise JobFailure(
                "permanent",
                "too-large",
                f"The media is {size_hint} bytes; the limit is {job['max_filesize']}.",
            )
        raise JobFailure("permanent", "empty-media", "The download produced no file.")
    size = path.stat().st_size
    if size == 0:
        raise JobFailure("permanent", "empty-media", "The server sent an empty file.")
    if size > job["max_filesize"]:
        raise JobFailure(
            "permanent", "too-large", f"The file is {size} bytes; the limit is {job['max_filesize']}."
        )

    # Hash while the media check reads the file: hashlib releases the GIL, so the two overlap.
    with ThreadPoolExecutor(max_workers=1) as pool:
        digest = pool.submit(_sha256, path)
        measured = validate_media(path, info)
        sha256 = digest.result()
    duration = info.get("duration") or measured
    # Extractors that know the duration are checked before the download. For the rest (plain files,
    # many generic pages) the file itself is the first place the duration is known.
    if duration and duration > job["max_duration"]:
        raise JobFailure(
            "permanent",
            "too-long",
            f"The media lasts {duration:.0f} s; the limit is {job['max_duration']:.0f} s.",
        )
    return {
        "type": "done",
        "path": str(path),
        "ext": path.suffix.lstrip("."),
        "size": size,
        "sha256": sha256,
        "title": info.get("title"),
        "duration": duration,
    }


def _warm_up() -> None:
    """Import yt-dlp and load what its first job would otherwise load: this keeps the worker warm.

    Building the request handlers imports requests, urllib3 and websockets, and direct links use the
    generic extractor. Together they cost about a second on a job that finds them cold.
    """
    import av  # noqa: F401  the media check's libraries, loaded once
    from yt_dlp import YoutubeDL

    with YoutubeDL({"quiet": True, "no_warnings": True}) as ydl:
        ydl.get_info_extractor("Generic")
        getattr(ydl, "_request_director", None)


def serve(commands: TextIO, protocol: TextIO) -> None:
    lock = threading.Lock()

    def send(message: dict[str, Any]) -> None:
        # The aria2c monitor thread sends progress too; one line must never interleave with another.
        line = json.dumps(message) + "\n"
        with lock:
            protocol.write(line)
            protocol.flush()

    _warm_up()
    send({"type": "ready", "pid": os.getpid()})
    for line in commands:
        if not line.strip():
            continue
        job = json.loads(line)
        try:
            send(run_job(job, send))
        except JobFailure as failure:
            send({"type": "error", "kind": failure.kind, "code": failure.code, "message": failure.message})
        except Exception as error:
            classified = classify(error)
            send(
                {
                    "type": "error",
                    "kind": classified.kind,
                    "code": classified.code,
                    "message": classified.message,
                }
            )


def _die_with_parent() -> None:
    """Kill this worker's process group when the downloader that started it is gone.

    A downloader killed with SIGKILL cannot stop its workers. One left running would keep writing into a
    job directory that the job's next attempt is using.
    """
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.2)
        os.killpg(os.getpgrp(), signal.SIGKILL)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def main() -> None:
    _die_with_parent()
    # Keep the real stdout for the protocol and point file descriptor 1 at stderr, so output from
    # yt-dlp or any child process cannot interleave with protocol lines.
    protocol = os.fdopen(os.dup(1), "w", buffering=1, encoding="utf-8")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    serve(sys.stdin, protocol)


if __name__ == "__main__":
    main()
