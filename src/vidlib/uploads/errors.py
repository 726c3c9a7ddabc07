"""Errors of the upload endpoints, each with its status code and a sentence."""

from __future__ import annotations

from vidlib.errors import AppError, Conflict, NotFound, Unprocessable


class MalformedBody(Unprocessable):
    """422: the body is not the multipart form the endpoint expects."""

    message = "The request body is not valid multipart/form-data."


class UploadTooLarge(AppError):
    """413: the file passed the size limit."""

    status_code = 413


class UnsupportedMedia(AppError):
    """415: the content is not a type this endpoint accepts."""

    status_code = 415


class UploadInterrupted(AppError):
    """400: the client stopped sending before the body was complete."""

    status_code = 400
    message = "The upload was interrupted before the file was complete."


class UploadNotFound(NotFound):
    """404: no such upload session, or not the caller's."""

    message = "Upload not found."


class UploadConflict(Conflict):
    """409: the upload is not in a state that allows this."""


class UploadExpired(AppError):
    """410: the upload session expired; start a new one."""

    status_code = 410
    message = "This upload session has expired; start a new upload."
