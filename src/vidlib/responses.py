"""Response helpers shared by the routers."""

from __future__ import annotations

from fastapi import Response
from pydantic import BaseModel

# Bodies that carry presigned URLs: no shared cache may keep them.
NO_STORE = {"Cache-Control": "no-store"}


def no_store_json(model: BaseModel, status_code: int = 200) -> Response:
    """``model`` as a JSON body no shared cache may keep."""
    return Response(
        model.model_dump_json(),
        status_code=status_code,
        media_type="application/json",
        headers=NO_STORE,
    )
