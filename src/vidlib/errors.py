"""The application's error family and the handlers that render ``{"detail": ...}``."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.formparsers import MultiPartException

from vidlib.storage.base import InvalidPart, ObjectExists, ObjectNotFound, StorageError

log = logging.getLogger("vidlib.errors")


class AppError(Exception):
    """A failure with a status code and a sentence safe to show the client."""

    status_code = 400
    message = "The request could not be processed."
    headers: dict[str, str] | None = None

    def __init__(self, message: str | None = None, *, status_code: int | None = None) -> None:
        super().__init__(message or self.message)
        self.message = message or self.message
        if status_code is not None:
            self.status_code = status_code


class BadRequest(AppError):
    """400."""

    status_code = 400


class NotFound(AppError):
    """404: absent, or not the caller's (the two are indistinguishable on purpose)."""

    status_code = 404
    message = "Not found."


class Conflict(AppError):
    """409."""

    status_code = 409


class Unprocessable(AppError):
    """422 raised by the application itself (not request parsing)."""

    status_code = 422


class Unauthorized(AppError):
    """401 with the Bearer challenge."""

    status_code = 401
    message = "Not authenticated."
    headers = {"WWW-Authenticate": "Bearer"}


class TooManyRequests(AppError):
    """429: over a limit; the client may retry after ``Retry-After`` seconds."""

    status_code = 429
    message = "Too many requests; please retry later."

    def __init__(self, message: str | None = None, *, retry_after: int = 5) -> None:
        super().__init__(message)
        self.headers = {"Retry-After": str(retry_after)}


class ServiceUnavailable(AppError):
    """503: a dependency is down; the client may retry."""

    status_code = 503
    message = "The service is temporarily unavailable; please retry."
    headers = {"Retry-After": "5"}


class ErrorOut(BaseModel):
    """Every error body but some 422s: one sentence for a person."""

    detail: str


class ValidationIssue(BaseModel):
    """One problem with the request, as FastAPI reports it."""

    model_config = ConfigDict(extra="allow")

    type: str
    loc: list[str | int]
    msg: str


class ValidationErrorOut(BaseModel):
    """422: FastAPI's list of problems with the request, or a sentence from the app."""

    detail: str | list[ValidationIssue]


_DESCRIPTIONS = {
    400: "The request cannot be processed",
    401: "Not authenticated",
    404: "Not found (or not yours)",
    409: "Conflicts with the current state (or a retry with this Idempotency-Key is running)",
    410: "Gone",
    413: "The request body is too large",
    415: "Unsupported media type",
    422: "Invalid request (or an Idempotency-Key reused with another request)",
    429: "Too many requests; retry after Retry-After seconds",
    503: "A dependency is down; nothing was changed, retry",
}
_RETRY_AFTER = {
    "Retry-After": {
        "description": "Seconds to wait before retrying.",
        "schema": {"type": "integer"},
    }
}


def error_response(status: int, description: str | None = None) -> dict[str, Any]:
    """The OpenAPI ``responses`` entry of one error status, with its body schema."""
    entry: dict[str, Any] = {
        "model": ValidationErrorOut if status == 422 else ErrorOut,
        "description": description or _DESCRIPTIONS.get(status, "Error"),
    }
    if status == 429:
        entry["headers"] = _RETRY_AFTER
    return entry


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for routes that can answer these error statuses."""
    return {status: error_response(status) for status in statuses}


# What the middleware and handlers can answer on any /api/v1 route: rate limits,
# and a database or storage outage.
API_ERRORS = error_responses(429, 503)
# Authenticated writes: Idempotency-Key conflicts (409 while the first attempt runs,
# 422 on reuse with another request) and the JSON body cap.
WRITE_ERRORS = error_responses(401, 409, 413, 422)


def error_json(status: int, detail: Any, headers: dict[str, str] | None = None) -> JSONResponse:
    """An error in the contract's shape, ``{"detail": ...}`` (also usable as an ASGI app
    by middleware that answers before the application runs)."""
    return JSONResponse({"detail": detail}, status_code=status, headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    """Render every error, including 404/405/422/500, in the contract's shape."""

    @app.exception_handler(AppError)
    async def _app_error(_: Request, exc: AppError) -> JSONResponse:
        return error_json(exc.status_code, exc.message, exc.headers)

    @app.exception_handler(StorageError)
    async def _storage_error(_: Request, exc: StorageError) -> JSONResponse:
        # A safety net: services translate what they expect; the rest is a 503.
        if isinstance(exc, ObjectNotFound):
            return error_json(404, "Not found.")
        if isinstance(exc, ObjectExists):
            return error_json(409, "The object already exists.")
        if isinstance(exc, InvalidPart):
            return error_json(400, "The uploaded parts do not form a valid upload.")
        log.warning("storage error: %s", type(exc).__name__)
        return error_json(503, ServiceUnavailable.message, dict(ServiceUnavailable.headers or {}))

    @app.exception_handler(DBAPIError)
    async def _database_error(_: Request, exc: DBAPIError) -> JSONResponse:
        # The connection was lost or the server is unreachable: an outage the client
        # may retry, not a bug. Anything else stays a 500.
        if exc.connection_invalidated or isinstance(exc, OperationalError | InterfaceError):
            reason = exc.orig.__cause__ or exc.orig if exc.orig is not None else exc
            log.warning("database unavailable: %s", type(reason).__name__)
            return error_json(
                503, ServiceUnavailable.message, dict(ServiceUnavailable.headers or {})
            )
        log.exception("unhandled database error", exc_info=exc)
        return error_json(500, "An internal error occurred.")

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = exc.detail
        if exc.status_code == 400:
            # Bodies the framework cannot parse are invalid requests (422), as every
            # other malformed body is: JSON that is not UTF-8, broken multipart forms.
            cause = exc.__cause__ or exc.__context__
            if isinstance(cause, UnicodeError):
                return error_json(
                    422, [{"type": "json_invalid", "loc": ["body"], "msg": "JSON decode error"}]
                )
            if isinstance(cause, MultiPartException):
                return error_json(422, "The request body is not valid multipart/form-data.")
        if exc.status_code == 404 and detail == "Not Found":
            detail = "Not found."
        elif exc.status_code == 405:
            detail = "Method not allowed."
        return error_json(exc.status_code, detail, getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = []
        for err in exc.errors():
            item = {k: err[k] for k in ("type", "loc", "msg") if k in err}
            if "ctx" in err:
                item["ctx"] = {k: str(v) for k, v in err["ctx"].items()}
            errors.append(item)
        return error_json(422, errors)

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error", exc_info=exc)
        return error_json(500, "An internal error occurred.")
