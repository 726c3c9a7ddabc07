"""A ``vidlib worker`` process for the tests: the real entry point with test timings.

Usage: ``python -m tests.tasks.worker_main '<json>'`` where the JSON holds
``settings`` (Settings fields) and ``config`` (BackgroundConfig overrides, times in
seconds). The test plug-in job kinds are registered first, as a deployment's own
processors would be.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import timedelta
from typing import Any

import tests.tasks.plugins  # noqa: F401  (registers the test job kinds)
from tests.tasks.timing import fast_config
from vidlib.config import Settings
from vidlib.tasks.runtime import run_worker

TIMES = {
    "lease",
    "retry_base",
    "retry_max",
    "video_wait",
    "sweep_interval",
    "requeue_after",
    "redelivery_idle",
    "maintenance_interval",
}


def main(raw: str) -> None:
    """Run the worker until SIGTERM."""
    spec: dict[str, Any] = json.loads(raw)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s worker %(levelname)s %(name)s: %(message)s"
    )
    config = {
        k: timedelta(seconds=v) if k in TIMES else v for k, v in spec.get("config", {}).items()
    }
    run_worker(Settings(**spec["settings"]), config=fast_config(**config))


if __name__ == "__main__":
    main(sys.argv[1])
