"""``/api/v1/upload``: streamed and direct video uploads, transcripts."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Depends, Request, Response, status
from starlette.requests import ClientDisconnect

from vidlib.auth.dependencies import CurrentUser
from vidlib.db.session import SessionDep
from vidlib.errors import API_ERRORS, WRITE_ERRORS, error_response, error_responses
from vidlib.responses import no_store_json
from vidlib.uploads.concurrency import UploadSlotsDep
from vidlib.uploads.dependencies import UploadServiceDep, UploadUser, database_outage_as_503
from vidlib.uploads.errors import UploadInterrupted
from vidlib.uploads.schemas import (
    CompleteIn,
    DirectMultipartOut,
    DirectPutOut,
    DirectUploadIn,
    DirectUploadStateOut,
    PartNumbersIn,
    PartUrlsOut,
    TranscriptOut,
    UploadResultOut,
)
from vidlib.uploads.service import UploadResult, add_transcript
from vidlib.videos.dependencies import PresenterDep
from vidlib.videos.service import VideoPresenter

router = APIRouter(
    prefix="/api/v1/upload",
    tags=["uploads"],
    dependencies=[Depends(database_outage_as_503)],
    responses=API_ERRORS,
)


def _file_form(description: str) -> dict[str, Any]:
    """The OpenAPI request body of a form with one binary ``file`` (a file picker in /docs)."""
    return {
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "required": ["file"],
                        "properties": {
                            "file": {
                                "type": "string",
                                "format": "binary",
                                "contentMediaType": "application/octet-stream",
                                "description": description,
                            }
                        },
                    }
                }
            },
        }
    }


# Over the rate limits, or as many uploads of the user in progress as allowed.
_BUSY = error_response(429, "Too many requests, or too many of your uploads in progress")
_UPLOAD_ERRORS: dict[int | str, dict[str, Any]] = {
    **WRITE_ERRORS,
    429: _BUSY,
    200: {"model": UploadResultOut, "description": "You already have these exact bytes"},
    413: error_response(413, "Larger than the size limit"),
    415: error_response(415, "Not a supported video (decided by the first bytes)"),
    422: error_response(422, "Not a multipart form with a non-empty 'file'"),
    503: error_response(503, "Storage unavailable; nothing was kept"),
}
_SESSION_ERRORS: dict[int | str, dict[str, Any]] = {
    **error_responses(401, 422),
    404: error_response(404, "No such upload (or not yours)"),
}
_SESSION_WRITE_ERRORS: dict[int | str, dict[str, Any]] = {**WRITE_ERRORS, **_SESSION_ERRORS}


def _result(result: UploadResult, presenter: VideoPresenter, fresh_status: int) -> Response:
    body = UploadResultOut(
        upload_id=result.upload_id,
        video=presenter.video(result.video),
        deduplicated=result.deduplicated,
    )
    return no_store_json(body, status.HTTP_200_OK if result.deduplicated else fresh_status)


async def _body(request: Request) -> AsyncIterator[bytes]:
    """The request body as it arrives."""
    try:
        async for chunk in request.stream():
            yield chunk
    except ClientDisconnect as exc:
        raise UploadInterrupted() from exc


def _content_length(request: Request) -> int | None:
    value = request.headers.get("content-length")
    return int(value) if value and value.isdigit() else None


@router.post(
    "/video",
    status_code=status.HTTP_201_CREATED,
    response_model=UploadResultOut,
    responses=_UPLOAD_ERRORS,
    openapi_extra=_file_form("The video (MP4, MOV, M4V, WebM or MKV)."),
)
async def upload_video(
    request: Request,
    user: UploadUser,
    uploads: UploadServiceDep,
    presenter: PresenterDep,
    slots: UploadSlotsDep,
) -> Response:
    """Upload a video through the API; the body is streamed to storage as it arrives."""
    # A slot is taken before the first byte is read and held until the video is stored.
    async with slots.hold(user.id):
        result = await uploads.upload_stream(
            user_id=user.id,
            body=_body(request),
            content_type=request.headers.get("content-type"),
            content_length=_content_length(request),
        )
    return _result(result, presenter, status.HTTP_201_CREATED)


@router.post(
    "/video/direct",
    status_code=status.HTTP_201_CREATED,
    response_model=DirectPutOut | DirectMultipartOut,
    responses={
        **WRITE_ERRORS,
        200: {"model": UploadResultOut, "description": "sha256 matches a video you have"},
        413: error_response(413, "Larger than the size limit"),
        415: error_response(415, "content_type is not a supported video type"),
        429: error_response(
            429, "Too many requests, or too many of your direct uploads in progress"
        ),
    },
)
async def create_direct_upload(
    body: DirectUploadIn, user: UploadUser, uploads: UploadServiceDep, presenter: PresenterDep
) -> Response:
    """Start an upload straight to storage: one presigned PUT, or presigned parts."""
    created = await uploads.create_direct(user_id=user.id, body=body)
    if isinstance(created, UploadResult):
        return _result(created, presenter, status.HTTP_200_OK)
    return no_store_json(created, status.HTTP_201_CREATED)


@router.get(
    "/video/direct/{upload_id}", response_model=DirectUploadStateOut, responses=_SESSION_ERRORS
)
async def direct_upload_state(
    upload_id: uuid.UUID, user: UploadUser, uploads: UploadServiceDep
) -> Response:
    """A session's status and the parts storage already holds (to resume)."""
    return no_store_json(await uploads.direct_state(user_id=user.id, upload_id=upload_id))


@router.post(
    "/video/direct/{upload_id}/parts",
    response_model=PartUrlsOut,
    responses={
        **_SESSION_WRITE_ERRORS,
        409: error_response(409, "Not a pending multipart upload"),
        410: error_response(410, "The session expired"),
    },
)
async def direct_upload_parts(
    upload_id: uuid.UUID, body: PartNumbersIn, user: UploadUser, uploads: UploadServiceDep
) -> Response:
    """Fresh presigned URLs for some parts."""
    return no_store_json(
        await uploads.part_urls(
            user_id=user.id, upload_id=upload_id, part_numbers=body.part_numbers
        )
    )


@router.delete(
    "/video/direct/{upload_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={**_SESSION_WRITE_ERRORS, 409: error_response(409, "Already completed")},
)
async def abort_direct_upload(
    upload_id: uuid.UUID, user: UploadUser, uploads: UploadServiceDep
) -> Response:
    """Abort: storage keeps nothing of the upload."""
    await uploads.abort_direct(user_id=user.id, upload_id=upload_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/video/direct/{upload_id}/complete",
    status_code=status.HTTP_201_CREATED,
    response_model=UploadResultOut,
    responses={
        **_SESSION_WRITE_ERRORS,
        409: error_response(409, "The object is missing, incomplete or of another size"),
        410: error_response(410, "The session expired"),
        415: error_response(415, "The uploaded file is not a supported video (it was deleted)"),
    },
)
async def complete_direct_upload(
    upload_id: uuid.UUID,
    user: UploadUser,
    uploads: UploadServiceDep,
    presenter: PresenterDep,
    body: CompleteIn | None = None,
) -> Response:
    """Check what storage holds and add the video; repeating returns the same result."""
    result = await uploads.complete_direct(
        user_id=user.id, upload_id=upload_id, parts=body.parts if body else None
    )
    return _result(result, presenter, status.HTTP_201_CREATED)


@router.post(
    "/transcript",
    status_code=status.HTTP_201_CREATED,
    response_model=TranscriptOut,
    responses={
        **WRITE_ERRORS,
        413: error_response(413, "Larger than 2 MiB"),
        415: error_response(415, "Not a .txt, .srt or .vtt file"),
        422: error_response(
            422, "Not UTF-8, empty, or malformed SRT/WebVTT (the sentence says where)"
        ),
        429: _BUSY,
    },
    openapi_extra=_file_form("A .txt, .srt or .vtt file, UTF-8, at most 2 MiB."),
)
async def upload_transcript(
    request: Request, user: CurrentUser, session: SessionDep, slots: UploadSlotsDep
) -> TranscriptOut:
    """Upload a transcript for later jobs."""
    async with slots.hold(user.id):
        transcript = await add_transcript(
            session,
            user_id=user.id,
            body=_body(request),
            content_type=request.headers.get("content-type"),
        )
    return TranscriptOut(
        transcript_upload_id=transcript.id,
        format=transcript.format,
        characters=transcript.characters,
        cues=transcript.cues,
    )
