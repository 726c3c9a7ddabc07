"""Which failures are worth retrying, and when to retry them."""

from __future__ import annotations

import logging
import random
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy.exc import DBAPIError

from vidlib.media import MediaError
from vidlib.storage.base import ObjectNotFound, StorageError

log = logging.getLogger("vidlib.tasks")


class TaskError(Exception):
    """A task failed for a reason that is safe to show the user.

    ``permanent`` failures are not retried (bad input); others are, with backoff,
    until the attempts run out.
    """

    def __init__(self, reason: str, *, permanent: bool = True) -> None:
        super().__init__(reason)
        self.reason = reason
        self.permanent = permanent


@dataclass(frozen=True, slots=True)
class Failure:
    """What went wrong, in a sentence for the user, and whether to try again."""

    reason: str
    permanent: bool
    code: str


UNEXPECTED = "Processing failed unexpectedly."


def classify(exc: BaseException) -> Failure:
    """Sort an exception into permanent (bad input) or transient (try again later)."""
    if isinstance(exc, MediaError):
        return Failure(exc.reason, exc.permanent, exc.code)
    if isinstance(exc, TaskError):
        return Failure(exc.reason, exc.permanent, "task")
    if isinstance(exc, ObjectNotFound):
        return Failure("The video file was not found in storage.", True, "not_found")
    if isinstance(exc, StorageError):
        return Failure("Storage was unavailable.", False, "storage")
    if isinstance(exc, BrokenProcessPool):
        # The analysing process died (a crash or its memory cap): the attempt cap stops
        # a file that kills it every time.
        return Failure("The video could not be processed.", False, "crashed")
    if isinstance(exc, TimeoutError):
        return Failure("Processing took too long.", False, "timeout")
    if isinstance(exc, DBAPIError | OSError):
        return Failure("A service was unavailable.", False, "unavailable")
    log.error("unexpected error in a task", exc_info=exc)
    return Failure(UNEXPECTED, False, "unexpected")


def backoff(attempt: int, *, base: timedelta, cap: timedelta) -> timedelta:
    """Delay before the attempt after ``attempt``: exponential, capped, with jitter."""
    seconds = min(cap.total_seconds(), base.total_seconds() * 2 ** max(0, attempt - 1))
    # Full jitter on the upper half: retries of many rows do not arrive in lockstep.
    return timedelta(seconds=seconds * (0.5 + random.random() / 2))  # noqa: S311
