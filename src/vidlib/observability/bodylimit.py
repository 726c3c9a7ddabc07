"""A cap on request bodies (413 with the contract's JSON body), except streamed uploads."""

from __future__ import annotations

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from vidlib.errors import error_json

# Largest body accepted on JSON endpoints.
JSON_BODY_LIMIT = 64 * 1024
# Endpoints that stream large bodies and enforce their own limits while reading.
STREAMING_PATHS = frozenset({"/api/v1/upload/video", "/api/v1/upload/transcript"})
STREAMING_PREFIXES = ("/storage/",)


class _TooLarge(Exception):
    pass


class BodyLimitMiddleware:
    """413 as soon as a body passes the limit, whether or not it declared a length."""

    def __init__(self, app: ASGIApp, limit: int = JSON_BODY_LIMIT) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if (
            scope["type"] != "http"
            or path in STREAMING_PATHS
            or path.startswith(STREAMING_PREFIXES)
        ):
            await self.app(scope, receive, send)
            return
        for name, value in scope["headers"]:
            if name == b"content-length" and value.isdigit() and int(value) > self.limit:
                await _too_large(self.limit)(scope, receive, send)
                return
        received = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise _TooLarge
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _TooLarge:
            if started:
                raise
            await _too_large(self.limit)(scope, receive, send)


def _too_large(limit: int) -> JSONResponse:
    return error_json(413, f"The request body is larger than {limit // 1024} KiB.")
