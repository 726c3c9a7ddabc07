"""Job tests: the app with background work running; the local store is enough here
(tests/tasks covers both stores where storage matters)."""

from __future__ import annotations

import pytest

from tests.tasks.conftest import media, videos

__all__ = ["media", "videos"]


@pytest.fixture(params=["local"])
def storage_backend(request: pytest.FixtureRequest) -> str:
    """Jobs reuse stored objects; which store holds them does not matter to the API."""
    return str(request.param)
