"""Background work on a test's time scale (kept free of heavy imports: the worker
subprocess loads it too)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from vidlib.tasks.config import BackgroundConfig


def fast_config(**overrides: Any) -> BackgroundConfig:
    """Production behaviour in fractions of a second: leases, backoffs and sweeps;
    media analysis in threads (no process start-up) unless overridden."""
    values: dict[str, Any] = {
        "backend": "memory",
        "lease": timedelta(seconds=2),
        "max_attempts": 3,
        "retry_base": timedelta(milliseconds=200),
        "retry_max": timedelta(seconds=1),
        "video_wait": timedelta(seconds=1),
        "sweep_interval": timedelta(milliseconds=300),
        "requeue_after": timedelta(seconds=2),
        "redelivery_idle": timedelta(seconds=1),
        "maintenance_interval": timedelta(hours=1),
        "media_executor": "thread",
        "media_workers": 2,
    }
    values.update(overrides)
    return BackgroundConfig(**values)
