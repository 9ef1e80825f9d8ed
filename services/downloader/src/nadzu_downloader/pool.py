"""A pool of warm worker processes, one job at a time each.

Starting Python and importing yt-dlp costs most of a second; a worker that is already running starts a job
in milliseconds. A worker is replaced after it was killed (cancel, shutdown), after it failed, and after
`MAX_JOBS_PER_WORKER` jobs, so a leak in a library cannot grow without bound.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from nadzu_common.logging import get_logger

from .errors import DownloaderError, JobCancelled, TransientError, error_from_worker

log = get_logger(__name__)

MAX_JOBS_PER_WORKER = 100
READY_TIMEOUT_SECONDS = 60.0
# Protocol lines can carry long error messages; stay well above them.
LINE_LIMIT_BYTES = 1024 * 1024

ProgressCallback = Callable[[dict[str, Any]], Awaitable[None]]


class WarmWorker:
    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.jobs_run = 0
        self.killed = False

    @classmethod
    async def start(cls) -> WarmWorker:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "nadzu_downloader.worker",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            start_new_session=True,
            limit=LINE_LIMIT_BYTES,
        )
        worker = cls(process)
        line = await asyncio.wait_for(worker._read(), READY_TIMEOUT_SECONDS)
        if line is None or line.get("type") != "ready":
            worker.kill()
            raise RuntimeError("worker process did not start")
        return worker

    @property
    def alive(self) -> bool:
        return not self.killed and self.process.returncode is None

    async def _read(self) -> dict[str, Any] | None:
        assert self.process.stdout is not None
        raw = await self.process.stdout.readline()
        if not raw:
            return None
        return json.loads(raw)

    async def run(self, job: dict[str, Any], on_progress: ProgressCallback) -> dict[str, Any]:
        """Run one job; return the `done` message or raise the job's error."""
        assert self.process.stdin is not None
        self.jobs_run += 1
        self.process.stdin.write((json.dumps(job) + "\n").encode())
        await self.process.stdin.drain()

        while True:
            message = await self._read()
            if message is None:
                if self.killed:
                    raise JobCancelled
                raise TransientError("worker-crashed", "The download process exited unexpectedly.")
            kind = message.get("type")
            if kind in ("progress", "phase"):
                await on_progress(message)
            elif kind == "log":
                # yt-dlp's warnings and errors, logged here so they carry the job, request and trace ids.
                # A yt-dlp error is usually the job's own failure (a 404 source), reported apart, so it
                # is logged as a warning of the service.
                log.warning("ytdlp.message", ytdlp_level=message.get("level"), message=message.get("message"))
            elif kind == "done":
                return message
            elif kind == "error":
                raise error_from_worker(message["kind"], message["code"], message["message"])

    def kill(self) -> None:
        """Kill the worker and every process it started (they share its process group)."""
        self.killed = True
        if self.process.returncode is None:
            try:
                os.killpg(self.process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    async def wait_closed(self) -> None:
        await self.process.wait()


class WorkerPool:
    """Up to `size` warm workers; `run` borrows one for a job and returns it afterwards."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._idle: list[WarmWorker] = []
        self._busy: set[WarmWorker] = set()
        self._warming: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        workers = await asyncio.gather(*(WarmWorker.start() for _ in range(self.size)))
        self._idle.extend(workers)
        log.info("pool.started", workers=self.size)

    def _warm_one(self) -> None:
        async def warm() -> None:
            try:
                self._idle.append(await WarmWorker.start())
            except Exception as error:
                log.error("pool.worker_start_failed", error=repr(error))

        task = asyncio.create_task(warm())
        self._warming.add(task)
        task.add_done_callback(self._warming.discard)

    async def _borrow(self) -> WarmWorker:
        while self._idle:
            worker = self._idle.pop()
            if worker.alive:
                return worker
        return await WarmWorker.start()

    def _give_back(self, worker: WarmWorker, reusable: bool) -> None:
        if reusable and worker.alive and worker.jobs_run < MAX_JOBS_PER_WORKER:
            self._idle.append(worker)
            return
        worker.kill()
        reaper = asyncio.create_task(worker.wait_closed())
        self._warming.add(reaper)
        reaper.add_done_callback(self._warming.discard)
        if len(self._idle) + len(self._busy) + len(self._warming) < self.size:
            self._warm_one()

    async def run(
        self, job: dict[str, Any], on_progress: ProgressCallback, on_start: Callable[[WarmWorker], None]
    ) -> dict[str, Any]:
        worker = await self._borrow()
        self._busy.add(worker)
        reusable = False
        try:
            on_start(worker)
            result = await worker.run(job, on_progress)
            reusable = True
            return result
        except DownloaderError as error:
            # A job error reported by the worker leaves the worker itself healthy.
            reusable = error.code != "worker-crashed"
            raise
        finally:
            self._busy.discard(worker)
            self._give_back(worker, reusable)

    async def close(self) -> None:
        for task in list(self._warming):
            task.cancel()
        workers = [*self._idle, *self._busy]
        self._idle.clear()
        for worker in workers:
            worker.kill()
        await asyncio.gather(*(worker.wait_closed() for worker in workers), return_exceptions=True)
