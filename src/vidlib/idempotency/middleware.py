"""``Idempotency-Key`` on writes, as pure-ASGI middleware.

The first request with a key runs and its response (status and body) is kept
with a fingerprint of the request (method, path, query, body). A retry with the
same key and the same request gets that response again, marked
``Idempotent-Replayed: true``; the same key with another request is a 422; a
retry while the first is still running is a 409. Server errors (5xx) and 429s
are not kept, so a retry runs again. The body is hashed as it streams through,
so uploads are never buffered.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import uuid
from datetime import timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from vidlib.auth.tokens import InvalidToken, TokenVerifier
from vidlib.db.base import utcnow
from vidlib.idempotency.models import IdempotencyRecord

log = logging.getLogger("vidlib.idempotency")

HEADER = b"idempotency-key"
METHODS = frozenset({"POST", "PATCH", "DELETE"})
_VALID_KEY = re.compile(r"^[\x21-\x7e]{1,255}$")
# Responses larger than this are not kept (ours are small JSON documents).
MAX_KEPT_BODY = 1024 * 1024
# A first attempt that never finished (its process died) stops blocking retries after this.
STALE_PENDING = timedelta(minutes=15)
RETENTION = timedelta(hours=24)


class IdempotencyMiddleware:
    """Replays the first response for a repeated ``Idempotency-Key``."""

    def __init__(self, app: ASGIApp, verifier: TokenVerifier) -> None:
        self.app = app
        self.verifier = verifier

    def _parse(self, scope: Scope) -> tuple[str | None, uuid.UUID | None]:
        key = user = None
        for name, value in scope["headers"]:
            if name == HEADER:
                key = value.decode("latin-1")
            elif name == b"authorization":
                scheme, _, token = value.decode("latin-1").partition(" ")
                if scheme.lower() == "bearer" and token:
                    try:
                        user = self.verifier.verify(token).user_id
                    except InvalidToken:
                        user = None
        return key, user

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in METHODS:
            await self.app(scope, receive, send)
            return
        key, user_id = self._parse(scope)
        if key is None or user_id is None or scope["path"].startswith("/api/v1/auth/"):
            # Without a key, or unauthenticated (the app answers 401), nothing to remember.
            await self.app(scope, receive, send)
            return
        if not _VALID_KEY.match(key):
            await _respond(
                send,
                422,
                {"detail": "Idempotency-Key must be 1 to 255 printable ASCII characters."},
            )
            return
        sessionmaker: async_sessionmaker[AsyncSession] = scope["app"].state.sessionmaker
        hasher = hashlib.sha256()
        hasher.update(f"{scope['method']} {scope['path']}?".encode())
        hasher.update(scope.get("query_string", b""))
        hasher.update(b"\n")

        existing = await _find(sessionmaker, user_id, key)
        if existing is not None:
            await self._replay(existing, hasher, receive, send)
            return

        record_id = await _claim(sessionmaker, user_id, key)
        if record_id is None:
            # Lost a race with a concurrent first attempt.
            existing = await _find(sessionmaker, user_id, key)
            if existing is not None:
                await self._replay(existing, hasher, receive, send)
            else:
                await _respond(send, 409, _IN_PROGRESS)
            return

        async def hashing_receive() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                hasher.update(message.get("body", b""))
            return message

        status = 500
        content_type: str | None = None
        chunks: list[bytes] = []
        size = 0

        async def recording_send(message: Message) -> None:
            nonlocal status, content_type, size
            if message["type"] == "http.response.start":
                status = message["status"]
                for name, value in message.get("headers", []):
                    if name.lower() == b"content-type":
                        content_type = value.decode("latin-1")
            elif message["type"] == "http.response.body":
                body = message.get("body", b"")
                size += len(body)
                if size <= MAX_KEPT_BODY:
                    chunks.append(body)
            await send(message)

        keep = False
        try:
            await self.app(scope, hashing_receive, recording_send)
            keep = status < 500 and status != 429 and size <= MAX_KEPT_BODY
        finally:
            if keep:
                await _complete(
                    sessionmaker,
                    record_id,
                    hasher.hexdigest(),
                    status,
                    content_type,
                    b"".join(chunks),
                )
            else:
                await _forget(sessionmaker, record_id)

    async def _replay(
        self, record: IdempotencyRecord, hasher: hashlib._Hash, receive: Receive, send: Send
    ) -> None:
        # Read (and hash) the retried body: it decides between a replay and a 422.
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            hasher.update(message.get("body", b""))
            if not message.get("more_body", False):
                break
        if record.status_code is None:
            await _respond(send, 409, _IN_PROGRESS)
            return
        if record.fingerprint != hasher.hexdigest():
            await _respond(
                send,
                422,
                {"detail": "This Idempotency-Key was already used with a different request."},
            )
            return
        headers = [(b"idempotent-replayed", b"true"), (b"cache-control", b"no-store")]
        if record.content_type:
            headers.append((b"content-type", record.content_type.encode("latin-1")))
        body = record.response_body or b""
        headers.append((b"content-length", str(len(body)).encode()))
        await send(
            {"type": "http.response.start", "status": record.status_code, "headers": headers}
        )
        await send({"type": "http.response.body", "body": body})


_IN_PROGRESS = {
    "detail": "A request with this Idempotency-Key is still being processed; retry shortly."
}


async def _find(
    sessionmaker: async_sessionmaker[AsyncSession], user_id: uuid.UUID, key: str
) -> IdempotencyRecord | None:
    async with sessionmaker() as session, session.begin():
        record = (
            await session.scalars(
                select(IdempotencyRecord).where(
                    IdempotencyRecord.user_id == user_id, IdempotencyRecord.key == key
                )
            )
        ).one_or_none()
        if record is None:
            return None
        now = utcnow()
        expired = record.created_at < now - RETENTION
        abandoned = record.status_code is None and record.created_at < now - STALE_PENDING
        if expired or abandoned:
            await session.delete(record)
            return None
        return record


async def _claim(
    sessionmaker: async_sessionmaker[AsyncSession], user_id: uuid.UUID, key: str
) -> uuid.UUID | None:
    record = IdempotencyRecord(
        id=uuid.uuid4(), user_id=user_id, key=key, fingerprint="", created_at=utcnow()
    )
    try:
        async with sessionmaker() as session, session.begin():
            session.add(record)
    except IntegrityError:
        return None
    return record.id


async def _complete(
    sessionmaker: async_sessionmaker[AsyncSession],
    record_id: uuid.UUID,
    fingerprint: str,
    status: int,
    content_type: str | None,
    body: bytes,
) -> None:
    try:
        async with sessionmaker() as session, session.begin():
            await session.execute(
                update(IdempotencyRecord)
                .where(IdempotencyRecord.id == record_id)
                .values(
                    fingerprint=fingerprint,
                    status_code=status,
                    content_type=content_type,
                    response_body=body,
                    completed_at=utcnow(),
                )
            )
    except Exception:  # the response already went out; a lost record only disables replay
        log.exception("could not store an idempotent response")


async def _forget(sessionmaker: async_sessionmaker[AsyncSession], record_id: uuid.UUID) -> None:
    try:
        async with sessionmaker() as session, session.begin():
            await session.execute(
                delete(IdempotencyRecord).where(IdempotencyRecord.id == record_id)
            )
    except Exception:
        log.exception("could not release an idempotency key")


async def purge_expired(sessionmaker: async_sessionmaker[AsyncSession]) -> int:
    """Delete records past retention (periodic housekeeping)."""
    async with sessionmaker() as session, session.begin():
        result = await session.execute(
            delete(IdempotencyRecord).where(IdempotencyRecord.created_at < utcnow() - RETENTION)
        )
    return int(result.rowcount)  # type: ignore[attr-defined]


async def _respond(send: Send, status: int, payload: dict[str, str]) -> None:
    body = json.dumps(payload).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
