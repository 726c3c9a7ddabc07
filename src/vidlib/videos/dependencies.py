"""Dependencies of the library routes."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from vidlib.db.session import SessionDep
from vidlib.videos.service import LibraryReader, LibraryService, VideoPresenter


async def get_presenter(request: Request) -> VideoPresenter:
    """Builds video objects with URLs for this app's store."""
    presenter: VideoPresenter = request.app.state.presenter
    return presenter


async def get_library(session: SessionDep) -> LibraryService:
    """One-video operations on this request's session."""
    return LibraryService(session)


async def get_reader(request: Request) -> LibraryReader:
    """The app's listings (no session unless a cache misses)."""
    reader: LibraryReader = request.app.state.library_reader
    return reader


LibraryDep = Annotated[LibraryService, Depends(get_library)]
ReaderDep = Annotated[LibraryReader, Depends(get_reader)]
PresenterDep = Annotated[VideoPresenter, Depends(get_presenter)]
