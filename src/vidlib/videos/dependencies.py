"""Dependencies of the library routes."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from vidlib.db.session import SessionDep
from vidlib.videos.service import LibraryService, VideoPresenter


async def get_presenter(request: Request) -> VideoPresenter:
    """Builds video objects with URLs for this app's store."""
    presenter: VideoPresenter = request.app.state.presenter
    return presenter


async def get_library(session: SessionDep, request: Request) -> LibraryService:
    """The library service on this request's session."""
    state = request.app.state
    return LibraryService(
        session, cache=state.cache, presenter=state.presenter, cursors=state.cursors
    )


LibraryDep = Annotated[LibraryService, Depends(get_library)]
PresenterDep = Annotated[VideoPresenter, Depends(get_presenter)]
