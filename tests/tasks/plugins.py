"""Job kinds the tests plug in, the way a team adds its own pipeline.

Imported by the tests and by the worker subprocess (``tests/tasks/worker_main.py``).
"""

from __future__ import annotations

import asyncio
from typing import Any

from vidlib.jobs.processors import JobContext, JobError, get_processor, register


class SlowProcessor:
    """Works in ``steps`` steps of ``step_seconds``, with a checkpoint after each."""

    def validate_options(self, options: dict[str, Any]) -> dict[str, Any]:
        """Any options."""
        return options

    async def run(self, ctx: JobContext) -> dict[str, Any]:
        """Sleep step by step, then store one small file."""
        steps = int(ctx.job.options.get("steps", 10))
        for step in range(steps):
            await asyncio.sleep(float(ctx.job.options.get("step_seconds", 0.1)))
            await ctx.progress((step + 1) / (steps + 1))
        await ctx.put_file("out", b"done", content_type="text/plain", extension="txt")
        return {"steps": steps, "attempt": ctx.job.attempt}


class FlakyProcessor:
    """Fails transiently until attempt ``succeed_on`` (or permanently if asked)."""

    def validate_options(self, options: dict[str, Any]) -> dict[str, Any]:
        """Any options."""
        return options

    async def run(self, ctx: JobContext) -> dict[str, Any]:
        """Fail or succeed according to the options."""
        if ctx.job.options.get("permanent"):
            raise JobError("The input is unusable.")
        if ctx.job.attempt < int(ctx.job.options.get("succeed_on", 2)):
            raise JobError("A service was briefly unavailable.", permanent=False)
        return {"attempt": ctx.job.attempt}


def install() -> None:
    """Register the test kinds (once per process)."""
    if get_processor("slow") is None:
        register("slow", SlowProcessor())
    if get_processor("flaky") is None:
        register("flaky", FlakyProcessor())


install()
