"""Dependencies of the upload routes."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.exc import DBAPIError, IntegrityError

from vidlib.auth.dependencies import CurrentUser
from vidlib.auth.models import Account
from vidlib.db.session import SessionDep
from vidlib.errors import ServiceUnavailable
from vidlib.uploads.service import UploadPolicy, UploadService

log = logging.getLogger("vidlib.uploads")


async def database_outage_as_503() -> AsyncIterator[None]:
    """A database failure during an upload is an outage the client may retry (503).

    The upload itself has been undone by then (no row, no object), so retrying is safe.
    """
    try:
        yield
    except IntegrityError:
        raise
    except DBAPIError as exc:
        log.warning("database error during an upload: %s", type(exc).__name__)
        raise ServiceUnavailable() from exc


async def get_upload_policy(request: Request) -> UploadPolicy:
    """Sizes and lifetimes for this deployment (tests override this dependency)."""
    return UploadPolicy.from_settings(request.app.state.settings)


async def get_upload_user(user: CurrentUser, session: SessionDep) -> Account:
    """The caller, with the request's session released.

    Video uploads commit their rows in their own transactions (see ``uploads.service``),
    and a streamed upload can take minutes: the pooled connection the authentication
    used goes back to the pool now instead of idling in a transaction meanwhile.
    """
    await session.close()
    return user


async def get_upload_service(
    request: Request, policy: Annotated[UploadPolicy, Depends(get_upload_policy)]
) -> UploadService:
    """The upload service on this app's database, store and ingest queue."""
    state = request.app.state
    return UploadService(
        sessionmaker=state.sessionmaker,
        store=state.store,
        policy=policy,
        # The ingest queue is wired by the app when processing is configured.
        ingest=getattr(state, "ingest", None),
    )


UploadUser = Annotated[Account, Depends(get_upload_user)]
UploadServiceDep = Annotated[UploadService, Depends(get_upload_service)]
