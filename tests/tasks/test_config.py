"""Which queue a deployment gets, and the worker's refusal to run without one."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from vidlib.config import ConfigError, Settings
from vidlib.tasks.config import BackgroundConfig
from vidlib.tasks.runtime import run_worker


def make_settings(tmp_path: Path, **values: object) -> Settings:
    return Settings(data_dir=tmp_path, **values)  # type: ignore[arg-type]


def test_redis_when_configured_else_in_process(tmp_path: Path) -> None:
    embedded = BackgroundConfig.from_settings(make_settings(tmp_path))
    assert embedded.backend == "memory"
    assert embedded.retention == timedelta(days=30)
    with_redis = BackgroundConfig.from_settings(
        make_settings(tmp_path, redis_url="redis://127.0.0.1:6379/15")
    )
    assert with_redis.backend == "redis"
    assert with_redis.redis_url == "redis://127.0.0.1:6379/15"


def test_the_worker_needs_redis(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="VIDLIB_REDIS_URL"):
        run_worker(make_settings(tmp_path))


def test_a_redis_queue_needs_an_address() -> None:
    with pytest.raises(ValueError, match="redis_url"):
        BackgroundConfig(backend="redis")
