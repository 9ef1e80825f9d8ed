"""A SOCKS5 proxy for tests, standing in for the WARP egress container: it counts the bytes it relays.

Supports the CONNECT command without authentication, to IPv4, IPv6 and domain-name targets, which is
what the downloader's egress guard and curl use.
"""

from __future__ import annotations

import asyncio
import ipaddress
import struct
from pathlib import Path

# The bound address in a reply; clients of a CONNECT ignore it.
_NO_ADDRESS = bytes(4)


class CountingSocks5:
    def __init__(self, host: str, port: int, count_file: Path | None = None) -> None:
        self.host = host
        self.port = port
        self.count_file = count_file
        self.relayed = 0
        self.connections = 0

    async def serve(self) -> None:
        server = await asyncio.start_server(self._handle, self.host, self.port)
        async with server:
            await server.serve_forever()

    def _record(self, size: int) -> None:
        self.relayed += size
        if self.count_file is not None:
            self.count_file.write_text(f"{self.relayed} {self.connections}\n")

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            version, methods = await reader.readexactly(2)
            await reader.readexactly(methods)
            if version != 5:
                writer.close()
                return
            writer.write(b"\x05\x00")
            _, command, _, address_type = await reader.readexactly(4)
            if address_type == 1:
                host = str(ipaddress.IPv4Address(await reader.readexactly(4)))
            elif address_type == 4:
                host = str(ipaddress.IPv6Address(await reader.readexactly(16)))
            else:
                length = (await reader.readexactly(1))[0]
                host = (await reader.readexactly(length)).decode()
            (port,) = struct.unpack("!H", await reader.readexactly(2))
            if command != 1:
                writer.write(b"\x05\x07\x00\x01" + _NO_ADDRESS + b"\x00\x00")
                writer.close()
                return
            try:
                target_reader, target_writer = await asyncio.open_connection(host, port)
            except OSError:
                writer.write(b"\x05\x05\x00\x01" + _NO_ADDRESS + b"\x00\x00")
                writer.close()
                return
            self.connections += 1
            writer.write(b"\x05\x00\x00\x01" + _NO_ADDRESS + b"\x00\x00")
            await asyncio.gather(self._pipe(reader, target_writer), self._pipe(target_reader, writer))
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while chunk := await reader.read(256 * 1024):
                writer.write(chunk)
                await writer.drain()
                self._record(len(chunk))
        except ConnectionError:
            pass
        finally:
            writer.close()
