"""``/api/v1/jobs``: create, list, read and cancel jobs."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response, status

from vidlib.auth.dependencies import CurrentUser
from vidlib.db.session import SessionDep
from vidlib.errors import API_ERRORS, WRITE_ERRORS, error_response, error_responses
from vidlib.jobs.schemas import JobCreateIn, JobListOut, JobListParams, JobOut
from vidlib.jobs.service import JobPresenter, JobService
from vidlib.responses import NO_STORE

router = APIRouter(prefix="/api/v1/jobs", tags=["jobs"], responses=API_ERRORS)


async def get_job_service(session: SessionDep, request: Request) -> JobService:
    """The job service on this request's session, presenting with this app's store."""
    state = request.app.state
    return JobService(
        session,
        presenter=JobPresenter(state.store, state.settings.url_ttl_seconds),
        # The job queue is wired by the app; without one the sweeper picks jobs up.
        queue=getattr(state, "jobs", None),
    )


JobServiceDep = Annotated[JobService, Depends(get_job_service)]


@router.post(
    "/create",
    status_code=status.HTTP_201_CREATED,
    responses={
        **WRITE_ERRORS,
        400: error_response(
            400, "Neither or both video references, both transcripts, or an unknown kind"
        ),
        404: error_response(404, "Video, upload or transcript not found"),
    },
)
async def create_job(
    body: JobCreateIn, user: CurrentUser, jobs: JobServiceDep, response: Response
) -> JobOut:
    """Start a job on a video: an upload (``video_upload_id``) or a library video
    (``s3_video_id``, reused as stored: nothing is copied)."""
    response.headers.update(NO_STORE)
    return await jobs.create(user, body)


@router.get("", responses=error_responses(401, 422))
async def list_jobs(
    params: Annotated[JobListParams, Query()],
    user: CurrentUser,
    jobs: JobServiceDep,
    response: Response,
) -> JobListOut:
    """The caller's jobs, newest first, optionally of one status."""
    response.headers.update(NO_STORE)
    return await jobs.list_page(user, params)


@router.get("/{job_id}", responses=error_responses(401, 404, 422))
async def get_job(
    job_id: uuid.UUID, user: CurrentUser, jobs: JobServiceDep, response: Response
) -> JobOut:
    """One job."""
    response.headers.update(NO_STORE)
    return await jobs.get(user, job_id)


@router.post(
    "/{job_id}/cancel",
    responses={
        **WRITE_ERRORS,
        404: error_response(404, "No such job"),
        409: error_response(409, "The job has already finished"),
    },
)
async def cancel_job(
    job_id: uuid.UUID, user: CurrentUser, jobs: JobServiceDep, response: Response
) -> JobOut:
    """Cancel a queued or running job (a running one stops at its next checkpoint)."""
    response.headers.update(NO_STORE)
    return await jobs.cancel(user, job_id)
