"""The downloader's errors, each marked retryable or not.

`PermanentError` fails the job at once; `TransientError` hands the command back to the bus with a delay
until the job runs out of attempts.
"""

from __future__ import annotations


class DownloaderError(Exception):
    """Base of every error a download job can end with; `code` is the job's public error code."""

    retryable = False

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class PermanentError(DownloaderError):
    """Trying again would fail the same way: bad URL, missing media, unsupported site, too large."""


class TransientError(DownloaderError):
    """Network trouble, a server error or a timeout: a later attempt may succeed."""

    retryable = True


class JobCancelled(Exception):
    """The job was cancelled while it ran."""


def error_from_worker(kind: str, code: str, message: str) -> DownloaderError:
    """Rebuild an error reported by a worker process."""
    if kind == "transient":
        return TransientError(code, message)
    return PermanentError(code, message)
