"""``/api/v1/videos``: the library."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Response, status

from vidlib.auth.dependencies import CurrentUser
from vidlib.errors import API_ERRORS, WRITE_ERRORS, error_response, error_responses
from vidlib.responses import no_store_json
from vidlib.videos.dependencies import LibraryDep, PresenterDep, ReaderDep
from vidlib.videos.schemas import ListParams, RecentVideosOut, VideoListOut, VideoOut, VideoPatch

router = APIRouter(prefix="/api/v1/videos", tags=["videos"], responses=API_ERRORS)

_LIST_ERRORS = error_responses(401, 422)
_READ_ERRORS = {**error_responses(401, 422), 404: error_response(404, "Video not found")}
_WRITE_ERRORS = {**WRITE_ERRORS, 404: error_response(404, "Video not found")}


@router.get("/s3-videos", response_model=VideoListOut, responses=_LIST_ERRORS)
async def list_videos(
    params: Annotated[ListParams, Query()], user: CurrentUser, reader: ReaderDep
) -> Response:
    """The caller's library: search, sort, page by number or continue a cursor."""
    return no_store_json(await reader.list_page(user, params))


@router.get("/s3-videos/recent", response_model=RecentVideosOut, responses=_LIST_ERRORS)
async def recent_videos(
    user: CurrentUser,
    reader: ReaderDep,
    limit: Annotated[int, Query(ge=1, le=20)] = 5,
) -> Response:
    """The newest videos, for quick selection."""
    return no_store_json(RecentVideosOut(videos=await reader.recent(user, limit)))


@router.get("/s3-videos/by-key/{s3_key:path}", response_model=VideoOut, responses=_READ_ERRORS)
async def video_by_key(
    s3_key: str, user: CurrentUser, library: LibraryDep, presenter: PresenterDep
) -> Response:
    """One video by its S3 key (the key may contain ``/``)."""
    return no_store_json(presenter.video(await library.get_by_key(user, s3_key)))


@router.get("/s3-videos/{video_id}", response_model=VideoOut, responses=_READ_ERRORS)
async def get_video(
    video_id: uuid.UUID, user: CurrentUser, library: LibraryDep, presenter: PresenterDep
) -> Response:
    """One video by id."""
    return no_store_json(presenter.video(await library.get(user, video_id)))


@router.patch("/s3-videos/{video_id}", response_model=VideoOut, responses=_WRITE_ERRORS)
async def patch_video(
    video_id: uuid.UUID,
    body: VideoPatch,
    user: CurrentUser,
    library: LibraryDep,
    presenter: PresenterDep,
) -> Response:
    """Rename and/or merge user metadata."""
    return no_store_json(presenter.video(await library.patch(user, video_id, body)))


@router.delete(
    "/s3-videos/{video_id}", status_code=status.HTTP_204_NO_CONTENT, responses=_WRITE_ERRORS
)
async def delete_video(video_id: uuid.UUID, user: CurrentUser, library: LibraryDep) -> Response:
    """Soft delete; restorable until purged."""
    await library.delete(user, video_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/s3-videos/{video_id}/restore",
    response_model=VideoOut,
    responses={**_WRITE_ERRORS, 409: error_response(409, "An identical video is live")},
)
async def restore_video(
    video_id: uuid.UUID, user: CurrentUser, library: LibraryDep, presenter: PresenterDep
) -> Response:
    """Bring a soft-deleted video back."""
    return no_store_json(presenter.video(await library.restore(user, video_id)))
