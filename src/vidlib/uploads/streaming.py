"""Streaming request bodies: a multipart push parser turned into async events, and a
bounded hand-off of bytes to a storage writer running beside the request reader."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header

from vidlib.storage.base import StorageError
from vidlib.uploads.errors import MalformedBody
from vidlib.uploads.names import disposition_filename

T = TypeVar("T")
log = logging.getLogger("vidlib.uploads")

# Hand-off blocks: large enough to keep per-chunk overhead low, small enough that the
# queue (a couple of blocks) plus the store's part buffer bound memory per upload.
BLOCK_SIZE = 1024 * 1024
QUEUE_BLOCKS = 2
# How long a storage writer may take to reach a clean stopping point before it is cancelled.
STOP_GRACE_SECONDS = 30.0


class StreamAbandoned(Exception):
    """Raised inside the storage writer when the reader gives up on the upload."""


class _Stop:
    """Queue item telling the writer to give up."""


_STOP = _Stop()


@dataclass(frozen=True, slots=True)
class PartStart:
    """A part's headers have been read."""

    name: str | None
    filename: str | None
    content_type: str | None


@dataclass(frozen=True, slots=True)
class PartData:
    """Some bytes of the current part (a view into the received chunk)."""

    data: bytes


@dataclass(frozen=True, slots=True)
class PartEnd:
    """The current part is complete."""


Event = PartStart | PartData | PartEnd


def multipart_boundary(content_type: str | None) -> bytes:
    """The boundary of a ``multipart/form-data`` Content-Type, or 422."""
    media_type, params = parse_options_header(content_type)
    if media_type != b"multipart/form-data":
        raise MalformedBody("Send the file as multipart/form-data in a field named 'file'.")
    boundary = params.get(b"boundary")
    if not boundary or len(boundary) > 200:
        raise MalformedBody("The multipart Content-Type carries no valid boundary.")
    return boundary


def _decode_header(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


async def multipart_events(
    body: AsyncIterator[bytes], content_type: str | None
) -> AsyncIterator[Event]:
    """Parse a multipart body as it arrives; 422 when it is malformed or ends early."""
    boundary = multipart_boundary(content_type)
    events: deque[Event] = deque()
    headers: dict[str, str] = {}
    field: list[bytes] = []
    value: list[bytes] = []
    finished = False

    def on_header_field(data: bytes, start: int, end: int) -> None:
        field.append(data[start:end])

    def on_header_value(data: bytes, start: int, end: int) -> None:
        value.append(data[start:end])

    def on_header_end() -> None:
        headers[_decode_header(b"".join(field)).lower()] = _decode_header(b"".join(value))
        field.clear()
        value.clear()

    def on_headers_finished() -> None:
        disposition = headers.get("content-disposition", "")
        try:
            kind, params = parse_options_header(disposition)
        except UnicodeError as exc:
            # Parameters are re-encoded as Latin-1: a name beyond it cannot be read.
            raise MalformedBody("A multipart part has an unreadable Content-Disposition.") from exc
        if kind != b"form-data":
            raise MalformedBody("A multipart part has no form-data Content-Disposition.")
        name = params.get(b"name")
        events.append(
            PartStart(
                name=_decode_header(name) if name is not None else None,
                filename=disposition_filename(disposition),
                content_type=headers.get("content-type"),
            )
        )
        headers.clear()

    def on_part_data(data: bytes, start: int, end: int) -> None:
        if end > start:
            events.append(PartData(data[start:end]))

    def on_part_end() -> None:
        events.append(PartEnd())

    def on_end() -> None:
        nonlocal finished
        finished = True

    parser = MultipartParser(
        boundary,
        {
            "on_header_field": on_header_field,
            "on_header_value": on_header_value,
            "on_header_end": on_header_end,
            "on_headers_finished": on_headers_finished,
            "on_part_data": on_part_data,
            "on_part_end": on_part_end,
            "on_end": on_end,
        },
    )
    async for chunk in body:
        if finished:
            continue  # an epilogue after the closing boundary is allowed and ignored
        try:
            parser.write(chunk)
        except FormParserError as exc:
            raise MalformedBody() from exc
        while events:
            yield events.popleft()
    while events:
        yield events.popleft()
    if not finished:
        raise MalformedBody("The multipart body ended before its closing boundary.")


# Bytes of form fields other than ``file`` that a request may carry (they are ignored).
MAX_OTHER_FIELDS = 64 * 1024


async def file_events(events: AsyncIterator[Event]) -> AsyncIterator[Event]:
    """The start, data and end of the form's one field named ``file``.

    Other fields are skipped, up to ``MAX_OTHER_FIELDS`` bytes in all; a second
    ``file`` field, or none, is a 422.
    """
    in_file = seen = False
    other = 0
    async for event in events:
        if isinstance(event, PartStart):
            in_file = event.name == "file"
            if in_file and seen:
                raise MalformedBody("Send one file per request, in the field 'file'.")
            if in_file:
                seen = True
                yield event
        elif in_file:
            in_file = not isinstance(event, PartEnd)
            yield event
        elif isinstance(event, PartData):
            other += len(event.data)
            if other > MAX_OTHER_FIELDS:
                raise MalformedBody("The form carries too much besides the file.")
    if not seen:
        raise MalformedBody("The form has no field named 'file'.")


class StoreFeed:
    """Bytes handed from the request reader to a storage writer through a bounded queue.

    The writer (``put_stream``) runs as a task; ``send`` waits while the queue is full
    (backpressure) and raises the writer's error if it stops early.
    """

    def __init__(self, blocks: int = QUEUE_BLOCKS) -> None:
        self._queue: asyncio.Queue[bytes | _Stop | None] = asyncio.Queue(maxsize=blocks)
        self._task: asyncio.Task[Any] | None = None
        self.started = False  # the writer has pulled at least one block

    async def chunks(self) -> AsyncIterator[bytes]:
        """What the writer consumes."""
        while True:
            item = await self._queue.get()
            if item is None:
                return
            if isinstance(item, _Stop):
                raise StreamAbandoned()
            self.started = True
            yield item

    def run(self, writer: Awaitable[T]) -> asyncio.Task[T]:
        """Start the writer beside the reader."""
        task: asyncio.Task[T] = asyncio.ensure_future(writer)
        self._task = task
        return task

    async def send(self, block: bytes | None) -> None:
        """Queue a block (``None`` ends the stream), waiting for room."""
        task = self._task
        assert task is not None, "run() the writer first"
        if task.done():
            self._writer_stopped(task)
        try:
            self._queue.put_nowait(block)
            return
        except asyncio.QueueFull:
            pass
        put = asyncio.ensure_future(self._queue.put(block))
        try:
            await asyncio.wait({put, task}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not put.done():
                put.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await put
        if not put.done() or put.cancelled():
            self._writer_stopped(task)

    @staticmethod
    def _writer_stopped(task: asyncio.Task[Any]) -> None:
        if task.cancelled():
            raise StorageError("the storage writer was cancelled")
        exc = task.exception()
        if exc is not None:
            raise exc
        raise StorageError("the storage writer returned before the stream ended")

    async def stop(self, *, grace: float = STOP_GRACE_SECONDS) -> None:
        """Make the writer give up, and wait until it has cleaned up after itself.

        The writer is not cancelled in the middle of a storage request (a request cut
        short can leave state nobody knows about, such as a multipart upload created
        but not yet recorded); its next read raises instead and ``put_stream`` discards
        what it wrote. It is cancelled only if it does not get there within ``grace``.
        """
        task = self._task
        if task is None or task.done():
            return
        while not self._queue.empty():
            self._queue.get_nowait()
        self._queue.put_nowait(_STOP)
        done, _ = await asyncio.wait({task}, timeout=grace)
        if not done:
            task.cancel()
            await asyncio.wait({task})
        if not task.cancelled():
            task.exception()  # retrieved: the reader's error is the one that matters


_cleanups: set[asyncio.Task[None]] = set()


async def run_shielded(action: Callable[[], Awaitable[None]], what: str) -> None:
    """Run cleanup to completion even if the caller is cancelled meanwhile; log failures.

    A failed cleanup leaves something for ``reconcile`` to find; it never replaces
    the error that made the cleanup necessary.
    """

    async def guarded() -> None:
        try:
            await action()
        except Exception:
            log.warning("cleanup failed: %s", what, exc_info=True)

    task = asyncio.ensure_future(guarded())
    _cleanups.add(task)
    task.add_done_callback(_cleanups.discard)
    await asyncio.shield(task)
