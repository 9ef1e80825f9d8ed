"""Download a freshly made video through the running stack, printing live progress.

Run `make run` in one terminal and `make demo` in another. The demo encodes a short clip with ffmpeg,
serves it on 127.0.0.1 (throttled, so progress is visible), enqueues it at the gateway, follows the
job's events and checks that the downloaded file matches the original byte for byte.

Downloads need an API key: the demo sends NADZU_API_KEY when it is set, else the admin key that
`make run` generated and saved in .run/admin-api-key.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
ADMIN_KEY_FILE = ROOT / ".run" / "admin-api-key"
sys.path.insert(0, str(ROOT / "libs" / "common" / "src"))

from nadzu_common.testing.media import MediaServer, make_video  # noqa: E402

# Slow enough that a 5-second clip takes a few seconds to arrive.
THROTTLE_BYTES_PER_SECOND = 400_000


def main() -> int:
    base_url = os.environ.get("NADZU_URL") or "http://{}:{}".format(
        os.environ.get("GATEWAY_HOST", "127.0.0.1"), os.environ.get("GATEWAY_PORT", "8080")
    )
    api_key = find_api_key()
    if api_key is None:
        print(
            "demo: no API key; set NADZU_API_KEY, or start the stack with `make run`, which saves one in "
            f"{ADMIN_KEY_FILE.relative_to(ROOT)}",
            file=sys.stderr,
        )
        return 1
    headers = {"X-API-Key": api_key}

    with tempfile.TemporaryDirectory(prefix="nadzu-demo-") as folder:
        root = Path(folder)
        print("demo: encoding a 5-second test video with ffmpeg")
        clip = make_video(root / "nadzu demo clip.mp4", seconds=5, size="640x360", bitrate="1M")
        expected = hashlib.sha256(clip.read_bytes()).hexdigest()

        with (
            MediaServer(root, rate_bytes_per_second=THROTTLE_BYTES_PER_SECOND) as server,
            httpx.Client(base_url=base_url, headers=headers, timeout=30) as client,
        ):
            url = server.url(clip.name)
            print(f"demo: serving it at {url}")
            try:
                response = client.post("/api/v1/downloads", json={"url": url})
            except httpx.ConnectError:
                print(
                    f"demo: no gateway answers at {base_url}; start the stack with `make run` first",
                    file=sys.stderr,
                )
                return 1
            if response.status_code != 202:
                print(f"demo: enqueue failed with {response.status_code}: {response.text}", file=sys.stderr)
                return 1
            job = response.json()
            print(f"demo: job {job['id']} queued; following {job['events_url']}")

            final = follow(client, job["events_url"])
            if final.get("status") != "completed":
                print(
                    f"\ndemo: job ended {final.get('status')}: {json.dumps(final.get('error'))}",
                    file=sys.stderr,
                )
                return 1

            result = final["result"]
            body = client.get(result["file_url"]).content
            actual = hashlib.sha256(body).hexdigest()
            print(f"\ndemo: downloaded {result['filename']} ({len(body)} bytes, {result['content_type']})")
            if actual != expected or actual != result["sha256"]:
                print("demo: the downloaded file does not match the original", file=sys.stderr)
                return 1
            print(f"demo: sha256 {actual} matches the original; done")
    return 0


def find_api_key() -> str | None:
    if os.environ.get("NADZU_API_KEY"):
        return os.environ["NADZU_API_KEY"]
    try:
        return ADMIN_KEY_FILE.read_text().strip() or None
    except FileNotFoundError:
        return None


def follow(client: httpx.Client, events_url: str) -> dict:
    """Print each event as it arrives; return the data of the last one."""
    last: dict = {}
    name = ""
    with client.stream("GET", events_url, timeout=120) as response:
        for line in response.iter_lines():
            if line.startswith("event:"):
                name = line.split(":", 1)[1].strip()
            elif line.startswith("data:"):
                data = json.loads(line.split(":", 1)[1])
                last.update(data)
                if name == "progress":
                    progress = data["progress"]
                    percent = progress.get("percent") or 0.0
                    bar = "#" * int(percent / 5)
                    received = progress.get("downloaded_bytes") or 0
                    print(
                        f"\rdemo: [{bar:<20}] {percent:5.1f}%  {received:>9} bytes",
                        end="",
                        flush=True,
                    )
                else:
                    print(f"\ndemo: {name}: {data.get('status')}", end="", flush=True)
    return last


if __name__ == "__main__":
    sys.exit(main())
