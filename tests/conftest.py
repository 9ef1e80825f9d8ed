"""Settings shared by every test package."""

from __future__ import annotations

import shutil

import pytest


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # The download tests need the real media tools; a missing one is a set-up error, not a skip.
    missing = [tool for tool in ("ffmpeg", "ffprobe") if shutil.which(tool) is None]
    if missing:
        raise pytest.UsageError(f"missing tools: {', '.join(missing)}; run `make test`, which installs them")
