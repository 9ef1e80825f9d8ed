"""Run a media server and a counting SOCKS5 proxy, for a test host in its own network namespace.

    python -m nadzu_common.testing.isolated_host MEDIA_DIR MEDIA_PORT SOCKS_HOST SOCKS_PORT COUNT_FILE

The media server listens on the namespace's own 127.0.0.1, so only the SOCKS5 proxy (listening on the
namespace's veth address) can reach it: a download that bypasses the proxy finds nothing there.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from .media import MediaServer
from .socks import CountingSocks5


def main() -> None:
    media_dir, media_port, socks_host, socks_port, count_file = sys.argv[1:6]
    MediaServer(Path(media_dir), port=int(media_port)).start()
    proxy = CountingSocks5(socks_host, int(socks_port), Path(count_file))
    print("ready", flush=True)
    asyncio.run(proxy.serve())


if __name__ == "__main__":
    main()
