"""The media pool: analysis in capped processes that a crash does not take down for good."""

from __future__ import annotations

import functools
import os
from concurrent.futures.process import BrokenProcessPool

import pytest

from tests.tasks.conftest import MediaFiles
from vidlib.tasks.media import MediaRunner


def allocate(mib: int) -> int:
    """Runs in a pool process: allocate ``mib`` MiB."""
    return len(bytearray(mib * 1024 * 1024))


async def test_processes_are_memory_capped_and_replaced_after_a_crash(media: MediaFiles) -> None:
    runner = MediaRunner(executor="process", workers=1, memory_limit_mb=768)
    try:
        report = await runner.analyze(str(media.webm))
        assert report.info.codec == "vp9"
        # Tasks go through the same submission path as analyses (``_run``).
        assert await runner._run(functools.partial(allocate, 64)) == 64 * 1024 * 1024
        with pytest.raises(MemoryError):
            await runner._run(functools.partial(allocate, 2048))
        with pytest.raises(BrokenProcessPool):
            await runner._run(functools.partial(os._exit, 1))
        # A fresh pool takes over.
        again = await runner.analyze(str(media.mp4))
        assert again.info.codec == "h264"
    finally:
        await runner.aclose()
